"""Replay benchmark (run by hand; not collected by pytest).

Builds a trace of at least 10 million events with the event mix of the real traces
(tests/bench/bench_ingest.py), ingests it once, then times tier-1 replay of it: loading the
events replay needs, the replay itself, and publishing the tables. Prints events/s and peak
RSS (measured in a child process).

    python tests/bench/bench_replay.py [--events 10200000] [--workdir DIR]
    python tests/bench/bench_replay.py --partition-rows 400000   # replay in partitions

With ``--partition-rows`` the trace is replayed through ``rmapscope.replay.replay`` in
partitions of at most that many migration events (what a trace larger than memory gets),
to show that peak RSS follows the partition, not the trace.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import rmapscope_command

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import build_trace

CHILD_PARTITIONED = """
import json, os, resource, sys, time
from rmapscope.dataset import Dataset
from rmapscope.replay import replay
ds = Dataset(sys.argv[1])
row = ds.traces().row(0, named=True)
t0 = time.perf_counter()
out = replay(ds, [row["trace_id"]])[row["trace_id"]]
t1 = time.perf_counter()
print(json.dumps({"events": row["events"], "load": 0.0, "replay": t1 - t0, "publish": 0.0,
                  "rows": {k: v.height for k, v in out.items()},
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

CHILD = """
import json, resource, sys, time
from rmapscope.dataset import Dataset
from rmapscope.replay.engine import replay_trace
from rmapscope.replay.store import load_trace, publish
ds = Dataset(sys.argv[1])
row = ds.traces().row(0, named=True)
t0 = time.perf_counter()
tables, gaps, manifest = load_trace(ds, row["trace_id"])
t1 = time.perf_counter()
out = replay_trace(tables, gaps, manifest)
t2 = time.perf_counter()
publish(ds, row["host"], row["trace_id"], out)
t3 = time.perf_counter()
print(json.dumps({"events": row["events"], "load": t1 - t0, "replay": t2 - t1,
                  "publish": t3 - t2, "rows": {k: v.height for k, v in out.items()},
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_200_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--partition-rows",
        type=int,
        default=None,
        help="replay in partitions of at most this many migration events",
    )
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rmapscope-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    trace, ds = work / "trace.txt", work / "ds"
    build_trace(trace, args.events, by_lines=True)
    shutil.rmtree(ds, ignore_errors=True)
    subprocess.run(
        [
            rmapscope_command(),
            "-q",
            "ingest",
            str(trace),
            "--dataset",
            str(ds),
        ],
        check=True,
    )
    trace.unlink()
    env = dict(os.environ)
    child = CHILD
    if args.partition_rows:
        env["RMAPSCOPE_REPLAY_PARTITION_ROWS"] = str(args.partition_rows)
        child = CHILD_PARTITIONED
    r = json.loads(
        subprocess.run(
            [sys.executable, "-c", child, str(ds)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )
    total = r["load"] + r["replay"] + r["publish"]
    print(f"machine: {os.cpu_count()} cpus; partitioned: {args.partition_rows or 'no'}")
    print(
        "| events | load s | replay s | publish s | events/s (load+replay) | "
        "events/s (all) | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {r['events']:,} | {r['load']:.2f} | {r['replay']:.2f} | {r['publish']:.2f} | "
        f"{r['events'] / (r['load'] + r['replay']):,.0f} | {r['events'] / total:,.0f} | "
        f"{r['rss'] / 2**20:,.0f} |"
    )
    print("rows:", r["rows"])
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
