#!/usr/bin/env bash
# Installs galay-kernel into a scratch prefix and builds a tiny consumer against it twice:
# with find_package(galay-kernel CONFIG) and with pkg-config. Runs both.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/consumer-lib
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAY_KERNEL_BUILD_TESTS=OFF \
  -DGALAY_KERNEL_BUILD_BENCHMARKS=OFF -DGALAY_KERNEL_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" >/dev/null
cmake --install "$build" --prefix "$prefix/usr" >/dev/null
# Internals stay out of the install: no detail/ folder, no backend folder, and no installed
# header includes one (docs/architecture.md).
inc="$prefix/usr/include/galay-kernel"
leaked=$(find "$inc" -path '*/detail/*' -o -path '*/io/epoll/*' -o -path '*/io/io_uring/*' -o -path '*/io/kqueue/*' -o -path '*/io/aio/*' -o -path '*/io/ops/*')
if [[ -n $leaked ]] || grep -rlE '#include "galay-kernel/.*(detail|io/(epoll|io_uring|kqueue|aio|ops))/|<liburing.h>|<libaio.h>' "$inc"; then
  echo "check-consumer: internal headers were installed or are included by installed ones: $leaked" >&2
  exit 1
fi
echo "installed headers: $(find "$inc" -name '*.h' | wc -l), none internal"

cmake -S test/consumer -B "$prefix/cmake-build" -DCMAKE_PREFIX_PATH="$prefix/usr" >/dev/null
cmake --build "$prefix/cmake-build" >/dev/null
echo "find_package consumer: $("$prefix/cmake-build/consumer")"

pcdir=$(dirname "$(find "$prefix/usr" -name galay-kernel.pc | head -n 1)")
# shellcheck disable=SC2046
g++ -std=c++20 test/consumer/main.cc $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs --static galay-kernel) \
  -o "$prefix/pc-consumer"
echo "pkg-config consumer:   $("$prefix/pc-consumer")"
