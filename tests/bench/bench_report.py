"""Report benchmark (run by hand; not collected by pytest).

Builds a trace of about 10 million events from the real traces' bodies, repeated and
shifted in time (see ``build_trace``), ingests and replays it, then times the
report in fresh processes: end to end as a user runs it (interpreter start, imports,
queries, plotting, writing; the target is 10 s at 10 M events), and per panel (the SQL plus
its plot). Prints the report's size with plotly.js embedded and referenced, the size of
each figure's data, and the peak RSS of the end-to-end run.

    python tests/bench/bench_report.py                       # build a 10.2 M-event dataset
    python tests/bench/bench_report.py --dataset DIR         # time an existing dataset
    python tests/bench/bench_report.py --events 2000000 --workdir /tmp/rb   # keep it
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import byte_compile, rmapscope_command

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import REAL, SOURCES

_TS = re.compile(r" (\d+)\.(\d{6}): ")


def build_trace(path: Path, events: int) -> int:
    """A trace of >= ``events`` lines: the real traces' bodies repeated, each copy shifted
    later in time (unlike bench_ingest's, whose copies overlap in time), so the report sees
    a realistic spread of migrations, forks and time buckets. Returns the line count."""
    header, parts = None, []
    for src in SOURCES:
        with gzip.open(REAL / src, "rt") as f:
            lines = f.readlines()
        header = header or [ln for ln in lines if ln.startswith("#")]
        for ln in lines:
            m = None if ln.startswith("#") else _TS.search(ln)
            if m:
                parts.append((ln[: m.start(1)], int(m.group(1)), m.group(2), ln[m.end(2) :]))
    first, last = parts[0][1], max(p[1] for p in parts)
    period = last - first + 1  # whole seconds per copy
    n = 0
    with open(path, "w") as out:
        out.write("".join(header))
        copy = 0
        while n < events:
            shift = copy * period
            out.write("".join(f"{a}{sec + shift}.{us}{b}" for a, sec, us, b in parts))
            n += len(parts)
            copy += 1
    return n


END_TO_END = """
import resource, sys, time
t0 = time.perf_counter()
from rmapscope.dashboards import build_report
out = build_report(sys.argv[1], output=sys.argv[2], embed_plotly=sys.argv[3] == "embed")
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

PER_PANEL = """
import json, sys, time
import plotly.io as pio
from rmapscope.analysis import connect
from rmapscope.dataset import Dataset
from rmapscope.dashboards.panels import SECTIONS, Ctx
t0 = time.perf_counter()
con = connect(Dataset(sys.argv[1]))
manifest = con.sql("SELECT trace_id, host, ts_first, ts_last, cpus FROM traces").pl()
ctx = Ctx(con, None, manifest)
rows = [("connect + manifest", time.perf_counter() - t0, None, None)]
for _, _, fns in SECTIONS:
    for fn in fns:
        t = time.perf_counter()
        p = fn(ctx)
        q = time.perf_counter() - t
        size = len(pio.to_json(p.figure)) if p.figure is not None else len(p.table_html or "")
        rows.append((p.id, q, p.frame.height if p.frame is not None else 0, size))
print(json.dumps(rows))
"""


def events_in(ds: Path) -> int:
    from rmapscope.dataset import Dataset

    return int(Dataset(ds).traces()["events"].sum())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_200_000)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the dataset here")
    ap.add_argument("--dataset", type=Path, default=None, help="time this dataset instead")
    args = ap.parse_args()
    rmapscope = rmapscope_command()
    byte_compile()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rmapscope-bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    ds = args.dataset
    if ds is None:
        ds = work / "ds"
        if not (ds / ".rmapscope-dataset").exists():
            trace = work / "trace.txt"
            t = time.perf_counter()
            build_trace(trace, args.events)
            subprocess.run(
                [rmapscope, "-q", "ingest", str(trace), "--dataset", str(ds)], check=True
            )
            trace.unlink()
            print(f"built and ingested in {time.perf_counter() - t:.0f} s")
            t = time.perf_counter()
            subprocess.run(
                [rmapscope, "-q", "replay", "--all", "--dataset", str(ds)],
                check=False,  # exit 1 when replay finds violations
                stdout=subprocess.DEVNULL,
            )
            print(f"replayed in {time.perf_counter() - t:.0f} s")

    def child(code: str, *argv: str) -> str:
        r = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
        )
        return r.stdout

    subprocess.run(  # warm the page cache, as a user who just replayed would have it
        [sys.executable, "-c", END_TO_END, str(ds), str(work / "warm.html"), "embed"],
        check=True,
        capture_output=True,
    )
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        inner, rss = child(END_TO_END, str(ds), str(work / "report.html"), "embed").split()
        runs.append((time.perf_counter() - t, float(inner), int(rss)))
    wall, inner, rss = min(runs)
    child(END_TO_END, str(ds), str(work / "report-cdn.html"), "cdn")
    embedded = (work / "report.html").stat().st_size
    cdn = (work / "report-cdn.html").stat().st_size
    panels = json.loads(child(PER_PANEL, str(ds)))

    print(f"machine: {os.cpu_count()} cpus; python {sys.version.split()[0]}")
    print(f"dataset: {ds} ({events_in(ds):,} events)")
    print(
        f"report end to end: {wall:.2f} s wall (best of 3; {inner:.2f} s after interpreter "
        f"start), peak RSS {rss / 2**20:,.0f} MB"
    )
    print(
        f"report size: {embedded / 1e6:.2f} MB with plotly.js embedded, "
        f"{cdn / 1e6:.2f} MB with it referenced"
    )
    print("| panel | s | rows | figure/table bytes |")
    print("|---|---|---|---|")
    for pid, secs, rows, size in panels:
        print(
            f"| {pid} | {secs:.3f} | {'' if rows is None else f'{rows:,}'} | "
            f"{'' if size is None else f'{size:,}'} |"
        )
    if not args.workdir and args.dataset is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
