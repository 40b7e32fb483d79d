"""Ingest benchmark (run by hand; not collected by pytest).

Builds a tracefs text trace with the event mix of the real traces (the bodies of the
forkstorm and thp captures repeated), then times, on the same file in one run:
``wc -l`` (the I/O floor), ``rmapscope ingest`` (text in, Parquet written) and a per-line
Python regex parser producing the same columns (tests/bench/_baseline.py). Peak RSS of each
is read from the kernel's rusage of the child process.

    python tests/bench/bench_ingest.py                      # 2.5 M lines
    python tests/bench/bench_ingest.py --sizes 2000000 --runs 5  # median of 5 (noisy box)
    python tests/bench/bench_ingest.py --sizes 1G,4G --no-baseline   # RSS flat in size?

``rmapscope`` is the console script installed next to this interpreter, byte-compiled first
(see tests/bench/_common.py).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import byte_compile, rmapscope_command

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("RMAPSCOPE_SHARED", REPO.parent / "shared")) / "data" / "real"
SOURCES = ["forkstorm/ftrace-text-default/trace.txt.gz", "thp/ftrace-text-default/trace.txt.gz"]


def build_trace(path: Path, target: int, by_lines: bool) -> int:
    """Write a trace of ``target`` lines (or bytes); returns the number of lines."""
    header, bodies = None, []
    for src in SOURCES:
        with gzip.open(REAL / src, "rt") as f:
            lines = f.readlines()
        head = [ln for ln in lines if ln.startswith("#")]
        header = header or head
        bodies.append("".join(ln for ln in lines if not ln.startswith("#")))
    body = "".join(bodies)
    body_lines = body.count("\n")
    n = len(header)
    with open(path, "w") as out:
        out.write("".join(header))
        done = 0
        while done < target:
            out.write(body)
            n += body_lines
            done = n if by_lines else out.tell()
    return n


def run(cmd: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (bytes) and CPU seconds (user + system) of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def median_run(cmd: list[str], runs: int, output: Path) -> tuple[float, int, float]:
    """:func:`run` ``runs`` times (``output`` removed before each): the median run by wall
    time."""
    results = []
    for _ in range(runs):
        shutil.rmtree(output, ignore_errors=True)
        results.append(run(cmd))
    results.sort()
    return results[(len(results) - 1) // 2]


def parse_size(text: str) -> tuple[int, bool]:
    text = text.strip().upper()
    for suffix, mult in (("G", 1 << 30), ("M", 1 << 20)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * mult), False
    return int(text), True  # a plain number is a line count


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="2500000", help="comma list: line counts, or sizes like 1G")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--no-baseline", action="store_true", help="skip the per-line Python parser")
    ap.add_argument("--runs", type=int, default=1, help="runs of each; the median is shown")
    args = ap.parse_args()
    rmapscope = rmapscope_command()
    byte_compile()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rmapscope-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        target, by_lines = parse_size(size)
        trace = work / f"trace-{size}.txt"
        lines = build_trace(trace, target, by_lines)
        nbytes = trace.stat().st_size
        wc = run(["wc", "-l", str(trace)])[0]
        ds = work / f"ds-{size}"
        shutil.rmtree(ds, ignore_errors=True)
        ingest = [rmapscope, "-q", "ingest", str(trace), "--dataset", str(ds)]
        t_ing, rss_ing, cpu_ing = median_run(ingest, args.runs, ds)
        base = None
        if not args.no_baseline:
            out = work / f"baseline-{size}"
            baseline = [sys.executable, str(Path(__file__).with_name("_baseline.py")), str(trace)]
            base = median_run([*baseline, str(out)], args.runs, out)
        rows.append((size, lines, nbytes, wc, t_ing, cpu_ing, rss_ing, base))
        shutil.rmtree(ds, ignore_errors=True)
        trace.unlink()
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cpus, load average {load:.1f}; python {sys.version.split()[0]}"
        f"; the median of {args.runs} run(s) of each"
    )
    # CPU s (user + system): what a busy shared machine does not inflate, unlike wall time
    print(
        "| input | lines | MB | wc -l s | rmapscope s | CPU s | lines/s | peak RSS MB "
        "| per-line Python s (CPU s) | speedup (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size, lines, nbytes, wc, t, cpu, rss, base in rows:
        b = (
            f"{base[0]:.1f} ({base[2]:.1f}) | {base[0] / t:.1f}x ({base[2] / cpu:.1f}x)"
            if base
            else "- | -"
        )
        print(
            f"| {size} | {lines:,} | {nbytes / 1e6:,.0f} | {wc:.2f} | {t:.2f} | {cpu:.2f} | "
            f"{lines / t:,.0f} | {rss / 2**20:,.0f} | {b} |"
        )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
