"""Walk ring-buffer pages (sub-buffers) of a trace.dat CPU stream into record arrays.

A page is ``u64 timestamp, long commit, data[commit & (1<<27)-1]``; the data is a chain of
4-byte-aligned entries whose first word holds ``type_len:5, time_delta:27`` (see
docs/formats.md section 3.4 and libtraceevent's kbuffer-parse.c):

* 1..28: a data record of ``type_len * 4`` bytes after the header word;
* 0: a data record whose length (+4) is in the next word (``array[0]``);
* 29: padding, ``array[0]`` bytes long; with ``time_delta == 0`` the rest of the page is padding;
* 30: time extend, ``(array[0] << 27) | time_delta`` added to the clock;
* 31: absolute time stamp, replacing the clock (its top 5 bits kept from the page's time).

The chain is inherently sequential within a page but independent across pages, so all pages
of a group are walked together: each step advances every unfinished page by one entry with
a few numpy operations ("lanes"), and everything else (timestamps with time extends and
absolute stamps, record offsets and lengths, sanity checks) is computed afterwards over all
visited entries at once. Padding deltas are added to the clock like trace-cmd (libtraceevent)
does, so timestamps match ``trace-cmd report``; the kernel's own reader skips them.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from rmapscope.errors import InputError

from ._file import MAX_CHUNK, FileReader, decompress

COMMIT_MASK = (1 << 27) - 1
MISSING_EVENTS = 1 << 31
MISSING_STORED = 1 << 30
TS_MSB = np.uint64(0xF8 << 56)
GROUP_BYTES = 8 << 20  # pages walked together (at most; less with many CPUs)
FIRST_GROUP_BYTES = 1 << 20  # the first group of a CPU: small, so decoding starts soon
READ_AHEAD = 1 << 20  # compressed CPU data read at once (chunks are ~10 pages each)

_U64 = np.uint64
#: Words an entry takes by its type_len: 1..28 are data (header + type_len words); 0 marks
#: the types whose length is elsewhere (0: array[0]; 29 padding; 30, 31 time stamps).
_STEPS = np.array([0, *range(2, 30), 0, 0, 0], dtype=np.int64)


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
    payload; ``raw_ts``: its timestamp in clock units; ``page``: its page index in the group.
    ``lost_pages``/``lost_counts``: pages whose header says events were lost before them
    (count -1 when the page does not store it).
    """

    rec_off: np.ndarray
    rec_len: np.ndarray
    raw_ts: np.ndarray
    page: np.ndarray
    lost_pages: np.ndarray
    lost_counts: np.ndarray


def _words(buf: np.ndarray, big: bool) -> np.ndarray:
    return buf.view(">u4" if big else "<u4")


def walk(buf: np.ndarray, n_pages: int, layout: PageLayout, where: Callable[[int], str]) -> Walked:
    """Walk ``n_pages`` pages held in ``buf`` (``n_pages * page_size`` bytes plus at least
    8 bytes of zero padding). ``where(page)`` describes a page's origin for error messages.
    """
    ps = layout.page_size
    hdr = layout.data_offset
    words = _words(buf, layout.big_endian)
    wps = ps // 4
    page_w = np.arange(n_pages, dtype=np.int64) * wps
    lo, hi = (1, 0) if layout.big_endian else (0, 1)
    ts0 = words[page_w + lo].astype(_U64) | (words[page_w + hi].astype(_U64) << _U64(32))
    if layout.long_size == 8:
        commit = words[page_w + (3 if layout.big_endian else 2)].astype(np.int64)
    else:
        commit = words[page_w + 2].astype(np.int64)
    size = commit & COMMIT_MASK
    bad = np.flatnonzero(size > ps - hdr)
    if len(bad):
        p = int(bad[0])
        raise InputError(
            f"{where(p)}: page header claims {int(size[p])} bytes of data in a "
            f"{ps}-byte page: corrupt trace.dat"
        )
    lost_pages, lost_counts = _lost(words, commit, size, page_w, layout)
    start_w = page_w + hdr // 4
    end_w = start_w + (size + 3) // 4

    # Walk: every step moves each unfinished page to its next entry. A page's k-th entry
    # is visited at step k, so (page, step) gives every entry its place without sorting.
    lanes = np.flatnonzero(size > 0)
    pos = start_w[lanes]
    end = end_w[lanes]
    visited: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    big = layout.big_endian
    for _ in range(wps + 1):
        if not len(pos):
            break
        visited.append(pos)
        owners.append(lanes)
        w = np.take(words, pos)
        if big:
            w = _header(w, big)
        step = np.take(_STEPS, w & 31)
        if not step.all():  # type 0 (length in array[0]) or 29..31
            special = np.flatnonzero(step == 0)
            sp_pos = pos[special]
            sp_tl = w[special] & 31
            a0 = np.take(words, sp_pos + 1).astype(np.int64)
            d = w[special] >> 5
            st = np.where(
                sp_tl == 0,
                2 + (a0 - 4 + 3) // 4,
                np.where(sp_tl == 29, np.where(d == 0, wps, 1 + a0 // 4), 2),
            )
            # array[0] < 4 (type 0) or a padding length that is not a multiple of 4 cannot
            # be walked: stop there, the check in _records reports it.
            broken = ((sp_tl == 0) & (a0 < 4)) | ((sp_tl == 29) & (d != 0) & (a0 % 4 != 0))
            step[special] = np.where(broken, wps, np.minimum(st, wps))
        pos = pos + step
        alive = pos < end
        if not alive.all():
            keep = np.flatnonzero(alive)
            pos, end, lanes = pos[keep], end[keep], lanes[keep]

    if not visited:
        empty = np.empty(0, np.int64)
        return Walked(
            empty, empty.astype(np.int32), empty.astype(_U64), empty, lost_pages, lost_counts
        )
    counts = np.bincount(np.concatenate(owners), minlength=n_pages)
    first = np.zeros(n_pages, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    vpos = np.empty(int(first[-1] + counts[-1]), dtype=np.int64)
    for k, (pos_k, lanes_k) in enumerate(zip(visited, owners, strict=True)):
        vpos[first[lanes_k] + k] = pos_k
    out = _records(words, vpos, ts0, first, counts, end_w, wps, where, bool(len(lost_pages)), big)
    out.lost_pages, out.lost_counts = lost_pages, lost_counts
    return out


def _lost(words, commit, size, page_w, layout: PageLayout) -> tuple[np.ndarray, np.ndarray]:
    missed = np.flatnonzero(commit & MISSING_EVENTS)
    counts = np.full(len(missed), -1, dtype=np.int64)
    if len(missed):
        stored = (commit[missed] & MISSING_STORED) != 0
        at = layout.data_offset + size[missed]  # the count is a long right after the data
        fits = stored & (at + layout.long_size <= layout.page_size) & (at % 4 == 0)
        idx = np.flatnonzero(fits)
        if len(idx):
            w = page_w[missed[idx]] + at[idx] // 4
            if layout.long_size == 8:
                lo, hi = (w + 1, w) if layout.big_endian else (w, w + 1)
                val = words[lo].astype(np.int64) | (words[hi].astype(np.int64) << 32)
            else:
                val = words[w].astype(np.int64)
            counts[idx] = val
    return missed, counts


def _header(w: np.ndarray, big: bool) -> np.ndarray:
    """Entry header words as ``time_delta << 5 | type_len`` whatever the byte order (a
    big-endian kernel puts type_len in the top 5 bits)."""
    if not big:
        return w
    return ((w & np.uint32(0x07FFFFFF)) << np.uint32(5)) | (w >> np.uint32(27))


def _records(words, vpos, ts0, first, counts, end_w, wps, where, want_pages, big) -> Walked:
    """Classify the visited entries of a group; compute timestamps and record extents."""
    n = len(vpos)
    w = _header(np.take(words, vpos), big)
    tl = w & 31
    special = np.flatnonzero((tl - 1) >= 28)  # type 0 (wraps around) or 29..31
    tl_sp = tl[special]
    a0_sp = np.take(words, vpos[special] + 1).astype(np.int64)
    d_sp = (w[special] >> 5).astype(_U64)
    pages = np.flatnonzero(counts)

    # Sanity. Only the last entry of a page can run past its committed data (the walk
    # stops there), and only special entries can be malformed.
    broken = ((tl_sp == 0) & (a0_sp < 4)) | ((tl_sp == 29) & (d_sp != 0) & (a0_sp % 4 != 0))
    last = first[pages] + counts[pages] - 1
    tl_l = tl[last].astype(np.int64)
    a0_l = np.take(words, vpos[last] + 1).astype(np.int64)
    len_l = np.where(tl_l == 0, 2 + (a0_l - 4 + 3) // 4, np.where(tl_l >= 30, 2, tl_l + 1))
    over = (tl_l != 29) & (vpos[last] + len_l > end_w[pages])
    if broken.any() or over.any():
        if broken.any():
            i = int(special[np.flatnonzero(broken)[0]])
            what = "a malformed entry"
        else:
            i = int(last[np.flatnonzero(over)[0]])
            what = "an entry that overruns the page's data"
        bad = int(np.searchsorted(first, i, side="right") - 1)
        at = int(vpos[i] - bad * wps) * 4
        raise InputError(f"{where(bad)}: {what} at byte {at} of the page: corrupt trace.dat")

    # Timestamps: per page, the page time plus the running sum of deltas; a time extend
    # adds array[0] << 27; an absolute stamp restarts the sum (keeping the top 5 bits of
    # the page time).
    delta = (w >> 5).astype(_U64)
    ext = tl_sp == 30
    if ext.any():
        delta[special[ext]] += a0_sp[ext].astype(_U64) << _U64(27)
    absm = tl_sp == 31
    is_abs = special[absm]
    if len(is_abs):
        delta[is_abs] = 0
    cs = np.cumsum(delta, dtype=_U64)
    starts = first[pages]
    base = ts0[pages] - (cs[starts] - delta[starts])
    ts = np.repeat(base, counts[pages]) + cs
    if len(is_abs):
        # after an absolute stamp, time continues from its value until the end of its page
        # or the next stamp: only those entries are redone (stamps are rare)
        abs_page = np.searchsorted(first, is_abs, side="right") - 1
        absval = (a0_sp[absm].astype(_U64) << _U64(27)) | d_sp[absm]
        absval |= ts0[abs_page] & TS_MSB
        stop = np.minimum(first[abs_page] + counts[abs_page], np.append(is_abs[1:], n))
        span = stop - is_abs
        k = np.repeat(np.arange(len(is_abs)), span)
        hit = np.arange(len(k)) + np.repeat(is_abs - (np.cumsum(span) - span), span)
        ts[hit] = absval[k] + (cs[hit] - cs[is_abs[k]])

    # data records: type 1..28 (payload right after the header word) and 0 (after array[0])
    sel = np.flatnonzero(tl <= 28) if (tl_sp >= 29).any() else np.arange(n)
    rec_off = (vpos[sel] + 1) * 4
    rec_len = (tl[sel] * 4).astype(np.int32)
    zero = special[tl_sp == 0]
    if len(zero):
        at = np.searchsorted(sel, zero)
        a0 = a0_sp[tl_sp == 0]
        rec_off[at] += 4
        rec_len[at] = ((a0 - 4 + 3) // 4 * 4).astype(np.int32)
    page = np.searchsorted(first, sel, side="right") - 1 if want_pages else np.empty(0, np.int64)
    return Walked(
        rec_off=rec_off,
        rec_len=rec_len,
        raw_ts=ts[sel],
        page=page,
        lost_pages=np.empty(0, np.int64),
        lost_counts=np.empty(0, np.int64),
    )


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
