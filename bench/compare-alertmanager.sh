#!/usr/bin/env bash
# Sends the same Alertmanager API v2 streams to Prometheus' Alertmanager and to vakt, on
# loopback, scenario by scenario, each server fresh per scenario, and prints one table:
# accepted alerts/s and request p99 of both, and the ratio vakt / Alertmanager.
#
#   bench/compare-alertmanager.sh               # the whole matrix (about 10 minutes)
#   SCALE=0.2 bench/compare-alertmanager.sh     # the same matrix with a fifth of the alerts
#   ONLY=vakt bench/compare-alertmanager.sh     # vakt only (e.g. while changing it)
#   ROWS="1 4" bench/compare-alertmanager.sh    # only rows 1 and 4 of the matrix
#   RUNS=5 bench/compare-alertmanager.sh        # each scenario five times, the two servers
#                                               # alternating; the table gives medians and
#                                               # every run's ratio (a run of the single-alert
#                                               # rows lasts a second and swings by a third)
#   PG_URL=postgres://postgres@127.0.0.1:5432/postgres ONLY=vakt bench/compare-alertmanager.sh
#                                               # vakt on PostgreSQL (a fresh database per scenario)
#   PG_URL=... PG_NODES=2 ONLY=vakt bench/compare-alertmanager.sh
#                                               # two vakt nodes on one PostgreSQL database, each
#                                               # sent half the alerts over half the connections
#   PG_URL=... PG_ANALYZE=2 ONLY=vakt bench/compare-alertmanager.sh
#                                               # the scenario's database analyzed every 2 s during
#                                               # the load, as autovacuum does on a server where it
#                                               # is on (a server with autovacuum off, as CI's, plans
#                                               # the alert lookups without statistics: full scans)
#   ROWS="11 12" bench/compare-alertmanager.sh  # memory: 100,000 and 1,000,000 open alerts
#                                               # (not in the default matrix; RSS after 5 s)
#   AUTH=1 ONLY=vakt bench/compare-alertmanager.sh
#                                               # vakt with auth on: every request carries an
#                                               # ingest token, as production senders do
#
# The matrix: 1 alert per request over 1/16/64 connections and 100 alerts per request over
# 1/8/32, each with unique alerts; then 1,000 repeating alerts over 1/16/64 (1 per request)
# and 8 (100 per request). Both servers notify a local webhook sink, grouped by service
# (wait 1 s, interval 5 s). vakt stores every alert durably before it answers (SQLite,
# synchronous = FULL: fsync'd); Alertmanager keeps alerts in memory.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-1}
ONLY=${ONLY:-both}
ROWS=${ROWS:-"1 2 3 4 5 6 7 8 9 10"}
RUNS=${RUNS:-1}
AM_PORT=${AM_PORT:-19093}
VAKT_PORT=${VAKT_PORT:-19470}
SINK_PORT=${SINK_PORT:-19500}
VAKT_EXTRA=${VAKT_EXTRA:-}
PG_URL=${PG_URL:-}
PG_NODES=${PG_NODES:-1}
PG_ANALYZE=${PG_ANALYZE:-}
AUTH=${AUTH:-}

if [ "$ONLY" != vakt ] && ! command -v prometheus-alertmanager >/dev/null; then
    echo "installing prometheus-alertmanager (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi
cargo build --release -q -p vakt
vakt=${CARGO_TARGET_DIR:-$(pwd)/target}/release/vakt
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The webhook sink: counts notifications per path.
cat > "$work/sink.py" <<PY
import http.server, json
counts = {}
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        counts[self.path] = counts.get(self.path, 0) + 1
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_GET(self):
        body = json.dumps(counts).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", $SINK_PORT), Sink).serve_forever()
PY
python3 "$work/sink.py" & pids+=($!)

cat > "$work/alertmanager.yml" <<YML
route:
  receiver: sink
  group_by: [service]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:$SINK_PORT/alertmanager
        send_resolved: false
YML
sed "s/@SINK_PORT@/$SINK_PORT/" bench/compare-vakt.toml > "$work/vakt.toml"
printf '%s\n' "$VAKT_EXTRA" >> "$work/vakt.toml"

wait_ready() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return; sleep 0.05; done; echo "not ready: $1"; exit 1; }
peak_rss() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# name per-request connections fingerprints(0 = unique) events
scenarios=(
    "1 alert/request, 1 connection, unique|1|1|0|6000"
    "1 alert/request, 16 conns, unique|1|16|0|30000"
    "1 alert/request, 64 conns, unique|1|64|0|30000"
    "100 alerts/request, 1 conn, unique|100|1|0|100000"
    "100 alerts/request, 8 conns, unique|100|8|0|200000"
    "100 alerts/request, 32 conns, unique|100|32|0|200000"
    "1 alert/request, 1 conn, 1,000 repeating|1|1|1000|6000"
    "1 alert/request, 16 conns, 1,000 repeating|1|16|1000|30000"
    "1 alert/request, 64 conns, 1,000 repeating|1|64|1000|30000"
    "100 alerts/request, 8 conns, 1,000 repeating|100|8|1000|200000"
    "100,000 open alerts (memory)|100|8|0|100000"
    "1,000,000 open alerts (memory)|100|8|0|1000000"
)

# One scenario against one server: start it fresh, send, record the report and peak RSS.
one() { # system row per conns fingerprints events
    local system=$1 row=$2 per=$3 conns=$4 fps=$5 events=$6 pid ready target auth=()
    rm -rf "$work/am-data" "$work/vakt-data"
    if [ "$system" = alertmanager ]; then
        prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am-data" \
            --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$work/am.log" 2>&1 &
        pid=$!; ready="http://127.0.0.1:$AM_PORT/-/ready"; target="http://127.0.0.1:$AM_PORT"
    elif [ -n "$PG_URL" ]; then
        psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS vakt_compare" -c "CREATE DATABASE vakt_compare"
        if [ -n "$AUTH" ]; then
            auth=(--token "$("$vakt" token create --name bench --role ingest --database-url "${PG_URL%/*}/vakt_compare" | tail -1)")
        fi
        VAKT_DATABASE_URL="${PG_URL%/*}/vakt_compare" "$vakt" serve --config "$work/vakt.toml" \
            --listen "127.0.0.1:$VAKT_PORT" >"$work/vakt.log" 2>&1 &
        pid=$!; ready="http://127.0.0.1:$VAKT_PORT/readyz"; target="http://127.0.0.1:$VAKT_PORT"
        if [ "$PG_NODES" = 2 ]; then
            wait_ready "$ready"
            VAKT_DATABASE_URL="${PG_URL%/*}/vakt_compare" "$vakt" serve --config "$work/vakt.toml" \
                --listen "127.0.0.1:$((VAKT_PORT + 1))" >"$work/vakt2.log" 2>&1 &
            pid2=$!; pids+=($pid2)
            wait_ready "http://127.0.0.1:$((VAKT_PORT + 1))/readyz"
        fi
    else
        if [ -n "$AUTH" ]; then
            auth=(--token "$("$vakt" token create --name bench --role ingest --data-dir "$work/vakt-data" | tail -1)")
        fi
        "$vakt" serve --config "$work/vakt.toml" --listen "127.0.0.1:$VAKT_PORT" \
            --data-dir "$work/vakt-data" >"$work/vakt.log" 2>&1 &
        pid=$!; ready="http://127.0.0.1:$VAKT_PORT/readyz"; target="http://127.0.0.1:$VAKT_PORT"
    fi
    pids+=($pid)
    wait_ready "$ready"
    local analyzer=""
    if [ "$system" = vakt ] && [ -n "$PG_URL" ] && [ -n "$PG_ANALYZE" ]; then
        # What autovacuum does on a server where it is on: statistics as the tables grow.
        while :; do
            psql -q "${PG_URL%/*}/vakt_compare" -c ANALYZE >/dev/null 2>&1 || true
            sleep "$PG_ANALYZE"
        done &
        analyzer=$!; pids+=($analyzer)
    fi
    if [ "$system" = vakt ] && [ -n "$PG_URL" ] && [ "$PG_NODES" = 2 ]; then
        # Half the alerts and half the connections (at least one) to each node; unique
        # alerts stay unique across the nodes (their own host names), repeating ones are
        # the same 1,000 on both (two nodes updating the same alerts).
        local half=$(( events / 2 / per * per )) hc=$(( conns / 2 > 0 ? conns / 2 : 1 )) hf=$fps
        [ "$fps" = "$events" ] && hf=$half
        local benches=()
        for node in 1 2; do
            local prefix=bench-host
            [ "$fps" = "$events" ] && prefix=node$node
            "$vakt" bench --format alertmanager --target "http://127.0.0.1:$((VAKT_PORT + node - 1))" \
                --events "$half" --batch "$per" --concurrency "$hc" --fingerprints "$hf" \
                --host-prefix "$prefix" --ok-share 0 --json "${auth[@]}" > "$work/$system.$row.node$node.json" 2>/dev/null &
            benches+=($!)
        done
        for b in "${benches[@]}"; do wait "$b" || echo "a bench of scenario $row saw refusals"; done
        python3 - "$work/$system.$row.node1.json" "$work/$system.$row.node2.json" > "$work/$system.$row.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
seconds = max(a["seconds"], b["seconds"])
accepted = a["accepted"] + b["accepted"]
print(json.dumps({"accepted": accepted, "seconds": seconds, "events_per_second": accepted / seconds,
                  "latency_ms": {"p99": max(a["latency_ms"]["p99"], b["latency_ms"]["p99"])}}))
PY
        peak_rss "$pid2" > "$work/$system.$row.rss2"
        kill "$pid2"; wait "$pid2" 2>/dev/null || true
    else
    "$vakt" bench --format alertmanager --target "$target" --events "$events" --batch "$per" \
        --concurrency "$conns" --fingerprints "$fps" --ok-share 0 --json "${auth[@]}" \
        > "$work/$system.$row.json" 2>/dev/null \
        || { echo "$system refused part of scenario $row:"; cat "$work/$system.$row.json"; }
    fi
    if [ -n "$analyzer" ]; then
        # An ANALYZE under way ends first: the next scenario drops the database.
        kill "$analyzer" 2>/dev/null || true
        wait "$analyzer" 2>/dev/null || true
    fi
    peak_rss "$pid" > "$work/$system.$row.rss"
    # What the open alerts hold once the burst is over (memory rows: after 5 s).
    [ "$row" -gt 10 ] && sleep 5
    awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status" > "$work/$system.$row.now"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

systems=(alertmanager vakt)
[ "$ONLY" = vakt ] && systems=(vakt)
[ "$ONLY" = alertmanager ] && systems=(alertmanager)
for row in $ROWS; do
    IFS='|' read -r name per conns fps events <<<"${scenarios[$((row - 1))]}"
    events=$(python3 -c "print(max(int($events * $SCALE) // $per * $per, $per * $conns))")
    [ "$fps" = 0 ] && fps=$events
    for run in $(seq 1 "$RUNS"); do
        for system in "${systems[@]}"; do
            one "$system" "$row" "$per" "$conns" "$fps" "$events"
            for kind in json rss now; do
                if [ -f "$work/$system.$row.$kind" ]; then
                    mv "$work/$system.$row.$kind" "$work/$system.$row.$kind.$run"
                fi
            done
        done
    done
    echo "$name|$events" > "$work/name.$row"
done
echo "notifications received by the sink: $(curl -sf "http://127.0.0.1:$SINK_PORT/")"

python3 - "$work" "$ROWS" "$RUNS" <<'PY'
import json, os, statistics, sys
work, rows, runs = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
def run(system, row, n):
    path = f"{work}/{system}.{row}.json.{n}"
    if not os.path.exists(path):
        return None
    r = json.load(open(path))
    rss = open(f"{work}/{system}.{row}.rss.{n}").read().strip()
    return r["events_per_second"], r["latency_ms"]["p99"], r["accepted"], rss
def read(system, row):
    # Over the runs: median rate and p99, the fewest accepted, the largest peak RSS.
    got = [r for r in (run(system, row, n) for n in range(1, runs + 1)) if r]
    if not got:
        return None
    rss = [int(r[3]) for r in got if r[3].isdigit()]
    return (statistics.median(r[0] for r in got), statistics.median(r[1] for r in got),
            min(r[2] for r in got), str(max(rss)) if rss else "-")
def ratios(row):
    # Each run's vakt / Alertmanager, the two measured one after the other.
    pairs = [(run("alertmanager", row, n), run("vakt", row, n)) for n in range(1, runs + 1)]
    return [vk[0] / am[0] for am, vk in pairs if am and vk and am[0]]
several = runs > 1
what = f"median of {runs} runs, " if several else ""
print(f"\n| scenario | alerts | Alertmanager 0.25 alerts/s ({what}p99) | vakt alerts/s ({what}p99) | ratio |"
      + (" each run's ratio |" if several else ""))
print("|---|---|---|---|---|" + ("---|" if several else ""))
for row in rows:
    name, events = open(f"{work}/name.{row}").read().strip().split("|")
    am, vk = read("alertmanager", row), read("vakt", row)
    cell = lambda x: f"{x[0]:,.0f} ({x[1]:,.1f} ms)" if x else "-"
    each = ratios(row)
    ratio = f"{statistics.median(each):.2f}" if each else "-"
    line = f"| {name} | {int(events):,} | {cell(am)} | {cell(vk)} | {ratio} |"
    if several:
        line += " " + (" / ".join(f"{r:.2f}" for r in each) or "-") + " |"
    print(line)
def p50(system, row):
    # The median request's round trip, median over the runs: with one connection the mean
    # (the rate) and the median can tell different stories (a slow tail).
    got = [json.load(open(f"{work}/{system}.{row}.json.{n}"))["latency_ms"].get("p50")
           for n in range(1, runs + 1) if os.path.exists(f"{work}/{system}.{row}.json.{n}")]
    got = [g for g in got if g is not None]
    return f"{statistics.median(got):.2f}" if got else "-"
print("\nmedian round trip (p50, ms) per scenario, Alertmanager / vakt: " + ", ".join(
    f"{row}: {p50('alertmanager', row)} / {p50('vakt', row)}" for row in rows))
print("\npeak RSS (MiB) per scenario, Alertmanager / vakt: " + ", ".join(
    f"{row}: {(read('alertmanager', row) or [0,0,0,'-'])[3]} / {(read('vakt', row) or [0,0,0,'-'])[3]}" for row in rows))
now = lambda system, row: open(f"{work}/{system}.{row}.now.{runs}").read().strip() if os.path.exists(f"{work}/{system}.{row}.now.{runs}") else "-"
memory = [row for row in rows if int(row) > 10]
if memory:
    print("\n| open alerts | Alertmanager RSS MiB (peak) | vakt RSS MiB (peak) | KiB per alert, Alertmanager / vakt |")
    print("|---|---|---|---|")
    for row in memory:
        name, events = open(f"{work}/name.{row}").read().strip().split("|")
        am, vk = now("alertmanager", row), now("vakt", row)
        amp, vkp = (read("alertmanager", row) or [0, 0, 0, "-"])[3], (read("vakt", row) or [0, 0, 0, "-"])[3]
        per = lambda mib: f"{float(mib) * 1024 / int(events):.2f}" if mib not in ("-", "") else "-"
        print(f"| {int(events):,} | {am} ({amp}) | {vk} ({vkp}) | {per(am)} / {per(vk)} |")
print("accepted: " + ", ".join(
    f"{row}: {(read('alertmanager', row) or [0,0,'-'])[2]} / {(read('vakt', row) or [0,0,'-'])[2]}" for row in rows))
PY
