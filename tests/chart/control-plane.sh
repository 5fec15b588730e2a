# shellcheck shell=bash
# A real Kubernetes control plane on loopback, sourced by scripts/chart-test:
#   cp_start DIR   etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (six
#                  fake nodes, two in each of zone-0, zone-1, zone-2); sets CP_KUBECONFIG.
# Every process is registered in the caller's CLEANUPS (stopped in reverse order: kwok, the
# scheduler, the controller manager, then the API server and only then etcd). Every wait is a
# bounded poll. Nothing ever sends traffic to the Service or pod ranges: only the API server
# on 127.0.0.1 is used (no exec, logs or port-forward to pods).

CP_T0=$SECONDS

cp_log() { printf '[control-plane %(%H:%M:%S)T] %s\n' -1 "$*"; }

cp_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cp_wait SECONDS WHAT CMD...: poll CMD every 0.25 s until it succeeds or SECONDS pass.
cp_wait() {
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            cp_log "timed out waiting for $what"
            return 1
        fi
        sleep 0.25
    done
}

# cp_stop_pid PID NAME SECONDS: TERM, wait (bounded), then KILL.
cp_stop_pid() {
    local pid="$1" name="$2" deadline=$((SECONDS + $3))
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            cp_log "$name did not stop in $3 s: KILL"
            kill -KILL "$pid" 2>/dev/null
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
}

# cp_spawn NAME STOP_SECONDS CMD...: start CMD in the background, logging to DIR/NAME.log.
cp_spawn() {
    local name="$1" stop="$2"
    shift 2
    "$@" >"$CP_DIR/$name.log" 2>&1 &
    local pid=$!
    CLEANUPS+=("cp_stop_pid $pid $name $stop")
    eval "CP_PID_${name//-/_}=$pid"
}

cp_start() {
    CP_DIR="$1"
    rm -rf "$CP_DIR"
    mkdir -p "$CP_DIR/certs"
    local etcd_port etcd_peer etcd_metrics api_port kwok_port token
    etcd_port="$(cp_free_port)" etcd_peer="$(cp_free_port)" etcd_metrics="$(cp_free_port)"
    api_port="$(cp_free_port)" kwok_port="$(cp_free_port)"
    token="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

    cp_log "etcd on 127.0.0.1:$etcd_port"
    cp_spawn etcd 30 "$K8S_BIN/etcd" --name cp --data-dir "$CP_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "cp=http://127.0.0.1:$etcd_peer" --listen-metrics-urls "http://127.0.0.1:$etcd_metrics" \
        --unsafe-no-fsync --log-level warn
    cp_wait 30 "etcd" curl -fsS "http://127.0.0.1:$etcd_port/health" || return 1

    openssl genrsa -out "$CP_DIR/certs/sa.key" 2048 2>/dev/null
    openssl rsa -in "$CP_DIR/certs/sa.key" -pubout -out "$CP_DIR/certs/sa.pub" 2>/dev/null
    printf '%s,admin,admin,"system:masters"\n' "$token" >"$CP_DIR/tokens.csv"

    cp_log "kube-apiserver on 127.0.0.1:$api_port"
    # Stopped before etcd (registered after it): killing both at once hung the API server.
    cp_spawn kube-apiserver 60 "$K8S_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
        --secure-port "$api_port" --cert-dir "$CP_DIR/certs" --token-auth-file "$CP_DIR/tokens.csv" \
        --authorization-mode RBAC --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$CP_DIR/certs/sa.pub" --service-account-signing-key-file "$CP_DIR/certs/sa.key" \
        --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
        --disable-admission-plugins ServiceAccount --enable-priority-and-fairness=false
    cp_wait 90 "kube-apiserver /readyz" curl -fsSk -H "Authorization: Bearer $token" \
        "https://127.0.0.1:$api_port/readyz" || return 1

    CP_KUBECONFIG="$CP_DIR/kubeconfig"
    cat >"$CP_KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: cp
    cluster:
      server: https://127.0.0.1:$api_port
      insecure-skip-tls-verify: true
users:
  - name: admin
    user:
      token: $token
contexts:
  - name: cp
    context: {cluster: cp, user: admin}
current-context: cp
EOF
    export KUBECONFIG="$CP_KUBECONFIG"

    cp_log "kube-controller-manager, kube-scheduler"
    cp_spawn kube-controller-manager 30 "$K8S_BIN/kube-controller-manager" --kubeconfig "$CP_KUBECONFIG" \
        --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
        --controllers '*,-serviceaccount-token' --horizontal-pod-autoscaler-sync-period 2s \
        --node-monitor-grace-period 60s
    cp_spawn kube-scheduler 30 "$K8S_BIN/kube-scheduler" --kubeconfig "$CP_KUBECONFIG" \
        --leader-elect=false --bind-address 127.0.0.1 --secure-port 0

    cp_log "kwok on 127.0.0.1:$kwok_port"
    cp_spawn kwok 30 "$K8S_BIN/kwok" --kubeconfig "$CP_KUBECONFIG" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
        --server-address "127.0.0.1:$kwok_port" \
        --config "$K8S_STAGES/node-fast.yaml" --config "$K8S_STAGES/node-heartbeat.yaml" \
        --config "$K8S_STAGES/pod-general.yaml"

    local i zone
    for i in 0 1 2 3 4 5; do
        zone="zone-$((i % 3))"
        cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    topology.kubernetes.io/zone: $zone
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
    done >"$CP_DIR/nodes.yaml"
    kubectl apply -f "$CP_DIR/nodes.yaml" || return 1
    cp_wait 60 "six Ready nodes" cp_nodes_ready 6 || return 1
    cp_wait 30 "the default ServiceAccount namespace" kubectl get namespace default || return 1
    cp_log "control plane ready in $((SECONDS - CP_T0)) s"
}

cp_nodes_ready() {
    local ready
    ready="$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)"
    [ "$ready" -ge "$1" ]
}
