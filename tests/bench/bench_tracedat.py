"""trace.dat benchmark (run by hand; not collected by pytest).

Times, on the same trace.dat in one run: ``trace-cmd report > /dev/null`` (libtraceevent
formatting every event), rmapscope's ingest of it into a Parquet dataset (in-process, the
trace.dat -> Parquet path), the reader alone, and the ``rmapscope ingest`` command (which adds
the interpreter's start-up; its peak RSS is read from the kernel's rusage of the child).
The file is either given, recorded here, or built from real pages:

* ``--file PATH``: an existing trace.dat;
* default: record one on this machine in a private tracefs instance (page allocator and
  scheduler events under a memory-churning workload) and ``trace-cmd extract -B`` it
  (``trace-cmd record`` cannot be used here: see shared/data/real/README.md);
* ``--synthetic`` (or when recording is impossible): repeat the pages of the real captures,
  shifted in time, into a v7 zstd file.

    python tests/bench/bench_tracedat.py                 # record >= 2.5 M events
    python tests/bench/bench_tracedat.py --file big.dat --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import byte_compile

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("RMAPSCOPE_SHARED", REPO.parent / "shared")) / "data" / "real"
EVENTS = [
    "kmem/mm_page_alloc",
    "kmem/mm_page_free",
    "sched/sched_switch",
    "sched/sched_wakeup",
    "sched/sched_process_fork",
    "sched/sched_process_exit",
    "compaction",
    "migrate",
]
WORKLOAD = "for i in range({n}):\n    b = bytearray(40_000_000)\n    del b\n"


def tracefs() -> Path | None:
    for p in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (p / "instances").is_dir():
            return p
    return None


def record(out: Path, target: int) -> int | None:
    """Record ``target`` events into ``out`` with a tracefs instance; None if impossible."""
    root = tracefs()
    if root is None or not shutil.which("trace-cmd") or os.geteuid() != 0:
        return None
    name = f"rmapscope-bench-{os.getpid()}"
    inst = root / "instances" / name
    try:
        inst.mkdir()
    except OSError:
        return None
    try:
        per_cpu_kb = max(4096, target * 48 // 1024 // max(1, os.cpu_count() or 1) * 2)
        (inst / "buffer_size_kb").write_text(str(per_cpu_kb))
        for ev in EVENTS:
            enable = inst / "events" / ev / "enable"
            if enable.exists():
                enable.write_text("1")
        (inst / "tracing_on").write_text("1")
        total = 0
        for _ in range(40):
            subprocess.run([sys.executable, "-c", WORKLOAD.format(n=20)], check=True)
            total = 0
            for stats in (inst / "per_cpu").glob("cpu*/stats"):
                for line in stats.read_text().splitlines():
                    if line.startswith("entries:"):
                        total += int(line.split()[1])
            if total >= target:
                break
        (inst / "tracing_on").write_text("0")
        r = subprocess.run(
            ["trace-cmd", "extract", "-B", name, "-o", str(out)], capture_output=True, text=True
        )
        if r.returncode != 0 or not out.exists():
            print(f"trace-cmd extract failed: {r.stderr.strip()}", file=sys.stderr)
            return None
        return total
    finally:
        if inst.exists():  # extract -B removes the instance itself
            try:
                (inst / "tracing_on").write_text("0")
                inst.rmdir()
            except OSError:
                pass


def synthesize(out: Path, target: int) -> int:
    """Repeat the real captures' pages (time-shifted) until ``target`` events: v7, zstd."""
    sys.path.insert(0, str(REPO))
    from rmapscope.record import tracedat as tw
    from tests._tracedat_extract import extract

    specs = [extract(str(REAL / w / "trace-cmd-v6" / "trace.dat")) for w in ("forkstorm", "thp")]
    per_copy = 89144 + 58897  # the two captures (forkstorm at ~2958 s, thp at ~3337 s)
    copies = -(-target // per_copy)
    cpus: dict[int, bytearray] = {}
    for k in range(copies):
        shift = k * 4000 * 10**9  # each copy 4000 s after the previous one
        for spec in specs:
            ps = spec.page_size
            for cpu, pages in spec.buffers[0].cpus.items():
                buf = cpus.setdefault(cpu, bytearray())
                for at in range(0, len(pages), ps):
                    page = bytearray(pages[at : at + ps])
                    struct.pack_into("<Q", page, 0, struct.unpack_from("<Q", page)[0] + shift)
                    buf += page
    base = specs[0]
    base.formats = sorted({f for spec in specs for f in spec.formats})
    base.buffers = [tw.BufferSpec("", "local", {c: bytes(b) for c, b in cpus.items()})]
    data, _ = tw.write(base, 7, "zstd")
    out.write_bytes(data)
    return copies * per_copy


def run_trace_cmd(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["trace-cmd", "report", "-i", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def run_ingest(path: Path, work: Path, i: int) -> tuple[float, int]:
    from rmapscope.dataset import Dataset
    from rmapscope.ingest import ingest

    ds = work / f"ds{i}"
    start = time.perf_counter()
    result = ingest(str(path), Dataset(ds))
    elapsed = time.perf_counter() - start
    shutil.rmtree(ds, ignore_errors=True)
    return elapsed, result.events


def run_reader(path: Path) -> float:
    from rmapscope.ingest._source import open_source, read_blocks
    from rmapscope.ingest.tracedat import TraceDatReader
    from rmapscope.schema import default_registry

    start = time.perf_counter()
    src = open_source(str(path))
    try:
        blocks = read_blocks(src)
        reader = TraceDatReader(src, next(blocks), blocks, "x86_64", default_registry().copy())
        for _ in reader.batches():
            pass
    finally:
        src.close()
    return time.perf_counter() - start


def run_cli(path: Path, work: Path) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of ``rmapscope ingest`` run by this interpreter.

    The peak comes from ``/usr/bin/time`` when it is there: a child's peak RSS as the
    kernel reports it to its parent starts from the parent's size at the fork (and this
    process can be large), while ``time`` is small.
    """
    ds = work / "ds-cli"
    code = (
        "import sys; from rmapscope.cli import console_main; "
        "sys.argv[0] = 'rmapscope'; console_main()"
    )
    args = [sys.executable, "-c", code, "-q", "ingest", str(path), "--dataset", str(ds)]
    timer = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    if timer:
        args = [timer, "-f", "%M", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(ds, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"rmapscope ingest failed with status {proc.returncode}: {err[-500:]}")
    if timer:
        return elapsed, int(err.strip().splitlines()[-1]) / 1024  # %M is in KiB
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--file", type=Path, help="an existing trace.dat (default: record one)")
    ap.add_argument("--events", type=int, default=2_500_000, help="events to record/build")
    ap.add_argument("--synthetic", action="store_true", help="build from real pages, no recording")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if not shutil.which("trace-cmd"):
        sys.exit("trace-cmd is not installed (apt-get install trace-cmd)")
    byte_compile()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rmapscope-bench-tracedat-"))
    work.mkdir(parents=True, exist_ok=True)
    how = "given"
    path = args.file
    if path is None:
        path = work / "bench.dat"
        made = None if args.synthetic else record(path, args.events)
        how = "recorded here (tracefs instance + trace-cmd extract -B)"
        if made is None:
            made = synthesize(path, args.events)
            how = "real pages repeated (v7 zstd)"
    sys.path.insert(0, str(REPO))
    cli, rss = run_cli(path, work)
    tc, ing, rd = [], [], []
    events = 0
    for i in range(args.runs):  # interleaved, so background load hits all alike
        tc.append(run_trace_cmd(path))
        t, events = run_ingest(path, work, i)
        ing.append(t)
        rd.append(run_reader(path))
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cpus, load average {load[0]:.2f}; python "
        f"{sys.version.split()[0]}; file: {how}"
    )
    print(f"best of {args.runs} runs (median in parentheses)")
    print()
    print(
        "| file | events | MB | trace-cmd report s | rmapscope ingest s | speedup "
        "| reader only s | `rmapscope ingest` CLI s | CLI peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {path.name} | {events:,} | {path.stat().st_size / 1e6:.1f} "
        f"| {min(tc):.2f} ({statistics.median(tc):.2f}) "
        f"| {min(ing):.2f} ({statistics.median(ing):.2f}) "
        f"| {min(tc) / min(ing):.1f}x ({statistics.median(tc) / statistics.median(ing):.1f}x) "
        f"| {min(rd):.2f} ({statistics.median(rd):.2f}) | {cli:.2f} | {rss:.0f} |"
    )
    print()
    print("runs (trace-cmd report / ingest / reader, s):")
    for i, (a, b, c) in enumerate(zip(tc, ing, rd, strict=True)):
        print(f"  {i + 1}: {a:.2f} / {b:.2f} / {c:.2f}  ratio {a / b:.1f}x")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
