#!/usr/bin/env bash
# Command 1 of the README: build Release and run the echo benchmark on loopback.
# bench_server (the library's default backend) and bench_client, 100 connections,
# 256-byte messages, 5 seconds; prints bench_client's table.
# Options: -c CONNS -s SIZE -d SECONDS --backend epoll|io_uring|kqueue|auto
#          --build-dir DIR (default build/release)
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/lib/options.sh"
cd "$(dirname "$0")/.."

conns=100 size=256 duration=5 backend=auto
BUILD_DIR=build/release
parse_options "-c=conns -s=size -d=duration --backend=backend" "$@"
need_uint -c "$conns" 1
need_uint -s "$size" 1
need_uint -d "$duration" 1

scripts/install-deps.sh
build=$BUILD_DIR
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGALAY_KERNEL_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target bench_server bench_client

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cpus=$(nproc)
pin_server="" pin_client=""
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then pin_server="taskset -c 0"; pin_client="taskset -c 1"; fi

$pin_server "$build/bin/bench_server" "$port" --backend "$backend" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port)).close()" 2>/dev/null && break
  sleep 0.1
done
$pin_client "$build/bin/bench_client" -h 127.0.0.1 -p "$port" -c "$conns" -s "$size" -d "$duration" --backend "$backend"
