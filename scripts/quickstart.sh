#!/usr/bin/env bash
# First run: installs the Debian packages, builds Shoal, and runs `shoal demo`, an in-process tour
# of the engine on a small generated data set (segments, streaming events, time passing, Explain).
# usage: scripts/quickstart.sh [options for shoal demo, e.g. --users 20000 --seed 7]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SHOAL_BUILD_DIR:-$ROOT/build}
cd "$ROOT"

step() { echo; echo "==> $*"; }
t0=$(date +%s)

step "1/3 Installing build dependencies from Debian 12 (scripts/install-deps.sh; skipped when present)"
"$ROOT/scripts/install-deps.sh"

step "2/3 Building into ${BUILD#"$ROOT"/} (scripts/build.sh: CMake + Ninja, RelWithDebInfo)"
"$ROOT/scripts/build.sh" "$BUILD"

step "3/3 Running the demo: ${BUILD#"$ROOT"/}/shoal demo $*"
echo
"$BUILD/shoal" demo "$@"

echo
echo "Quickstart done in $(($(date +%s) - t0)) s. The binary is ${BUILD#"$ROOT"/}/shoal;"
echo "run the full test suite with scripts/test.sh."
