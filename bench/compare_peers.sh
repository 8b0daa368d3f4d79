#!/usr/bin/env bash
# Side by side, in one sitting: DuckDB recomputing the shared/peers segments, then Shoal replaying
# the same events with the segments live and backfilling them, then the oracle check.
#
# usage: bench/compare_peers.sh DATA_DIR [PEERS_DIR]
#   DATA_DIR   made by shared/peers/gen.py (events.ndjson, users.csv, events.csv, ...)
#   PEERS_DIR  a writable copy of shared/peers on which install.sh has run (DuckDB for Node);
#              default: $PEERS_DIR or ../shared/peers next to the repository
# Needs build/shoal (scripts/build.sh). Prints the figures of both and their ratios.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$(cd "${1:?usage: compare_peers.sh DATA_DIR [PEERS_DIR]}" && pwd)
PEERS=$(cd "${2:-${PEERS_DIR:-$ROOT/../shared/peers}}" && pwd)
SHOAL=${SHOAL_BIN:-$ROOT/build/shoal}
OUT=${SHOAL_COMPARE_OUT:-$ROOT/build/compare}
mkdir -p "$OUT/duck" "$OUT/shoal-members"
[ -d "$PEERS/duck/node_modules" ] || { echo "run $PEERS/install.sh first (in a writable copy)" >&2; exit 2; }

echo "== DuckDB: load, then recompute the 8 segments 3 times"
node "$PEERS/duck/bench_duckdb.mjs" load --data "$DATA" --db "$OUT/duck/seg.duckdb" --results "$OUT/duck" > "$OUT/duck/load.txt"
node "$PEERS/duck/bench_duckdb.mjs" segments --data "$DATA" --db "$OUT/duck/seg.duckdb" --results "$OUT/duck" --runs 3 > "$OUT/duck/segments.txt"
cat "$OUT/duck/duck_recompute.tsv"

echo "== Shoal: replay with the segments live, then backfill them on a fresh engine"
"$SHOAL" bench peers "$DATA" --out "$OUT/shoal-members" 2> "$OUT/shoal.log" | tail -n 1 > "$OUT/shoal.json"
cat "$OUT/shoal.log" "$OUT/shoal.json"

echo "== Oracle"
expected=$PEERS/expected/oracle_counts.txt
grep -q '"events":2[0-9]\{6\},' "$OUT/shoal.json" && expected=$PEERS/expected/oracle_counts_smoke.txt
"$PEERS/check_oracle.sh" "$OUT/shoal-members" "$expected" || true

echo "== Side by side"
python3 - "$OUT/duck/duck_recompute.tsv" "$OUT/shoal.json" <<'PY'
import json, sys
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip()]
hdr, rows = rows[0], rows[1:]
shoal = json.load(open(sys.argv[2]))
user = [r for r in rows if r[0] != 's7']
def best(r): return min(float(x) for x in r[2:]) / 1000
def first(r): return float(r[2]) / 1000
duck_first = sum(first(r) for r in user); duck_best = sum(best(r) for r in user)
bf = shoal['backfill_seconds']
print(f"segments compared: {', '.join(r[0] for r in user)} (s7 needs accounts)")
print(f"DuckDB recompute, first run: {duck_first:.3f} s; best warm run: {duck_best:.3f} s")
print(f"Shoal backfill of the same segments over its stored history: {bf:.3f} s")
print(f"  ratio DuckDB warm / Shoal backfill: {duck_best / bf:.2f}x")
print(f"Shoal live replay: {shoal['events']} events in {shoal['seconds']:.2f} s = {shoal['events_per_s']/1e6:.2f}M events/s (parsing included)")
print(f"Shoal ingest without segments: {shoal['ingest_only_seconds']:.2f} s; peak RSS {shoal['peak_rss_mb']:.0f} MB")
PY
