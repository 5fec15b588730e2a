#!/usr/bin/env bash
# reload-test.sh BINARY WORKDIR: hot reload through ConfigMap updates, black-box. The schema
# directory and routes.yaml are laid out as the kubelet lays out a ConfigMap volume (files are
# symlinks to ..data/, ..data a symlink to a timestamped directory); `headwater serve` runs on
# loopback over them; the update is made as the kubelet makes it (a new timestamped directory,
# ..data swapped by an atomic rename). Headwater must serve the new schema and reload the new
# routes without a restart. Prints one line a check and "N passed, M failed" last.
set -uo pipefail
BIN="$1" WORK="$2"
PASSED=0 FAILED=0
result() {
    if [ "$1" -eq 0 ]; then PASSED=$((PASSED + 1)); echo "ok    $2"; else FAILED=$((FAILED + 1)); echo "FAIL  $2"; fi
}
poll() { # SECONDS CMD...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.25
    done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

rm -rf "$WORK"
mkdir -p "$WORK/data"
SCHEMAS="$WORK/etc/headwater/schemas" ROUTES="$WORK/etc/headwater/routes"

# update DIR STAMP FILE...: what the kubelet's atomic writer does for a ConfigMap update.
update() {
    local dir="$1" stamp="..$2" f
    shift 2
    mkdir -p "$dir/$stamp"
    for f in "$@"; do cp "$f" "$dir/$stamp/$(basename "$f")"; done
    ln -s "$stamp" "$dir/..data_tmp"
    mv -T "$dir/..data_tmp" "$dir/..data"
    for f in "$@"; do
        [ -L "$dir/$(basename "$f")" ] || ln -s "..data/$(basename "$f")" "$dir/$(basename "$f")"
    done
}

schema() { # TYPE -> a schema file in WORK/src
    mkdir -p "$WORK/src"
    printf '{"$schema":"https://json-schema.org/draft/2020-12/schema","title":"%s v1","type":"object","x-headwater":{"topic":"events","compatibility":"backward"}}\n' "$1" \
        >"$WORK/src/$1.v1.schema.json"
    echo "$WORK/src/$1.v1.schema.json"
}
printf 'routes:\n  - name: lake\n    source:\n      topics: [events]\n    sinks:\n      - type: s3\n' >"$WORK/routes.yaml"
update "$SCHEMAS" 2026_01_01_00_00_00.1 "$(schema app.event)"
update "$ROUTES" 2026_01_01_00_00_00.1 "$WORK/routes.yaml"

HTTP="$(free_port)" KAFKA="$(free_port)"
cat >"$WORK/headwater.yaml" <<EOF
data_dir: $WORK/data
gateway:
  listen: 127.0.0.1:$HTTP
log:
  kafka_listen: 127.0.0.1:$KAFKA
schemas:
  dir: $SCHEMAS
router:
  routes: $ROUTES/routes.yaml
EOF
"$BIN" serve --config "$WORK/headwater.yaml" --log-format json >"$WORK/serve.log" 2>&1 &
PID=$!
stop() {
    kill -TERM "$PID" 2>/dev/null
    local deadline=$((SECONDS + 20))
    while kill -0 "$PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
}
trap stop EXIT

URL="http://127.0.0.1:$HTTP"
poll 60 curl -fsS "$URL/readyz"
result $? "headwater serve over ConfigMap-layout schemas and routes is ready"
has_schema() { curl -fsS "$URL/v1/schemas" | grep -q "\"$1\""; }
has_schema app.event && ! has_schema device.swap
result $? "it serves the schema of the first ConfigMap version (app.event) only"

update "$SCHEMAS" 2026_01_01_00_01_00.2 "$WORK/src/app.event.v1.schema.json" "$(schema device.swap)"
poll 30 has_schema device.swap
result $? "a ConfigMap update (..data swapped) adds device.swap without a restart"

printf 'routes:\n  - name: lake\n    source:\n      topics: [events, events.dlq]\n    sinks:\n      - type: s3\n' >"$WORK/routes.yaml"
update "$ROUTES" 2026_01_01_00_01_00.2 "$WORK/routes.yaml"
poll 30 grep -q "routes reloaded" "$WORK/serve.log"
result $? "a ConfigMap update of routes.yaml is reloaded without a restart"
kill -0 "$PID" 2>/dev/null
result $? "the same process served throughout"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
