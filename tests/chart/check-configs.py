"""Check every rendered Headwater configuration with the binary, as each pod would see it.

usage: check-configs.py HEADWATER_BIN RENDERED.yaml WORKDIR SECRETS.yaml...

For each container of each StatefulSet and Deployment in RENDERED.yaml:
  - its ConfigMap volumes are laid out as the kubelet does (files as symlinks to `..data/`,
    `..data` a symlink to a timestamped directory), so the symlink swaps of a ConfigMap update
    are what Headwater reads;
  - its environment is built from the pod spec: plain values with `$(VAR)` expanded, Secret
    keys from the rendered Secrets or from SECRETS.yaml (those the scenarios name as existing),
    downward-API fields as the pod would have them (name, pod-index label);
  - `headwater config check` runs on its headwater.yaml with that environment (nothing else),
    `headwater routes check` on its routes.yaml and `headwater schemas check` on its schema
    directory.
A log node's configuration (peers by their headless-Service DNS names, mutual TLS on the
replication port, `listen` on every address) must pass as it is. Prints one line a check and
"N passed, M failed" last; exits 1 on a failure.
"""
import base64
import os
import re
import shutil
import subprocess
import sys

import yaml

PASSED = 0
FAILED = 0

def result(ok, name, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok    {name}")
    else:
        FAILED += 1
        print(f"FAIL  {name}")
        if detail:
            print("      " + detail.strip().replace("\n", "\n      "))


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def secret_data(doc):
    data = {}
    for key, value in (doc.get("data") or {}).items():
        data[key] = base64.b64decode(value).decode()
    data.update(doc.get("stringData") or {})
    return data


def kubelet_layout(directory, files):
    """Lay FILES out in DIRECTORY as the kubelet's atomic writer does for a ConfigMap."""
    os.makedirs(directory, exist_ok=True)
    stamp = "..2026_01_01_00_00_00.000000001"
    os.makedirs(os.path.join(directory, stamp))
    for name, content in files.items():
        with open(os.path.join(directory, stamp, name), "w") as f:
            f.write(content)
    os.symlink(stamp, os.path.join(directory, "..data"))
    for name in files:
        os.symlink(os.path.join("..data", name), os.path.join(directory, name))


def expand(value, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def pod_env(container, pod_name, pod_labels, secrets):
    env = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = secrets.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise KeyError(f"env {var['name']}: no key {ref['key']} in Secret {ref['name']}")
            env[var["name"]] = data[ref["key"]]
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path == "metadata.name":
                env[var["name"]] = pod_name
            elif path.startswith("metadata.labels['"):
                env[var["name"]] = pod_labels[path[len("metadata.labels['"):-2]]
            else:
                raise KeyError(f"env {var['name']}: fieldPath {path} not modelled")
        else:
            raise KeyError(f"env {var['name']}: source {list(source)} not modelled")
    return env


def run(binary, args, env):
    proc = subprocess.run([binary, *args], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def check_workload(binary, workload, configmaps, secrets, workdir):
    kind, name = workload["kind"], workload["metadata"]["name"]
    template = workload["spec"]["template"]
    labels = dict(template["metadata"].get("labels") or {})
    pod_name = name
    if kind == "StatefulSet":
        start = (workload["spec"].get("ordinals") or {}).get("start", 0)
        pod_name = f"{name}-{start}"
        labels["apps.kubernetes.io/pod-index"] = str(start)
    root = os.path.join(workdir, name)
    shutil.rmtree(root, ignore_errors=True)
    volumes = {v["name"]: v for v in template["spec"].get("volumes") or []}
    for container in template["spec"]["containers"]:
        label = f"{kind}/{name}"
        mounts = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume and "configMap" in volume:
                cm = configmaps.get(volume["configMap"]["name"])
                if cm is None:
                    result(False, f"{label}: ConfigMap {volume['configMap']['name']} is not rendered")
                    continue
                path = root + mount["mountPath"]
                kubelet_layout(path, cm.get("data") or {})
                mounts[mount["mountPath"]] = path
        try:
            env = pod_env(container, pod_name, labels, secrets)
        except KeyError as e:
            result(False, f"{label}: environment", str(e))
            continue
        args = container.get("args") or []
        config_path = args[args.index("--config") + 1]
        host_config = root + config_path
        if not os.path.exists(host_config):
            result(False, f"{label}: {config_path} is not in a mounted ConfigMap")
            continue
        code, out = run(binary, ["config", "check", host_config], env)
        if code == 0:
            result(True, f"{label}: config check")
        else:
            result(False, f"{label}: config check", out)
        for mount_path, host_path in mounts.items():
            if mount_path.endswith("/routes"):
                code, out = run(binary, ["routes", "check", os.path.join(host_path, "routes.yaml")], {})
                result(code == 0, f"{label}: routes check", out if code else "")
            elif mount_path.endswith("/schemas"):
                code, out = run(binary, ["schemas", "check", host_path], {})
                result(code == 0, f"{label}: schemas check (kubelet symlink layout)", out if code else "")


def main():
    binary, rendered, workdir, *secret_files = sys.argv[1:]
    docs = load(rendered)
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    secrets = {}
    for path in secret_files:
        for d in load(path):
            if d["kind"] == "Secret":
                secrets[d["metadata"]["name"]] = secret_data(d)
    for d in docs:
        if d["kind"] == "Secret":
            secrets[d["metadata"]["name"]] = secret_data(d)
    workloads = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    if not workloads:
        result(False, f"{rendered}: no workload rendered")
    for workload in workloads:
        check_workload(binary, workload, configmaps, secrets, workdir)
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
