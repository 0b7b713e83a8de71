#!/usr/bin/env bash
# Counts the instructions vakt spends per alert, by role, under valgrind's callgrind: a
# figure that, unlike alerts/s on this shared machine (which swings by half within an hour),
# repeats for the same binary and load whatever else the machine does, so two builds can be
# compared without pairing runs minute by minute. It counts instructions, not time: cache
# misses, system calls and waits are not in it (measure those with compare-alertmanager.sh).
#
#   bench/instructions.sh                        # 2,000 single-alert requests, 1 connection,
#                                                # each a new alert
#   PER=100 EVENTS=20000 bench/instructions.sh   # 100 alerts per request
#   FPS=1000 bench/instructions.sh               # 1,000 alerts, repeating
#   BIN=/tmp/vakt-old bench/instructions.sh      # another build (the client stays this one)
#   KEEP=/tmp/cg.out bench/instructions.sh       # keep the profile (callgrind_annotate it)
#   AUTH=1 bench/instructions.sh                 # with access control on: an ingest token per
#                                                # request, as a production server is run
#
# Prints instructions per alert for the whole server and for its roles: the HTTP requests
# (parsing, the guard, decoding, the stateless stages: everything on a connection's task),
# the ingest writer (correlate, decide, encode, the journal's write and sync), the applier
# (journal records into SQLite's tables; its transactions group what arrived within a few
# milliseconds, so its share depends on pacing more than the others: under valgrind they
# are small, and preparing their statements weighs more than in a native run), the
# dispatcher (claims, the group messages, their finish), the statements sent through sqlx
# (run on sqlx's thread per connection: the dispatcher's claims and finishes, reads) and
# the rest (timers, the applier's gathering, housekeeping). Valgrind runs the server about
# fifty times slower, one thread at a time; the client (`vakt bench`) runs natively.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-2000}
PER=${PER:-1}
CONNS=${CONNS:-1}
FPS=${FPS:-$EVENTS}
PORT=${PORT:-19471}
SINK_PORT=${SINK_PORT:-19501}
KEEP=${KEEP:-}
AUTH=${AUTH:-}

command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)"; exit 1; }
if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p vakt
    BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/release/vakt
fi
client=${CLIENT:-${CARGO_TARGET_DIR:-$(pwd)/target}/release/vakt}
[ -x "$client" ] || client=$BIN
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The compare's configuration: every alert notifies a webhook, grouped by service.
cat > "$work/sink.py" <<PY
import http.server
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", $SINK_PORT), Sink).serve_forever()
PY
python3 "$work/sink.py" & pids+=($!)
sed "s/@SINK_PORT@/$SINK_PORT/" bench/compare-vakt.toml > "$work/vakt.toml"

auth=()
reader=()
if [ -n "$AUTH" ]; then
    auth=(--token "$("$BIN" token create --name bench --role ingest --data-dir "$work/data" | tail -1)")
    reader=(-H "Authorization: Bearer $("$BIN" token create --name bench-reader --role viewer --data-dir "$work/data" | tail -1)")
fi

valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" --dump-instr=no \
    "$BIN" serve --config "$work/vakt.toml" --listen "127.0.0.1:$PORT" --data-dir "$work/data" \
    >"$work/vakt.log" 2>&1 &
pid=$!; pids+=($pid)
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "vakt did not start:"; cat "$work/vakt.log"; exit 1; }
# Start counting now: what starting up cost is not the alerts'.
callgrind_control -z "$pid" >/dev/null 2>&1
"$client" bench --format alertmanager --target "http://127.0.0.1:$PORT" --events "$EVENTS" \
    --batch "$PER" --concurrency "$CONNS" --fingerprints "$FPS" --ok-share 0 --json "${auth[@]}" \
    > "$work/bench.json" 2>/dev/null || { echo "the server refused part of the load:"; cat "$work/bench.json"; exit 1; }
# Let the applier catch up: a burst's records may wait at idle priority until after it, so
# a read that hurries it (`/metrics`) waits for all of them; then the group messages' turn.
curl -sf --max-time 600 "${reader[@]}" "http://127.0.0.1:$PORT/metrics" >/dev/null \
    || { echo "the read after the load failed"; exit 1; }
sleep 2
callgrind_control -d "$pid" >/dev/null 2>&1
profile=$(ls -t "$work"/cg.out.* | head -1)
[ -n "$KEEP" ] && cp "$profile" "$KEEP"

callgrind_annotate --inclusive=yes "$profile" 2>/dev/null > "$work/inclusive.txt"
python3 - "$work/inclusive.txt" "$EVENTS" "$work/bench.json" "$BIN" "$PER" "$CONNS" "$FPS" \
    "$([ -n "$AUTH" ] && echo "auth on (a token)" || echo "auth off")" <<'PY'
import json, re, sys
path, events, bench, binary, per, conns, fps, auth = sys.argv[1:]
events = int(events)
lines = open(path).read().splitlines()
def cost(line):
    return int(line.split()[0].replace(",", ""))
total = next(cost(l) for l in lines if "PROGRAM TOTALS" in l)
# A role's cost: its task's entry function, inclusive, first listing (the compiled symbol;
# callgrind_annotate names the binary after it only when it cannot find the source file).
roles = [
    ("HTTP requests", r"vakt::http::serve::serve::\{\{closure\}\}::\{\{closure\}\}( \[|$)"),
    ("ingest writer", r"vakt::ingest::write_loop::\{\{closure\}\}( \[|$)"),
    # Its transactions run on the applier's own thread at idle priority or on a worker:
    # both go through apply_records_on.
    ("applier", r"vakt_store::sqlite::apply_records_on::\{\{closure\}\}( \[|$)"),
    ("dispatcher", r"vakt::actions::dispatcher::spawn::\{\{closure\}\}( \[|$)"),
    # Statements sent through sqlx (the dispatcher's claims and finishes, reads) run on
    # sqlx's own thread per connection, not in the task that sent them.
    ("sqlx statements", r"sqlx_sqlite::connection::worker::ConnectionWorker::establish::\{\{closure\}\}::\{\{closure\}\}( \[|$)"),
]
accepted = json.load(open(bench))["accepted"]
kind = "unique alerts" if int(fps) >= events else f"{int(fps):,} repeating alerts"
print(f"{binary}: {events:,} alerts, {per} per request, {conns} connection(s), {kind}, "
      f"{auth}, {accepted:,} accepted")
counted = 0
for name, pattern in roles:
    found = [cost(l) for l in lines if re.search(pattern, l)]
    if found:
        counted += found[0]
        print(f"  {name:<15} {found[0] / events:>10,.0f} instructions per alert")
    else:
        print(f"  {name:<15} {'n/a':>10} (its entry function was not found)")
print(f"  {'the rest':<15} {(total - counted) / events:>10,.0f}")
print(f"  {'whole server':<15} {total / events:>10,.0f}")
PY
