"""Generate helm/headwater/values.schema.json from values.yaml and the rules below.

usage: gen-schema.py CHART_DIR [--check]

Every key of values.yaml becomes a property, typed from its default; every object the chart
defines is closed (`additionalProperties: false`), so a typo such as `logNode.replica` is an
error. Maps whose keys the user picks (labels, annotations, headwater.yaml settings, topics,
schema files) are typed by their values instead. Kubernetes objects passed through as they are
(affinity, tolerations, security contexts, env, volumes, NetworkPolicy peers) take the strict
schemas of their API types for the newest Kubernetes pinned (kubernetes-validate's, copied
into `$defs` without their descriptions), so typos inside them are errors too.
With --check, exit 1 when the committed schema differs from the generated one.
"""
import fnmatch
import json
import os
import re
import sys

import kubernetes_validate
import yaml

K8S_DEFS_VERSION = "1.37.0"
K8S_DEFS = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema",
                        f"v{K8S_DEFS_VERSION}-local-strict", "_definitions.json")
USED_DEFS = set()


def k8s(name):
    """A reference to the strict schema of a Kubernetes API type."""
    USED_DEFS.add(name)
    return {"$ref": f"#/$defs/{name}"}


def k8s_list(name):
    return {"type": "array", "items": k8s(name)}


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def k8s_defs():
    """The definitions USED_DEFS name, and every definition they reference."""
    with open(K8S_DEFS) as f:
        defs = json.load(f)["$defs"]
    out, todo = {}, sorted(USED_DEFS)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = strip(defs[name])
        todo += re.findall(r'#/\$defs/([^"]+)"', json.dumps(defs[name]))
    return dict(sorted(out.items()))

STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
CORE = "io.k8s.api.core.v1."
QUANTITY = {"type": ["string", "number"]}
BUDGET = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^[0-9]{1,3}%$"}, {"type": "null"}]}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

# path pattern -> schema (fnmatch on dotted paths; the first match wins).
RULES = {
    "mode": {"type": "string", "enum": ["single", "cluster", "external-kafka"]},
    "clusterDomain": {"type": "string", "minLength": 1},
    "image.pullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
    "image.digest": {"type": "string", "pattern": "^(sha256:[0-9a-f]{64})?$"},
    "image.pullSecrets": {"type": "array", "items": {"type": "string"}},
    "commonLabels": STR_MAP,
    "serviceAccount.annotations": STR_MAP,
    "config.headwater": {"type": "object", "description": "headwater.yaml settings; `headwater config check` validates them"},
    "*.config": {"type": "object", "description": "headwater.yaml settings; `headwater config check` validates them"},
    "config.schemas": STR_MAP,
    "auth.apiKeys": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["tenant", "sha256"],
        "properties": {"tenant": {"type": "string", "minLength": 1}, "sha256": SHA256,
                       "disabled": {"type": "boolean"}}}},
    "auth.opsKeys": {"type": "array", "items": SHA256},
    "kafka.properties": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
    "kafka.sasl.mechanism": {"type": "string", "enum": ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]},
    "kafka.sasl.principals": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "role"],
        "properties": {"name": {"type": "string", "minLength": 1},
                       "role": {"type": "string", "enum": ["tenant", "service", "operator"]},
                       "scram_sha256": {"type": "string"}, "scram_sha512": {"type": "string"},
                       "plain_sha256": SHA256}}},
    "*.podAnnotations": STR_MAP,
    "*.podLabels": STR_MAP,
    "*.nodeSelector": STR_MAP,
    "*.annotations": STR_MAP,
    "*.resources": {"type": "object", "additionalProperties": False, "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
        "claims": k8s_list(CORE + "ResourceClaim")}},
    "*.affinity": k8s(CORE + "Affinity"),
    "*.podSecurityContext": k8s(CORE + "PodSecurityContext"),
    "*.securityContext": k8s(CORE + "SecurityContext"),
    "*.tolerations": k8s_list(CORE + "Toleration"),
    "*.topologySpreadConstraints": k8s_list(CORE + "TopologySpreadConstraint"),
    "*.extraEnv": k8s_list(CORE + "EnvVar"),
    "*.extraEnvFrom": k8s_list(CORE + "EnvFromSource"),
    "*.extraVolumes": k8s_list(CORE + "Volume"),
    "*.extraVolumeMounts": k8s_list(CORE + "VolumeMount"),
    "*.logFormat": {"type": "string", "enum": ["human", "json"]},
    "*.service.type": {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "*.service.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "*.loadBalancerSourceRanges": {"type": "array", "items": {"type": "string"}},
    "*.accessModes": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": [
        "ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]}},
    "*.size": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([EPTGMK]i?|[mk])?$"},
    "*.pdb.maxUnavailable": BUDGET,
    "*.pdb.minAvailable": BUDGET,
    "logNode.replicas": {"type": "integer", "minimum": 1},
    "logNode.topics": {"type": "object", "additionalProperties": {
        "type": "object", "description": "log.topics.<name> settings", "additionalProperties": False,
        "properties": {"partitions": {"type": "integer", "minimum": 1},
                       "retention_ms": {"type": "integer", "minimum": 0},
                       "retention_bytes": {"type": ["integer", "null"], "minimum": 0},
                       "segment_bytes": {"type": "integer", "minimum": 1},
                       "segment_ms": {"type": "integer", "minimum": 1},
                       "flush": {"type": "object", "description": "log.flush for this topic"},
                       "max_message_bytes": {"type": "integer", "minimum": 1},
                       "index_interval_bytes": {"type": "integer", "minimum": 1},
                       "producer_expiry_ms": {"type": "integer", "minimum": 1}}}},
    "logNode.flushMode": {"type": "string", "enum": ["every_append", "interval", "background", "os"]},
    "logNode.zoneSpread": {"type": "string", "enum": ["DoNotSchedule", "ScheduleAnyway"]},
    "logNode.antiAffinity": {"type": "string", "enum": ["required", "preferred"]},
    "logNode.persistence.retentionPolicy": {"type": "string", "enum": ["Retain", "Delete"]},
    "logNode.replication.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "*.replicas": {"type": "integer", "minimum": 0},
    "*.minReplicas": {"type": "integer", "minimum": 1},
    "*.maxReplicas": {"type": "integer", "minimum": 1},
    "*.targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
    "*.terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
    "networkPolicy.kafkaAllowFrom": k8s_list("io.k8s.api.networking.v1.NetworkPolicyPeer"),
    "serviceMonitor.labels": STR_MAP,
    "serviceMonitor.interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
    "serviceMonitor.bearerTokenSecret": {"type": "object", "additionalProperties": False,
                                         "properties": {"name": {"type": "string"}, "key": {"type": "string"}}},
    "serviceMonitor.tlsConfig": {"type": "object", "description": "the ServiceMonitor's tlsConfig, as it is"},
}


def rule(path):
    for pattern, schema in RULES.items():
        if fnmatch.fnmatchcase(path, pattern):
            return dict(schema)
    return None


def infer(path, value):
    found = rule(path)
    if found is not None:
        return found
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, dict):
        return {"type": "object", "additionalProperties": False,
                "properties": {k: infer(f"{path}.{k}" if path else k, v) for k, v in value.items()}}
    sys.exit(f"gen-schema: {path}: no rule for a {type(value).__name__} default; add one to RULES")


def main():
    chart = sys.argv[1]
    with open(os.path.join(chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Headwater chart values"}
    schema.update(infer("", values))
    schema["$defs"] = k8s_defs()
    text = json.dumps(schema, indent=2) + "\n"
    target = os.path.join(chart, "values.schema.json")
    if "--check" in sys.argv:
        with open(target) as f:
            if f.read() != text:
                sys.exit("values.schema.json is out of date: run tests/chart/gen-schema.py helm/headwater")
        return
    with open(target, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
