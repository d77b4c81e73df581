#!/usr/bin/env bash
# Installs every Debian package Chorus needs to build, test and run; safe to rerun.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git clang-format
  libcaf-dev
  libboost1.81-dev libboost-json1.81-dev
  libpqxx-dev libhiredis-dev libspdlog-dev libfmt-dev libsodium-dev libssl-dev
  libtomlplusplus-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-websockets curl procps util-linux gnuplot-nox
  postgresql redis-server redis-tools
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "setup: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
