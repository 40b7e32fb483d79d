"""Damaged text traces fail cleanly: they ingest, or raise the one-line InputError.

More than 1,000 mutated copies of slices of the real text captures (every tracefs variant,
trace_pipe, trace-cmd reports, perf script, bpftrace; the bundled sample when the shared
data is missing): bit flips, runs of random bytes, truncations, swapped and duplicated
lines, huge numbers, invalid UTF-8, lost newlines, NULs, a forced wrong ``--format``. Each
copy must ingest or raise :class:`InputError` (never another exception), within a few
seconds, without big allocations (tracemalloc, which sees numpy buffers and Python bytes, on
every fifth case and every full ingest; a peak-RSS bound over all of them). Seeded:
a failure names the case, and the same seed makes the same copy again.
"""

from __future__ import annotations

import gzip
import random
import re
import resource
import signal
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from rmapscope.dataset import Dataset
from rmapscope.errors import InputError
from rmapscope.ingest import ingest
from rmapscope.ingest._source import open_source, read_blocks
from rmapscope.ingest.detect import detect_format
from rmapscope.ingest.text import TEXT_FORMATS, TextReader
from rmapscope.schema import default_registry
from tests.conftest import REAL, REPO

CASES = 1050
SEED = 20261202
PER_CASE_SECONDS = 10
PEAK_BYTES = 256 << 20
# tracemalloc doubles a case's cost: every fifth case gets its exact allocation peak, and
# every case is under the process's peak-RSS bound
TRACED_EVERY = 5
WINDOW = 120  # lines per slice
READ_LINES = 60000  # how far into a capture the slices may start

# One capture per layout (the trace-cmd v6 / v7-uncompressed reports are the v7 text again).
FILES = [
    f"{run}/{path}"
    for run in ("forkstorm", "thp")
    for path in (
        "bpftrace/bpftrace.txt.gz",
        "ftrace-text-clock-counter/trace.txt.gz",
        "ftrace-text-clock-mono/trace.txt.gz",
        "ftrace-text-default/trace.txt.gz",
        "ftrace-text-latency-format/trace.txt.gz",
        "ftrace-text-noirqinfo/trace.txt.gz",
        "ftrace-text-tgid/trace.txt.gz",
        "ftrace-text-nooverwrite/trace.txt.gz",
        "ftrace-text-wrapped-overwrite/trace.txt.gz",
        "ftrace-trace_pipe/trace_pipe.txt.gz",
        "ftrace-trace_pipe-lossy/trace_pipe.txt.gz",
        "perf/perf-script.txt.gz",
        "perf/perf-script-F.txt.gz",
        "trace-cmd-v7/report.txt.gz",
        "trace-cmd-v7/report-l.txt.gz",
        "trace-cmd-v7/report-t.txt.gz",
        "trace-cmd-v7/report-cpu0.txt.gz",
    )
]
SAMPLE = REPO / "data" / "samples" / "forkstorm-slice.trace.txt.gz"
# where the slices start: the top, and the first line of these events (when there is one)
LANDMARKS = ("set_migration_pte", "sched_process_fork", "mm_compaction", "task_rename", "=>")
_HEAD = re.compile(rb"^(?:#|\s*cpus=|Attach|\s*$)")


def slices(path: Path) -> bytes:
    """The header of a capture and windows of lines around its landmarks, as one trace."""
    lines: list[bytes] = []
    with gzip.open(path, "rb") as f:
        for i, line in enumerate(f):
            if i >= READ_LINES:
                break
            lines.append(line)
    head = 0
    while head < min(len(lines), 60) and _HEAD.match(lines[head]):
        head += 1
    starts = [head]
    for mark in LANDMARKS:
        at = next((i for i, ln in enumerate(lines) if mark.encode() in ln and i >= head), None)
        if at is not None:
            starts.append(max(head, at - WINDOW // 3))
    body: list[bytes] = []
    for s in sorted(set(starts)):
        body.extend(lines[s : s + WINDOW])
    return b"".join(lines[:head] + body)


@pytest.fixture(scope="module")
def bases() -> list[tuple[str, bytes]]:
    found = [(name, REAL / name) for name in FILES if (REAL / name).exists()]
    if not found:  # no shared captures here: the bundled sample still tests something
        found = [("sample", SAMPLE)]
    return [(name, slices(path)) for name, path in found]


HUGE = [
    b"99999999999999999999999999",
    b"18446744073709551616",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"0x" + b"f" * 40,
    b"4294967296",
    b"-1",
    b"1e308",
    b"0",
]
INVALID = [b"\xff", b"\xfe\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]


def mutate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One random corruption of ``data``, and a description of it."""
    buf = bytearray(data)
    kind = rng.choice(
        ["flip", "run", "truncate", "swap", "dup", "huge", "huge", "utf8", "utf8", "newline"]
    )
    if kind == "flip":
        spots = [rng.randrange(len(buf)) for _ in range(rng.randint(1, 16))]
        for at in spots:
            buf[at] ^= 1 << rng.randrange(8)
        return f"flip bits at {spots}", bytes(buf)
    if kind == "run":
        at, n = rng.randrange(len(buf)), rng.randrange(1, 300)
        fill = rng.choice([rng.randbytes(n), bytes([rng.randrange(256)]) * n, b" " * n])
        if rng.random() < 0.5:
            buf[at:at] = fill
        else:
            buf[at : at + n] = fill
        return f"run of {n} bytes at {at}", bytes(buf)
    if kind == "truncate":
        cut = rng.randrange(len(buf))
        return f"truncate at {cut}", bytes(buf[:cut])
    lines = bytes(buf).splitlines(keepends=True)
    if kind in ("swap", "dup"):
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        if kind == "swap":
            lines[a], lines[b] = lines[b], lines[a]
            return f"swap lines {a} and {b}", b"".join(lines)
        n = rng.randint(1, 50)
        lines[a:a] = [lines[b]] * n
        return f"line {b} {n} times at {a}", b"".join(lines)
    if kind == "huge":
        numbers = list(re.finditer(rb"\d+", data))
        picks = rng.sample(numbers, min(len(numbers), rng.randint(1, 6)))
        for m in sorted(picks, key=lambda m: -m.start()):
            buf[m.start() : m.end()] = rng.choice(HUGE)
        return f"huge numbers at {[m.start() for m in picks]}", bytes(buf)
    if kind == "utf8":
        spots = sorted((rng.randrange(len(buf)) for _ in range(rng.randint(1, 8))), reverse=True)
        for at in spots:
            bad = rng.choice(INVALID)
            if rng.random() < 0.5:
                buf[at:at] = bad
            else:
                buf[at : at + len(bad)] = bad
        return f"invalid UTF-8 at {spots}", bytes(buf)
    # lost line breaks, or NULs and carriage returns where they were
    spots = [m.start() for m in re.finditer(rb"\n", data)]
    picks = rng.sample(spots, min(len(spots), rng.randint(1, 20)))
    repl = rng.choice([b"", b"\r", b"\x00", b"\r\n\n"])
    for at in sorted(picks, reverse=True):
        buf[at : at + 1] = repl
    return f"newlines at {picks} -> {repl!r}", bytes(buf)


class _Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Timeout


def read_all(path: Path, fmt: str | None) -> int:
    """Parse with the text reader alone (what ingest does, minus the Parquet writing)."""
    src = open_source(str(path))
    try:
        blocks = read_blocks(src, 1 << 14)  # several blocks per copy: the block seams too
        first = next(blocks, b"")
        fmt = fmt or detect_format(first, src.name)
        if fmt not in TEXT_FORMATS:
            return 0
        reader = TextReader(src, first, blocks, fmt, "x86_64", default_registry().copy())
        return sum(b.n_events for b in reader.batches())
    finally:
        src.close()


def run_cases(tmp_path: Path, bases, cases: int, seed: int) -> tuple[dict, list[str]]:
    """Mutate and read ``cases`` copies; the outcome counts and every problem found."""
    rng = random.Random(seed)
    old = signal.signal(signal.SIGALRM, _alarm)
    rss_before = _peak_rss()
    outcomes = {"ok": 0, "InputError": 0}
    problems = []
    try:
        for case in range(cases):
            name, data = bases[case % len(bases)]
            what, bad = mutate(rng, data)
            fmt = rng.choice(TEXT_FORMATS) if rng.random() < 0.1 else None
            path = tmp_path / f"case{case}.txt"
            path.write_bytes(gzip.compress(bad, 1) if rng.random() < 0.2 else bad)
            where = f"case {case} ({name}, {what}, format {fmt})"
            traced = case % TRACED_EVERY == 0
            if traced:
                tracemalloc.start()
            signal.alarm(PER_CASE_SECONDS)
            try:
                if case % 10 == 0:  # every tenth case through the whole ingest
                    ingest(str(path), Dataset(tmp_path / f"ds{case}"), fmt=fmt)
                else:
                    read_all(path, fmt)
                outcomes["ok"] += 1
            except InputError as e:
                outcomes["InputError"] += 1
                msg = str(e)
                if "\n" in msg or not msg.startswith(str(path)):
                    problems.append(f"{where}: not a one-line message naming the file: {msg!r}")
            except _Timeout:
                problems.append(f"{where}: no answer in {PER_CASE_SECONDS} s")
            except Exception as e:
                problems.append(f"{where}: {type(e).__name__}: {e}"[:400])
            finally:
                signal.alarm(0)
            if traced:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                if peak > PEAK_BYTES:
                    problems.append(f"{where}: peak allocation {peak >> 20} MiB")
            path.unlink()
    finally:
        signal.signal(signal.SIGALRM, old)
        tracemalloc.stop()
    grown = _peak_rss() - rss_before
    if grown > PEAK_BYTES:
        problems.append(f"the process's peak RSS grew by {grown >> 20} MiB over the cases")
    return outcomes, problems


def _peak_rss() -> int:
    """This process's peak resident set size so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10


@pytest.mark.slow
def test_mutated_text_traces_fail_cleanly(tmp_path, bases):
    threads = threading.active_count()
    started = time.monotonic()
    outcomes, problems = run_cases(tmp_path, bases, CASES, SEED)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])
    assert sum(outcomes.values()) == CASES >= 1000
    # most copies still hold events: the mutations damage traces, they do not destroy them
    assert outcomes["ok"] > CASES // 2, outcomes
    assert threading.active_count() <= threads + 1  # no parsing threads left behind
    assert time.monotonic() - started < 600


def test_a_few_mutated_text_traces_fail_cleanly(tmp_path, bases):
    """The first cases of another seed, in the quick run."""
    outcomes, problems = run_cases(tmp_path, bases, 30, SEED + 1)
    assert not problems, "\n".join(problems[:20])
    assert outcomes["ok"] > 0, outcomes
