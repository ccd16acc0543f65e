#!/usr/bin/env bash
# Runs the examples against real clients (CI step):
#  - http_server: curl (status, body, keep-alive reuse, static file byte for byte, HEAD,
#    404, 400, pipelined requests), then wrk for a few seconds (0 socket errors, 0 non-2xx),
#    then SIGTERM (must exit 0 on its own);
#  - file_copy: a 64 MiB random file copied on every backend it can use, checked with cmp.
# Builds in build/tests (the test command's configuration) unless $1 names another dir.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh curl wrk
build=${1:-build/tests}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="-UNDEBUG" \
  -DGALAY_KERNEL_WERROR=ON >/dev/null
cmake --build "$build" --target http_server file_copy echo_server
bin=$build/bin

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-examples: FAIL: $*" >&2; exit 1; }

# ---- http_server ----
mkdir -p "$work/www/sub"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$work/www/big.bin"
echo "a small file" >"$work/www/sub/small.txt"
"$bin/http_server" --port 0 --threads 2 --root "$work/www" >"$work/http.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/^http_server listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/http.log")
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || fail "http_server exited: $(cat "$work/http.log")"
  sleep 0.1
done
[ -n "$port" ] || fail "http_server did not start"
base=http://127.0.0.1:$port
c() { timeout 20 curl -sS --max-time 15 "$@"; }

[ "$(c -o /dev/null -w '%{http_code}' "$base/")" = 200 ] || fail "GET / status"
[ "$(c "$base/")" = hello ] || fail "GET / body"
# Two requests in one curl run: the second must reuse the first connection.
connects=$(c -o /dev/null -o /dev/null -w '%{num_connects} ' "$base/" "$base/")
[ "$connects" = "1 0 " ] || fail "keep-alive: connections opened per request: $connects"
c -o "$work/got.bin" "$base/static/big.bin"
cmp "$work/got.bin" "$work/www/big.bin" || fail "static file differs"
[ "$(c "$base/static/sub/small.txt")" = "a small file" ] || fail "static file in a subdirectory"
len=$(c -I "$base/static/big.bin" | tr -d '\r' | sed -n 's/^Content-Length: //p')
[ "$len" = $((3 * 1024 * 1024 + 17)) ] || fail "HEAD Content-Length: $len"
[ "$(c -o /dev/null -w '%{http_code}' "$base/nothing")" = 404 ] || fail "unknown path not 404"
[ "$(c -o /dev/null -w '%{http_code}' "$base/static/missing")" = 404 ] || fail "missing file not 404"
[ "$(c -o /dev/null -w '%{http_code}' --path-as-is "$base/static/../http.log")" = 404 ] || fail "path traversal not refused"
# Pipelining and malformed input, on raw sockets.
python3 - "$port" <<'EOF' || fail "pipelining / bad request"
import socket, sys
port = int(sys.argv[1])
def exchange(payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data
two = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
assert two.count(b"HTTP/1.1 200 OK") == 2 and two.endswith(b"hello"), two
bad = exchange(b"NONSENSE\r\n\r\n")
assert bad.startswith(b"HTTP/1.1 400 "), bad
print("pipelined: 2 responses in order; malformed: 400")
EOF
echo "http_server: curl checks passed"

timeout 30 wrk -t1 -c50 -d3s "$base/" >"$work/wrk.txt" 2>&1 || fail "wrk failed: $(cat "$work/wrk.txt")"
cat "$work/wrk.txt"
if grep -q "Socket errors" "$work/wrk.txt"; then fail "wrk saw socket errors"; fi
if grep -q "Non-2xx" "$work/wrk.txt"; then fail "wrk saw non-2xx responses"; fi
grep -q "Requests/sec" "$work/wrk.txt" || fail "wrk printed no rate"

kill -TERM "$server_pid"
if ! timeout 10 tail --pid="$server_pid" -f /dev/null; then fail "http_server did not stop within 10 s of SIGTERM"; fi
wait "$server_pid" && rc=0 || rc=$?
server_pid=""
[ "$rc" = 0 ] || fail "http_server exit status $rc"
tail -1 "$work/http.log"

# ---- file_copy ----
head -c $((64 * 1024 * 1024 + 12345)) /dev/urandom >"$work/src.bin"
for backend in auto epoll io_uring kqueue; do
  rm -f "$work/dst.bin"
  if ! out=$(timeout 120 "$bin/file_copy" "$work/src.bin" "$work/dst.bin" --qd 8 --backend "$backend" 2>&1); then
    if [ "$backend" != auto ] && grep -q "no scheduler" <<<"$out"; then
      echo "file_copy --backend $backend: SKIPPED ($out)"
      continue
    fi
    fail "file_copy --backend $backend: $out"
  fi
  cmp "$work/src.bin" "$work/dst.bin" || fail "file_copy --backend $backend: copy differs"
  echo "file_copy --backend $backend: $out; cmp: identical"
done
echo "check-examples: all passed"
