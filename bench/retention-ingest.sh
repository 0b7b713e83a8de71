#!/usr/bin/env bash
# bench/retention-ingest.sh: ingest throughput with retention pruning off and running.
set -euo pipefail
bin=${1:-target/release/vakt}
for mode in off on; do
  d=$(mktemp -d)
  extra=""
  [ "$mode" = on ] && extra=$'max_bytes = 1\ninterval_secs = 1\npause_ms = 0'
  printf '[server]\nlisten = "127.0.0.1:18473"\nwrite_rate_per_client = 0\n[storage]\ndata_dir = "%s/data"\n[retention]\n%s\n' "$d" "$extra" > "$d/vakt.toml"
  VAKT_LOG=warn "$bin" serve --config "$d/vakt.toml" & pid=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:18473/readyz >/dev/null && break; sleep 0.1; done
  echo "pruning $mode:"
  "$bin" bench --target http://127.0.0.1:18473 --events 100000 --format batch --batch 1000 --concurrency 4 2>&1 | grep -iE "events/s|accepted" | head -3
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$d"
done
