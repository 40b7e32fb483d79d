"""Fleet benchmark: the local engine against Spark (run by hand; not collected by pytest).

Builds a fleet of ``--traces`` text traces (default 52) over five hosts, of different sizes,
together at least ``--events`` events (default 20.5 M), cut from the real forkstorm and thp
captures repeated (tests/bench/bench_ingest.py). Then times, each as its own command:

* ingest: ``rmapscope ingest`` of every file, one after the other (local engine), and
  ``rmapscope ingest --engine spark --master local[N]`` of all of them into a second dataset;
* replay: ``rmapscope replay --all`` (local engine) and ``rmapscope replay --all --engine
  spark --master local[N]``, each on its own copy of the same dataset.

Peak memory is the largest total RSS of the command's whole process tree (the JVM and
its Python workers included), sampled every 50 ms from /proc. The Spark replay also
reports the seconds each (host, trace) task took on its executor: the distribution shows
how the work divides, and the sum against the wall time what more executors could win.

    python tests/bench/bench_spark.py [--traces 52] [--events 20500000] [--master local[2]]
    python tests/bench/bench_spark.py --workdir /tmp/fleet --keep   # keep the fleet
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import byte_compile, rmapscope_command

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import REAL, SOURCES

HOSTS = 5


def build_fleet(out: Path, traces: int, events: int) -> list[Path]:
    """``traces`` files of different sizes (sizes 0.5x..1.5x the mean), ``events`` lines
    in all, each a prefix of the real bodies repeated (so each has its own content)."""
    header, body = None, []
    for src in SOURCES:
        with gzip.open(REAL / src, "rt") as f:
            lines = f.readlines()
        header = header or [ln for ln in lines if ln.startswith("#")]
        body.extend(ln for ln in lines if not ln.startswith("#"))
    mean = events / traces
    sizes = [int(mean * (0.5 + i / (traces - 1))) for i in range(traces)]
    sizes[-1] += events - sum(sizes)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    text = "".join(body)
    for i, n in enumerate(sizes):
        path = out / f"box{i % HOSTS}-trace{i:03d}.txt"
        with open(path, "w") as f:
            f.write("".join(header))
            full, rest = divmod(n, len(body))
            for _ in range(full):
                f.write(text)
            f.write("".join(body[:rest]))
        files.append(path)
    return files


def tree_rss(pid: int) -> int:
    """Total RSS (bytes) of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(d)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak process-tree RSS and stdout of ``cmd``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    if proc.returncode not in (0, 1):  # 1: violations found
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err[-2000:]}")
    return elapsed, peak[0], out


TASKS = """
import json, sys
from rmapscope.dataset import Dataset
from rmapscope.spark import session
from rmapscope.replay.spark import replay_spark
spark = session(sys.argv[2], {"spark.ui.enabled": "false"})
res = replay_spark(Dataset(sys.argv[1]), spark)
print(json.dumps([[r.trace_id, r.events, r.seconds, r.error] for r in res]))
"""


def ingest_both(work: Path, files: list[Path], rm: str, spark: list[str]) -> tuple:
    """Ingest the fleet one file at a time locally (a process per file, as a shell loop
    would), then all at once with Spark."""
    t0, peak = time.perf_counter(), 0
    for f in files:
        _, rss, _ = run(
            [rm, "-q", "ingest", str(f), "-d", str(work / "local"), "--host", f.name.split("-")[0]]
        )
        peak = max(peak, rss)
    local_ingest = (time.perf_counter() - t0, peak)
    print(f"ingest, local one by one: {local_ingest[0]:.1f} s, {peak / 2**20:,.0f} MB", flush=True)
    # Spark: all files in one command (published together at the end)
    wall, peak, _ = run(
        [rm, "-q", "ingest", *map(str, files), "-d", str(work / "spark"), "--host", "fleet", *spark]
    )
    spark_ingest = (wall, peak)
    print(f"ingest, spark: {wall:.1f} s, {peak / 2**20:,.0f} MB", flush=True)
    return local_ingest, spark_ingest


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--traces", type=int, default=52)
    ap.add_argument("--events", type=int, default=20_500_000)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument(
        "--replay-only",
        action="store_true",
        help="reuse the local dataset of an earlier run in --workdir; time the replays only",
    )
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rmapscope-fleet-"))
    rm = rmapscope_command()
    byte_compile()
    spark = ["--engine", "spark", "--master", args.master]
    files = sorted((work / "traces").glob("*.txt")) if (work / "traces").is_dir() else []
    if len(files) != args.traces:
        shutil.rmtree(work / "traces", ignore_errors=True)
        files = build_fleet(work / "traces", args.traces, args.events)
    kept = ("local",) if args.replay_only else ()
    for d in ("local", "spark", "replay-local", "replay-spark"):
        if d not in kept:
            shutil.rmtree(work / d, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cpus; fleet: {len(files)} traces in {work / 'traces'}")

    local_ingest = spark_ingest = None
    if not args.replay_only:
        local_ingest, spark_ingest = ingest_both(work, files, rm, spark)
    manifest = json.loads(
        subprocess.run(
            [
                rm,
                "sql",
                "-d",
                str(work / "local"),
                "--format",
                "json",
                "SELECT count(*) AS traces, CAST(sum(events) AS BIGINT) AS events FROM traces",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )[0]
    print(f"dataset: {manifest['traces']} traces, {manifest['events']:,} events")

    shutil.copytree(work / "local", work / "replay-local")
    shutil.copytree(work / "local", work / "replay-spark")
    local_replay = run([rm, "-q", "replay", "--all", "-d", str(work / "replay-local")])
    spark_replay = run([rm, "-q", "replay", "--all", "-d", str(work / "replay-spark"), *spark])
    # the per-task seconds, from a second Spark replay that reports them
    shutil.rmtree(work / "replay-spark")
    shutil.copytree(work / "local", work / "replay-spark")
    tasks_run = run([sys.executable, "-c", TASKS, str(work / "replay-spark"), args.master])
    tasks = json.loads(tasks_run[2])
    seconds = sorted(t[2] for t in tasks)
    assert not any(t[3] for t in tasks), [t for t in tasks if t[3]]

    print()
    print("| step | engine | wall s | events/s | peak RSS (process tree) MB |")
    print("|---|---|---|---|---|")
    ev = manifest["events"]
    for step, engine, measured in [
        ("ingest", "local, one file at a time", local_ingest),
        ("ingest", f"spark {args.master}", spark_ingest),
        ("replay", "local (duckdb engine)", local_replay),
        ("replay", f"spark {args.master}", spark_replay),
    ]:
        if measured is not None:
            wall, rss = measured[0], measured[1]
            print(f"| {step} | {engine} | {wall:.1f} | {ev / wall:,.0f} | {rss / 2**20:,.0f} |")
    q = statistics.quantiles(seconds, n=10)
    print()
    print(
        f"Spark replay tasks ({len(seconds)}, one per trace), seconds on the executor: "
        f"min {seconds[0]:.2f}, p10 {q[0]:.2f}, median {statistics.median(seconds):.2f}, "
        f"p90 {q[-1]:.2f}, max {seconds[-1]:.2f}; sum {sum(seconds):.1f} s "
        f"in a {tasks_run[0]:.1f} s run"
    )
    by_size = sorted((t[1], t[2]) for t in tasks)
    print(
        "events -> seconds (smallest, median, largest trace): "
        + ", ".join(
            f"{e:,} -> {s:.2f}" for e, s in (by_size[0], by_size[len(by_size) // 2], by_size[-1])
        )
    )
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
