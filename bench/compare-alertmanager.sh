#!/usr/bin/env bash
# Sends the same Alertmanager API v2 stream to Prometheus' Alertmanager and to vakt, on
# loopback, one after the other, and prints both systems' figures in one table: accepted
# alerts/s, request latency p99, peak RSS, CPU seconds, notifications delivered to a local
# webhook sink, and the ratio vakt / Alertmanager.
#
#   bench/compare-alertmanager.sh                  # 100,000 alerts, 1,000 per request, 4 connections
#   EVENTS=500000 CONCURRENCY=8 bench/compare-alertmanager.sh
#
# Both get an equivalent configuration: group by alert name, wait 1 s, notify a webhook.
# vakt stores every alert durably (SQLite, synchronous = FULL) before it answers;
# Alertmanager keeps alerts in memory (snapshots to disk every 15 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-100000}
BATCH=${BATCH:-1000}
CONCURRENCY=${CONCURRENCY:-4}
FINGERPRINTS=${FINGERPRINTS:-10000}
AM_PORT=${AM_PORT:-19093}
VAKT_PORT=${VAKT_PORT:-19470}
SINK_PORT=${SINK_PORT:-19500}

if ! command -v prometheus-alertmanager >/dev/null; then
    echo "installing prometheus-alertmanager (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi
cargo build --release -q -p vakt
vakt=$(pwd)/target/release/vakt
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The webhook sink: counts notifications per path.
cat > "$work/sink.py" <<PY
import http.server, json, sys
counts = {}
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        counts[self.path] = counts.get(self.path, 0) + 1
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def do_GET(self):
        body = json.dumps(counts).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", $SINK_PORT), Sink).serve_forever()
PY
python3 "$work/sink.py" & pids+=($!)

cat > "$work/alertmanager.yml" <<YML
route:
  receiver: sink
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: sink
    webhook_configs:
      - url: http://127.0.0.1:$SINK_PORT/alertmanager
        send_resolved: false
YML
cat > "$work/vakt.toml" <<TOML
[dispatch]
poll_interval_ms = 200
[[rules]]
name = "notify-every-alert"
actions = ["sink"]
[actions.sink]
type = "notify"
channel = "sink"
send_resolved = false
group_by = ["alertname"]
group_wait_secs = 1
group_interval_secs = 5
[channels.sink]
type = "webhook"
url = "http://127.0.0.1:$SINK_PORT/vakt"
TOML

wait_ready() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return; sleep 0.1; done; echo "not ready: $1"; exit 1; }
# CPU seconds (user + system) and peak RSS (MiB) of a process, from /proc.
usage() {
    python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
ticks = os.sysconf("SC_CLK_TCK")
cpu = (int(fields[11]) + int(fields[12])) / ticks
hwm = next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")).split()[1]
print(f"{cpu:.2f} {int(hwm) / 1024:.1f}")
PY
}

run() { # name url-for-readiness target pid
    local name=$1 ready=$2 target=$3 pid=$4
    wait_ready "$ready"
    "$vakt" bench --format alertmanager --target "$target" --events "$EVENTS" --batch "$BATCH" \
        --concurrency "$CONCURRENCY" --fingerprints "$FINGERPRINTS" --ok-share 0 --json > "$work/$name.json" \
        || { echo "$name refused part of the stream:"; cat "$work/$name.json"; }
    sleep 8 # group_wait + group_interval: let the notifications go out
    usage "$pid" > "$work/$name.usage"
}

prometheus-alertmanager --config.file="$work/alertmanager.yml" --storage.path="$work/am-data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$work/am.log" 2>&1 &
am=$!; pids+=($am)
run alertmanager "http://127.0.0.1:$AM_PORT/-/ready" "http://127.0.0.1:$AM_PORT" "$am"
kill "$am"

"$vakt" serve --config "$work/vakt.toml" --listen "127.0.0.1:$VAKT_PORT" --data-dir "$work/vakt-data" \
    >"$work/vakt.log" 2>&1 &
vk=$!; pids+=($vk)
run vakt "http://127.0.0.1:$VAKT_PORT/readyz" "http://127.0.0.1:$VAKT_PORT" "$vk"

curl -sf "http://127.0.0.1:$SINK_PORT/" > "$work/sink.json"
python3 - "$work" "$EVENTS" "$BATCH" "$CONCURRENCY" "$FINGERPRINTS" <<'PY'
import json, sys
work, events, batch, conc, fps = sys.argv[1:]
sink = json.load(open(f"{work}/sink.json"))
rows = {}
for name, path in (("alertmanager", "/alertmanager"), ("vakt", "/vakt")):
    r = json.load(open(f"{work}/{name}.json"))
    cpu, rss = open(f"{work}/{name}.usage").read().split()
    rows[name] = {
        "accepted": r["accepted"], "rate": r["events_per_second"], "p99": r["latency_ms"]["p99"],
        "rss": float(rss), "cpu": float(cpu), "notes": sink.get(path, 0),
    }
a, v = rows["alertmanager"], rows["vakt"]
print(f"\n{events} Alertmanager v2 alerts, {batch} per request, {conc} connections, {fps} distinct alerts\n")
print(f"| {'':28} | {'Alertmanager':>14} | {'vakt':>14} | {'vakt / AM':>9} |")
print(f"|{'-'*30}|{'-'*16}|{'-'*16}|{'-'*11}|")
def row(label, key, fmt, ratio=True):
    r = f"{v[key] / a[key]:.2f}x" if ratio and a[key] else ""
    print(f"| {label:28} | {format(a[key], fmt):>14} | {format(v[key], fmt):>14} | {r:>9} |")
row("alerts accepted", "accepted", "d", False)
row("accepted alerts/s", "rate", ",.0f")
row("request latency p99 (ms)", "p99", ".1f")
row("peak RSS (MiB)", "rss", ".1f")
row("CPU seconds", "cpu", ".2f")
row("notifications delivered", "notes", "d", False)
print("\nvakt fsyncs every accepted alert (SQLite, synchronous = FULL) before answering;")
print("Alertmanager keeps them in memory.")
PY
