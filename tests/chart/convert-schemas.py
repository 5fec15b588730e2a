"""Make kubernetes-validate's bundled strict schemas usable by kubeconform, offline.

usage: convert-schemas.py DEST VERSION...   (VERSION like 1.37.0)

kubernetes-validate ships, per Kubernetes minor, one JSON Schema per kind
(`deployment-apps-v1.json`) whose `$ref`s point at `/api/_definitions.json`, with `$id`s on
kubernetes.io. kubeconform resolves references relative to the file it loaded, so drop every
`$id` and make the references relative. Output: DEST/v1.37.0-standalone-strict/*.json, which
matches kubeconform's `{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}` layout.
"""
import json
import os
import sys

import kubernetes_validate

SRC = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")


def rewrite(node):
    if isinstance(node, dict):
        node.pop("$id", None)
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("/api/_definitions.json"):
                value = value[len("/api/"):]
            out[key] = rewrite(value)
        return out
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def main():
    dest, versions = sys.argv[1], sys.argv[2:]
    for version in versions:
        src = os.path.join(SRC, f"v{version}-local-strict")
        if not os.path.isdir(src):
            sys.exit(f"kubernetes-validate has no strict schemas for {version} ({src})")
        out = os.path.join(dest, f"v{version}-standalone-strict")
        os.makedirs(out, exist_ok=True)
        count = 0
        for name in sorted(os.listdir(src)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(src, name)) as f:
                schema = json.load(f)
            with open(os.path.join(out, name), "w") as f:
                json.dump(rewrite(schema), f)
            count += 1
        print(f"{version}: {count} schemas in {out}")


if __name__ == "__main__":
    main()
