#!/usr/bin/env bash
# compare_fio.sh: bench_file_io against fio, same workload, runs interleaved.
#
# usage: benchmark/compare_fio.sh [--build-dir build/release] [--dir /var/tmp]
#            [--duration 5] [--depths "1 4 32"] [--jobs 1] [--size 1G] [--bs 4k]
#            [--rounds 1] [--engines "libaio io_uring"] [--no-batch] [--out FILE]
#            [--target PATH]
#
# Workload: O_DIRECT 4 KiB random reads (--bs), time-based (--duration seconds per run),
# --jobs jobs each keeping --depths requests in flight, all on one file of --size bytes in
# --dir, written once up front (fio, sequential 1 MiB O_DIRECT writes, fsync) so reads hit
# real blocks. The file is removed at exit. --target PATH reads an existing file or block
# device instead (never written, never removed; --size defaults to its size): e.g. a loop
# device on a RAM-backed file, to compare software overhead without a noisy disk.
#
# Pairs: fio --ioengine=libaio vs bench_file_io --backend epoll (libaio under epoll), and
# fio --ioengine=io_uring vs bench_file_io --backend io_uring. fio runs --numjobs jobs
# (processes) on --filename with --iodepth; bench_file_io runs -w jobs (coroutines on one
# thread) on --file with --qd, batch 1. Within a round the two tools alternate, and the one
# that goes first alternates between rounds, so drift in the device hits both.
#
# Output: per engine and depth, the median IOPS of each tool over the rounds, the ratio
# galay/fio, and galay's error count. Unless --no-batch, a second table shows
# bench_file_io's -batch 4 against -batch 1 at the same depth (4) and at depth 1.
# fio is installed with apt-get if it is missing (needs root).
# Exit status: 0 if every bench_file_io run had 0 errors, 1 otherwise, 2 on usage errors.
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/../scripts/lib/options.sh"
opt_init compare_fio

BUILD_DIR=build/release
DIR=/var/tmp
DURATION=5
DEPTHS="1 4 32"
JOBS=1
SIZE=1G
BS=4k
ROUNDS=1
ENGINES="libaio io_uring"
BATCH=1
OUT=""
TARGET=""

die() { opt_die "$@"; }

parse_options "--dir=DIR --duration=DURATION --depths=DEPTHS --jobs=JOBS --size=SIZE --bs=BS --rounds=ROUNDS --engines=ENGINES --no-batch:BATCH=0 --out=OUT --target=TARGET" "$@"

need_uint --duration "$DURATION" 1
need_uint --rounds "$ROUNDS" 1
need_uint --jobs "$JOBS" 1
for d in $DEPTHS; do need_uint --depths "$d" 1; done
for e in $ENGINES; do [[ $e == libaio || $e == io_uring ]] || die "--engines: expected libaio or io_uring, got '$e'"; done

BENCH=$BUILD_DIR/bin/bench_file_io
[[ -x $BENCH ]] || die "$BENCH not found (build the bench_file_io target first)"
command -v jq >/dev/null || die "jq is needed to read the JSON results"
if ! command -v fio >/dev/null; then
  echo "compare_fio: fio not found, installing it (apt-get install fio)" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y fio >/dev/null; else sudo apt-get install -y fio >/dev/null; fi
fi
if [[ -n $TARGET ]]; then
  [[ -e $TARGET ]] || die "--target $TARGET does not exist"
  FILE=$TARGET
  if [[ -b $TARGET ]]; then
    fstype="block device"
    SIZE=$(blockdev --getsize64 "$TARGET")
  else
    fstype=$(stat -f -c %T "$TARGET")
    SIZE=$(stat -c %s "$TARGET")
  fi
else
  [[ -d $DIR ]] || die "--dir $DIR does not exist"
  fstype=$(stat -f -c %T "$DIR")
  [[ $fstype != tmpfs ]] || die "$DIR is on tmpfs, which has no O_DIRECT: pick a disk-backed --dir"
  FILE=$DIR/compare_fio.$$.dat
  cleanup() { rm -f "$FILE"; }
  trap cleanup EXIT
fi
trap 'exit 130' INT TERM

bs_bytes=$(numfmt --from=iec "${BS^^}")
log() { if [[ -n $OUT ]]; then echo "$*" | tee -a "$OUT"; else echo "$*"; fi; }
[[ -n $OUT ]] && : > "$OUT"

log "# compare_fio: $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -r), $(nproc) CPUs, fio $(fio --version | sed 's/^fio-//')"
log "# file $FILE ($SIZE on $fstype), O_DIRECT random reads of $BS, $JOBS job(s), ${DURATION}s per run, $ROUNDS round(s)"
if [[ -z $TARGET ]]; then
  echo "laying out $FILE ($SIZE) ..." >&2
  fio --name=layout --filename="$FILE" --size="$SIZE" --rw=write --bs=1M --direct=1 --ioengine=psync \
      --end_fsync=1 --output=/dev/null
fi

backend_of() { [[ $1 == libaio ]] && echo epoll || echo io_uring; }

run_fio() {  # engine depth -> IOPS
  fio --name=cmp --filename="$FILE" --size="$SIZE" --rw=randread --bs="$BS" --direct=1 \
      --ioengine="$1" --iodepth="$2" --numjobs="$JOBS" --group_reporting --time_based \
      --runtime="$DURATION" --norandommap --randrepeat=0 --output-format=json |
    jq '.jobs[0].read.iops'
}

ERRORS=0
run_bench() {  # backend depth batch -> IOPS (errors added to ERRORS)
  local json
  json=$("$BENCH" --backend "$1" --file "$FILE" --rw read -b "$bs_bytes" --qd "$2" -batch "$3" \
         -w "$JOBS" --duration "$DURATION" --json 2>/dev/null)
  ERRORS=$((ERRORS + $(jq '.errors' <<<"$json")))
  jq '.read_iops' <<<"$json"
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

declare -A FIO GALAY
for round in $(seq 1 "$ROUNDS"); do
  for engine in $ENGINES; do
    backend=$(backend_of "$engine")
    for qd in $DEPTHS; do
      if (( round % 2 == 1 )); then
        f=$(run_fio "$engine" "$qd"); g=$(run_bench "$backend" "$qd" 1)
      else
        g=$(run_bench "$backend" "$qd" 1); f=$(run_fio "$engine" "$qd")
      fi
      FIO[$engine,$qd]+="$f "
      GALAY[$engine,$qd]+="$g "
      printf 'round %d %-8s qd %-3s fio %10.0f  galay %10.0f\n' "$round" "$engine" "$qd" "$f" "$g" >&2
    done
  done
done

log ""
log "| engine (galay backend) | QD | jobs | fio IOPS | bench_file_io IOPS | galay/fio |"
log "|---|---|---|---|---|---|"
for engine in $ENGINES; do
  for qd in $DEPTHS; do
    f=$(tr ' ' '\n' <<<"${FIO[$engine,$qd]}" | sed '/^$/d' | median)
    g=$(tr ' ' '\n' <<<"${GALAY[$engine,$qd]}" | sed '/^$/d' | median)
    ratio=$(awk -v g="$g" -v f="$f" 'BEGIN {printf "%.3f", (f > 0 ? g / f : 0)}')
    log "$(printf '| %s (%s) | %s | %s | %.0f | %.0f | %s |' "$engine" "$(backend_of "$engine")" "$qd" "$JOBS" "$f" "$g" "$ratio")"
  done
done

if (( BATCH )); then
  log ""
  log "| galay backend | -batch 1, QD 1 | -batch 4, QD 4 | -batch 1, QD 4 | batch 4 / batch 1 at QD 4 |"
  log "|---|---|---|---|---|"
  for engine in $ENGINES; do
    backend=$(backend_of "$engine")
    b11=$(run_bench "$backend" 1 1); b44=$(run_bench "$backend" 4 4); b14=$(run_bench "$backend" 4 1)
    ratio=$(awk -v a="$b44" -v b="$b14" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')
    log "$(printf '| %s | %.0f | %.0f | %.0f | %s |' "$backend" "$b11" "$b44" "$b14" "$ratio")"
  done
fi

log ""
log "bench_file_io errors: $ERRORS"
(( ERRORS == 0 ))
