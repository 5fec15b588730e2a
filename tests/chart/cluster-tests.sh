#!/usr/bin/env bash
# cluster-tests.sh CHART WORKDIR: the chart against the real API server of control-plane.sh
# (KUBECONFIG set by scripts/chart-test; helm and kubectl on PATH). Pods are scheduled onto
# kwok's fake nodes and made Ready there; nothing runs in them.
#   - every scenario: `helm template | kubectl apply --dry-run=server`, then `helm install
#     --wait`, every pod of the release Ready;
#   - cluster: log nodes in three zones, the HPA raising the gateways to minReplicas, a second
#     eviction of a log node refused by its PDB (429), `helm upgrade` with a changed routes.yaml
#     rolling the routers only, a replica change not touching the log nodes, a switch to
#     external-kafka removing the StatefulSet;
#   - a failed install (--rollback-on-failure) leaves nothing behind.
# Every wait is a bounded poll. Prints one line a check and "N passed, M failed" last.
set -uo pipefail
CHART="$1" WORK="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REL=hw
PASSED=0 FAILED=0
LOG="$WORK/logs/cluster-tests-detail.log"
: >"$LOG"

result() {
    if [ "$1" -eq 0 ]; then PASSED=$((PASSED + 1)); echo "ok    $2"
    else FAILED=$((FAILED + 1)); echo "FAIL  $2"; tail -n 15 "$LOG" | sed 's/^/      /'; fi
}
# run CMD...: CMD's output to the detail log.
run() { echo "+ $*" >>"$LOG"; "$@" >>"$LOG" 2>&1; }
# poll SECONDS CMD...: until CMD succeeds, every 0.5 s, at most SECONDS.
poll() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >>"$LOG" 2>&1; do
        [ "$SECONDS" -ge "$deadline" ] && { echo "  (gave up after polling: $*)" >>"$LOG"; return 1; }
        sleep 0.5
    done
}
k() { kubectl "$@"; }
jp() { kubectl -n "$1" get "$2" -o "jsonpath=$3" 2>/dev/null; }

# PersistentVolumes bound in advance to the claims a scenario's StatefulSet will make.
make_pvs() { # NS CLAIM...
    local ns="$1" claim
    shift
    for claim in "$@"; do
        cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-$ns-$claim
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /nonexistent/$ns/$claim}
  claimRef: {namespace: $ns, name: $claim}
EOF
    done | run k apply -f -
}

prepare() { # SCENARIO -> namespace with the Secrets the scenarios name, and volumes
    local s="$1" ns="hw-$1" claims=() n i
    run k create namespace "$ns"
    "$HERE/gen-tls.sh" "$WORK/tls-$ns.yaml" "$ns"
    run k -n "$ns" apply -f "$HERE/fixtures/secrets.yaml" -f "$WORK/tls-$ns.yaml"
    case "$s" in
    single) claims=("data-$REL-headwater-0") ;;
    external-kafka) ;;
    *)
        n="$(helm template "$REL" "$CHART" -f "$CHART/ci/$s-values.yaml" --show-only templates/lognode.yaml \
            | python3 -c 'import sys,yaml; print(yaml.safe_load(sys.stdin)["spec"]["replicas"])')"
        for i in $(seq 1 "$n"); do claims+=("data-$REL-headwater-log-$i"); done
        ;;
    esac
    [ ${#claims[@]} -eq 0 ] || make_pvs "$ns" "${claims[@]}"
}

all_pods_ready() { # NS MIN: at least MIN pods of the release, each Ready
    local out total ready
    out="$(k -n "$1" get pods -l "app.kubernetes.io/instance=$REL" \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')"
    total="$(grep -c . <<<"$out")"
    ready="$(grep -c True <<<"$out")"
    echo "pods ready: $ready of $total" >>"$LOG"
    [ "$total" -ge "$2" ] && [ "$ready" -eq "$total" ]
}

SCENARIOS=(single cluster cluster-tls-sasl external-kafka minimal)

for s in "${SCENARIOS[@]}"; do
    prepare "$s"
    ns="hw-$s"
    helm template "$REL" "$CHART" -n "$ns" -f "$CHART/ci/$s-values.yaml" >"$WORK/$ns.yaml" 2>>"$LOG"
    run k -n "$ns" apply --dry-run=server -f "$WORK/$ns.yaml"
    result $? "$s: helm template | kubectl apply --dry-run=server: every object admitted"
done

# The cheap check catches what Helm's own --dry-run=server let through: a PDB with both fields.
bad_pdb() {
    python3 - "$WORK/hw-cluster.yaml" <<'PY' | k -n hw-cluster apply --dry-run=server -f - 2>&1
import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"].endswith("-router"):
        d["spec"]["minAvailable"] = 1
        print(yaml.safe_dump(d))
PY
}
out="$(bad_pdb)"
echo "$out" >>"$LOG"
grep -qi "minAvailable" <<<"$out" && grep -qi "invalid\|forbidden\|may not" <<<"$out"
result $? "kubectl apply --dry-run=server refuses a PDB with minAvailable and maxUnavailable"

for s in "${SCENARIOS[@]}"; do
    ns="hw-$s"
    t=$SECONDS
    run helm install "$REL" "$CHART" -n "$ns" -f "$CHART/ci/$s-values.yaml" --wait --timeout 180s
    result $? "$s: helm install --wait ($((SECONDS - t)) s)"
    poll 90 all_pods_ready "$ns" 1
    result $? "$s: every pod of the release scheduled and Ready"
done

# ------------------------------------------------------------------ ServiceMonitor
# cluster-tls-sasl asks for ServiceMonitors: none while the API server lacks the CRD, one per
# component once it serves monitoring.coreos.com/v1.
ns=hw-cluster-tls-sasl
monitors() { k -n "$ns" get servicemonitors.monitoring.coreos.com -o name 2>/dev/null | grep -c .; }
k -n "$ns" get servicemonitors.monitoring.coreos.com >>"$LOG" 2>&1
[ $? -ne 0 ] && [ -z "$(k -n "$ns" get all -o name | grep -i servicemonitor)" ]
result $? "ServiceMonitor: none without the CRD (and the install succeeded)"
run k apply -f "$HERE/fixtures/servicemonitor-crd.yaml"
established() { [ "$(k get crd servicemonitors.monitoring.coreos.com -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" = True ]; }
poll 30 established
run helm upgrade "$REL" "$CHART" -n "$ns" --reuse-values --wait --timeout 120s
three_monitors() { [ "$(monitors)" -eq 3 ]; }
poll 30 three_monitors
result $? "ServiceMonitor: one per component once the API server serves monitoring.coreos.com/v1"

# ------------------------------------------------------------------ mode cluster, in depth
ns=hw-cluster
LOGSTS="$REL-headwater-log" GW="$REL-headwater-gateway" RT="$REL-headwater-router"

zones_of_log_pods() {
    local nodes zones
    nodes="$(k -n "$ns" get pods -l app.kubernetes.io/component=log -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}')"
    zones="$(for n in $nodes; do k get node "$n" -o jsonpath='{.metadata.labels.topology\.kubernetes\.io/zone}{"\n"}'; done | sort -u | grep -c .)"
    echo "log pods on: $(echo $nodes); zones: $zones" >>"$LOG"
    [ "$zones" -eq 3 ]
}
poll 30 zones_of_log_pods
result $? "cluster: the three log nodes are spread over three zones"

gateways_at() { # N: the HPA set the Deployment to N and N are ready
    [ "$(jp "$ns" "deploy/$GW" '{.spec.replicas}')" = "$1" ] && [ "$(jp "$ns" "deploy/$GW" '{.status.readyReplicas}')" = "$1" ]
}
poll 90 gateways_at 2
result $? "cluster: the HPA scales the gateways to minReplicas (2)"

pdb_allows() { [ "$(jp "$ns" "pdb/$LOGSTS" '{.status.disruptionsAllowed}')" = "$1" ]; }
evict() { # POD: the eviction API's answer
    printf '{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"%s","namespace":"%s"}}' "$1" "$ns" \
        | k create --raw "/api/v1/namespaces/$ns/pods/$1/eviction" -f - 2>&1
}
poll 60 pdb_allows 1
result $? "cluster: the log nodes' PDB allows one disruption when all are ready"
evicted_uid="$(jp "$ns" "pod/$LOGSTS-1" '{.metadata.uid}')"
first="$(evict "$LOGSTS-1")"; first_rc=$?
second="$(evict "$LOGSTS-2")"; second_rc=$?
printf 'first eviction (%s): %s\nsecond eviction (%s): %s\n' "$first_rc" "$first" "$second_rc" "$second" >>"$LOG"
[ "$first_rc" -eq 0 ]
result $? "cluster: the first eviction of a log node is granted"
[ "$second_rc" -ne 0 ] && grep -q "TooManyRequests\|429\|disruption budget" <<<"$second"
result $? "cluster: a second eviction is refused by the PDB (429)"
replaced_and_ready() { # the evicted pod is gone, its successor (same name) Ready, all pods Ready
    local uid ready
    uid="$(jp "$ns" "pod/$LOGSTS-1" '{.metadata.uid}')"
    ready="$(jp "$ns" "pod/$LOGSTS-1" '{.status.conditions[?(@.type=="Ready")].status}')"
    [ -n "$uid" ] && [ "$uid" != "$evicted_uid" ] && [ "$ready" = True ] && all_pods_ready "$ns" 7
}
poll 120 replaced_and_ready
result $? "cluster: the evicted log node is recreated under its name and every pod is Ready"

gen() { jp "$ns" "$1" '{.metadata.generation}'; }
uids() { k -n "$ns" get pods -l app.kubernetes.io/component=log -o jsonpath='{.items[*].metadata.uid}'; }
template_of() { k -n "$ns" get "$1" -o jsonpath='{.spec.template}' | sha256sum; }
sts_gen0="$(gen "sts/$LOGSTS")" gw_gen0="$(gen "deploy/$GW")" rt_gen0="$(gen "deploy/$RT")" uids0="$(uids)"
gw_tpl0="$(template_of "deploy/$GW")"
cat >"$WORK/new-routes.yaml" <<'YAML'
config:
  routes: |
    routes:
      - name: lake
        source:
          topics: [events, events.dlq]
        sinks:
          - type: s3
YAML
t=$SECONDS
run helm upgrade "$REL" "$CHART" -n "$ns" --reuse-values -f "$WORK/new-routes.yaml" --wait --timeout 180s
result $? "cluster: helm upgrade with a changed routes.yaml ($((SECONDS - t)) s)"
[ "$(gen "deploy/$RT")" -gt "$rt_gen0" ] && run k -n "$ns" rollout status "deploy/$RT" --timeout 90s
result $? "cluster: the routers rolled to the new routes"
echo "log sts generation $sts_gen0 -> $(gen "sts/$LOGSTS"); log pods $uids0 -> $(uids)" >>"$LOG"
[ "$(gen "sts/$LOGSTS")" = "$sts_gen0" ] && [ "$(uids)" = "$uids0" ]
result $? "cluster: the log nodes did not roll (same generation, same pods)"
echo "gateway generation $gw_gen0 -> $(gen "deploy/$GW"); template $gw_tpl0 -> $(template_of "deploy/$GW")" >>"$LOG"
[ "$(template_of "deploy/$GW")" = "$gw_tpl0" ]
result $? "cluster: the gateways did not roll (same pod template)"

sts_gen1="$(gen "sts/$LOGSTS")" rt_tpl1="$(template_of "deploy/$RT")" uids1="$(uids)"
t=$SECONDS
run helm upgrade "$REL" "$CHART" -n "$ns" --reuse-values --set router.replicas=3 \
    --set gateway.autoscaling.minReplicas=3 --wait --timeout 180s
result $? "cluster: helm upgrade with more routers and a higher HPA minimum ($((SECONDS - t)) s)"
routers_at() { [ "$(jp "$ns" "deploy/$RT" '{.status.readyReplicas}')" = "$1" ]; }
poll 60 routers_at 3 && poll 90 gateways_at 3
result $? "cluster: three routers and three gateways ready"
echo "log sts generation $sts_gen1 -> $(gen "sts/$LOGSTS"); log pods $uids1 -> $(uids)" >>"$LOG"
[ "$(gen "sts/$LOGSTS")" = "$sts_gen1" ] && [ "$(uids)" = "$uids1" ]
result $? "cluster: the replica change left the log nodes alone (same generation, same pods)"
echo "router template $rt_tpl1 -> $(template_of "deploy/$RT"); gateway template $gw_tpl0 -> $(template_of "deploy/$GW")" >>"$LOG"
[ "$(template_of "deploy/$RT")" = "$rt_tpl1" ] && [ "$(template_of "deploy/$GW")" = "$gw_tpl0" ]
result $? "cluster: the replica change kept the gateways' and routers' pod templates (no rollout)"

sts_gone() { ! k -n "$ns" get "sts/$LOGSTS" >/dev/null 2>&1 && ! k -n "$ns" get "svc/$LOGSTS-headless" >/dev/null 2>&1; }
t=$SECONDS
run helm upgrade "$REL" "$CHART" -n "$ns" --reset-values -f "$CHART/ci/external-kafka-values.yaml" --wait --timeout 180s
result $? "cluster -> external-kafka: helm upgrade ($((SECONDS - t)) s)"
poll 60 sts_gone
result $? "cluster -> external-kafka: the log nodes' StatefulSet and headless Service are removed"
poll 90 all_pods_ready "$ns" 4
result $? "cluster -> external-kafka: the gateways and routers are Ready"

# ------------------------------------------------------------------ a failed install
ns=hw-failed
run k create namespace "$ns"
leftovers() {
    k -n "$ns" get all,configmaps,secrets,serviceaccounts,pdb,networkpolicies,hpa \
        -l "app.kubernetes.io/instance=$REL" -o name 2>/dev/null
}
# A pod annotation the API server refuses: the StatefulSet fails after the Secret, ConfigMaps
# and Service were created.
run helm install "$REL" "$CHART" -n "$ns" -f "$CHART/ci/single-values.yaml" \
    --set-json 'single.podAnnotations={"bad key!":"x"}' --rollback-on-failure --timeout 60s
rc=$?
[ "$rc" -ne 0 ]
result $? "failed install: helm install --rollback-on-failure fails on an object the API server refuses"
no_leftovers() { [ -z "$(leftovers)" ] && ! helm status "$REL" -n "$ns" >/dev/null 2>&1; }
poll 60 no_leftovers
result $? "failed install: no release and no object of it left behind"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
