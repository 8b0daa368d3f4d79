#!/usr/bin/env bash
# The server benchmark: starts `shoal serve` on a fresh data directory (fsync on: durable acks),
# runs `shoal bench http` against it (ingest through /v1/batch, stream and expiry latency,
# profile lookups at a fixed rate), prints the JSON figures, and stops the server.
#
# usage: bench/http_bench.sh DATA_DIR [options for shoal bench http, e.g. --events 2000000]
#   DATA_DIR: a shared/peers data set (python3 ../shared/peers/gen.py --out DIR)
# Settings: SHOAL_BIN (default build/shoal), PORT (default 18090).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SHOAL_BIN:-$ROOT/build/shoal}
PORT=${PORT:-18090}
DATA=${1:?usage: bench/http_bench.sh DATA_DIR [options]}
shift
STORE=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench.XXXXXX")
cleanup() {
  [ -n "${PID:-}" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$STORE"
}
trap cleanup EXIT

"$BIN" serve --port "$PORT" --data-dir "$STORE" --write-key bench-key --admin-token bench-admin \
  --log-level warn >"$STORE.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done
"$BIN" bench http --port "$PORT" --write-key bench-key --admin-token bench-admin --data "$DATA" "$@"
echo "server RSS at the end: $(ps -o rss= -p "$PID" | awk '{printf "%.0f MB", $1/1024}')" >&2
