#!/usr/bin/env bash
# The agent's own footprint: a release `vakt agent` with six probes every second for SECONDS
# (default 60) against a local server; prints its resident memory and CPU time per probe
# cycle. Usage: bench/agent-footprint.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cargo build --release -q -p vakt
vakt=${CARGO_TARGET_DIR:-$PWD/target}/release/vakt
work=$(mktemp -d)
port=18484
cleanup() { kill ${server:-} ${agent:-} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf '[storage]\ndata_dir = "%s/data"\n' "$work" > "$work/server.toml"
cat > "$work/agent.toml" <<TOML
[agent]
name = "footprint"
server = "http://127.0.0.1:$port"
buffer_dir = "$work/buffer"
heartbeat_secs = 10
[[probes]]
name = "root-disk"
type = "disk"
path = "/"
interval_secs = 1
warning = 85
critical = 95
[[probes]]
name = "load"
type = "load"
interval_secs = 1
warning = 2
critical = 4
[[probes]]
name = "memory"
type = "memory"
interval_secs = 1
warning = 90
critical = 97
[[probes]]
name = "postgres-port"
type = "tcp"
address = "127.0.0.1:5432"
interval_secs = 1
[[probes]]
name = "server-health"
type = "http"
url = "http://127.0.0.1:$port/healthz"
interval_secs = 1
[[probes]]
name = "tcp-plugin"
type = "command"
command = ["/usr/lib/nagios/plugins/check_tcp", "-H", "127.0.0.1", "-p", "5432"]
interval_secs = 1
TOML
VAKT_LOG=warn "$vakt" serve --config "$work/server.toml" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
server=$!
until curl -sf "localhost:$port/readyz" >/dev/null; do sleep 0.05; done
VAKT_LOG=warn "$vakt" agent --config "$work/agent.toml" >/dev/null 2>&1 &
agent=$!
sleep "$seconds"
ticks=$(getconf CLK_TCK)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$agent/stat")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
cpu_ms=$(( (utime + stime) * 1000 / ticks ))
cycles=$(( seconds * 6 ))
echo "agent: 6 probes every 1 s for ${seconds} s = ${cycles} probe cycles"
echo "RSS now / peak: $(( rss / 1024 )) MiB / $(( hwm / 1024 )) MiB"
echo "CPU: ${cpu_ms} ms in all, $(( cpu_ms * 1000 / cycles )) µs per probe cycle (the check_tcp plugin's own process not included)"
