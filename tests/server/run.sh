#!/usr/bin/env bash
# End-to-end tests of `shoal serve` through the real HTTP path.
#   SHOAL_BIN=/path/to/shoal tests/server/run.sh [Class[.test] ...]
# Prints one line per test (PASS/FAIL), then "N passed, M failed"; exits non-zero on any failure.
# Needs python3 (standard library only), node and npm (for the SDK clients test).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

fail_setup() { echo "FAIL setup: $*"; echo "0 passed, 1 failed"; exit 1; }

[[ -n "${SHOAL_BIN:-}" ]] || fail_setup "SHOAL_BIN is not set (path of the shoal binary)"
[[ -x "$SHOAL_BIN" ]] || fail_setup "SHOAL_BIN=$SHOAL_BIN is not an executable"
SHOAL_BIN="$(cd "$(dirname "$SHOAL_BIN")" && pwd)/$(basename "$SHOAL_BIN")"
export SHOAL_BIN
command -v python3 >/dev/null || fail_setup "python3 not found"
command -v node >/dev/null || fail_setup "node not found: the SDK clients test needs node 20+"
command -v npm >/dev/null || fail_setup "npm not found: the SDK clients test needs npm"

if [[ ! -d "$here/clients/node_modules" ]]; then
  echo "installing the SDK clients (npm ci) ..."
  (cd "$here/clients" && npm ci --no-audit --no-fund >/dev/null) \
    || fail_setup "npm ci failed in $here/clients"
fi

exec python3 "$here/shoal_e2e.py" "$@"
