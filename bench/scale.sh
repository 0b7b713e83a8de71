#!/usr/bin/env bash
# Scale figures: N open alerts in vakt's store, then a restart: start-up time, the first
# batch (which loads the alerts that can take events, on SQLite), resident memory per open
# alert. Usage: bench/scale.sh N [postgres://...]   (builds and runs the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
db=${2:-}
cargo build --release -q -p vakt
vakt=${CARGO_TARGET_DIR:-$PWD/target}/release/vakt
work=$(mktemp -d)
port=18481
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf '[storage]\ndata_dir = "%s/data"\n[ingest]\nbatch_events_max = 5000\n' "$work" > "$work/vakt.toml"
if [ -n "$db" ]; then export VAKT_DATABASE_URL="$db"; fi
ms() { date +%s%3N; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
start() {
    local t0; t0=$(ms)
    VAKT_LOG=warn "$vakt" serve --config "$work/vakt.toml" --listen "127.0.0.1:$port" >>"$work/serve.log" 2>&1 &
    pid=$!
    until curl -sf "localhost:$port/readyz" >/dev/null; do sleep 0.05; done
    ready_ms=$(( $(ms) - t0 ))
}
stop() { kill -TERM "$pid"; wait "$pid" || true; pid=; }

start
empty=$(rss "$pid")
t0=$(ms)
"$vakt" bench --target "http://127.0.0.1:$port" --events "$n" --fingerprints "$n" --batch 1000 \
    --concurrency 4 --exceptions 0 --ok-share 0 >"$work/load.json" 2>/dev/null || true
load_ms=$(( $(ms) - t0 ))
open=$(curl -sf "localhost:$port/metrics" | awk '/^vakt_alerts\{status="open"\}/ {print $2}')
stop

start
t0=$(ms)
curl -sf -XPOST "localhost:$port/api/v1/events" -H 'content-type: application/json' \
    -d '{"resource":"after-restart","check":"scale","severity":"warning","summary":"first batch"}' >/dev/null
first_ms=$(( $(ms) - t0 ))
sleep 1
loaded=$(rss "$pid")
stop
per_alert=$(( (loaded - empty) * 1024 / (open > 0 ? open : 1) ))
if [ -n "$db" ]; then echo "backend:               postgresql"; else echo "backend:               sqlite"; fi
echo "open alerts:           $open (loaded in $(( load_ms / 1000 )) s)"
echo "start-up to /readyz:   ${ready_ms} ms"
echo "first batch after it:  ${first_ms} ms"
echo "RSS empty / loaded:    $(( empty / 1024 )) MiB / $(( loaded / 1024 )) MiB"
echo "memory per open alert: ${per_alert} bytes"
