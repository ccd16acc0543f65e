#!/usr/bin/env bash
# Runs the examples and the benchmark programs against real clients (CI step):
#  - command lines: every program refuses a bad value with one stderr line naming the
#    option and the value, exit 2; --help prints the usage, exit 0;
#  - echo_server: PORT 70000 and abc refused, -p PORT and PORT listen there, the listening
#    line comes through a pipe, it echoes, a busy port exits 1 with the error;
#  - bench_server: a busy port, an address not on this machine (192.0.2.1) and a malformed
#    --host make it exit non-zero within seconds, on every backend, with -t 1 and -t 2;
#  - bench_ipc: with either process killed (SIGKILL), the other exits at once (the parent
#    with status 1), on every transport, ping-pong and one-way;
#  - http_server: curl (status, body, keep-alive reuse, static file byte for byte, HEAD,
#    404, 400, pipelined requests), no file reached through a symlink (a directory link
#    leading out of --root, a file link, a link inside the root) with openat2 and with the
#    --resolve walk fallback, 400 for differing Content-Length fields and for header names
#    that are not tokens, 408 and close for a head still partial after --header-timeout,
#    memory per held partial head, then wrk for a few seconds (0 socket errors, 0 non-2xx),
#    then GET /metrics checked with `promtool check metrics` and for the traffic just
#    served, then SIGTERM (must exit 0 on its own);
#  - http_server over HTTPS (--tls-cert/--tls-key): a CA and a localhost certificate made
#    with the openssl command in the temp directory; curl --cacert (body and static files
#    byte for byte, keep-alive reuse, HEAD, 404), openssl s_client (Verify return code 0,
#    TLSv1.3, ALPN http/1.1), a silent client and a plain-HTTP client closed without an
#    answer, wrk over https for 2 s (requests > 0, no connect/read/write errors, 0 non-2xx),
#    SIGTERM (exit 0); then bench_server --tls-cert and bench_client --tls --tls-ca for 1 s
#    (exit 0: no errors). SKIPPED with the reason when there is no openssl command or the
#    build has no TLS;
#  - file_copy: a 64 MiB random file copied on every backend it can use, checked with cmp.
# Every step runs under a time limit. Builds in build/tests (the test command's
# configuration) unless --build-dir DIR (or DIR as the only argument) names another.
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/lib/options.sh"
# shellcheck source=scripts/lib/test_certs.sh
. "$(dirname "$0")/lib/test_certs.sh"
cd "$(dirname "$0")/.."
BUILD_DIR=build/tests
while [ $# -gt 0 ]; do
  case "$1" in
    -*) common_option "$@"; shift "$OPT_SHIFT" ;;
    *) BUILD_DIR=$1; shift ;;
  esac
done
scripts/install-deps.sh curl wrk openssl prometheus  # prometheus: promtool
build=$BUILD_DIR
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="-UNDEBUG" \
  -DGALAY_KERNEL_WERROR=ON >/dev/null
targets=(http_server file_copy echo_server bench_server bench_client bench_file_io bench_ipc bench_send_zc soak)
# micro_bench exists only where Google Benchmark was found.
if ninja -C "$build" -t targets all 2>/dev/null | grep -q '^micro_bench:'; then targets+=(micro_bench); fi
cmake --build "$build" --target "${targets[@]}"
bin=$build/bin

work=$(mktemp -d)
cleanup() {
  local p
  for p in $(jobs -pr); do kill -9 "$p" 2>/dev/null || true; done  # this script's programs still running
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-examples: FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_line FILE REGEX PID: up to 10 s for a line matching REGEX in FILE; prints it.
wait_line() {
  local line=""
  for _ in $(seq 100); do
    line=$(grep -m1 -E "$2" "$1" || true)
    [ -n "$line" ] && break
    kill -0 "$3" 2>/dev/null || fail "pid $3 exited: $(cat "$1")"
    sleep 0.1
  done
  [ -n "$line" ] || fail "no line /$2/ in $1 within 10 s: $(cat "$1")"
  echo "$line"
}
# gone PID: the process has exited (a zombie counts: an orphan may wait for a reaper).
gone() { [ ! -e "/proc/$1/stat" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
# wait_gone PID SECONDS: true once PID has exited, false if it still runs after SECONDS.
wait_gone() {
  for _ in $(seq $(($2 * 20))); do
    gone "$1" && return 0
    sleep 0.05
  done
  gone "$1"
}

# ---- command lines: one line naming the option and the value, exit 2 ----
# bad_value "EXPECTED LINE" PROGRAM ARGS...
bad_value() {
  local want=$1 rc=0
  shift
  timeout 10 "$bin/$1" "${@:2}" >"$work/out" 2>"$work/err" || rc=$?
  [ "$rc" = 2 ] || fail "$* exited $rc, not 2: $(cat "$work/err")"
  [ "$(wc -l <"$work/err")" = 1 ] || fail "$*: not one line: $(cat "$work/err")"
  [ "$(cat "$work/err")" = "$want" ] || fail "$*: said '$(cat "$work/err")', not '$want'"
}
bad_value "bench_server: --threads: expected an integer in [1, 1024], got 'x'" bench_server --threads x
bad_value "bench_server: -t: expected an integer in [1, 1024], got '0'" bench_server 8080 -t 0
bad_value "bench_server: --recv: expected one of pooled, plain, got 'x'" bench_server --recv=x
bad_value "bench_server: PORT: expected an integer in [1, 65535], got '70000'" bench_server 70000
bad_value "bench_server: --host: expected a literal IPv4 or IPv6 address, got '1.2.3.4.5'" bench_server --host 1.2.3.4.5
bad_value "bench_server: --sqpoll: expected a CPU number in [0, 4095], got 'x'" bench_server --sqpoll=x
bad_value "bench_server: --mlock: takes no value, got '3'" bench_server --mlock=3
bad_value "bench_file_io: --huge-pages: expected on or off, got 'maybe'" bench_file_io --huge-pages maybe
bad_value "bench_client: -c: expected an integer in [1, 1000000], got '0'" bench_client -c 0
bad_value "bench_client: --warmup: expected a number in [0, 3600], got 'soon'" bench_client --warmup soon
bad_value "http_server: --threads: expected an integer in [1, 1024], got 'many'" http_server --threads many
bad_value "http_server: --header-timeout: expected a number in (0, 3600], got '0'" http_server --header-timeout 0
bad_value "http_server: --backend: expected one of epoll, io_uring, kqueue, auto, got 'poll'" http_server --backend poll
bad_value "file_copy: --qd: expected an integer in [1, 1024], got '0'" file_copy --qd 0 a b
bad_value "file_copy: missing DST (--help shows the usage)" file_copy a
bad_value "bench_file_io: --rw: expected one of read, write, randrw, randread, randwrite, rw, got 'sideways'" \
  bench_file_io --rw sideways
bad_value "bench_file_io: -b: expected a size in [512, 67108864] (K/M/G suffixes allowed), got '1'" bench_file_io -b 1
bad_value "bench_ipc: -n: expected an integer in [64, 1000000000], got '5'" bench_ipc -n 5
bad_value "bench_ipc: --transport: expected one of all, channel, pipe, socketpair, eventfd, got 'smoke'" \
  bench_ipc --transport smoke
bad_value "soak: --churn: expected a number in [0, 1], got '2'" soak --churn 2
bad_value "bench_send_zc: --rounds: expected an integer in [1, 100], got '0'" bench_send_zc --rounds 0
bad_value "bench_send_zc: --sizes: expected a comma-separated list of sizes in [1, 67108864], got '4096,x'" \
  bench_send_zc --sizes 4096,x
bad_value "echo_server: PORT: expected an integer in [0, 65535], got '70000'" echo_server 70000
bad_value "echo_server: PORT: expected an integer in [0, 65535], got 'abc'" echo_server abc
bad_value "echo_server: -p: expected an integer in [0, 65535], got '99999'" echo_server -p 99999
bad_value "echo_server: unknown option '--bogus' (--help lists the options)" echo_server --bogus
bad_value "http_server: --tls-cert: needs --tls-key" http_server --tls-cert cert.pem
bad_value "bench_server: --tls-key: needs --tls-cert" bench_server --tls-key key.pem
bad_value "bench_client: --tls-ca: needs --tls" bench_client --tls-ca ca.pem
if [ -x "$bin/micro_bench" ]; then
  bad_value "micro_bench: --benchmark_repetitions: expected a value Google Benchmark accepts (--help lists its flags), got 'x'" \
    micro_bench --benchmark_repetitions=x
fi
for prog in "${targets[@]}"; do
  timeout 10 "$bin/$prog" --help >"$work/out" 2>&1 || fail "$prog --help exited $?"
  grep -qE "^usage: $prog |benchmark_filter" "$work/out" || fail "$prog --help printed no usage: $(head -3 "$work/out")"
done
echo "command lines: bad values named in one line (exit 2), --help (exit 0) for ${#targets[@]} programs"

# ---- echo_server ----
echo_port=$(free_port)
# Its stdout is a pipe: the listening line must be flushed to get through.
"$bin/echo_server" -p "$echo_port" --backend epoll > >(cat >"$work/echo.log") 2>&1 &
echo_pid=$!
line=$(wait_line "$work/echo.log" "listening" "$echo_pid")
[[ $line == "echo_server listening on 127.0.0.1:$echo_port "* ]] || fail "echo_server -p $echo_port: $line"
python3 - "$echo_port" <<'EOF' || fail "echo_server does not echo"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"hello, echo")
got = b""
while len(got) < 11:
    got += s.recv(100)
assert got == b"hello, echo", got
EOF
rc=0
timeout 10 "$bin/echo_server" "$echo_port" >"$work/out" 2>"$work/err" || rc=$?
[ "$rc" = 1 ] || fail "echo_server on a busy port exited $rc, not 1"
grep -q "cannot listen on 127.0.0.1:$echo_port: Address already in use" "$work/err" || fail "echo_server busy: $(cat "$work/err")"
port2=$(free_port)
"$bin/echo_server" "$port2" >"$work/echo2.log" 2>&1 &
pid2=$!
wait_line "$work/echo2.log" "listening on 127.0.0.1:$port2 " "$pid2" >/dev/null
kill "$pid2"
echo "echo_server: -p PORT and PORT listen there, listening line through a pipe, echoes, busy port: exit 1"

# ---- bench_server cannot listen: exit non-zero at once ----
# The busy port is echo_server's (a listener without SO_REUSEPORT, so -t 2 fails too).
for backend in epoll io_uring kqueue; do
  for threads in 1 2; do
    for where in "$echo_port" "9 --host 192.0.2.1"; do
      rc=0
      start=$SECONDS
      # shellcheck disable=SC2086  # $where is a port and maybe --host ADDR
      timeout 10 "$bin/bench_server" $where --backend "$backend" -t "$threads" >"$work/out" 2>"$work/err" || rc=$?
      if grep -q "cannot create a scheduler" "$work/err"; then
        echo "bench_server --backend $backend: SKIPPED ($(head -1 "$work/err"))"
        continue 2
      fi
      [ "$rc" = 1 ] || fail "bench_server $where --backend $backend -t $threads exited $rc, not 1: $(cat "$work/err")"
      grep -q "cannot listen" "$work/err" || fail "bench_server $where: no error printed: $(cat "$work/err")"
      [ $((SECONDS - start)) -le 5 ] || fail "bench_server $where --backend $backend took $((SECONDS - start)) s"
    done
  done
  echo "bench_server --backend $backend (-t 1, -t 2): busy port and 192.0.2.1 exit 1 at once"
done

# ---- bench_client by host name (resolved, then the address that answers) ----
timeout 30 "$bin/bench_client" -h localhost -p "$echo_port" -c 2 -d 1 >"$work/bc-name.txt" 2>&1 ||
  fail "bench_client -h localhost: $(cat "$work/bc-name.txt")"
grep -q "^Errors: 0" "$work/bc-name.txt" || fail "bench_client -h localhost: $(cat "$work/bc-name.txt")"
rc=0
timeout 30 "$bin/bench_client" -h no-such-host.invalid -p "$echo_port" -c 1 -d 1 >/dev/null 2>"$work/err" || rc=$?
[ "$rc" = 2 ] && grep -q "bad host 'no-such-host.invalid'" "$work/err" ||
  fail "bench_client -h no-such-host.invalid: exit $rc: $(cat "$work/err")"
echo "bench_client -h localhost: connects by name, 0 errors; an unknown name: exit 2, named"
kill "$echo_pid"

# ---- bench_ipc: a killed peer ends the other process ----
for transport in eventfd channel pipe socketpair; do
  for mode in pingpong oneway; do
    for victim in child parent; do
      "$bin/bench_ipc" --transport "$transport" --mode "$mode" -n 20000000 >/dev/null 2>"$work/err" &
      parent=$!
      child=""
      for _ in $(seq 100); do
        child=$(pgrep -P "$parent" | head -1 || true)
        [ -n "$child" ] && break
        sleep 0.05
      done
      [ -n "$child" ] || fail "bench_ipc --transport $transport: no child process"
      sleep 0.3  # mid-run
      what="bench_ipc --transport $transport --mode $mode, $victim killed"
      if [ "$victim" = child ]; then
        kill -9 "$child"
        wait_gone "$parent" 5 || fail "$what: the parent still runs after 5 s"
        rc=0
        wait "$parent" || rc=$?
        [ "$rc" = 1 ] || fail "$what: the parent exited $rc, not 1: $(cat "$work/err")"
      else
        kill -9 "$parent"
        wait "$parent" 2>/dev/null || true
        wait_gone "$child" 5 || fail "$what: the child still runs after 5 s"
      fi
    done
  done
  echo "bench_ipc --transport $transport (pingpong, oneway): a killed child or parent ends the other at once"
done

# ---- http_server ----
mkdir -p "$work/www/sub" "$work/outside"
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$work/www/big.bin"
echo "a small file" >"$work/www/sub/small.txt"
echo "secret" >"$work/outside/secret.txt"
ln -s ../outside "$work/www/escape"              # a directory link leading out of the root
ln -s ../outside/secret.txt "$work/www/escape.txt" # a file link leading out
ln -s sub "$work/www/inside"                       # a link that stays inside: refused too
c() { timeout 20 curl -sS --max-time 15 "$@"; }
# start_http LOG ARGS...: starts http_server on a free port; sets http_pid, line (what it
# printed once listening) and base (its URL).
start_http() {
  local log=$1
  shift
  "$bin/http_server" --port 0 "$@" >"$log" 2>&1 &
  http_pid=$!
  line=$(wait_line "$log" "^http_server listening on" "$http_pid")
  base=http://127.0.0.1:$(sed -n 's/^http_server listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' <<<"$line")
}
# static_checks RESOLVE: files below the root are served, nothing through a symlink.
static_checks() {
  c -o "$work/got.bin" "$base/static/big.bin"
  cmp "$work/got.bin" "$work/www/big.bin" || fail "$1: static file differs"
  [ "$(c "$base/static/sub/small.txt")" = "a small file" ] || fail "$1: static file in a subdirectory"
  local path code
  for path in escape/secret.txt escape.txt inside/small.txt; do
    code=$(c -o /dev/null -w '%{http_code}' "$base/static/$path")
    [ "$code" = 404 ] || fail "$1: /static/$path through a symlink: $code, not 404"
  done
}

start_http "$work/walk.log" --root "$work/www" --resolve walk
[[ $line == *" resolve=walk"* ]] || fail "--resolve walk: $line"
static_checks "--resolve walk"
kill "$http_pid"
echo "http_server --resolve walk: static files served, symlinks (out of the root, to a file, inside) refused"

start_http "$work/http.log" --threads 2 --root "$work/www" --header-timeout 1
resolve=$(sed -n 's/.* resolve=\([a-z0-9]*\).*/\1/p' <<<"$line")
port=${base##*:}

[ "$(c -o /dev/null -w '%{http_code}' "$base/")" = 200 ] || fail "GET / status"
[ "$(c "$base/")" = hello ] || fail "GET / body"
# Two requests in one curl run: the second must reuse the first connection.
connects=$(c -o /dev/null -o /dev/null -w '%{num_connects} ' "$base/" "$base/")
[ "$connects" = "1 0 " ] || fail "keep-alive: connections opened per request: $connects"
static_checks "--resolve auto ($resolve)"
len=$(c -I "$base/static/big.bin" | tr -d '\r' | sed -n 's/^Content-Length: //p')
[ "$len" = $((3 * 1024 * 1024 + 17)) ] || fail "HEAD Content-Length: $len"
[ "$(c -o /dev/null -w '%{http_code}' "$base/nothing")" = 404 ] || fail "unknown path not 404"
[ "$(c -o /dev/null -w '%{http_code}' "$base/static/missing")" = 404 ] || fail "missing file not 404"
[ "$(c -o /dev/null -w '%{http_code}' --path-as-is "$base/static/../http.log")" = 404 ] || fail "path traversal not refused"
if [ "$resolve" = openat2 ]; then
  echo "http_server --resolve auto: openat2; static files served, symlinks refused"
else
  echo "http_server --resolve auto: $resolve (openat2 not available here: SKIPPED)"
fi
# Pipelining, malformed input and slow heads, on raw sockets (--header-timeout 1).
timeout 60 python3 - "$port" <<'EOF' || fail "raw HTTP checks"
import socket, sys, time
port = int(sys.argv[1])
def exchange(payload, pause=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    start = time.monotonic()
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data, time.monotonic() - start
two, _ = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
assert two.count(b"HTTP/1.1 200 OK") == 2 and two.endswith(b"hello"), two
for bad in [b"NONSENSE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
            b"GET / HTTP/1.1\r\nHost: x\r\nbad name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n"]:
    got, _ = exchange(bad)
    assert got.startswith(b"HTTP/1.1 400 "), (bad, got)
same, _ = exchange(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
assert same.startswith(b"HTTP/1.1 200 OK"), same
# A head still partial 1 s after its first byte: 408, then the server closes.
slow, took = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n")
assert slow.startswith(b"HTTP/1.1 408 ") and 0.5 < took < 5, (slow, took)
# The same for the partial second head of a pipelined pair: the first is answered.
pair, took = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HT")
assert pair.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 408 " in pair and 0.5 < took < 5, (pair, took)
# One byte every 0.25 s: the head is not complete after 1 s, so the connection is closed.
s = socket.create_connection(("127.0.0.1", port), timeout=10)
start, closed = time.monotonic(), False
try:
    for ch in b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n":
        s.send(bytes([ch]))
        time.sleep(0.25)
except OSError:
    closed = True
s.settimeout(5)
try:
    answer = s.recv(100)
except OSError:
    answer = b""
assert (closed or answer.startswith(b"HTTP/1.1 408 ")) and time.monotonic() - start < 15, answer
# An idle connection is not a slow head: a request after 1.5 s of silence is served.
s = socket.create_connection(("127.0.0.1", port), timeout=10)
time.sleep(1.5)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
print("pipelined: 2 responses in order; malformed, differing Content-Length, bad header names: 400;"
      " partial head after --header-timeout 1: 408 and close; idle then a request: 200")
EOF
# Memory held by partial heads: 300 connections each stopped mid-head (RSS of the server).
timeout 30 python3 - "$port" "$http_pid" <<'EOF' || fail "memory per held partial head"
import re, socket, sys, time
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), 300
rss = lambda: int(re.search(r"VmRSS:\s+(\d+) kB", open(f"/proc/{pid}/status").read()).group(1))
before = rss()
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for s in held:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
time.sleep(0.3)
per = (rss() - before) * 1024 / n
print(f"held partial heads: {per:.0f} bytes of server RSS each ({n} connections)")
assert per < 6144, per
EOF
echo "http_server: curl checks passed"

timeout 30 wrk -t1 -c50 -d3s "$base/" >"$work/wrk.txt" 2>&1 || fail "wrk failed: $(cat "$work/wrk.txt")"
cat "$work/wrk.txt"
if grep -q "Socket errors" "$work/wrk.txt"; then fail "wrk saw socket errors"; fi
if grep -q "Non-2xx" "$work/wrk.txt"; then fail "wrk saw non-2xx responses"; fi
grep -q "Requests/sec" "$work/wrk.txt" || fail "wrk printed no rate"

# /metrics: the runtime's I/O counters in Prometheus' text format, accepted by promtool,
# and showing the traffic wrk just made.
curl -fsS "$base/metrics" >"$work/metrics.txt" || fail "GET /metrics"
promtool check metrics <"$work/metrics.txt" || fail "promtool rejected /metrics: $(head -20 "$work/metrics.txt")"
grep -Eq '^galay_ops_completed_total\{worker="[0-9]+",op="(send|sendmsg)"\} [1-9]' "$work/metrics.txt" ||
  fail "/metrics counts no completed sends after wrk: $(grep ops_completed "$work/metrics.txt")"
grep -Eq '^galay_bytes_out_total\{worker="[0-9]+"\} [1-9]' "$work/metrics.txt" || fail "/metrics counts no bytes out after wrk"
echo "http_server /metrics: promtool check metrics passed ($(grep -cv '^#' "$work/metrics.txt") samples)"

kill -TERM "$http_pid"
if ! timeout 10 tail --pid="$http_pid" -f /dev/null; then fail "http_server did not stop within 10 s of SIGTERM"; fi
wait "$http_pid" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "http_server exit status $rc"
tail -1 "$work/http.log"

# ---- http_server over HTTPS ----
https_skip=""
if ! command -v openssl >/dev/null; then
  https_skip="no openssl command"
else
  # A build without TLS refuses the flags before it opens any file.
  timeout 10 "$bin/http_server" --tls-cert "$work/none" --tls-key "$work/none" >/dev/null 2>"$work/err" || true
  if grep -q "this build has no TLS" "$work/err"; then https_skip=$(cat "$work/err"); fi
fi
if [ -n "$https_skip" ]; then
  echo "http_server over HTTPS, bench_server/bench_client --tls: SKIPPED ($https_skip)"
else
  certs=$work/certs
  make_test_certs "$certs" || fail "openssl could not make the test certificates: $(cat "$certs/err")"
  start_http "$work/https.log" --threads 2 --root "$work/www" --header-timeout 1 \
    --tls-cert "$certs/server.pem" --tls-key "$certs/server.key"
  [[ $line == *" tls alpn=http/1.1"* ]] || fail "--tls-cert: $line"
  port=${base##*:}
  hs=https://localhost:$port
  # curl checks the chain against the test CA and the name localhost (pinned to 127.0.0.1).
  cs() { c --cacert "$certs/ca.pem" --resolve "localhost:$port:127.0.0.1" "$@"; }
  [ "$(cs -o /dev/null -w '%{http_code}' "$hs/")" = 200 ] || fail "https: GET / status"
  cs -o "$work/got.txt" "$hs/"
  printf hello | cmp - "$work/got.txt" || fail "https: GET / body is not 'hello'"
  connects=$(cs -o /dev/null -o /dev/null -w '%{num_connects} ' "$hs/" "$hs/")
  [ "$connects" = "1 0 " ] || fail "https keep-alive: connections opened per request: $connects"
  cs -o "$work/got.bin" "$hs/static/big.bin"
  cmp "$work/got.bin" "$work/www/big.bin" || fail "https: static file differs"
  cs -o "$work/got.txt" "$hs/static/sub/small.txt"
  cmp "$work/got.txt" "$work/www/sub/small.txt" || fail "https: static file in a subdirectory differs"
  len=$(cs -I "$hs/static/big.bin" | tr -d '\r' | sed -n 's/^Content-Length: //p')
  [ "$len" = $((3 * 1024 * 1024 + 17)) ] || fail "https: HEAD Content-Length: $len"
  [ "$(cs -o /dev/null -w '%{http_code}' "$hs/nothing")" = 404 ] || fail "https: unknown path not 404"
  [ "$(cs -o /dev/null -w '%{http_code}' "$hs/static/escape.txt")" = 404 ] || fail "https: symlink not 404"
  echo "http_server over HTTPS: curl --cacert: GET / body, keep-alive reuse, static files byte for byte, HEAD, 404"
  timeout 20 openssl s_client -connect "127.0.0.1:$port" -CAfile "$certs/ca.pem" -verify_hostname localhost \
    -alpn http/1.1 -servername localhost </dev/null >"$work/s_client.txt" 2>&1 ||
    fail "openssl s_client failed: $(cat "$work/s_client.txt")"
  grep -q "Verify return code: 0 (ok)" "$work/s_client.txt" ||
    fail "s_client: certificate not verified: $(grep -i verify "$work/s_client.txt")"
  grep -qE "^New, TLSv1\.3," "$work/s_client.txt" ||
    fail "s_client: not TLSv1.3: $(grep -E '^New|Protocol' "$work/s_client.txt")"
  grep -q "^ALPN protocol: http/1.1" "$work/s_client.txt" ||
    fail "s_client: ALPN not http/1.1: $(grep -i alpn "$work/s_client.txt")"
  echo "openssl s_client: $(grep -m1 '^New, ' "$work/s_client.txt"), ALPN http/1.1, Verify return code: 0 (ok)"
  # A client that never starts the handshake, and one that speaks plain HTTP, are closed
  # (--header-timeout 1 bounds the handshake); neither gets an HTTP answer.
  timeout 30 python3 - "$port" <<'EOF' || fail "https: silent or plain-text clients not closed"
import socket, sys, time
port = int(sys.argv[1])
for payload in [b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(payload)
    start, data = time.monotonic(), b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    took = time.monotonic() - start
    assert b"HTTP/1.1" not in data and took < 5, (payload, data, took)
    assert payload or took > 0.5, took  # the silent one waits for the handshake limit
print("https: a silent client is closed after the 1 s handshake limit, plain HTTP gets no answer")
EOF
  timeout 30 wrk -t1 -c20 -d2s "https://127.0.0.1:$port/" >"$work/wrk.txt" 2>&1 ||
    fail "wrk https failed: $(cat "$work/wrk.txt")"
  cat "$work/wrk.txt"
  requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  [ "${requests:-0}" -gt 0 ] || fail "wrk https: no requests completed"
  # "Socket errors: connect A, read B, write C, timeout D": A, B and C must be 0.
  errors=$(sed -n 's/.*connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\).*/\1 \2 \3/p' "$work/wrk.txt")
  [ -z "$errors" ] || [ "$errors" = "0 0 0" ] || fail "wrk https: socket errors (connect read write): $errors"
  if grep -q "Non-2xx" "$work/wrk.txt"; then fail "wrk https saw non-2xx responses"; fi
  echo "wrk over https: $requests requests, no connect/read/write errors, no non-2xx"
  kill -TERM "$http_pid"
  if ! timeout 10 tail --pid="$http_pid" -f /dev/null; then fail "https http_server did not stop within 10 s of SIGTERM"; fi
  wait "$http_pid" && rc=0 || rc=$?
  [ "$rc" = 0 ] || fail "https http_server exit status $rc"
  tail -1 "$work/https.log"

  # The TLS echo: bench_client verifies against the test CA (an IP SAN for 127.0.0.1).
  bport=$(free_port)
  "$bin/bench_server" "$bport" --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" >"$work/bs.log" 2>&1 &
  bs_pid=$!
  wait_line "$work/bs.log" "listening on .* tls$" "$bs_pid" >/dev/null
  timeout 30 "$bin/bench_client" -p "$bport" --tls --tls-ca "$certs/ca.pem" -c 4 -d 1 >"$work/bc.txt" 2>&1 ||
    fail "bench_client --tls: $(cat "$work/bc.txt")"
  kill -TERM "$bs_pid"
  wait "$bs_pid" && rc=0 || rc=$?
  [ "$rc" = 0 ] || fail "bench_server --tls-cert exit status $rc"
  echo "bench_server --tls-cert / bench_client --tls --tls-ca: $(grep 'Average QPS' "$work/bc.txt"), 0 errors"
fi

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
