#!/usr/bin/env bash
# scale_echo.sh: how the echo server scales with event-loop threads (bench_server -t N).
#
# usage: benchmark/scale_echo.sh [--build-dir build/release] [--threads "1 2 4 8"]
#            [--backend io_uring] [--recv pooled] [--conns 1000] [--size 256] [--duration 5]
#            [--rounds 2] [--server-cpus LIST] [--client-cpus LIST] [--client-threads M]
#            [--json FILE]
#
# For each N in --threads (interleaved over --rounds so drift hits every N alike), starts
# `bench_server -t N --pin` under `taskset -c <first N CPUs of --server-cpus>` and runs
# `bench_client -t M --pin --json` under `taskset -c <--client-cpus>`. Defaults: the server
# gets CPUs 0..N-1; the client gets every other CPU (or, if none is left, all CPUs: then
# the client competes with the server and the table says "shared").
#
# Per run: QPS; the server's CPU time (utime+stime of all its threads from /proc/PID/stat,
# before vs after the client) per message; and server cores busy = CPU time / wall time.
# The scaling figure is QPS(N) / QPS(1); the target on a machine with enough cores for
# server and client is >= 0.9*N. When the client saturates first, QPS stops growing while
# server cores busy stays below N: the table shows both so the limit is visible.
# Output: a table (medians over rounds) and, with --json, one JSON object per run.
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/../scripts/lib/options.sh"
opt_init scale_echo

BUILD_DIR=build/release
THREADS="1 2"
BACKEND=io_uring
RECV=pooled
CONNS=1000
SIZE=256
DURATION=5
ROUNDS=2
SERVER_CPUS=""
CLIENT_CPUS=""
CLIENT_THREADS=""
JSON=""

die() { opt_die "$@"; }
parse_options "--threads=THREADS --backend=BACKEND --recv=RECV --conns=CONNS --size=SIZE --duration=DURATION --rounds=ROUNDS --server-cpus=SERVER_CPUS --client-cpus=CLIENT_CPUS --client-threads=CLIENT_THREADS --json=JSON" "$@"
for n in $THREADS; do need_uint --threads "$n" 1; done
need_uint --conns "$CONNS" 1
need_uint --size "$SIZE" 1
need_uint --duration "$DURATION" 1
need_uint --rounds "$ROUNDS" 1

BIN=$BUILD_DIR/bin
[[ -x $BIN/bench_server && -x $BIN/bench_client ]] || die "build $BIN/bench_server and bench_client first (cmake --preset release && cmake --build build/release)"
command -v taskset >/dev/null || die "taskset (util-linux) is needed"

# CPUs this process may use, as a list.
mapfile -t ALL_CPUS < <(python3 -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
expand() { python3 -c 'import sys
out=[]
for part in sys.argv[1].split(","):
    if "-" in part:
        a,b=part.split("-"); out+=range(int(a),int(b)+1)
    elif part: out.append(int(part))
print(" ".join(map(str,out)))' "$1"; }
if [[ -n $SERVER_CPUS ]]; then read -r -a SRV <<<"$(expand "$SERVER_CPUS")"; else SRV=("${ALL_CPUS[@]}"); fi
HZ=$(getconf CLK_TCK)
PORT=$((20000 + RANDOM % 20000))
[[ -n $JSON ]] && : >"$JSON"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A QPS CPUMSG BUSY SHARED
run_one() {  # $1 = N, $2 = round
  local n=$1 round=$2
  ((n <= ${#SRV[@]})) || { echo "scale_echo: skipping N=$n: only ${#SRV[@]} server CPUs" >&2; return; }
  local srv_list cli_list shared=no
  srv_list=$(IFS=,; echo "${SRV[*]:0:n}")
  if [[ -n $CLIENT_CPUS ]]; then
    cli_list=$CLIENT_CPUS
  else
    local rest=()
    for c in "${ALL_CPUS[@]}"; do [[ ",$srv_list," == *",$c,"* ]] || rest+=("$c"); done
    if ((${#rest[@]} == 0)); then rest=("${ALL_CPUS[@]}"); shared=yes; fi
    cli_list=$(IFS=,; echo "${rest[*]}")
  fi
  local m=${CLIENT_THREADS:-$(awk -F, '{print NF}' <<<"$cli_list")}
  PORT=$((PORT + 1))
  taskset -c "$srv_list" "$BIN/bench_server" "$PORT" -t "$n" --pin --backend "$BACKEND" --recv "$RECV" >/dev/null &
  local spid=$!
  for _ in $(seq 50); do
    ss -ltn "sport = :$PORT" 2>/dev/null | grep -q LISTEN && break
    sleep 0.1
  done
  local t0 c0 out t1 c1
  c0=$(cpu_ticks "$spid")
  t0=$(date +%s.%N)
  out=$(taskset -c "$cli_list" "$BIN/bench_client" -p "$PORT" -c "$CONNS" -s "$SIZE" -d "$DURATION" -t "$m" --pin --json || true)
  c1=$(cpu_ticks "$spid")
  t1=$(date +%s.%N)
  kill -INT "$spid"
  wait "$spid" || true
  local qps reqs errors
  qps=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["qps"])' "$out")
  reqs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["total_requests"])' "$out")
  errors=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$out")
  local cpu_s busy cpumsg
  cpu_s=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN{print (b-a)/hz}')
  busy=$(awk -v c="$cpu_s" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", c/(b-a)}')
  cpumsg=$(awk -v c="$cpu_s" -v r="$reqs" 'BEGIN{printf "%.2f", (r > 0) ? c*1e6/r : 0}')
  echo "N=$n round=$round server_cpus=$srv_list client_cpus=$cli_list client_threads=$m qps=$qps errors=$errors server_cpu_us_per_msg=$cpumsg server_cores_busy=$busy" >&2
  QPS[$n]+="$qps "
  CPUMSG[$n]+="$cpumsg "
  BUSY[$n]+="$busy "
  SHARED[$n]=$shared
  [[ -n $JSON ]] && printf '{"threads":%s,"round":%s,"backend":"%s","recv":"%s","connections":%s,"size":%s,"server_cpus":"%s","client_cpus":"%s","client_threads":%s,"shared_cpus":"%s","qps":%s,"errors":%s,"server_cpu_us_per_msg":%s,"server_cores_busy":%s}\n' \
    "$n" "$round" "$BACKEND" "$RECV" "$CONNS" "$SIZE" "$srv_list" "$cli_list" "$m" "$shared" "$qps" "$errors" "$cpumsg" "$busy" >>"$JSON"
  return 0
}

for ((r = 1; r <= ROUNDS; r++)); do
  for n in $THREADS; do run_one "$n" "$r"; done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if(NR==0){print 0} else if(NR%2){print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'; }
first=""
printf '\n%-4s %12s %9s %14s %12s %s\n' N QPS "x N=1" "CPU us/msg" "cores busy" "client CPUs"
for n in $THREADS; do
  [[ -n ${QPS[$n]:-} ]] || continue
  q=$(median "${QPS[$n]}")
  [[ -z $first ]] && first=$q
  printf '%-4s %12.0f %9.2f %14s %12s %s\n' "$n" "$q" "$(awk -v a="$q" -v b="$first" 'BEGIN{print a/b}')" \
    "$(median "${CPUMSG[$n]}")" "$(median "${BUSY[$n]}")" "$([[ ${SHARED[$n]} == yes ]] && echo "shared with server" || echo separate)"
done
