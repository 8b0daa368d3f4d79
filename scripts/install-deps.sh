#!/usr/bin/env bash
# Installs every Debian 12 package needed to build, test, fuzz and benchmark Shoal.
# Idempotent: when all of them are already installed it does nothing (no apt-get update), so
# re-runs take well under a second. Needs root; re-runs itself through sudo otherwise.
set -euo pipefail

PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config git python3
  libroaring-dev libsimdjson-dev libabsl-dev libxxhash-dev libre2-dev
  libcli11-dev libspdlog-dev libfmt-dev
  libboost1.81-dev libboost-system1.81-dev librocksdb-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev libjemalloc-dev curl
  clang libclang-rt-14-dev
)

# The HTTP end-to-end tests run the real Segment and RudderStack SDKs: Node.js and npm. Machines
# that already have them (e.g. from NodeSource) keep theirs; otherwise Debian's are installed.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "${missing[@]}"
echo "install-deps: done"
