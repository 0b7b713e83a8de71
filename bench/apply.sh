#!/usr/bin/env bash
# Times SQLite's journal applier alone: loads a fresh vakt (the compare's configuration, one
# notification rule, `vakt bench --format alertmanager`), keeps the ingest journal it wrote,
# and applies that same journal into a fresh database at start-up, RUNS times, printing how
# long each took (from the process's start until it logs that it applied the records; the
# start-up itself is a few hundredths of a second). Nothing else runs while it applies, so
# the figures repeat within a few per cent, unlike a live load's.
#
#   bench/apply.sh                                   # 200,000 new alerts, 100 per request
#   FINGERPRINTS=1000 bench/apply.sh                 # 200,000 events of 1,000 repeating alerts
#   SQL="DROP INDEX alerts_status" bench/apply.sh    # the fresh schema altered first (sqlite3)
#   RUNS=5 EVENTS=50000 bench/apply.sh
#
# Compare builds by running it from each checkout (or CARGO_TARGET_DIR) in turn.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-200000}
PER=${PER:-100}
CONNS=${CONNS:-8}
FINGERPRINTS=${FINGERPRINTS:-0}
RUNS=${RUNS:-3}
SQL=${SQL:-}
PORT=${PORT:-19490}
SINK_PORT=${SINK_PORT:-19491}

cargo build --release -q -p vakt
vakt=${CARGO_TARGET_DIR:-$(pwd)/target}/release/vakt
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Nothing listens on the sink's port: the notifications fail and are retried, which is the
# dispatcher's business; the journal holds the decided actions either way.
sed "s/@SINK_PORT@/$SINK_PORT/" bench/compare-vakt.toml > "$work/vakt.toml"
wait_ready() { for _ in $(seq 1 400); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return; sleep 0.05; done; echo "vakt did not get ready"; exit 1; }
start() { "$vakt" serve --config "$work/vakt.toml" --listen "127.0.0.1:$PORT" --data-dir "$1" >"$work/vakt.log" 2>&1 & pid=$!; }

# The load, then the journal it wrote (killed at once: what SQLite has does not matter).
[ "$FINGERPRINTS" = 0 ] && FINGERPRINTS=$EVENTS
start "$work/load"
wait_ready
"$vakt" bench --format alertmanager --target "http://127.0.0.1:$PORT" --events "$EVENTS" \
    --batch "$PER" --concurrency "$CONNS" --fingerprints "$FINGERPRINTS" --ok-share 0 --json \
    > "$work/load.json" 2>/dev/null
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
mkdir "$work/journal"
cp "$work"/load/ingest.journal* "$work/journal/"
echo "journal of $EVENTS events ($PER per request, $FINGERPRINTS fingerprints): $(du -sh "$work/journal" | cut -f1)"

for run in $(seq 1 "$RUNS"); do
    data="$work/run$run"
    # A fresh database with vakt's schema, altered if asked, and the journal put back.
    start "$data"
    wait_ready
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    [ -n "$SQL" ] && sqlite3 "$data/vakt.db" "$SQL"
    rm -f "$data"/ingest.journal*
    cp "$work"/journal/ingest.journal* "$data/"
    began=$(date +%s.%N)
    start "$data"
    for _ in $(seq 1 6000); do
        grep -q "applied the ingest journal" "$work/vakt.log" && break
        sleep 0.01
    done
    ended=$(date +%s.%N)
    grep -q "applied the ingest journal" "$work/vakt.log" || { echo "run $run: no records applied"; cat "$work/vakt.log"; exit 1; }
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    python3 -c "import sys; s = float(sys.argv[2]) - float(sys.argv[1]); n = int(sys.argv[3]); print(f'run $run: {s:.3f} s, {s / n * 1e6:.1f} us per event')" "$began" "$ended" "$EVENTS"
done
