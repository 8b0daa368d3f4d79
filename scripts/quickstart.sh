#!/usr/bin/env bash
# First run: installs the Debian packages, builds Shoal, and starts `shoal serve` with its embedded
# store in ./shoal-data, a demo data set (90 days of a small shop) and five example segments.
# Stop it with Ctrl-C (it drains and flushes); run it again and it restarts from ./shoal-data.
#
# usage: scripts/quickstart.sh [extra options for shoal serve, e.g. --port 9090]
# Settings (environment): SHOAL_PORT (8080), SHOAL_DATA_DIR (./shoal-data),
#   SHOAL_WRITE_KEY (demo-write-key), SHOAL_ADMIN_TOKEN (demo-admin-token), SHOAL_BUILD_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SHOAL_BUILD_DIR:-$ROOT/build}
PORT=${SHOAL_PORT:-8080}
DATA=${SHOAL_DATA_DIR:-$ROOT/shoal-data}
WRITE_KEY=${SHOAL_WRITE_KEY:-demo-write-key}
ADMIN=${SHOAL_ADMIN_TOKEN:-demo-admin-token}
cd "$ROOT"

step() { echo; echo "==> $*"; }
t0=$(date +%s)

step "1/3 Installing dependencies from Debian 12 (scripts/install-deps.sh; skipped when present)"
"$ROOT/scripts/install-deps.sh"

step "2/3 Building into ${BUILD#"$ROOT"/} (scripts/build.sh: CMake + Ninja, RelWithDebInfo)"
"$ROOT/scripts/build.sh" "$BUILD"

step "3/3 Starting shoal serve on port $PORT with data in ${DATA#"$ROOT"/} (set-up took $(($(date +%s) - t0)) s)"
cat <<MSG

  Write key:   $WRITE_KEY    (tracking clients: HTTP Basic user, or "writeKey")
  Admin token: $ADMIN  (everything else: Authorization: Bearer $ADMIN)

  Try, from another terminal:
    curl -s -H 'Authorization: Bearer $ADMIN' localhost:$PORT/v1/segments
    curl -s -u $WRITE_KEY: localhost:$PORT/v1/track \\
      -d '{"userId":"u1","event":"Order Completed","properties":{"total":620}}'
    curl -s -H 'Authorization: Bearer $ADMIN' localhost:$PORT/v1/profiles/u1
    curl -sN -H 'Authorization: Bearer $ADMIN' -H 'Accept: text/event-stream' localhost:$PORT/v1/changes
  The API reference is docs/api.md; the segment language, docs/language.md.

MSG
exec "$BUILD/shoal" serve --port "$PORT" --data-dir "$DATA" --write-key "$WRITE_KEY" \
  --admin-token "$ADMIN" --demo "$@"
