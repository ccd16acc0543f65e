#!/usr/bin/env bash
# Command 2 of the README: build and run the whole test suite on every backend this
# machine has. A backend that can't run here is reported as SKIPPED with the reason.
# Options:
#   --sanitize address,undefined | thread   build and run under sanitizers (own build dir)
#   --filter REGEX                          only tests whose ctest name matches
#   --build-type TYPE                       default RelWithDebInfo (asserts stay on)
#   --cxx clang++                           build with clang (installs it; own build dir)
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize="" filter="" build_type=RelWithDebInfo cxx=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --build-type) build_type=$2; shift 2 ;;
    --cxx) cxx=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

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
  *) echo "--cxx: only clang++ is supported (the default is the system g++)" >&2; exit 2 ;;
esac
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" "${compilers[@]}" \
  -DCMAKE_CXX_FLAGS="-UNDEBUG" -DGALAY_KERNEL_SANITIZE="$sanitize" -DGALAY_KERNEL_WERROR=ON >/dev/null
cmake --build "$build"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
args=(--test-dir "$build" --output-on-failure -j "$(nproc)" --no-tests=error)
[ -n "$filter" ] && args+=(-R "$filter")
ctest "${args[@]}"
