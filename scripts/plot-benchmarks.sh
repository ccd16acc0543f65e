#!/usr/bin/env bash
# Plots benchmark results into docs/img/ (gnuplot, PNG):
#   echo_qps.png     QPS against connections per server (galay backends and C baselines)
#   echo_cpu.png     server CPU per message against connections
#   file_iops.png    IOPS against queue depth, bench_file_io vs fio, per engine
#   scaling.png      QPS and CPU per message against server threads
# usage: scripts/plot-benchmarks.sh [--echo RESULTS.jsonl] [--fio COMPARE.log] [--scale SCALE.jsonl] [--out docs/img]
# Inputs are what compare_echo.sh --out, compare_fio.sh --out and scale_echo.sh --json write;
# docs/data/ keeps the ones behind the committed plots, with the commands in docs/benchmark.md.
set -euo pipefail
# shellcheck source=scripts/lib/options.sh
. "$(dirname "$0")/lib/options.sh"
cd "$(dirname "$0")/.."
echo_in="" fio_in="" scale_in="" out=docs/img
parse_options "--echo=echo_in --fio=fio_in --scale=scale_in --out=out" "$@"
scripts/install-deps.sh gnuplot-nox
# Debian's interpreter (not a pyenv shim); only the standard library is needed.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
mkdir -p "$out"
dat=$(mktemp -d)
trap 'rm -rf "$dat"' EXIT
term='set terminal png noenhanced size 900,540 font ",11"; set grid; set key outside right top'

plot_list() {  # $1 = glob of .dat files, $2 = column; prints a gnuplot plot clause
  local clause="" f name
  for f in $1; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .dat)
    name=${name#*_}
    clause+="${clause:+, }'$f' using 1:$2 with linespoints lw 2 title '$name'"
  done
  echo "$clause"
}

if [ -n "$echo_in" ]; then
  "$py" benchmark/plots/to_dat.py echo "$echo_in" "$dat"
  gnuplot -e "$term; set output '$out/echo_qps.png'; set title 'Echo QPS (256-byte messages, server on 1 core)';
    set xlabel 'connections'; set ylabel 'QPS'; set yrange [0:*]; plot $(plot_list "$dat/echo_*.dat" 2)"
  gnuplot -e "$term; set output '$out/echo_cpu.png'; set title 'Server CPU per message (lower is better)';
    set xlabel 'connections'; set ylabel 'CPU us / message'; set yrange [0:*]; plot $(plot_list "$dat/echo_*.dat" 3)"
  echo "plot-benchmarks: $out/echo_qps.png $out/echo_cpu.png"
fi
if [ -n "$fio_in" ]; then
  "$py" benchmark/plots/to_dat.py fio "$fio_in" "$dat"
  clause=""
  for f in "$dat"/fio_*.dat; do
    [ -e "$f" ] || continue
    e=$(basename "$f" .dat); e=${e#fio_}
    clause+="${clause:+, }'$f' using 1:2 with linespoints lw 2 dt 2 title 'fio $e', '$f' using 1:3 with linespoints lw 2 title 'bench_file_io $e'"
  done
  gnuplot -e "$term; set output '$out/file_iops.png'; set title 'O_DIRECT 4 KiB random reads: IOPS against queue depth';
    set xlabel 'queue depth'; set ylabel 'IOPS'; set logscale x 2; set yrange [0:*]; plot $clause"
  echo "plot-benchmarks: $out/file_iops.png"
fi
if [ -n "$scale_in" ]; then
  "$py" benchmark/plots/to_dat.py scale "$scale_in" "$dat"
  gnuplot -e "$term; set output '$out/scaling.png'; set title 'Echo server threads (bench_server -t N)';
    set xlabel 'server threads'; set ylabel 'QPS'; set y2label 'server CPU us / message'; set ytics nomirror; set y2tics;
    set yrange [0:*]; set y2range [0:*]; set xtics 1;
    plot $(plot_list "$dat/scale_*.dat" 2), $(plot_list "$dat/scale_*.dat" 3 | sed "s/with linespoints/axes x1y2 with linespoints dt 2/g; s/title '\([^']*\)'/title '\1 CPU\/msg'/g")"
  echo "plot-benchmarks: $out/scaling.png"
fi
