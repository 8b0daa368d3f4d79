#!/usr/bin/env bash
# Configures and builds everything (library stages, the `shoal` binary, tests, benchmarks).
# usage: scripts/build.sh [BUILD_DIR] [extra cmake -D options...]
#   BUILD_DIR          default: build/ in the repository
#   SHOAL_JOBS         parallel compile jobs (default: ninja's choice, about the number of cores)
#   SHOAL_KEEP_GOING=1 build every target that can be built even when one fails (ninja -k 0)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$ROOT/build}
[ $# -gt 0 ] && shift

cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
native=()
[ "${SHOAL_KEEP_GOING:-0}" = 1 ] && native=(-- -k 0)
cmake --build "$BUILD_DIR" ${SHOAL_JOBS:+--parallel "$SHOAL_JOBS"} "${native[@]}"
