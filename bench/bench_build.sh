# Sourced by the bench scripts: builds chorusd and chorus-bench (Release, no tests) into $build unless
# shellcheck shell=bash
# BENCH_CHORUSD names a chorusd and chorus-bench is already built, then sets $chorusd and $bench. A script that
# needs other targets sets the array bench_targets before sourcing.
export CCACHE_NOHASHDIR=1
if [ -n "${bench_targets:-}" ] || [ -z "${BENCH_CHORUSD:-}" ] || [ ! -x "$build/bench/chorus-bench" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCHORUS_BUILD_TESTS=OFF -DCHORUS_BUILD_BENCH=ON \
    >/dev/null
  if [ -n "${bench_targets:-}" ]; then
    cmake --build "$build" -j2 --target "${bench_targets[@]}"
  elif [ -n "${BENCH_CHORUSD:-}" ]; then
    cmake --build "$build" -j2 --target chorus-bench
  else
    cmake --build "$build" -j2 --target chorusd chorus-bench
  fi
fi
chorusd=${BENCH_CHORUSD:-$build/chorusd}
bench=$build/bench/chorus-bench
