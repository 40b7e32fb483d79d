"""Corrupt trace.dat files fail cleanly: an InputError naming the file and a byte offset.

More than 1,000 mutated copies of small trace.dat files made from the real captures (their
formats, cmdlines and first pages, written as v6, v7, v7+zstd and v7+zlib) and of the
hand-made test files: truncations, byte flips in the header, options, sections and page
headers, absurd sizes and offsets, garbage pages. Each copy must either ingest or raise
:class:`InputError` (never another exception), within a few seconds, without big
allocations (traced with tracemalloc, which sees numpy buffers and Python bytes).
"""

from __future__ import annotations

import random
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
from rmapscope.ingest.tracedat import TraceDatReader
from rmapscope.record import tracedat as tw
from rmapscope.schema import default_registry
from tests._tracedat_extract import extract
from tests.conftest import real
from tests.ingest.test_tracedat import synthetic

CASES = 1050
PER_CASE_SECONDS = 10
PEAK_BYTES = 256 << 20  # far above what these small files need, far below an absurd size
SYSTEMS = {"kmem", "migrate", "compaction", "sched", "task", "mmap", "thp", "huge_memory"}


@pytest.fixture(scope="module")
def bases() -> list[tuple[str, bytes, tw.Layout]]:
    out = []
    for path, pages in (("thp/trace-cmd-v7/trace.dat", 3), ("forkstorm/trace-cmd-v6/trace.dat", 2)):
        spec = extract(str(real(path)), max_pages=pages, systems=SYSTEMS)
        for version, codec in ((6, None), (7, None), (7, "zstd"), (7, "zlib")):
            data, layout = tw.write(spec, version, codec)
            out.append((f"{path.split('/')[0]}-v{version}-{codec}", data, layout))
    for big in (False, True):
        for version, codec in ((6, None), (7, "zstd")):
            data, layout = tw.write(synthetic(big=big, instance=True), version, codec)
            out.append((f"synthetic-v{version}-{codec}-{'be' if big else 'le'}", data, layout))
    return out


ABSURD = [
    0,
    1,
    3,
    0x7F,
    0xFFFF,
    0x7FFFFFFF,
    0xFFFFFFFF,
    1 << 32,
    1 << 40,
    (1 << 63) - 1,
    (1 << 64) - 1,
]


def mutate(rng: random.Random, data: bytes, layout: tw.Layout) -> tuple[str, bytes]:
    """One random corruption of ``data``, and a description of it."""
    buf = bytearray(data)
    kind = rng.choice(
        ["truncate", "flip", "header", "region", "size", "size", "page", "page", "garbage", "zero"]
    )
    if kind == "truncate":
        cut = rng.randrange(len(buf))
        return f"truncate at {cut}", bytes(buf[:cut])
    if kind == "flip":
        spots = [rng.randrange(len(buf)) for _ in range(rng.randint(1, 8))]
        for at in spots:
            buf[at] ^= 1 << rng.randrange(8)
        return f"flip bits at {spots}", bytes(buf)
    if kind == "header":
        at = rng.randrange(min(64, len(buf)))
        buf[at] = rng.randrange(256)
        return f"header byte {at}", bytes(buf)
    if kind == "region":
        name, (lo, hi) = rng.choice(sorted(layout.regions.items()))
        spots = [rng.randrange(lo, max(lo + 1, hi)) for _ in range(rng.randint(1, 4))]
        for at in spots:
            if at < len(buf):
                buf[at] = rng.randrange(256)
        return f"region {name} bytes {spots}", bytes(buf)
    if kind == "size":
        at, width = rng.choice(layout.size_fields)
        value = rng.choice(ABSURD) if rng.random() < 0.7 else rng.getrandbits(8 * width)
        value &= (1 << (8 * width)) - 1
        buf[at : at + width] = value.to_bytes(width, rng.choice(["little", "big"]))
        return f"size field at {at} = {value:#x}", bytes(buf)
    if kind in ("page", "garbage") and layout.page_starts:
        at = rng.choice(layout.page_starts)
        if kind == "page":  # the page header: timestamp and commit (flags, size)
            off = at + rng.choice([0, 4, 8, 9, 10, 11, 12])
            buf[off] = rng.randrange(256)
            return f"page header at {at} (+{off - at})", bytes(buf)
        n = rng.randrange(4, 256)
        start = at + rng.randrange(16, 4000)
        buf[start : start + n] = rng.randbytes(n)[: max(0, len(buf) - start)]
        return f"garbage in page at {at}", bytes(buf)
    lo = rng.randrange(len(buf))
    n = rng.randrange(1, 512)
    buf[lo : lo + n] = bytes(min(n, len(buf) - lo))
    return f"zero {n} bytes at {lo}", bytes(buf)


class _Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Timeout


def read_all(path: Path) -> int:
    """Decode with the reader alone (what ingest does, minus the Parquet writing)."""
    src = open_source(str(path))
    try:
        blocks = read_blocks(src)
        reader = TraceDatReader(src, next(blocks, b""), blocks, "x86_64", default_registry().copy())
        return sum(b.n_events for b in reader.batches())
    finally:
        src.close()


@pytest.mark.slow
def test_mutated_trace_dat_files_fail_cleanly(tmp_path, bases):
    rng = random.Random(20240611)
    old = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    threads = threading.active_count()
    outcomes = {"ok": 0, "InputError": 0}
    problems = []
    started = time.monotonic()
    try:
        for case in range(CASES):
            name, data, layout = bases[case % len(bases)]
            what, bad = mutate(rng, data, layout)
            path = tmp_path / f"case{case}-{name}.dat"
            path.write_bytes(bad)
            tracemalloc.reset_peak()
            signal.alarm(PER_CASE_SECONDS)
            try:
                if case % 10 == 0:  # every tenth case through the whole ingest
                    ingest(str(path), Dataset(tmp_path / f"ds{case}"))
                else:
                    read_all(path)
                outcomes["ok"] += 1
            except InputError as e:
                outcomes["InputError"] += 1
                msg = str(e)
                no_events = "no trace events found" in msg
                if str(path) not in msg or ("byte" not in msg and not no_events):
                    problems.append(f"{name}: {what}: message without file/offset: {msg}")
            except _Timeout:
                problems.append(f"{name}: {what}: no answer in {PER_CASE_SECONDS} s")
            except Exception as e:
                problems.append(f"{name}: {what}: {type(e).__name__}: {e}")
            finally:
                signal.alarm(0)
            peak = tracemalloc.get_traced_memory()[1]
            if peak > PEAK_BYTES:
                problems.append(f"{name}: {what}: peak allocation {peak >> 20} MiB")
            path.unlink()
    finally:
        signal.signal(signal.SIGALRM, old)
        tracemalloc.stop()
    assert not problems, "\n".join(problems[:20])
    assert sum(outcomes.values()) == CASES >= 1000
    assert outcomes["ok"] > 0 and outcomes["InputError"] > CASES // 4, outcomes
    assert threading.active_count() <= threads + 1  # no decoding threads left behind
    assert time.monotonic() - started < 120
