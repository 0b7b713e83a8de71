#!/usr/bin/env bash
# `vakt replay` throughput and memory: EVENTS events are stored by a server running the
# example configuration (`vakt bench`: 20,000 alerts, a quarter exceptions, a tenth `ok`),
# the server stops, and `vakt replay` runs them through the example configuration (base)
# and a changed one (disk thresholds moved, CPU warnings dropped) side by side.
# Then `vakt report` over the same store, as JSON and as HTML, timed.
# Usage: bench/replay.sh [EVENTS]   (KEEP=DIR keeps the data directory in DIR;
#        FINGERPRINTS=N spreads the events over N alerts, default 20000; REPLAY=0 skips the
#        replay and times only the reports)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
cargo build --release -q -p vakt
vakt=${CARGO_TARGET_DIR:-$PWD/target}/release/vakt
work=${KEEP:-$(mktemp -d)}
mkdir -p "$work"
port=18492
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
# The example configuration on free ports, no deliveries, no write limit.
sed -e 's/127.0.0.1:5514/127.0.0.1:0/g' -e 's/127.0.0.1:1162/127.0.0.1:0/' \
    -e "s|^data_dir = .*|data_dir = \"$work/data\"|" examples/vakt.toml > "$work/base.toml"
sed -i -e 's/^console_url = .*/&\nenabled = false/' -e 's/^listen = "127.0.0.1:8470"/&\nwrite_rate_per_client = 0/' "$work/base.toml"
sed -e 's/metrics.used_pct >= 95.0/metrics.used_pct >= 98.0/' \
    -e 's/metrics.load_per_core >= 2.0/metrics.load_per_core >= 3.0/' "$work/base.toml" > "$work/new.toml"
if [ ! -f "$work/data/vakt.db" ]; then
    VAKT_LOG=warn "$vakt" serve --config "$work/base.toml" --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
    pid=$!
    until curl -sf "localhost:$port/readyz" >/dev/null; do sleep 0.1; done
    start=$(date +%s)
    "$vakt" bench --target "http://127.0.0.1:$port" --events "$events" --batch 500 --concurrency 4 \
        --fingerprints "${FINGERPRINTS:-20000}" --exceptions 0.25 --ok-share 0.1 --json > "$work/load.json"
    echo "stored $events events in $(( $(date +%s) - start )) s"
    kill "$pid"; wait "$pid" || true; pid=
fi
du -sh "$work/data"
if [ "${REPLAY:-1}" != 0 ]; then
/usr/bin/time -f "replay: %e s wall, %U s user, max RSS %M KiB" \
    "$vakt" replay --base "$work/base.toml" --config "$work/new.toml" --since 30d --json > "$work/replay.json" || true
python3 - "$work/replay.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("replayed", r["replayed"], "events;", r["different"], "differ:", r["changes"])
print("base opened", r["base"]["opened"], "actions", r["base"]["actions"], "| new opened", r["new"]["opened"], "actions", r["new"]["actions"])
PY
fi
for format in json html; do
    /usr/bin/time -f "report ($format, 30 days): %e s wall, %U s user, max RSS %M KiB" \
        "$vakt" report --config "$work/base.toml" --since 30d --format "$format" --out "$work/report.$format"
done
python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("report:", r["headline"]["events"], "events,", r["headline"]["alerts"], "alerts,", len(r["volume"]["buckets"]), "buckets")
PY
