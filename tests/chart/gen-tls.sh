#!/usr/bin/env bash
# gen-tls.sh OUT.yaml NAMESPACE: a throwaway test CA and the kubernetes.io/tls Secrets the
# scenarios name (headwater-replication-tls, headwater-kafka-tls, headwater-ingest-tls), each
# with tls.crt, tls.key and ca.crt; certificates for *.NAMESPACE.svc names, valid one day.
set -euo pipefail
out="$1" ns="${2:-default}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj "/CN=headwater-test-ca" -keyout ca.key -out ca.crt 2>/dev/null
: >"$out"
for name in replication kafka ingest; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=headwater-$name" \
        -keyout "$name.key" -out "$name.csr" 2>/dev/null
    printf 'subjectAltName=DNS:*.%s.svc.cluster.local,DNS:*.%s.svc,DNS:localhost\n' "$ns" "$ns" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    {
        echo "---"
        echo "apiVersion: v1"
        echo "kind: Secret"
        echo "metadata:"
        echo "  name: headwater-$name-tls"
        echo "type: kubernetes.io/tls"
        echo "data:"
        echo "  tls.crt: $(base64 -w0 "$name.crt")"
        echo "  tls.key: $(base64 -w0 "$name.key")"
        echo "  ca.crt: $(base64 -w0 ca.crt)"
    } >>"$out"
done
