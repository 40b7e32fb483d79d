"""Walk ring-buffer pages (sub-buffers) of a trace.dat CPU stream into record arrays.

A page is ``u64 timestamp, long commit, data[commit & (1<<27)-1]``; the data is a chain of
4-byte-aligned entries whose first word holds ``type_len:5, time_delta:27`` (see
docs/formats.md section 3.4 and libtraceevent's kbuffer-parse.c): data records (type_len
1..28, or 0 with the length in the next word), padding (29), time extends (30) and absolute
time stamps (31).

The walk itself is compiled (``rmapscope._native.walk_pages``, native/core/src/tracedat/
pages.rs): the chain is sequential within a page, which a loop walks at memory speed, with
every read bounds-checked, and the GIL released (page groups of several CPUs are walked on
two threads at once). Padding deltas are added to the clock like trace-cmd
(libtraceevent) does, so timestamps match ``trace-cmd report``; the kernel's own reader
skips them. This module keeps the Python side: page groups read (and decompressed) from
the file, and the errors, which name the page's place in the file.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from rmapscope._native import CorruptPage, walk_pages
from rmapscope.errors import InputError

from ._file import MAX_CHUNK, FileReader, decompress

GROUP_BYTES = 8 << 20  # pages walked together (at most; less with many CPUs)
FIRST_GROUP_BYTES = 1 << 20  # the first group of a CPU: small, so decoding starts soon
READ_AHEAD = 1 << 20  # compressed CPU data read at once (chunks are ~10 pages each)


@dataclass
class PageLayout:
    """How to read a page: size, endianness, kernel long size and data offset."""

    page_size: int
    big_endian: bool
    long_size: int
    data_offset: int  # 16 on 64-bit kernels, 12 on 32-bit


@dataclass
class Walked:
    """The data records of one group of pages, in page order.

    ``rec_off``/``rec_len``: byte offset (in the group buffer) and length of each record's
    payload; ``raw_ts``: its timestamp in clock units; ``page``: its page index in the group
    (only when some page lost events, else empty). ``lost_pages``/``lost_counts``: pages
    whose header says events were lost before them (count -1 when the page does not store
    it).
    """

    rec_off: np.ndarray
    rec_len: np.ndarray
    raw_ts: np.ndarray
    page: np.ndarray
    lost_pages: np.ndarray
    lost_counts: np.ndarray


def walk(buf: np.ndarray, n_pages: int, layout: PageLayout, where: Callable[[int], str]) -> Walked:
    """Walk ``n_pages`` pages held in ``buf`` (``n_pages * page_size`` bytes; reads past its
    end see zeros). ``where(page)`` describes a page's origin for error messages."""
    try:
        parts = walk_pages(
            buf,
            n_pages,
            layout.page_size,
            layout.big_endian,
            layout.long_size,
            layout.data_offset,
        )
    except CorruptPage as e:
        page, message = e.args
        raise InputError(f"{where(page)}: {message}") from None
    rec_off, rec_len, raw_ts, page, lost_pages, lost_counts = (
        np.frombuffer(memoryview(b), dtype=t)
        for b, t in zip(parts, ("<i8", "<i4", "<u8", "<i8", "<i8", "<i8"), strict=True)
    )
    return Walked(rec_off, rec_len, raw_ts, page, lost_pages, lost_counts)


# -- page sources ------------------------------------------------------------------------


@dataclass
class Group:
    """Consecutive pages of one CPU stream, with zero padding at the end."""

    buf: np.ndarray
    n_pages: int
    first_page: int  # index of the first page in the CPU stream
    where: Callable[[int], str]


def page_groups(
    f: FileReader,
    offset: int,
    size: int,
    layout: PageLayout,
    codec: str | None,
    label: str,
    group_bytes: int = GROUP_BYTES,
) -> Iterator[Group]:
    """The pages of one CPU's data (``size`` bytes at ``offset``), a group at a time.

    Uncompressed data is read straight from the file; compressed data (trace.dat v7) is a
    ``u32`` chunk count then ``u32 compressed, u32 uncompressed, data`` per chunk, and is
    decompressed one chunk at a time.
    """
    ps = layout.page_size
    f.check(offset, size, f"{label} data")
    per_group = _group_pages(max(1, group_bytes // ps), ps)
    if codec is None:
        n_pages = -(-size // ps)
        first = 0
        while first < n_pages:
            n = min(next(per_group), n_pages - first)
            start = offset + first * ps
            length = min(n * ps, offset + size - start)
            buf = _zeros(n * ps)
            f.read_into(start, buf.data[:length], f"{label} pages")
            yield Group(buf, n, first, _shifted(_where_plain(f.name, label, offset, ps), first))
            first += n
        return
    yield from _compressed_groups(f, offset, size, layout, codec, label, per_group)


def _group_pages(most: int, ps: int) -> Iterator[int]:
    """Pages per group: from about FIRST_GROUP_BYTES, doubling up to ``most``. The first
    batch needs the first group of every CPU, so it comes quickly; later, bigger groups
    walk more pages per step."""
    n = max(1, min(most, FIRST_GROUP_BYTES // ps))
    while True:
        yield n
        n = min(most, 2 * n)


def _where_plain(name: str, label: str, offset: int, ps: int) -> Callable[[int], str]:
    def where(page: int) -> str:
        return f"{name}: {label} page at byte {offset + page * ps}"

    return where


def _shifted(where: Callable[[int], str], first: int) -> Callable[[int], str]:
    """``where`` for a group whose page 0 is page ``first`` of the stream."""
    return lambda p: where(first + p)


def _zeros(n: int) -> np.ndarray:
    """A zeroed buffer for ``n`` bytes of pages plus padding (a multiple of 8 long)."""
    return np.zeros(n + 8 + (-n) % 8, dtype=np.uint8)


def _group(parts: list[np.ndarray], n: int, first: int, ps: int, where_abs) -> Group:
    """A group from decompressed pieces (one copy), zero-padded to ``n`` whole pages."""
    size = sum(len(p) for p in parts)
    total = n * ps + 8 + (-(n * ps)) % 8  # as _zeros(n * ps)
    buf = np.concatenate([*parts, np.zeros(total - size, dtype=np.uint8)])
    return Group(buf, n, first, lambda p: where_abs(first + p))


def _compressed_groups(f, offset, size, layout, codec, label, per_group) -> Iterator[Group]:
    ps = layout.page_size
    e = ">" if layout.big_endian else "<"
    # trace-cmd records the size of the chunks without the leading u32 count
    end = min(offset + 4 + size, f.size)
    if size < 4:
        if size:
            raise InputError(f"{f.name}: {label} data at byte {offset} is {size} bytes: corrupt")
        return
    count = struct.unpack(e + "I", f.read(offset, 4, f"{label} chunk count"))[0]
    if count > size // 8:
        raise InputError(
            f"{f.name}: {label} claims {count} compressed chunks in {size} bytes at byte "
            f"{offset}: corrupt trace.dat"
        )
    pos = offset + 4
    pending: list[np.ndarray] = []
    pending_bytes = 0
    total = 0  # uncompressed bytes so far
    chunk_pages: list[int] = []  # first page index of each chunk
    chunk_offsets: list[int] = []  # its file offset
    done_pages = 0
    want = next(per_group) * ps  # bytes of the next group
    # compressed bytes read ahead (many chunks per read)
    window, window_at = memoryview(b""), offset

    def read(at: int, n: int, what: str) -> memoryview:
        nonlocal window, window_at
        if at < window_at or at + n > window_at + len(window):
            window = memoryview(f.read(at, max(n, min(READ_AHEAD, end - at)), what))
            window_at = at
        return window[at - window_at : at - window_at + n]

    def where(page: int) -> str:
        i = bisect.bisect_right(chunk_pages, page) - 1
        at = chunk_offsets[i] if i >= 0 else offset
        return f"{f.name}: {label} page {page} (in the compressed chunk at byte {at})"

    for i in range(count):
        if pos + 8 > end:
            raise InputError(
                f"{f.name}: {label} chunk {i} header at byte {pos} lies beyond its data "
                f"({end}): corrupt trace.dat"
            )
        zsize, usize = struct.unpack(e + "II", read(pos, 8, f"{label} chunk header"))
        if pos + 8 + zsize > end:
            raise InputError(
                f"{f.name}: {label} chunk {i} at byte {pos} claims {zsize} bytes, beyond its "
                f"data ({end}): corrupt trace.dat"
            )
        if usize > MAX_CHUNK:
            raise InputError(
                f"{f.name}: {label} chunk {i} at byte {pos} claims {usize} uncompressed bytes "
                f"(limit {MAX_CHUNK}): corrupt trace.dat"
            )
        zdata = read(pos + 8, zsize, f"{label} chunk")
        data = decompress(codec, zdata, usize, f.name, f"{label} chunk at byte {pos}")
        chunk_pages.append(total // ps)
        chunk_offsets.append(pos)
        total += len(data)
        pos += 8 + zsize
        pending.append(np.frombuffer(data, dtype=np.uint8))
        pending_bytes += len(data)
        if pending_bytes >= want:
            want = next(per_group) * ps
            n = pending_bytes // ps
            cut = n * ps - (pending_bytes - len(pending[-1]))  # whole pages only
            head, rest = pending[-1][:cut], pending[-1][cut:]
            yield _group([*pending[:-1], head], n, done_pages, ps, where)
            done_pages += n
            pending = [rest] if len(rest) else []
            pending_bytes = len(rest)
    if pending_bytes:
        n = -(-pending_bytes // ps)
        yield _group(pending, n, done_pages, ps, where)
