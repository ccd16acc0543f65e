#!/usr/bin/env bash
# compare_http.sh: wrk against examples/http_server and against nginx (one worker) serving
# the same 5-byte "hello" with keep-alive.
#
# usage: benchmark/compare_http.sh [--build-dir build/release] [--conns 100] [--duration 5]
#            [--rounds 3] [--server-cpu 0] [--client-cpu 1] [--backend auto]
#
# Both servers are single-threaded (http_server --threads 1; nginx worker_processes 1) and
# pinned to --server-cpu; wrk (-t1) is pinned to --client-cpu. Rounds alternate the servers
# (galay, nginx, galay, nginx, ...) so the machine's drift hits both. Per run: requests/s,
# wrk's socket errors and non-2xx count, and the server's CPU time per request (utime +
# stime from /proc/PID/stat of http_server, or of the nginx worker). The summary is the
# median of each and the ratio galay/nginx. nginx runs unprivileged from a temp directory.
set -euo pipefail

BUILD_DIR=build/release
CONNS=100
DURATION=5
ROUNDS=3
SERVER_CPU=0
CLIENT_CPU=1
BACKEND=auto
die() { echo "compare_http: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) BUILD_DIR=${2:?}; shift 2 ;;
    --conns) CONNS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --server-cpu) SERVER_CPU=${2:?}; shift 2 ;;
    --client-cpu) CLIENT_CPU=${2:?}; shift 2 ;;
    --backend) BACKEND=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
cd "$(dirname "$0")/.."
scripts/install-deps.sh wrk nginx-light
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $BUILD_DIR/bin/http_server ]] || die "build $BUILD_DIR/bin/http_server first (cmake --preset release && cmake --build build/release --target http_server)"

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_galay() {  # sets PORT, SPID (the process doing the work)
  PORT=$(free_port)
  taskset -c "$SERVER_CPU" "$BUILD_DIR/bin/http_server" --port "$PORT" --threads 1 --backend "$BACKEND" >"$work/galay.log" 2>&1 &
  SPID=$!
  pids+=("$SPID")
  for _ in $(seq 100); do grep -q listening "$work/galay.log" && return 0; sleep 0.05; done
  die "http_server did not start: $(cat "$work/galay.log")"
}
start_nginx() {
  PORT=$(free_port)
  mkdir -p "$work/nginx"
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
    listen 127.0.0.1:$PORT;
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
    [[ -n $SPID ]] && curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
    sleep 0.05
  done
  die "nginx did not start: $(cat "$work/nginx/stderr" "$work/nginx/error.log" 2>/dev/null)"
}
stop_servers() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

declare -A RPS CPU
run_one() {  # $1 = galay|nginx
  "start_$1"
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" || die "$1 does not answer"
  local c0 c1 out rps reqs errors
  c0=$(ticks "$SPID")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/" 2>&1)
  c1=$(ticks "$SPID")
  stop_servers
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(grep -E "Socket errors|Non-2xx" <<<"$out" | tr '\n' ' ' || true)
  local cpu_us
  cpu_us=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v r="$reqs" 'BEGIN{printf "%.2f", (r > 0) ? (b-a)/hz*1e6/r : 0}')
  echo "$1 round=$2 conns=$CONNS req/s=$rps server_cpu_us_per_req=$cpu_us ${errors:-errors=0}" >&2
  RPS[$1]+="$rps "
  CPU[$1]+="$cpu_us "
}
for ((r = 1; r <= ROUNDS; r++)); do run_one galay "$r"; run_one nginx "$r"; done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if(NR%2){print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
g=$(median "${RPS[galay]}"); n=$(median "${RPS[nginx]}")
gc=$(median "${CPU[galay]}"); nc=$(median "${CPU[nginx]}")
printf '\n%-8s %12s %18s\n' server "req/s" "CPU us/request"
printf '%-8s %12.0f %18s\n' galay "$g" "$gc" nginx "$n" "$nc"
awk -v g="$g" -v n="$n" -v gc="$gc" -v nc="$nc" 'BEGIN{printf "ratio galay/nginx: req/s %.2f, CPU per request %.2f\n", g/n, gc/nc}'
