#!/usr/bin/env bash
# Event-to-webhook latency while vakt takes a steady load: `vakt bench` offers RATE events/s
# (batches of 500, alerts that run no action) for SECONDS, and bench/latency.py probes 20
# events/s whose rule runs a webhook, measuring receipt to delivery.
# Usage: bench/latency.sh [RATE] [SECONDS]   (BATCH_MAX=N sets ingest.batch_events_max;
# METRICS_OUT=FILE keeps the commit-time and batch-size histograms from /metrics)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-20000}
seconds=${2:-30}
cargo build --release -q -p vakt
vakt=${CARGO_TARGET_DIR:-$PWD/target}/release/vakt
work=$(mktemp -d)
port=18482
sink=18483
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/vakt.toml" <<TOML
[storage]
data_dir = "$work/data"
[ingest]
batch_events_max = ${BATCH_MAX:-5000}
[dispatch]
poll_interval_ms = 1000
[[rules]]
name = "probe"
when = 'check == "latency"'
actions = ["hook"]
[actions.hook]
type = "webhook"
url = "http://127.0.0.1:$sink/hook"
TOML
VAKT_LOG=${VAKT_LOG:-warn} "$vakt" serve --config "$work/vakt.toml" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
pid=$!
until curl -sf "localhost:$port/readyz" >/dev/null; do sleep 0.05; done
python3 bench/latency.py "$sink" "http://127.0.0.1:$port" "$seconds" >"$work/latency.json" &
probe=$!
"$vakt" bench --target "http://127.0.0.1:$port" --events $(( rate * seconds )) --rate "$rate" \
    --batch 500 --concurrency 8 --fingerprints 10000 --exceptions 0 --ok-share 0.1 --json \
    >"$work/load.json" 2>/dev/null || true
wait "$probe"
curl -s "localhost:$port/metrics" | grep -E "commit_seconds|commit_batch" > "${METRICS_OUT:-/dev/null}" || true
echo "load:    $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(round(d["events_per_second"]), "events/s accepted of", d["events"], "offered; request p99", d["latency_ms"]["p99"], "ms")' "$work/load.json") (offered at $rate/s)"
echo "latency: $(cat "$work/latency.json")"
if [ -n "${SERVE_LOG:-}" ]; then cp "$work/serve.log" "$SERVE_LOG"; fi
