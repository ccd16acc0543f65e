#!/usr/bin/env bash
# compare_echo.sh: A/B echo benchmark of galay-kernel's bench_server against the
# hand-written C baselines, driven by bench_client.
#
# usage: benchmark/compare_echo.sh [--build-dir build/release] [--duration 5]
#            [--conns "100 500 1000"] [--size 256] [--rounds 2]
#            [--servers "name:command,name:command,..."] [--client-backend auto]
#            [--warmup 0] [--out FILE] [--memory] [--timeouts]
#
# --servers is a comma-separated list of name:command pairs; the command's first word is
# looked up in <build-dir>/bin unless it is a path, and the port is passed as its first
# argument (every server here takes `prog [port] ...`). The default compares galay on epoll
# with the C epoll baseline, plus galay on io_uring with the liburing baseline when
# `bench_server --backend io_uring` starts on this machine.
#
# For every connection count and round, the servers run in turn (A,B,A,B... so slow drift
# hits all of them): the server is pinned to CPU 0, the client (`bench_client --json`) to
# CPU 1. Measured per run: client QPS and errors; server CPU time (utime+stime from
# /proc/PID/stat, before vs after the client run, so it includes connection set-up and
# teardown) per completed message; and, when `perf stat` may trace the server, syscalls per
# message (raw_syscalls:sys_enter over the `--duration` seconds that follow the client's
# start; the client's connection phase is included, the final teardown mostly not).
#
# The table shows medians over rounds (errors: summed) and the QPS ratio against the
# baseline of the same family (a server whose name contains "baseline"; else the first one
# listed): galay-epoll vs epoll-baseline, galay-io_uring vs uring-baseline.
#
# --timeouts: the default servers are galay on each backend without and with
# `--timeout 30` (a 30 s limit on every receive and send, which never fires), beside the C
# baselines: what arming and disarming a deadline per operation costs.
#
# --memory: what an open connection costs each server instead of its speed (default conns
# "10000"). Per server, connection count and round, two fresh server processes: each gets a
# warm-up (100 connections echoing for 1 s, so the shared receive pool and the allocator's
# first arenas are already touched and not counted), then its RSS (VmRSS) is read; then
# `bench_client --messages M` opens the connections and holds them (M = 0: idle; M = 1: one
# echo each, then idle), and once the server holds that many descriptors its RSS is read
# again. The table shows (RSS with the connections - RSS before) / connections in bytes,
# medians over rounds. The script raises its own descriptor limit to the hard limit and
# refuses connection counts that do not fit.
# Exit status: 0 if every run completed with 0 errors, 1 otherwise, 2 on usage errors.
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/../scripts/lib/options.sh"
opt_init compare_echo

BUILD_DIR=build/release
DURATION=5
CONNS=""
SIZE=256
ROUNDS=2
SERVERS=""
CLIENT_BACKEND=auto
WARMUP=0
OUT=""
MEMORY=0
TIMEOUTS=0

die() { opt_die "$@"; }

parse_options "--duration=DURATION --conns=CONNS --size=SIZE --rounds=ROUNDS --servers=SERVERS --client-backend=CLIENT_BACKEND --warmup=WARMUP --out=OUT --memory:MEMORY=1 --timeouts:TIMEOUTS=1" "$@"

if [[ -z $CONNS ]]; then
  CONNS="100 500 1000"
  [[ $MEMORY == 1 ]] && CONNS=10000
fi
need_uint --duration "$DURATION" 1
need_uint --rounds "$ROUNDS" 1
need_uint --size "$SIZE" 1
for c in $CONNS; do need_uint --conns "$c" 1; done
command -v python3 >/dev/null || die "python3 is required"

BIN="$BUILD_DIR/bin"
CLIENT="$BIN/bench_client"
[[ -x $CLIENT ]] || die "missing $CLIENT (build first: cmake --build $BUILD_DIR)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/compare_echo.XXXXXX")
SERVER_PID=""
PERF_PID=""

STOP_RC=0
stop_pid() {  # stop_pid PID: SIGTERM, then SIGKILL after 3 s; exit status in STOP_RC
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  STOP_RC=0
  wait "$pid" 2>/dev/null || STOP_RC=$?
}

# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
  if [[ -n $PERF_PID ]]; then kill "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; fi
  if [[ -n $SERVER_PID ]]; then stop_pid "$SERVER_PID"; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# CPU pinning (server on CPU 0, client on CPU 1) when taskset and two CPUs exist.
PIN_SERVER=()
PIN_CLIENT=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
  PIN_SERVER=(taskset -c 0)
  PIN_CLIENT=(taskset -c 1)
else
  echo "compare_echo: warning: no taskset or fewer than 2 CPUs, running unpinned" >&2
fi

CLK_TCK=$(getconf CLK_TCK)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

ctx_switches() {  # voluntary + involuntary context switches of PID (all its threads)
  awk '/^(voluntary|nonvoluntary)_ctxt_switches/ { n += $2 } END { print n + 0 }' "/proc/$1/status" 2>/dev/null || echo -1
}

cpu_ticks() {  # utime+stime of PID in clock ticks (fields after the ")" of comm)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo -1; return; }
  stat=${stat##*) }
  local -a f
  read -r -a f <<<"$stat"
  # f[0] is field 3 (state); utime is field 14, stime field 15.
  echo $((f[11] + f[12]))
}

resolve_cmd() {  # resolve_cmd "prog args...": print the program path or fail
  local prog=${1%% *}
  if [[ $prog == */* ]]; then
    echo "$prog"
  else
    echo "$BIN/$prog"
  fi
}

# start_server NAME "CMD": start it on a free port, wait until it accepts.
# Sets SERVER_PID and SERVER_PORT; returns 1 if it did not come up.
start_server() {
  local name=$1 cmd=$2 prog rest port i
  prog=$(resolve_cmd "$cmd")
  rest=""
  [[ $cmd == *" "* ]] && rest=${cmd#* }
  for ((i = 0; i < 5; i++)); do
    port=$(free_port)
    # shellcheck disable=SC2086  # $rest is deliberately split into arguments
    "${PIN_SERVER[@]}" "$prog" "$port" $rest >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    local t
    for ((t = 0; t < 100; t++)); do
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        SERVER_PORT=$port
        return 0
      fi
      sleep 0.05
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      stop_pid "$SERVER_PID"
      SERVER_PID=""
      echo "compare_echo: $name did not accept connections on port $port within 5 s" >&2
      return 1
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    if grep -qi "address already in use" "$TMP/server.err" 2>/dev/null; then continue; fi
    echo "compare_echo: $name exited at start-up:" >&2
    sed 's/^/  /' "$TMP/server.err" >&2
    return 1
  done
  echo "compare_echo: $name: no free port found" >&2
  return 1
}

# ---- which servers ----
if [[ -z $SERVERS ]]; then
  SERVERS="galay-epoll:bench_server --backend epoll,epoll-baseline:baseline_epoll_echo"
  [[ $TIMEOUTS == 1 ]] && SERVERS+=",galay-epoll-timeouts:bench_server --backend epoll --timeout 30"
  [[ -x $BIN/bench_server ]] || die "missing $BIN/bench_server"
  if start_server galay-io_uring-probe "bench_server --backend io_uring" 2>"$TMP/probe.err"; then
    stop_pid "$SERVER_PID"
    SERVER_PID=""
    SERVERS+=",galay-io_uring:bench_server --backend io_uring,uring-baseline:baseline_uring_echo"
    [[ $TIMEOUTS == 1 ]] && SERVERS+=",galay-io_uring-timeouts:bench_server --backend io_uring --timeout 30"
  else
    echo "compare_echo: io_uring servers skipped: bench_server --backend io_uring does not start here" >&2
    sed 's/^/  /' "$TMP/probe.err" >&2
  fi
fi

NAMES=()
CMDS=()
IFS=',' read -r -a entries <<<"$SERVERS"
for e in "${entries[@]}"; do
  e=${e#"${e%%[![:space:]]*}"}
  [[ -z $e ]] && continue
  [[ $e == *:* ]] || die "bad --servers entry '$e' (want name:command)"
  name=${e%%:*}
  cmd=${e#*:}
  [[ -n $name && -n $cmd ]] || die "bad --servers entry '$e'"
  prog=$(resolve_cmd "$cmd")
  [[ -x $prog ]] || die "server '$name': missing executable $prog (build first: cmake --build $BUILD_DIR)"
  NAMES+=("$name")
  CMDS+=("$cmd")
done
[[ ${#NAMES[@]} -ge 1 ]] || die "no servers to run"

# ---- --memory: bytes of server RSS per open connection ----
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo -1; }
open_fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# memory_run NAME CMD CONNS MESSAGES: one fresh server; prints bytes per connection, or
# nothing if the run failed.
memory_run() {
  local name=$1 cmd=$2 conns=$3 messages=$4 rss0 fds0 rss1 t client_pid rc=0
  start_server "$name" "$cmd" || return 1
  "${PIN_CLIENT[@]}" "$CLIENT" -h 127.0.0.1 -p "$SERVER_PORT" -c 100 -s "$SIZE" -d 1 \
    --backend "$CLIENT_BACKEND" >/dev/null 2>"$TMP/client.err" || rc=$?
  sleep 0.3
  rss0=$(rss_kib "$SERVER_PID")
  fds0=$(open_fds "$SERVER_PID")
  "${PIN_CLIENT[@]}" "$CLIENT" -h 127.0.0.1 -p "$SERVER_PORT" -c "$conns" -s "$SIZE" -d "$DURATION" \
    --messages "$messages" --backend "$CLIENT_BACKEND" >"$TMP/client.out" 2>"$TMP/client.err" &
  client_pid=$!
  rss1=""
  for ((t = 0; t < 400; t++)); do  # up to 20 s for the connections to open
    if (($(open_fds "$SERVER_PID") >= fds0 + conns)); then
      sleep 0.5  # let the last connections' first receive (and echo) settle
      rss1=$(rss_kib "$SERVER_PID")
      break
    fi
    kill -0 "$client_pid" 2>/dev/null || break
    sleep 0.05
  done
  wait "$client_pid" || rc=$?
  stop_pid "$SERVER_PID"
  SERVER_PID=""
  if [[ -z $rss1 || $rc != 0 ]]; then
    echo "compare_echo: $name c=$conns --messages $messages: $([[ -z $rss1 ]] && echo "the server never held all connections" || echo "client exit $rc")" >&2
    head -n 5 "$TMP/client.err" | sed 's/^/  /' >&2
    return 1
  fi
  echo $(((rss1 - rss0) * 1024 / conns))
}

FAILED=0
if [[ $MEMORY == 1 ]]; then
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || ulimit -n "$hard"
  for conns in $CONNS; do
    if [[ $hard != unlimited ]] && ((conns + 200 > hard)); then
      die "--conns $conns: needs about $((conns + 200)) descriptors, the hard limit here is $hard (raise it as root: ulimit -Hn)"
    fi
  done
  echo "compare_echo: memory per connection: servers: ${NAMES[*]}; conns: $CONNS; $ROUNDS rounds" >&2
  : >"$TMP/memory.tsv"
  for conns in $CONNS; do
    for ((round = 1; round <= ROUNDS; round++)); do
      for idx in "${!NAMES[@]}"; do
        for messages in 0 1; do
          if b=$(memory_run "${NAMES[$idx]}" "${CMDS[$idx]}" "$conns" "$messages"); then
            printf '%s\t%s\t%s\t%s\n' "$conns" "${NAMES[$idx]}" "$messages" "$b" >>"$TMP/memory.tsv"
            echo "  c=$conns round $round ${NAMES[$idx]} messages=$messages: $b B/conn" >&2
          else
            FAILED=1
          fi
        done
      done
    done
  done
  [[ -n $OUT ]] && cp "$TMP/memory.tsv" "$OUT"
  python3 - "$TMP/memory.tsv" "${NAMES[@]}" <<'PY'
import statistics, sys
path, names = sys.argv[1], sys.argv[2:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
print("%6s  %-22s %16s %22s" % ("conns", "server", "idle B/conn", "after 1 echo B/conn"))
for c in sorted({int(r[0]) for r in rows}):
    for n in names:
        cell = []
        for m in ("0", "1"):
            v = [int(r[3]) for r in rows if int(r[0]) == c and r[1] == n and r[2] == m]
            cell.append("%d" % statistics.median(v) if v else "FAILED")
        print("%6d  %-22s %16s %22s" % (c, n, cell[0], cell[1]))
PY
  exit "$FAILED"
fi

# ---- can perf count the server's syscalls? ----
PERF_OK=0
if command -v perf >/dev/null; then
  if perf stat -x, -e raw_syscalls:sys_enter -o "$TMP/perf.test" -- true >/dev/null 2>&1 &&
     grep -Eq '^[0-9]+,' "$TMP/perf.test"; then
    PERF_OK=1
  fi
fi
[[ $PERF_OK == 1 ]] || echo "compare_echo: perf cannot count raw_syscalls:sys_enter here; syscalls/msg column skipped" >&2

echo "compare_echo: servers: ${NAMES[*]}; conns: $CONNS; size $SIZE; ${DURATION}s x $ROUNDS rounds" >&2
RESULTS="$TMP/results.jsonl"
: >"$RESULTS"
FAILED=0

for conns in $CONNS; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for idx in "${!NAMES[@]}"; do
      name=${NAMES[$idx]}
      cmd=${CMDS[$idx]}
      if ! start_server "$name" "$cmd"; then
        FAILED=1
        python3 -c 'import json,sys; print(json.dumps({"server":sys.argv[1],"conns":int(sys.argv[2]),"round":int(sys.argv[3]),"failed":"server did not start"}))' \
          "$name" "$conns" "$round" >>"$RESULTS"
        continue
      fi
      port=$SERVER_PORT
      before=$(cpu_ticks "$SERVER_PID")
      csw_before=$(ctx_switches "$SERVER_PID")
      if [[ $PERF_OK == 1 ]]; then
        perf stat -x, -e raw_syscalls:sys_enter -o "$TMP/perf.out" -p "$SERVER_PID" -- sleep "$DURATION" \
          >/dev/null 2>&1 &
        PERF_PID=$!
      fi
      client_rc=0
      "${PIN_CLIENT[@]}" "$CLIENT" --json -h 127.0.0.1 -p "$port" -c "$conns" -s "$SIZE" -d "$DURATION" \
        --warmup "$WARMUP" --backend "$CLIENT_BACKEND" >"$TMP/client.json" 2>"$TMP/client.err" || client_rc=$?
      after=$(cpu_ticks "$SERVER_PID")
      csw_after=$(ctx_switches "$SERVER_PID")
      syscalls=""
      if [[ -n $PERF_PID ]]; then
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=""
        syscalls=$(awk -F, '/raw_syscalls:sys_enter/ { if ($1 ~ /^[0-9]+$/) print $1 }' "$TMP/perf.out" 2>/dev/null || true)
      fi
      stop_pid "$SERVER_PID"
      server_rc=$STOP_RC
      SERVER_PID=""
      if [[ -s $TMP/client.err ]]; then
        echo "compare_echo: $name c=$conns round $round: client stderr:" >&2
        head -n 8 "$TMP/client.err" | sed 's/^/  /' >&2
      fi
      python3 - "$TMP/client.json" "$name" "$cmd" "$conns" "$round" "$before" "$after" "$CLK_TCK" \
        "${syscalls:-}" "$client_rc" "$server_rc" "$csw_before" "$csw_after" >>"$RESULTS" <<'PY' || FAILED=1
import json, sys
path, name, cmd, conns, rnd, before, after, tck, sysc, crc, src, csw0, csw1 = sys.argv[1:]
rec = {"server": name, "command": cmd, "conns": int(conns), "round": int(rnd),
       "client_rc": int(crc), "server_rc": int(src)}
try:
    with open(path) as f:
        lines = [l for l in f if l.strip().startswith("{")]
    rec.update(json.loads(lines[-1]))
except Exception as e:  # client crashed or printed nothing
    rec["failed"] = "no JSON from bench_client (rc %s): %s" % (crc, e)
    print(json.dumps(rec))
    sys.exit(1)
before, after, tck = int(before), int(after), int(tck)
n = rec.get("total_requests", 0)
if before >= 0 and after >= 0:
    rec["server_cpu_s"] = (after - before) / tck
    rec["cpu_us_per_msg"] = rec["server_cpu_s"] * 1e6 / n if n else None
if int(csw0) >= 0 and int(csw1) >= 0 and n:
    rec["ctx_switches_per_msg"] = (int(csw1) - int(csw0)) / n
if sysc:
    rec["server_syscalls"] = int(sysc)
    rec["syscalls_per_msg"] = int(sysc) / n if n else None
print(json.dumps(rec))
sys.exit(0 if rec.get("errors", 1) == 0 and int(crc) == 0 else 1)
PY
      tail -n 1 "$RESULTS" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
cpu = r.get("cpu_us_per_msg"); sc = r.get("syscalls_per_msg")
print("  c=%-5d round %d  %-16s qps=%10.0f errors=%d cpu=%s us/msg syscalls=%s /msg" % (
    r["conns"], r["round"], r["server"], r.get("qps", 0), r.get("errors", -1),
    "%.2f" % cpu if cpu is not None else "-", "%.2f" % sc if sc is not None else "-"))' >&2
    done
  done
done

[[ -n $OUT ]] && cp "$RESULTS" "$OUT"

python3 - "$RESULTS" "$PERF_OK" "${NAMES[@]}" <<'PY'
import json, statistics, sys
path, perf_ok, names = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
rows = [json.loads(l) for l in open(path) if l.strip()]

def family(n):
    n = n.lower()
    if "uring" in n: return "io_uring"
    if "epoll" in n: return "epoll"
    if "kqueue" in n: return "kqueue"
    return "other"

baseline = {}
for n in names:
    f = family(n)
    if "baseline" in n.lower() and f not in baseline: baseline[f] = n
for n in names:
    baseline.setdefault(family(n), n)

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

conns = sorted({r["conns"] for r in rows})
hdr = ["conns", "server", "QPS(median)", "errors", "CPU us/msg", "ctxsw/msg", "syscalls/msg", "vs baseline"]
if not perf_ok: hdr.remove("syscalls/msg")
table = []
for c in conns:
    qps_of = {}
    for n in names:
        rs = [r for r in rows if r["conns"] == c and r["server"] == n]
        ok = [r for r in rs if "failed" not in r]
        qps_of[n] = med([r.get("qps") for r in ok])
    for n in names:
        rs = [r for r in rows if r["conns"] == c and r["server"] == n]
        ok = [r for r in rs if "failed" not in r]
        q = qps_of[n]
        errs = sum(r.get("errors", 0) for r in ok)
        failed = len(rs) - len(ok)
        cpu = med([r.get("cpu_us_per_msg") for r in ok])
        sc = med([r.get("syscalls_per_msg") for r in ok])
        cs = med([r.get("ctx_switches_per_msg") for r in ok])
        b = baseline[family(n)]
        ratio = "-" if b == n or not q or not qps_of.get(b) else "%.3f" % (q / qps_of[b])
        if b == n: ratio = "(baseline)"
        row = [str(c), n, "{:,.0f}".format(q) if q else "FAILED",
               str(errs) + (" (+%d failed runs)" % failed if failed else ""),
               "%.2f" % cpu if cpu is not None else "-",
               "%.4f" % cs if cs is not None else "-"]
        if perf_ok: row.append("%.2f" % sc if sc is not None else "-")
        row.append(ratio)
        table.append(row)
w = [max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(hdr)]
line = lambda cells: "  ".join(c.rjust(w[i]) if i != 1 else c.ljust(w[i]) for i, c in enumerate(cells))
print(line(hdr))
print("  ".join("-" * x for x in w))
prev = None
for r in table:
    if prev is not None and r[0] != prev: print()
    print(line(r)); prev = r[0]
PY

exit "$FAILED"
