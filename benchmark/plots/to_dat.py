"""Turn benchmark output into gnuplot data files (used by scripts/plot-benchmarks.sh).

  to_dat.py echo  RESULTS.jsonl OUTDIR   compare_echo.sh --out: one .dat per server,
                                         columns: connections, median QPS, median CPU us/msg
  to_dat.py fio   COMPARE.log   OUTDIR   compare_fio.sh --out: fio_<engine>.dat,
                                         columns: queue depth, fio IOPS, bench_file_io IOPS
  to_dat.py scale SCALE.jsonl   OUTDIR   scale_echo.sh --json: scale_<backend>.dat,
                                         columns: threads, median QPS, median CPU us/msg
Only the standard library is used.
"""
import json
import os
import re
import statistics
import sys
from collections import defaultdict


def write(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(" ".join(str(x) for x in r) + "\n")


def echo(src, out):
    runs = defaultdict(lambda: defaultdict(list))
    for line in open(src):
        if not line.strip():
            continue
        r = json.loads(line)
        if "qps" not in r:
            continue
        runs[r["server"]][r["conns"]].append((r["qps"], r.get("cpu_us_per_msg", 0)))
    for server, by_conns in runs.items():
        rows = []
        for conns in sorted(by_conns):
            qps = statistics.median(q for q, _ in by_conns[conns])
            cpu = statistics.median(c for _, c in by_conns[conns])
            rows.append((conns, round(qps, 1), round(cpu, 3)))
        write(os.path.join(out, f"echo_{server}.dat"), rows)


def fio(src, out):
    table = defaultdict(list)
    row = re.compile(r"^\| (\S+) \((\S+)\) \| (\d+) \| \d+ \| (\d+) \| (\d+) \|")
    for line in open(src):
        m = row.match(line)
        if m:
            engine, _backend, qd, f, g = m.groups()
            table[engine].append((int(qd), int(f), int(g)))
    for engine, rows in table.items():
        write(os.path.join(out, f"fio_{engine}.dat"), sorted(rows))


def scale(src, out):
    runs = defaultdict(lambda: defaultdict(list))
    for line in open(src):
        if not line.strip():
            continue
        r = json.loads(line)
        runs[r["backend"]][r["threads"]].append((r["qps"], r["server_cpu_us_per_msg"]))
    for backend, by_n in runs.items():
        rows = []
        for n in sorted(by_n):
            rows.append((n, round(statistics.median(q for q, _ in by_n[n]), 1),
                         round(statistics.median(c for _, c in by_n[n]), 3)))
        write(os.path.join(out, f"scale_{backend}.dat"), rows)


if __name__ == "__main__":
    kind, src, out = sys.argv[1:4]
    {"echo": echo, "fio": fio, "scale": scale}[kind](src, out)
