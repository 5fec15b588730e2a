#!/usr/bin/env bash
# image-test.sh BINARY WORKDIR: build the image with scripts/image, unpack its root filesystem
# from the oci-archive (index -> manifest -> layers, as a runtime would) and run the binary in
# it under chroot, as root and as the image's user: it must need nothing from the host.
# Prints one line a check and "N passed, M failed" last.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$1" WORK="$2"
PASSED=0 FAILED=0
result() {
    if [ "$1" -eq 0 ]; then PASSED=$((PASSED + 1)); echo "ok    $2"; else FAILED=$((FAILED + 1)); echo "FAIL  $2"; fi
}
finish() { echo "$PASSED passed, $FAILED failed"; [ "$FAILED" -eq 0 ]; exit $?; }

rm -rf "$WORK"
mkdir -p "$WORK"
ARCHIVE="$WORK/headwater.oci.tar"
if ! "$ROOT/scripts/image" "$BIN" --out "$ARCHIVE" >"$WORK/image.log" 2>&1; then
    sed 's/^/      /' "$WORK/image.log"
    result 1 "scripts/image builds the image"
    finish
fi
result 0 "scripts/image builds the image ($(du -h "$ARCHIVE" | cut -f1) archive)"

OCI="$WORK/oci" ROOTFS="$WORK/rootfs"
mkdir -p "$OCI" "$ROOTFS"
tar -xf "$ARCHIVE" -C "$OCI"
# index.json -> manifest -> config and layers, each a blob named by its digest.
python3 - "$OCI" "$ROOTFS" >"$WORK/unpack.log" 2>&1 <<'PY'
import json, os, subprocess, sys
oci, rootfs = sys.argv[1:3]
blob = lambda d: os.path.join(oci, "blobs", *d.split(":", 1))
index = json.load(open(os.path.join(oci, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
for layer in manifest["layers"]:
    subprocess.run(["tar", "-xf", blob(layer["digest"]), "-C", rootfs], check=True)
c = config["config"]
print(json.dumps({"user": c.get("User"), "entrypoint": c.get("Entrypoint"), "layers": len(manifest["layers"])}))
json.dump(c, open(os.path.join(oci, "..", "config.json"), "w"))
PY
result $? "the archive unpacks: index, manifest, layers"
cfg="$WORK/config.json"
python3 -c "import json,sys; c=json.load(open('$cfg')); sys.exit(0 if c.get('User')=='65532:65532' and c.get('Entrypoint')==['/usr/local/bin/headwater'] else 1)"
result $? "the image runs /usr/local/bin/headwater as 65532:65532"

want="$("$BIN" --version)"
got="$(chroot "$ROOTFS" /usr/local/bin/headwater --version 2>&1)"
[ "$got" = "$want" ]
result $? "chroot: headwater --version ($got)"

# A configuration as the chart renders it for mode single, checked inside the image.
cat >"$ROOTFS/etc/headwater/headwater.yaml" <<'YAML'
data_dir: /var/lib/headwater
gateway:
  listen: 0.0.0.0:8080
  auth:
    keys:
      - {tenant: acme, sha256: 2679a541f3d70d46c66ef3b717eaf3dca8528cd0922ec3518c3ac0c7fcb3fb6c}
schemas:
  dir: /etc/headwater/schemas
router:
  routes: /etc/headwater/routes.yaml
YAML
chroot --userspec=65532:65532 "$ROOTFS" /usr/local/bin/headwater config check /etc/headwater/headwater.yaml >"$WORK/config-check.log" 2>&1
result $? "chroot as 65532: headwater config check"
# And a broken one is refused in there too (the check is not vacuous).
printf 'gateway:\n  listen: 0.0.0.0:8080\n  typo: 1\n' >"$ROOTFS/etc/headwater/bad.yaml"
chroot --userspec=65532:65532 "$ROOTFS" /usr/local/bin/headwater config check /etc/headwater/bad.yaml >"$WORK/config-bad.log" 2>&1
[ $? -eq 2 ] && grep -q typo "$WORK/config-bad.log"
result $? "chroot: a bad configuration exits 2 naming the key"
[ ! -e "$ROOTFS/bin/sh" ] && [ ! -e "$ROOTFS/usr/bin/sh" ]
result $? "no shell in the image"
# TLS needs the CA bundle in the image.
[ -s "$ROOTFS/etc/ssl/certs/ca-certificates.crt" ]
result $? "CA certificates are in the image"
echo "      image root filesystem: $(du -sh "$ROOTFS" | cut -f1), archive: $(du -h "$ARCHIVE" | cut -f1)"
finish
