#!/usr/bin/env bash
# Command 2 of the README: build and run the whole test suite on every backend this
# machine has. A backend that can't run here is reported as SKIPPED with the reason.
# Options:
#   --sanitize address,undefined | thread   build and run under sanitizers (own build dir)
#   --filter REGEX                          only tests whose ctest name matches
#   --exclude REGEX                         leave out tests whose ctest name matches
#   --build-type TYPE                       default RelWithDebInfo (asserts stay on)
#   --cxx clang++                           build with clang (installs it; own build dir)
#   --build-dir DIR                         instead of build/tests[-SANITIZERS][-clang]
#   --chaos SEED...                         run the suite once per seed under chaos mode
#                                           (GALAY_CHAOS_SEED; "random" picks one and prints it)
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/lib/options.sh"
cd "$(dirname "$0")/.."

sanitize="" filter="" exclude="" build_type=RelWithDebInfo cxx="" chaos_list=""
BUILD_DIR=""
parse_options "--sanitize=sanitize --filter=filter --exclude=exclude --build-type=build_type --cxx=cxx --chaos=chaos_list" "$@"
read -r -a chaos_seeds <<<"$chaos_list"

build=build/tests
[ -n "$sanitize" ] && build="build/tests-${sanitize//,/-}"
compilers=()
case "$cxx" in
  "") scripts/install-deps.sh ;;
  clang++)
    # Debian's clang 14; its sanitizer runtimes are in libclang-rt-14-dev.
    scripts/install-deps.sh clang libclang-rt-14-dev
    compilers=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)
    build="$build-clang" ;;
  *) opt_die "--cxx: only clang++ is supported (the default is the system g++)" ;;
esac
[ -n "$BUILD_DIR" ] && build=$BUILD_DIR
# Asserts stay on: CMake's RelWithDebInfo flags end in -DNDEBUG, which would undo a
# -UNDEBUG given before them, so that configuration's flags are set here without it.
# CI keeps only line tables (-g1: enough for sanitizer reports and backtraces, and test
# files compile about 30% faster than with -g); elsewhere full debug info.
debug_info=-g
[ "${CI:-}" = true ] && debug_info=-g1
# Sanitizer builds at -O1 (what the ASan and TSan docs suggest): on 2 cores the ASan+UBSan
# build compiles in about half the time of -O2 (race_test.cc: 40 s vs 76 s), and the
# checks are the same.
opt=-O2
[ -n "$sanitize" ] && opt=-O1
extra=()
# The sanitizer builds run the tests only: no benchmarks or examples to build (the clang
# build keeps them, to check every target for clang's warnings).
[ -n "$sanitize" ] && [ -z "$cxx" ] && extra+=(-DGALAY_KERNEL_BUILD_BENCHMARKS=OFF -DGALAY_KERNEL_BUILD_EXAMPLES=OFF)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" "${compilers[@]}" "${extra[@]}" \
  -DCMAKE_CXX_FLAGS="-UNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$opt $debug_info" -DCMAKE_C_FLAGS_RELWITHDEBINFO="$opt $debug_info" \
  -DGALAY_KERNEL_SANITIZE="$sanitize" -DGALAY_KERNEL_WERROR=ON -DGALAY_KERNEL_CHAOS=ON >/dev/null
cmake --build "$build"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# TSan's suppressions cover only a third-party queue's internals; the file says why.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/test/support/tsan.supp"
args=(--test-dir "$build" --output-on-failure -j "$(nproc)" --no-tests=error)
[ -n "$filter" ] && args+=(-R "$filter")
[ -n "$exclude" ] && args+=(-E "$exclude")
if [ ${#chaos_seeds[@]} -eq 0 ]; then
  ctest "${args[@]}"
  exit 0
fi
# Chaos mode (docs/reliability.md): the same suite with partial, delayed and reordered
# completions and decoys on closed fd numbers. Each seed is printed first, so a failure
# can be replayed with GALAY_CHAOS_SEED=<seed>.
for seed in "${chaos_seeds[@]}"; do
  [ "$seed" = random ] && seed=$(( (RANDOM << 15) | RANDOM ))
  echo "=== chaos mode: GALAY_CHAOS_SEED=$seed ==="
  GALAY_CHAOS_SEED=$seed ctest "${args[@]}"
done
