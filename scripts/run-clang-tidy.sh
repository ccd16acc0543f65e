#!/usr/bin/env bash
# clang-tidy over the library's sources with the checks in .clang-tidy (any finding fails).
# Uses the compile commands of the test build (scripts/run-tests.sh creates build/tests);
# pass another build directory as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh clang-tidy
build=${1:-build/tests}
if [ ! -f "$build/compile_commands.json" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
fi
# Library sources only: headers are checked through them (HeaderFilterRegex). The kqueue
# backend needs <sys/event.h>, which Linux lacks; it is checked on Apple/BSD builds.
mapfile -t files < <(git ls-files 'galay-kernel/*.cc' | grep -v '/kqueue/')
echo "clang-tidy: ${#files[@]} files"
printf '%s\n' "${files[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet
echo "clang-tidy: no findings"
