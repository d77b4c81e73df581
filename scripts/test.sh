#!/usr/bin/env bash
# Installs what is missing, builds Chorus in Debug with AddressSanitizer and UndefinedBehaviorSanitizer, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# Formatting is part of the build: a file clang-format would change fails the run.
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

build=${CHORUS_TEST_BUILD_DIR:-build/test}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCHORUS_SANITIZERS=address,undefined >/dev/null
cmake --build "$build"

# Tests labelled pg (and the integration tests) need PostgreSQL, those labelled redis need Redis: without
# URLs from the caller, use the private servers of scripts/services.sh, and stop them afterwards only if this
# run started them.
if [ -z "${CHORUS_DATABASE_URL:-}" ] || [ -z "${CHORUS_REDIS_URL:-}" ]; then
  if ! bash scripts/services.sh status >/dev/null; then
    trap 'bash scripts/services.sh stop' EXIT
  fi
  bash scripts/services.sh start >/dev/null
  [ -n "${CHORUS_DATABASE_URL:-}" ] || eval "$(bash scripts/services.sh env | grep CHORUS_DATABASE_URL)"
  [ -n "${CHORUS_REDIS_URL:-}" ] || eval "$(bash scripts/services.sh env | grep CHORUS_REDIS_URL)"
fi

# Sanitizer findings fail the run; halt_on_error keeps the first report readable.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
