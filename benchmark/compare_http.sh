#!/usr/bin/env bash
# compare_http.sh: wrk against examples/http_server and against nginx (one worker) serving
# the same 5-byte "hello" with keep-alive.
#
# usage: benchmark/compare_http.sh [--build-dir build/release] [--conns 100] [--duration 5]
#            [--rounds 3] [--server-cpu 0] [--client-cpu 1] [--backend auto]
#            [--https [--cipher TLS_AES_128_GCM_SHA256] [--group X25519]] [--close]
#
# --https: the same over TLS 1.3 (http_server --tls-cert/--tls-key against nginx's ssl
# listener), with one certificate for both (ECDSA P-256 with a throwaway CA made by
# scripts/lib/test_certs.sh in the temp directory). Both servers run with OPENSSL_CONF
# naming a file that pins the TLS 1.3 cipher suite (--cipher) and the key-exchange group
# (--group) for every SSL_CTX (nginx also gets ssl_conf_command Ciphersuites); each server
# is asked once with openssl s_client and the run stops if the two negotiate differently.
# Two kinds of run per server and round: keep-alive (as above: the per-request cost of
# the record layer) and handshakes (wrk -H "Connection: close": a new TCP connection and a
# full handshake per request, so requests/s is the handshake rate). Both servers keep
# their session-ticket defaults (on). --close adds the Connection: close run to plain HTTP
# too (a new TCP connection per request), to tell the cost of the handshake from that of
# accepting and closing.
#
# Both servers are single-threaded (http_server --threads 1; nginx worker_processes 1) and
# pinned to --server-cpu; wrk (-t1) is pinned to --client-cpu. Rounds alternate the servers
# (galay, nginx, galay, nginx, ...) so the machine's drift hits both. Per run: requests/s,
# wrk's socket errors and non-2xx count, and the server's CPU time per request (utime +
# stime from /proc/PID/stat of http_server, or of the nginx worker). The summary is the
# median of each and the ratio galay/nginx. nginx runs unprivileged from a temp directory.
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/../scripts/lib/options.sh"
opt_init compare_http

BUILD_DIR=build/release
CONNS=100
DURATION=5
ROUNDS=3
SERVER_CPU=0
CLIENT_CPU=1
BACKEND=auto
HTTPS=0
CLOSE=0
CIPHER=TLS_AES_128_GCM_SHA256
GROUP=X25519
die() { opt_die "$@"; }
parse_options "--conns=CONNS --duration=DURATION --rounds=ROUNDS --server-cpu=SERVER_CPU --client-cpu=CLIENT_CPU --backend=BACKEND --https:HTTPS=1 --close:CLOSE=1 --cipher=CIPHER --group=GROUP" "$@"
need_uint --conns "$CONNS" 1
need_uint --duration "$DURATION" 1
need_uint --rounds "$ROUNDS" 1
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/test_certs.sh
. scripts/lib/test_certs.sh
scripts/install-deps.sh wrk nginx-light
if ((HTTPS)); then
  scripts/install-deps.sh openssl
  command -v openssl >/dev/null || die "--https needs the openssl command"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $BUILD_DIR/bin/http_server ]] || die "build $BUILD_DIR/bin/http_server first (cmake --preset release && cmake --build build/release --target http_server)"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
SCHEME=http
if ((HTTPS)); then
  SCHEME=https
  make_test_certs "$work/certs" || die "openssl could not make the certificates: $(cat "$work/certs/err")"
  # Read by OpenSSL in both servers (and in wrk): every SSL_CTX gets this cipher suite and group.
  cat >"$work/openssl.cnf" <<EOF
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Ciphersuites = $CIPHER
Groups = $GROUP
EOF
  export OPENSSL_CONF=$work/openssl.cnf
  TLS_ARGS=(--tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key")
else
  TLS_ARGS=()
fi
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_galay() {  # sets PORT, SPID (the process doing the work)
  PORT=$(free_port)
  rm -f "$work/galay.log"  # else the wait below may see the previous run's line
  taskset -c "$SERVER_CPU" "$BUILD_DIR/bin/http_server" --port "$PORT" --threads 1 --backend "$BACKEND" \
    "${TLS_ARGS[@]}" >"$work/galay.log" 2>&1 &
  SPID=$!
  pids+=("$SPID")
  for _ in $(seq 100); do grep -qs listening "$work/galay.log" && return 0; sleep 0.05; done
  die "http_server did not start: $(cat "$work/galay.log")"
}
start_nginx() {
  PORT=$(free_port)
  mkdir -p "$work/nginx"
  local listen="listen 127.0.0.1:$PORT;"
  if ((HTTPS)); then
    listen="listen 127.0.0.1:$PORT ssl; ssl_certificate $work/certs/server.pem;
    ssl_certificate_key $work/certs/server.key; ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites $CIPHER;"
  fi
  cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    $listen
    location = / { default_type text/plain; return 200 "hello"; }
  }
}
EOF
  taskset -c "$SERVER_CPU" "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr" &
  local master=$!
  pids+=("$master")
  SPID=""
  for _ in $(seq 100); do
    SPID=$(pgrep -P "$master" | head -1 || true)
    [[ -n $SPID ]] && curl -sk -o /dev/null "$SCHEME://127.0.0.1:$PORT/" && return 0
    sleep 0.05
  done
  die "nginx did not start: $(cat "$work/nginx/stderr" "$work/nginx/error.log" 2>/dev/null)"
}
stop_servers() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

# tls_summary SERVER: "TLSv1.3 CIPHER GROUP" as openssl s_client sees the running server
# (verified against the test CA, ALPN http/1.1 offered).
declare -A NEGOTIATED
tls_summary() {
  local out
  out=$(timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$work/certs/ca.pem" -servername localhost \
    -verify_hostname localhost -alpn http/1.1 </dev/null 2>&1) || die "$1: openssl s_client failed: $out"
  grep -q "Verify return code: 0 (ok)" <<<"$out" || die "$1: certificate not verified: $(grep -i verify <<<"$out")"
  NEGOTIATED[$1]="$(sed -n 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)/\1 \2/p' <<<"$out" | head -1)"
  NEGOTIATED[$1]+=" $(sed -n 's/^Server Temp Key: \([^,]*\).*/\1/p' <<<"$out" | head -1)"
  NEGOTIATED[$1]+=" alpn=$(sed -n 's/^ALPN protocol: //p' <<<"$out" | head -1)"
}

declare -A RPS CPU
run_one() {  # $1 = galay|nginx, $2 = round, $3 = keepalive|handshake
  "start_$1"
  curl -sk -o /dev/null "$SCHEME://127.0.0.1:$PORT/" || die "$1 does not answer"
  if ((HTTPS)) && [[ -z ${NEGOTIATED[$1]:-} ]]; then tls_summary "$1"; fi
  local c0 c1 out rps reqs errors header=()
  [[ $3 != keepalive ]] && header=(-H "Connection: close")
  c0=$(ticks "$SPID")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "${header[@]}" "$SCHEME://127.0.0.1:$PORT/" 2>&1)
  c1=$(ticks "$SPID")
  stop_servers
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(grep -E "Socket errors|Non-2xx" <<<"$out" | tr '\n' ' ' || true)
  local cpu_us
  cpu_us=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v r="$reqs" 'BEGIN{printf "%.2f", (r > 0) ? (b-a)/hz*1e6/r : 0}')
  echo "$1 $SCHEME $3 round=$2 conns=$CONNS req/s=$rps server_cpu_us_per_req=$cpu_us ${errors:-errors=0}" >&2
  RPS[$1 $3]+="$rps "
  CPU[$1 $3]+="$cpu_us "
}
KINDS=(keepalive)
if ((HTTPS)); then KINDS+=(handshake); elif ((CLOSE)); then KINDS+=(close); fi
for ((r = 1; r <= ROUNDS; r++)); do
  for kind in "${KINDS[@]}"; do run_one galay "$r" "$kind"; run_one nginx "$r" "$kind"; done
done
if ((HTTPS)); then
  echo "negotiated: galay ${NEGOTIATED[galay]}; nginx ${NEGOTIATED[nginx]}"
  [[ ${NEGOTIATED[galay]} == "${NEGOTIATED[nginx]}" ]] || die "the servers negotiated different TLS parameters"
fi

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if(NR%2){print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
for kind in "${KINDS[@]}"; do
  g=$(median "${RPS[galay $kind]}"); n=$(median "${RPS[nginx $kind]}")
  gc=$(median "${CPU[galay $kind]}"); nc=$(median "${CPU[nginx $kind]}")
  printf '\n%s %s (median of %d):\n%-8s %12s %18s\n' "$SCHEME" "$kind" "$ROUNDS" server "req/s" "CPU us/request"
  printf '%-8s %12.0f %18s\n' galay "$g" "$gc" nginx "$n" "$nc"
  awk -v g="$g" -v n="$n" -v gc="$gc" -v nc="$nc" \
    'BEGIN{printf "ratio galay/nginx: req/s %.2f, CPU per request %.2f\n", g/n, gc/nc}'
done
