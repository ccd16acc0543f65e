#!/usr/bin/env bash
# compare_tls_echo.sh: the per-message cost of TLS on the echo benchmark. bench_server
# plain and with --tls-cert/--tls-key (one event loop, pinned to --server-cpu) against
# bench_client plain and with --tls --tls-ca (pinned to --client-cpu), rounds alternating
# plain, tls, plain, tls... Per run: messages/s, latency p50/p99, errors, and the server's
# CPU time per message (utime + stime from /proc/PID/stat). The certificate (ECDSA P-256,
# a throwaway CA) is made in a temp directory by scripts/lib/test_certs.sh.
#
# usage: benchmark/compare_tls_echo.sh [--build-dir build/release] [--conns 100] [--size 256]
#            [--duration 4] [--rounds 2] [--server-cpu 0] [--client-cpu 1]
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/../scripts/lib/options.sh"
opt_init compare_tls_echo

BUILD_DIR=build/release
CONNS=100
SIZE=256
DURATION=4
ROUNDS=2
SERVER_CPU=0
CLIENT_CPU=1
parse_options "--conns=CONNS --size=SIZE --duration=DURATION --rounds=ROUNDS --server-cpu=SERVER_CPU --client-cpu=CLIENT_CPU" "$@"
need_uint --conns "$CONNS" 1
need_uint --size "$SIZE" 1
need_uint --duration "$DURATION" 1
need_uint --rounds "$ROUNDS" 1
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/test_certs.sh
. scripts/lib/test_certs.sh
command -v openssl >/dev/null || opt_die "needs the openssl command (scripts/install-deps.sh openssl)"
bin=$BUILD_DIR/bin
[[ -x $bin/bench_server && -x $bin/bench_client ]] ||
  opt_die "build $bin/bench_server and bench_client first (cmake --build $BUILD_DIR --target bench_server bench_client)"

work=$(mktemp -d)
spid=""
cleanup() { [[ -z $spid ]] || kill -9 "$spid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
make_test_certs "$work" || opt_die "openssl could not make the certificates: $(cat "$work/err")"
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for ((r = 1; r <= ROUNDS; r++)); do
  for mode in plain tls; do
    server_args=() client_args=()
    if [[ $mode == tls ]]; then
      server_args=(--tls-cert "$work/server.pem" --tls-key "$work/server.key")
      client_args=(--tls --tls-ca "$work/ca.pem")
    fi
    port=$(free_port)
    rm -f "$work/server.log"  # else the wait below may see the previous run's line
    taskset -c "$SERVER_CPU" "$bin/bench_server" "$port" "${server_args[@]}" >"$work/server.log" 2>&1 &
    spid=$!
    for _ in $(seq 200); do grep -qs listening "$work/server.log" && break; sleep 0.05; done  # 10 s
    grep -qs listening "$work/server.log" || opt_die "bench_server did not start within 10 s: $(cat "$work/server.log")"
    c0=$(ticks "$spid")
    out=$(taskset -c "$CLIENT_CPU" "$bin/bench_client" -p "$port" -c "$CONNS" -s "$SIZE" -d "$DURATION" \
      "${client_args[@]}" --json) || true
    c1=$(ticks "$spid")
    kill -TERM "$spid"
    wait "$spid" || true
    spid=""
    python3 - "$out" "$c0" "$c1" "$HZ" "$mode" "$r" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
cpu_s = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
n = j["total_requests"]
print(f"{sys.argv[5]:5} round={sys.argv[6]} size={j['size']} conns={j['connections']} msg/s={j['qps']:.0f}"
      f" p50={j['p50_us']:.0f}us p99={j['p99_us']:.0f}us errors={j['errors']}"
      f" server_cpu_us_per_msg={cpu_s * 1e6 / n if n else 0:.2f}")
PY
  done
done
