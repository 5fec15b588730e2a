"""What a values change rolls, checked by rendering the chart twice.

usage: render-checks.py HELM CHART_DIR

A pod template that changes between two renders is rolled by Kubernetes; one that does not,
is not. Checks that a routes change rolls the routers only, a schema change the pods that load
schemas, a gateway/router replica change (or an HPA bound) nothing, and that every object the
chart defines is closed in values.schema.json. Prints "N passed, M failed" last.
"""
import json
import os
import subprocess
import sys

import yaml

PASSED = 0
FAILED = 0


def result(ok, name, detail=""):
    global PASSED, FAILED
    PASSED += ok
    FAILED += not ok
    print(f"{'ok   ' if ok else 'FAIL '} {name}")
    if detail and not ok:
        print("      " + detail)


def render(helm, chart, values, sets):
    args = [helm, "template", "t", chart, "-f", os.path.join(chart, "ci", values)]
    for s in sets:  # "string:" asks for --set-string
        args += ["--set-string", s[7:]] if s.startswith("string:") else ["--set", s]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    templates = {}
    for doc in yaml.safe_load_all(out):
        if doc and doc["kind"] in ("StatefulSet", "Deployment"):
            templates[doc["metadata"]["name"]] = doc["spec"]["template"]
    return templates


def rolled(helm, chart, values, sets, base):
    before = render(helm, chart, values, base)
    after = render(helm, chart, values, base + sets)
    return {name for name in before if before[name] != after.get(name)}


def expect(helm, chart, values, sets, want, what, base=()):
    got = rolled(helm, chart, values, sets, list(base))
    result(got == want, f"{values} {' '.join(base)} then {' '.join(sets)}: {what}", f"rolled {sorted(got)}, want {sorted(want)}")


def closed(schema, path="values"):
    """Every object with declared properties refuses unknown keys."""
    bad = []
    if isinstance(schema, dict):
        if "properties" in schema and schema.get("additionalProperties") is not False:
            bad.append(path)
        for key, sub in (schema.get("properties") or {}).items():
            bad += closed(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                bad += closed(schema[key], f"{path}[{key}]")
    return bad


def main():
    helm, chart = sys.argv[1:3]
    gw, rt, log = "t-headwater-gateway", "t-headwater-router", "t-headwater-log"
    expect(helm, chart, "cluster-values.yaml", ["config.routes=routes: []"], {rt},
           "a routes change rolls the routers only")
    expect(helm, chart, "cluster-values.yaml", ["router.replicas=5", "gateway.autoscaling.minReplicas=3"],
           set(), "replica changes roll nothing (log nodes above all)")
    expect(helm, chart, "cluster-values.yaml", ["gateway.autoscaling.enabled=false", "gateway.replicas=4"],
           set(), "turning the HPA off rolls nothing")
    expect(helm, chart, "cluster-values.yaml", ["string:config.schemas.x\\.v1\\.schema\\.json=changed"], {gw, log},
           "a schema change rolls the pods that load schemas")
    expect(helm, chart, "cluster-values.yaml", ["string:config.schemas.x\\.v1\\.schema\\.json=changed"],
           set(), "rollOnChange.schemas=false leaves it to the ConfigMap swap and hot reload",
           base=["config.rollOnChange.schemas=false"])
    expect(helm, chart, "cluster-values.yaml", ["kafka.sasl.passwords.router=other"], {rt},
           "a router password change rolls the routers only")
    expect(helm, chart, "cluster-values.yaml", ["logNode.config.log.flush.interval_ms=50"], {log},
           "a log-node setting rolls the log nodes only")
    expect(helm, chart, "single-values.yaml", ["config.routes=routes: []"], {"t-headwater"},
           "single: a routes change rolls the pod")
    with open(os.path.join(chart, "values.schema.json")) as f:
        bad = closed(json.load(f))
    result(not bad, "values.schema.json: every object of the chart refuses unknown keys", ", ".join(bad))
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
