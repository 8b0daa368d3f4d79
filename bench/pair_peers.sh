#!/usr/bin/env bash
# Two builds of `shoal` side by side on a shared machine: BASE and NEW run `shoal bench peers` at
# the same time, so both see the same load, N times, alternating which starts first. Each run's
# members are checked against the peers' oracle. Compare the thread CPU times (cpu_seconds,
# backfill_cpu_seconds, ingest_only_cpu_seconds), which vary far less than wall times when other
# work shares the cores (docs/benchmarks.md, Round 3).
#
# usage: bench/pair_peers.sh DATA_DIR N live|backfill BASE_BIN NEW_BIN [ORACLE_FILE]
#   live      the replay with the segments live (--skip-backfill)
#   backfill  ingest with no segment, then create them (--skip-live)
#   ORACLE_FILE  default: ../shared/peers/expected/oracle_counts.txt (the default data set)
# Environment: PAIR_BASE_ARGS / PAIR_NEW_ARGS add arguments to one side's command (e.g.
#   PAIR_NEW_ARGS='--threads 1'); PAIR_SEQUENTIAL=1 runs the two one after the other (alternating
#   which goes first) instead of at the same time, for a figure that uses several threads.
# Output: one line per run with the JSON figures; the runs' files go to $PAIR_OUT (default
# build/pair).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: pair_peers.sh DATA_DIR N live|backfill BASE_BIN NEW_BIN [ORACLE_FILE]"
DATA=$(cd "${1:?$usage}" && pwd)
N=${2:?$usage}
MODE=${3:?$usage}
BASE=${4:?$usage}
NEW=${5:?$usage}
PEERS=${PEERS_DIR:-$ROOT/../shared/peers}
ORACLE=${6:-$PEERS/expected/oracle_counts.txt}
OUT=${PAIR_OUT:-$ROOT/build/pair}
case "$MODE" in
  live) flag=--skip-backfill ;;
  backfill) flag=--skip-live ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
mkdir -p "$OUT"

run() {  # run LABEL BIN ROUND
  local dir="$OUT/$1-$3" extra
  rm -rf "$dir"
  if [ "$1" = base ]; then extra=${PAIR_BASE_ARGS:-}; else extra=${PAIR_NEW_ARGS:-}; fi
  # shellcheck disable=SC2086  # the extra arguments are words on purpose
  "$2" bench peers "$DATA" --out "$dir" $flag $extra > "$dir.json" 2> "$dir.err" ||
    echo "$1 round $3: exit $?" >&2
  if "$PEERS/check_oracle.sh" "$dir" "$ORACLE" > "$dir.oracle" 2>&1; then
    echo ok > "$dir.check"
  else
    echo MISMATCH > "$dir.check"
  fi
}

for i in $(seq "$N"); do
  echo "== pair $i $(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg)"
  if [ "${PAIR_SEQUENTIAL:-0}" = 1 ]; then
    if [ $((i % 2)) = 1 ]; then
      run base "$BASE" "$i"; run new "$NEW" "$i"
    else
      run new "$NEW" "$i"; run base "$BASE" "$i"
    fi
  elif [ $((i % 2)) = 1 ]; then
    run base "$BASE" "$i" & sleep 0.2; run new "$NEW" "$i" &
  else
    run new "$NEW" "$i" & sleep 0.2; run base "$BASE" "$i" &
  fi
  wait
  for label in base new; do
    echo "$label: $(tail -n 1 "$OUT/$label-$i.json") members: $(cat "$OUT/$label-$i.check")"
  done
done
