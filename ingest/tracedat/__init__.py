"""Read trace-cmd ``trace.dat`` files (versions 6 and 7) without trace-cmd or libtraceevent.

:class:`TraceDatReader` implements :class:`~rmapscope.ingest.readers.Reader`. It reads the
file's metadata (formats, cmdlines, options, buffers; see :mod:`._file`), walks the
ring-buffer pages of every CPU of every buffer (:mod:`._pages`), merges the CPUs by
timestamp like ``trace-cmd report`` (earliest first, ties to the lower buffer/CPU; a CPU
whose clock steps back keeps its own order) and decodes each event type's records with
numpy (:mod:`._decode`).

What the batches hold:

* one table per event type (``event=<name>``), typed by the file's own format: the file's
  formats are added to ``registry`` (lazily: a format is parsed the first time its event is
  seen or looked up, since a trace.dat carries thousands of them); ftrace's own events
  (``function``, ``print``...) get typed tables too, with raw fields, except ``bprint``,
  formatted with the file's printk formats, and the stacks, whose ``caller`` lists every
  frame (docs/formats.md section 3.6). ``other_events`` only holds events whose format
  cannot be parsed, with their raw fields as ``name=value`` text.
* the probes of the contract (kprobe, kretprobe and fprobe formats of ``data/probes``'
  events, found by their ``__probe_ip`` / ``__probe_func`` fields, not their name: the
  probe on ``remove_migration_pte`` is not the tracepoint) get the ``probe_<name>`` tables
  the text readers make, ``func`` and ``caller`` named with the file's kallsyms
  (:mod:`._probes`).
* common columns: ``ts`` in ns (the file's clock, TSC2NSEC, DATE and OFFSET applied; the
  raw count for non-ns clocks), ``comm`` from the file's saved cmdlines (``<idle>`` for
  pid 0, ``<...>`` when unknown, like trace-cmd), ``flags`` as the kernel prints the
  latency flags (see :func:`._decode.flag_tables`), ``tgid`` null, ``instance``
  null for the top buffer, else the instance name.
* gaps: a ``lost`` marker for every page whose header says events were lost before it,
  with the count when the page stores it; ``line`` is the seq of the first event after it.

Memory stays bounded: pages are read (and v7 chunks decompressed) a group at a time per
CPU, and batches of about :attr:`TraceDatReader.batch_events` events are emitted as soon as
every CPU has data past their end.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
import polars as pl
import pyarrow as pa

from rmapscope._native import decode_batch
from rmapscope.catalog import (
    GAP_LOST,
    GENERIC_DIR,
    PROBE_PREFIX,
    RECORD_SHORTER_THAN_FORMAT,
    SHORT_RECORD,
    UNKNOWN_EVENT_ID,
)
from rmapscope.errors import InputError
from rmapscope.schema import EventSchema, Registry

from .._batch import Batch, ErrorLog, HeaderInfo, kind_stats
from .._bytes import escape
from .._source import Source
from ..fields import FieldParser
from ._bprint import printk_formats
from ._decode import (
    Buffer,
    CommMap,
    Decoder,
    EventDecoder,
    build_decoder,
    enum_column,
    flag_codes,
    flag_tables,
    modern_spelling,
    repeat_string,
    to_series,
)
from ._file import MAGIC, FileReader, Metadata, read_metadata
from ._pages import GROUP_BYTES, PageLayout, page_groups, walk
from ._probes import ProbeFormat, Symbols, probe_columns, probe_format

__all__ = ["TraceDatReader"]

#: Clocks whose timestamps are nanoseconds (trace_clocks[] in the kernel, in_ns = 1).
NS_CLOCKS = {"local", "global", "perf", "mono", "mono_raw", "boot", "tai"}
MAX_STREAMS = 1 << 14  # CPU buffers (CPUs x instances) with data
_NAME_ID = re.compile(r"^name:\s*(\S+)\s*\nID:\s*(\d+)", re.M)


class _FileRegistry(Registry):
    """The default registry plus the file's formats, each parsed when first needed."""

    def __init__(self, base: Registry, pending: dict[str, tuple[str, str]]) -> None:
        super().__init__(base._schemas)
        self._pending = dict(pending)
        self._failed: set[str] = set()
        self._lock = threading.RLock()

    def load(self, name: str) -> EventSchema | None:
        """Parse the file's format of ``name`` now; None if the file's format is unusable."""
        with self._lock:
            return self._load(name)

    def _load(self, name: str) -> EventSchema | None:
        item = self._pending.pop(name, None)
        if item is not None:
            system, text = item
            try:
                return self.add_format(text, system=system)
            except Exception:  # any format we cannot parse is just unusable
                pass
            # a print fmt we cannot parse: keep the fields, drop the print fmt
            plain = "\n".join(
                ln for ln in text.splitlines() if not ln.strip().startswith("print fmt:")
            )
            try:
                return self.add_format(plain, system=system)
            except Exception:  # still unusable: raw text in other_events
                self._failed.add(name)
                self._schemas.pop(name, None)  # never decode with a shipped layout
                return None
        if name in self._failed:
            return None
        return super().get(name)

    def get(self, name: str) -> EventSchema | None:
        if name in self._pending:
            self.load(name)
        with self._lock:
            return super().get(name)

    def names(self) -> list[str]:
        return sorted(set(super().names()) | set(self._pending))

    def copy(self) -> Registry:
        for name in list(self._pending):
            self.load(name)
        return Registry(self._schemas)


@dataclass
class _Segment:
    """Decoded records of one page group of a stream, not yet emitted."""

    buf: np.ndarray
    rec_off: np.ndarray
    rec_len: np.ndarray
    ts: np.ndarray
    key: np.ndarray
    common: tuple  # (event type, common_flags, common_preempt_count, common_pid) arrays
    first: int  # stream-wide index of the first record
    pos: int = 0  # records already emitted

    @property
    def left(self) -> int:
        return len(self.ts) - self.pos


@dataclass
class _Stream:
    """One CPU of one buffer: its page groups and the records decoded but not yet emitted."""

    index: int
    buffer: int
    cpu: int
    groups: Iterator
    layout: PageLayout
    exhausted: bool = False
    segments: deque = field(default_factory=deque)
    pending: int = 0
    decoded: int = 0  # records decoded so far
    max_key: int = -(1 << 63)
    markers: list = field(default_factory=list)  # [stream record index, count, text]
    ahead: Future | None = None  # the next page group, being decoded

    @property
    def last_key(self) -> int:
        return int(self.segments[-1].key[-1])


class TraceDatReader:
    """Reads one trace.dat: metadata at construction, event batches from :meth:`batches`
    (in time order, merged across CPUs), :meth:`close` to stop and release everything."""

    time_ordered = True

    batch_events = 1 << 19
    page_threads = 2  # threads reading, decompressing and walking page groups
    # threads decoding batches (handed on in order); more than one measured no faster on
    # 2 cores and costs CPU (GIL and thread-pool contention)
    build_threads = 1

    def __init__(
        self,
        src: Source,
        first: bytes,
        rest: Iterator[bytes],
        arch: str,
        registry: Registry,
    ) -> None:
        self.src = src
        self.name = src.name
        self._rest: Iterator[bytes] | None = rest
        self._tmp: str | None = None
        self._stop = threading.Event()  # set: the decoding thread of batches() stops
        self._worker: threading.Thread | None = None
        self._drain: _Drain | None = None
        if not first.startswith(MAGIC):  # before spooling a compressed or piped input
            raise InputError(f"{src.name}: not a trace-cmd trace.dat (bad magic at byte 0)")
        path = self._materialize(src, first)
        try:
            self._file = FileReader(path, src.name)
            self.meta: Metadata = read_metadata(self._file)
        except BaseException:
            self.close()
            raise
        meta = self.meta
        machine = release = host = None
        if meta.uname:
            parts = meta.uname.split()
            host = parts[1] if len(parts) > 1 else None
            release = parts[2] if len(parts) > 2 else None
            machine = parts[-1] if len(parts) > 3 else None
        arch = meta.arch(arch, machine)  # the file knows better than the default
        self.arch = arch
        cpus = meta.cpucount or max((len(b.cpus) for b in meta.buffers), default=0) or None
        self.header = HeaderInfo(
            format="trace_dat",
            kernel=release,
            cpus=cpus,
            clock=meta.clock,
            host=host,
            arch=arch if machine or meta.long_size == 4 else None,
        )
        self.ns_clock = meta.clock is None or meta.clock in NS_CLOCKS or meta.tsc2nsec is not None
        pending: dict[str, tuple[str, str]] = {}
        self._ids: dict[int, tuple[str, str, str]] = {}  # id -> (name, system, text)
        self._probes: dict[int, ProbeFormat] = {}  # id -> layout, for probe_<name> tables
        self._symbols: Symbols | None = None  # from the file's kallsyms, when a probe needs it
        for system, text in meta.formats:
            text = modern_spelling(text)
            m = _NAME_ID.search(text)
            if not m:
                continue
            name, ev_id = m.group(1), int(m.group(2))
            self._ids[ev_id] = (name, system, text)
            probe = probe_format(name, text)
            if probe is not None:  # a probe of the contract: its own table, not its name's
                self._probes[ev_id] = probe
                continue
            pending[name] = (system, text)
        self.registry = _FileRegistry(registry, pending)
        self._decoders: dict[int, EventDecoder | None] = {}
        self._decoder = Decoder(meta.big_endian, printk_formats(meta.printk or b""))
        self._fields = FieldParser(arch)
        self._comms = CommMap(meta.cmdlines)
        self._flag_tables = flag_tables(_lazy_resched(release))
        self._common_layout = self._common_fields_layout()
        self._min_record = max(off + size for off, size in self._common_layout)

    # -- setup -----------------------------------------------------------------------------

    def _materialize(self, src: Source, first: bytes) -> str:
        """A path with random access to the trace: the file itself, or a spooled copy of a
        compressed or piped one."""
        if src.compression is None and src.name != "<stdin>" and os.path.isfile(src.name):
            return src.name
        fd, path = tempfile.mkstemp(prefix="rmapscope-tracedat-", suffix=".dat")
        self._tmp = path
        weakref.finalize(self, _remove, path)  # even if batches() never runs
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(first)
                for block in self._rest or ():
                    out.write(block)
        except BaseException:
            self.close()
            raise
        self._rest = None
        return path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the decoding of :meth:`batches`, close the file and remove a spooled copy
        (idempotent). A decoding thread that does not stop within 30 s keeps the file open:
        it could otherwise read whatever file reuses the descriptor."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        if self._drain is not None:
            self._drain.stop()
        if self._worker is not None and self._worker.is_alive():
            return
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
        if self._tmp:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def _common_fields_layout(self) -> tuple[tuple[int, int], ...]:
        """(offset, size) of common_type, common_flags, common_preempt_count, common_pid,
        from the file's formats (the same in every event of a kernel)."""
        want = ("common_type", "common_flags", "common_preempt_count", "common_pid")
        default = ((0, 2), (2, 1), (3, 1), (4, 4))
        pattern = r"field:[^;]*\b(common_\w+);\s*offset:(\d+);\s*size:(\d+);"
        for _name, _system, text in self._ids.values():
            found = {
                m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(pattern, text)
            }
            if all(k in found for k in want):
                layout = tuple(found[k] for k in want)
                if all(size in (1, 2, 4, 8) and off < 64 for off, size in layout):
                    return layout
        return default

    def _decoder_for(self, ev_id: int) -> EventDecoder | None:
        if ev_id in self._decoders:
            return self._decoders[ev_id]
        dec = None
        item = self._ids.get(ev_id)
        if item is not None:
            name, _system, text = item
            pending = self.registry._pending.get(name)
            schema = self.registry.get(name)
            # decode with the file's own format only (not a shipped one, nor the format of
            # another system's event with the same name)
            if (
                schema is not None
                and schema.id == ev_id
                and (pending is None or pending[1] == text)
            ):
                try:
                    dec = build_decoder(schema, text)
                except Exception:  # an unusable format: raw text instead
                    dec = None
        self._decoders[ev_id] = dec
        return dec

    # -- streams ---------------------------------------------------------------------------

    def _streams(self) -> list[_Stream]:
        meta = self.meta
        _c_off, c_size, d_off = meta.page_header
        streams: list[_Stream] = []
        n_streams = sum(1 for b in meta.buffers for c in b.cpus if c.size)
        if n_streams > MAX_STREAMS:
            raise InputError(
                f"{self.name}: {n_streams} CPU buffers with data (BUFFER options and CPU "
                f"tables from byte {meta.buffers[0].section}): corrupt trace.dat"
            )
        # pages are walked a group at a time per CPU (and the next one decoded ahead): big
        # groups amortise the walk, but all CPUs' groups together stay within ~256 MiB
        page = max(b.page_size for b in meta.buffers) if meta.buffers else 4096
        group = min(GROUP_BYTES, max(page, (128 << 20) // max(1, n_streams)))
        for bi, b in enumerate(meta.buffers):
            layout = PageLayout(b.page_size, meta.big_endian, c_size, d_off)
            if b.page_size <= d_off:
                at = f"the BUFFER section at byte {b.section}" if b.section else "byte 14"
                raise InputError(
                    f"{self.name}: sub-buffer size {b.page_size} ({at}) is too small: corrupt "
                    "trace.dat"
                )
            codec = meta.compression if b.compressed else None
            for c in b.cpus:
                if c.size == 0:
                    continue
                label = f"CPU {c.cpu}" + (f" of buffer {b.name!r}" if b.name else "")
                groups = page_groups(self._file, c.offset, c.size, layout, codec, label, group)
                streams.append(_Stream(len(streams), bi, c.cpu, groups, layout))
        return streams

    def _fill(self, s: _Stream) -> None:
        """Take the next decoded page group of ``s`` (or mark it exhausted), and start
        decoding the one after it in the background."""
        future = s.ahead or self._pool.submit(self._load, s)
        loaded = future.result()
        s.ahead = None
        if loaded is None:
            s.exhausted = True
            return
        s.ahead = self._pool.submit(self._load, s)
        group, w, ts, common = loaded
        n = len(w.rec_off)
        if len(w.lost_pages):
            # each marker sits before the first record of its page (or of a later page)
            at = np.searchsorted(w.page, w.lost_pages, side="left")
            for idx, count in zip(at.tolist(), w.lost_counts.tolist(), strict=True):
                s.markers.append([s.decoded + idx, None if count < 0 else count])
        if n:
            key = np.maximum.accumulate(np.maximum(ts, s.max_key))
            s.max_key = int(key[-1])
            s.segments.append(
                _Segment(group.buf, w.rec_off, w.rec_len, ts, key, common, first=s.decoded)
            )
            s.pending += n
            s.decoded += n

    def _load(self, s: _Stream):
        """Read, decompress and walk the next page group of ``s`` (None at its end)."""
        group = next(s.groups, None)
        if group is None:
            return None
        w = walk(group.buf, group.n_pages, s.layout, group.where)
        if not len(w.rec_off):
            return group, w, None, None
        ts = self._to_ns(w.raw_ts)
        common = self._common_fields(
            Buffer([group.buf], self.meta.big_endian, pad=False), w.rec_off
        )
        return group, w, ts, common

    def _to_ns(self, raw: np.ndarray) -> np.ndarray:
        meta = self.meta
        ts = raw
        if meta.tsc2nsec is not None:
            mult, shift, _offset = meta.tsc2nsec
            lo = (raw & np.uint64(0xFFFFFFFF)) * np.uint64(mult)
            hi = (raw >> np.uint64(32)) * np.uint64(mult)
            with np.errstate(over="ignore"):
                if shift <= 32:
                    ts = (lo >> np.uint64(shift)) + (hi << np.uint64(32 - shift))
                else:
                    ts = (lo >> np.uint64(shift)) + (hi >> np.uint64(shift - 32))
        out = ts.astype(np.int64)
        if meta.ts_offset:
            out = out + np.int64(meta.ts_offset)
        return out

    # -- batches ---------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        """Event batches in trace order.

        Batches are decoded on a background thread, one ahead of the consumer, so that
        decoding overlaps with whatever the consumer does with the previous batch.
        """
        drain = self._drain = _Drain(self._rest) if self._rest is not None else None
        self._rest = None
        ahead: queue.Queue = queue.Queue(maxsize=1)
        stop = self._stop

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ahead.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for batch in self._batches():
                    if not put(("batch", batch)):
                        return
                put(("done", None))
            except BaseException as e:  # handed to the consumer
                put(("error", e))

        worker = self._worker = threading.Thread(
            target=produce, name="tracedat-decode", daemon=True
        )
        worker.start()
        try:
            while True:
                kind, item = ahead.get()
                if kind == "error":
                    raise item
                if kind == "done":
                    break
                yield item
            if drain is not None:
                drain.join()
        finally:
            self.close()

    def _batches(self) -> Iterator[Batch]:
        self._pool = ThreadPoolExecutor(self.page_threads, thread_name_prefix="tracedat-pages")
        builds = ThreadPoolExecutor(self.build_threads, thread_name_prefix="tracedat-build")
        try:
            streams = self._streams()
            running: deque[Future] = deque()
            # the merge runs here; each batch it cuts is decoded on a build thread, up to
            # build_threads at once (and one more cut, waiting), handed on in order
            for job in self._merge(streams):
                running.append(builds.submit(self._build, streams, *job))
                while len(running) > self.build_threads:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        finally:
            builds.shutdown(wait=True, cancel_futures=True)
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _merge(self, streams: list[_Stream]) -> Iterator[tuple]:
        """Cut the streams into batches in trace order: yields ``(parts, markers)`` for
        :meth:`_build` (the markers are those the batch places: see :meth:`_due_markers`)."""
        parts: list[list] = [[] for _ in streams]  # per stream: (segment, start, stop)
        size = 0
        while True:
            for s in streams:
                while not s.exhausted and s.pending == 0:
                    self._fill(s)
            live = [s for s in streams if not s.exhausted]
            if not any(s.pending for s in streams):
                break
            cut = min((s.last_key for s in live), default=None)
            # no more than about a batch per round: a lower cut where streams hold more
            # (so a batch is not a whole page group of every stream, and decoding starts
            # before the next groups are needed)
            cap = -(-(self.batch_events - size) // max(1, len(live)))
            for s in streams:
                if s.pending > cap:
                    k = self._key_at(s, cap - 1)
                    cut = k if cut is None else min(cut, k)
            blocked = False  # an earlier stream may still hold records at ``cut``
            for s in streams:
                if not s.pending:
                    if not s.exhausted:
                        blocked = True
                    continue
                if cut is None:
                    take = s.pending
                else:
                    take = self._count_below(s, cut, inclusive=not blocked)
                    if not s.exhausted and s.last_key <= cut:
                        blocked = True
                if take:
                    size += take
                    self._take(s, take, parts[s.index])
            if size >= self.batch_events:
                yield parts, self._due_markers(streams, parts, False)
                parts = [[] for _ in streams]
                size = 0
        if size or any(s.markers for s in streams):
            yield parts, self._due_markers(streams, parts, True)

    @staticmethod
    def _due_markers(streams: list[_Stream], parts: list[list], final: bool) -> dict:
        """Take from each stream the lost-event markers a batch of ``parts`` places: those
        at or before its last record in the batch, and all of them once the stream is done
        (or the batch is the last). Decided here, in merge order, since the batch itself
        may be decoded while the merge goes on."""
        due = {}
        for s in streams:
            if not s.markers:
                continue
            taken = parts[s.index]
            hi = taken[-1][0].first + taken[-1][2] - 1 if taken else -1
            done = final or (s.exhausted and s.pending == 0)
            now = [m for m in s.markers if done or m[0] <= hi]
            if now:
                due[s.index] = now
                s.markers = [m for m in s.markers if not (done or m[0] <= hi)]
        return due

    @staticmethod
    def _key_at(s: _Stream, i: int) -> int:
        """The key of the ``i``-th pending record of ``s``."""
        for seg in s.segments:
            if i < seg.left:
                return int(seg.key[seg.pos + i])
            i -= seg.left
        raise IndexError(i)

    @staticmethod
    def _count_below(s: _Stream, cut: int, inclusive: bool) -> int:
        n = 0
        side: Literal["left", "right"] = "right" if inclusive else "left"
        for seg in s.segments:
            keys = seg.key[seg.pos :]
            k = int(np.searchsorted(keys, cut, side=side))
            n += k
            if k < len(keys):
                break
        return n

    @staticmethod
    def _take(s: _Stream, n: int, out: list) -> None:
        while n:
            seg = s.segments[0]
            k = min(n, seg.left)
            out.append((seg, seg.pos, seg.pos + k))
            seg.pos += k
            s.pending -= k
            n -= k
            if seg.left == 0:
                s.segments.popleft()

    def _common_fields(self, buf: Buffer, rec: np.ndarray) -> tuple:
        """Event type, ``common_flags << 8 | common_preempt_count`` and common_pid of each
        record, read while its page group is at hand (records shorter than the common
        header are dropped later)."""
        layout = self._common_layout
        pid_off, pid_size = layout[3]
        pid = buf.value(rec + pid_off, pid_size, True, pid_off % min(pid_size, 4) == 0)
        if layout[:3] == ((0, 2), (2, 1), (3, 1)):
            # the usual header: a u16 type, then flags and preempt count, which read as one
            # big-endian u16 are the key
            half = rec >> 1
            ev_type = buf.u16[half].astype(np.uint16, copy=False)
            key = buf.u8.view(">u2")[half + 1].astype(np.uint16)
            return ev_type, key, pid.astype(np.int32, copy=False)
        (t_off, t_size), (f_off, f_size), (p_off, p_size) = layout[:3]

        def read(off: int, size: int) -> np.ndarray:
            return buf.uint(rec + off, size, off % min(size, 4) == 0)

        ev_type = read(t_off, t_size)
        ev_type = ev_type.astype(np.uint16) if t_size <= 2 else np.minimum(ev_type, 1 << 20)
        key = (read(f_off, f_size).astype(np.uint16) & 0xFF) << 8
        key |= read(p_off, p_size).astype(np.uint16) & 0xFF
        return ev_type, key, pid.astype(np.int32)

    def _build(self, streams: list[_Stream], parts: list[list], due: dict) -> Batch:
        """Merge the records taken from each stream into trace order and decode them.

        Records stay in stream order ("cat" arrays); ``order`` lists them in trace order,
        and each table gathers its own rows from the cat arrays.
        """
        arrays: list[np.ndarray] = []
        base = 0
        cols: list[list[np.ndarray]] = [[] for _ in range(9)]
        ranges: list[tuple[int, int, int]] = []  # (stream, first cat row, stream index)
        rows = 0
        for s in streams:
            for seg, a, b in parts[s.index]:
                # only the bytes of the records taken (8-byte aligned, so views stay aligned)
                lo = int(seg.rec_off[a]) & ~7
                hi = int(seg.rec_off[b - 1]) + int(seg.rec_len[b - 1])
                hi += (-hi) % 8
                arrays.append(seg.buf[lo:hi])
                shift = base - lo
                base += hi - lo
                pieces = (
                    seg.rec_off[a:b] + shift,
                    seg.rec_len[a:b],
                    seg.ts[a:b],
                    seg.key[a:b],
                    np.full(b - a, s.index, dtype=np.int32),
                    *(c[a:b] for c in seg.common),
                    np.full(b - a, s.cpu, dtype=np.int32),
                )
                for i, arr in enumerate(pieces):
                    cols[i].append(arr)
                ranges.append((s.index, rows, seg.first + a))
                rows += b - a
        if not arrays:
            types = (
                np.int64,
                np.int32,
                np.int64,
                np.int64,
                np.int32,
                np.uint16,
                np.uint16,
                np.int32,
                np.int32,
            )
            cols = [[np.zeros(0, t)] for t in types]
        buf = Buffer(arrays, self.meta.big_endian)
        cat = [np.concatenate(c) if len(c) > 1 else c[0] for c in cols]
        return self._decode(streams, buf, cat, ranges, due)

    def _decode(self, streams, buf, cat, ranges, due) -> Batch:
        errors = ErrorLog()
        rec, rec_len, ts, key, stream, ev_type, fkey, pid, cpu = cat
        n_cat = len(rec)
        ok = rec_len >= self._min_record
        all_ok = bool(ok.all())
        counts = np.bincount(ev_type if all_ok else ev_type[ok], minlength=1)
        decoders: dict[int, EventDecoder] = {}
        usable = np.zeros(max(len(counts), int(ev_type.max(initial=0)) + 1), dtype=bool)
        min_size = np.zeros(len(usable), dtype=np.int32)
        for t in np.flatnonzero(counts).tolist():
            if t in self._probes:
                min_size[t] = self._probes[t].min_size
                usable[t] = True
                continue
            dec = self._decoder_for(t)
            if dec is not None:
                decoders[t] = dec
                min_size[t] = dec.min_size
                usable[t] = True
            elif t in self._ids:
                usable[t] = True  # raw name=value text in other_events
        if all_ok and usable[np.flatnonzero(counts)].all():
            # the usual case: only records shorter than their format are left to check
            bad = None if min_size.max() <= rec_len.min() else rec_len < np.take(min_size, ev_type)
        else:
            bad = ~ok | ~usable[ev_type] | (rec_len < min_size[ev_type])
        if bad is not None and not bad.any():
            bad = None
        any_bad = bad is not None
        index = None
        if any_bad or due:
            index = np.zeros(n_cat, dtype=np.int64)  # stream-wide record index per cat row
            bounds = [*(r[1] for r in ranges[1:]), n_cat]
            for (_s, row, first), nxt in zip(ranges, bounds, strict=True):
                index[row:nxt] = np.arange(first, first + nxt - row)
        if bad is not None:
            self._report_bad(
                errors,
                ev_type,
                ok,
                usable[ev_type],
                min_size[ev_type],
                rec_len,
                index,
                stream,
                streams,
            )
        cpu_of = np.array([s.cpu for s in streams] or [0], dtype=np.int32)
        inst_of = [self.meta.buffers[s.buffer].name or None for s in streams]
        one_instance = len(set(inst_of)) <= 1
        frames: dict[str, pl.DataFrame] = {}
        generic: list[pl.DataFrame] = []
        # the flags of every record of the batch at once (one Enum for all its tables)
        flags_enum, flags = flag_codes(fkey, self._flag_tables)
        # the core merges the rows into trace order (each stream's rows are sorted by key and
        # the streams come in order: a stable sort by key puts ties in stream order, as
        # trace-cmd does), groups them by event type, gathers the header columns and
        # decodes every field of the types with a decoder
        headers = [(np.ascontiguousarray(a).view(np.uint8), a.dtype.itemsize)
                   for a in (ts, cpu, pid, flags, stream)]  # fmt: skip
        order_buf, types = decode_batch(
            buf.u8,
            np.ascontiguousarray(rec, dtype=np.int64),
            np.ascontiguousarray(rec_len, dtype=np.int32),
            np.ascontiguousarray(key, dtype=np.int64),
            np.ascontiguousarray(ev_type, dtype=np.uint32),
            None if bad is None else bad.view(np.uint8),
            headers,
            {t: dec.core_specs for t, dec in decoders.items()},
            self.meta.big_endian,
        )
        order = np.frombuffer(memoryview(order_buf), dtype="<i8")
        n = len(order)
        for t, rel_b, rec_b, len_b, gathered, decoded in types:
            ts_b, cpu_b, pid_b, flags_b, stream_b = gathered
            rel = np.frombuffer(memoryview(rel_b), dtype="<i8")
            r = np.frombuffer(memoryview(rec_b), dtype="<i8")
            p = np.frombuffer(memoryview(pid_b), dtype=pid.dtype)
            dec = decoders.get(t)
            name = dec.schema.name if dec is not None else self._ids[t][0]
            m = len(rel)
            if one_instance:  # the usual case: one buffer, one name (or none) for all
                instance = self._instances(inst_of[:1], None, m)
            else:
                instance = self._instances(
                    inst_of, np.frombuffer(memoryview(stream_b), dtype=stream.dtype), m
                )
            head = {
                "rel": pl.Series("rel", rel),  # int64, as the seq it becomes
                "ts": pl.Series("ts", np.frombuffer(memoryview(ts_b), dtype=ts.dtype)),
                "cpu": pl.Series("cpu", np.frombuffer(memoryview(cpu_b), dtype=cpu.dtype)),
                "pid": pl.Series("pid", p),
                "tgid": to_series("tgid", None, pa.int32(), m),
                "comm": self._comms(p).alias("comm"),
                "flags": flags_enum.column(
                    "flags", np.frombuffer(memoryview(flags_b), dtype=flags.dtype)
                ),
                "event": repeat_string(name, m, "event"),
                "instance": instance,
            }
            probe = self._probes.get(t)
            if probe is not None:
                if self._symbols is None:
                    self._symbols = Symbols(self.meta.kallsyms)
                body = probe_columns(buf, r, probe, self._symbols)
                frames[f"event={PROBE_PREFIX}{name}"] = pl.DataFrame({**head, **body})
                continue
            # record lengths: only string and array fields (and raw text) need them
            lens = np.frombuffer(memoryview(len_b), dtype="<i4")
            if dec is None:
                text = self._generic_fields(buf, r, lens, t)
                fields = pl.Series("fields", text, dtype=pl.String)
                # one table for many events: plain strings, so the frames concatenate
                head = {k: v.cast(pl.String) if v.dtype == pl.Enum else v for k, v in head.items()}
                generic.append(pl.DataFrame({**head, "fields": fields}))
                continue
            cols = self._decoder.columns(buf, r, lens, dec, decoded)
            self._add_decoded(dec, cols, m)
            body = {c.name: cols[c.name] for c in dec.columns}
            frames[f"event={name}"] = pl.DataFrame({**head, **body})
        if generic:
            frames[GENERIC_DIR] = pl.concat(generic).sort("rel")
        markers: list[dict] = []
        if due:
            rank = np.empty(n_cat, dtype=np.int64)  # cat row -> rel (for kept rows)
            rank[order] = np.arange(n)
            kept = ~bad if bad is not None else None
            markers = self._markers(streams, due, ranges, index, rank, kept, ts, n)
        edges = self._edges(streams, ranges, order, stream, ts, cpu_of, bad)
        ts_kept = ts[order] if any_bad else ts
        return Batch(
            frames=frames,
            markers=markers,
            n_events=n,
            lines=n,
            cpu_edges=edges,
            ts_range=(int(ts_kept.min()), int(ts_kept.max())) if n else (None, None),
            clock="ns" if self.ns_clock else "counter",
            kind_stats=kind_stats(frames),
            errors=errors,
        )

    @staticmethod
    def _edges(streams, ranges, order, stream, ts, cpu_of, bad) -> dict:
        """Per cpu, the timestamps of its first and last event in trace order."""
        n = len(order)
        if not n:
            return {}
        spans: dict[int, list[int]] = {}  # stream -> [first cat row, last cat row]
        bounds = [*(r[1] for r in ranges[1:]), len(stream)]
        for (sid, row, _first), stop in zip(ranges, bounds, strict=True):
            if stop > row:
                span = spans.setdefault(sid, [row, stop - 1])
                span[1] = stop - 1
        cpus = [streams[sid].cpu for sid in spans]
        if bad is None and len(set(cpus)) == len(cpus):
            # one stream per cpu: its rows are in trace order already
            return {streams[sid].cpu: (int(ts[a]), int(ts[b])) for sid, (a, b) in spans.items()}
        cpu_sorted = cpu_of[stream[order]]
        edges = {}
        for c in np.flatnonzero(np.bincount(cpu_sorted)).tolist():
            on = np.flatnonzero(cpu_sorted == c)
            edges[int(c)] = (int(ts[order[on[0]]]), int(ts[order[on[-1]]]))
        return edges

    @staticmethod
    def _instances(inst_of: list[str | None], stream: np.ndarray | None, m: int) -> pl.Series:
        """The instance column of ``m`` rows from streams ``stream`` (None: stream 0)."""
        if not any(inst_of):
            return to_series("instance", None, pa.string(), m)
        if stream is None or len(inst_of) == 1:
            only = inst_of[0]
            assert only is not None  # one instance, and any() says it has a name
            return repeat_string(only, m, "instance")
        return enum_column("instance", inst_of, stream.astype(np.uint32))

    def _add_decoded(self, dec: EventDecoder, cols: dict, n: int) -> None:
        """The migration columns (pfn, swp_type, ...) decoded from pte/pmd like the text path."""
        wanted = [c for c in dec.columns if c.source == "decoded"]
        if not wanted:
            return
        raw = {k: cols[k] for k in ("pte", "pmd") if k in cols}
        decoded = self._fields._decode(dec.schema.name, pl.DataFrame(raw)) if raw else {}
        for c in wanted:
            v = decoded.get(c.name)
            cols[c.name] = to_series(c.name, None if v is None else pl.Series(c.name, v), c.type, n)

    def _generic_fields(self, buf, r, rec_len, t) -> list[str]:
        """Raw ``name=value`` text of events whose format could not be used."""
        _name, _system, text = self._ids[t]
        specs = []
        for m in re.finditer(
            r"field:([^;]+);\s*offset:(\d+);\s*size:(\d+);(?:\s*signed:(\d+);)?", text
        ):
            decl = m.group(1).strip()
            fname = re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", decl)
            if not fname or fname[0].startswith("common_"):
                continue
            specs.append((fname[0], int(m.group(2)), int(m.group(3)), m.group(4) == "1", decl))
        rows = []
        for start, length in zip(r.tolist(), rec_len.tolist(), strict=True):
            parts = []
            for fname, off, size, signed, decl in specs:
                if off + size > length or size == 0:
                    continue
                raw = buf.u8[start + off : start + off + size].tobytes()
                if size in (1, 2, 4, 8) and "[" not in decl:
                    v = int.from_bytes(
                        raw, "big" if self.meta.big_endian else "little", signed=signed
                    )
                    parts.append(f"{fname}={v}")
                else:
                    parts.append(f"{fname}=" + escape(raw.split(b"\0", 1)[0]))
            rows.append(" ".join(parts))
        return rows

    def _report_bad(self, errors, ev_type, ok, usable, min_size, rec_len, index, stream, streams):
        for reason, mask in (
            (SHORT_RECORD, ~ok),
            (UNKNOWN_EVENT_ID, ok & ~usable),
            (RECORD_SHORTER_THAN_FORMAT, ok & usable & (rec_len < min_size)),
        ):
            idx = np.flatnonzero(mask)
            if not len(idx):
                continue
            sample = idx[:10]
            texts = [
                f"CPU {streams[int(stream[i])].cpu} record {int(index[i])}: "
                f"event id {int(ev_type[i])}, {int(rec_len[i])} bytes"
                for i in sample
            ]
            errors.add(reason, [int(index[i]) for i in sample], texts, total=len(idx))

    def _markers(self, streams, due, ranges, index, rank, kept, ts, n) -> list[dict]:
        """The lost-event markers ``due`` in this batch (stream -> [at, count]).

        A marker sits before the first record (in stream order) of the page that reported
        the loss; its ``line`` is that record's position in the batch (the batch's end when
        the stream has no later record in it).
        """
        out = []
        rows_of: dict[int, list[tuple[int, int, int]]] = {}
        bounds = [r[1] for r in ranges[1:]] + [len(index)]
        for (sid, row, first), stop in zip(ranges, bounds, strict=True):
            rows_of.setdefault(sid, []).append((row, stop, first))
        for s in streams:
            if s.index not in due:
                continue
            spans = rows_of.get(s.index, [])
            for at, count in due[s.index]:
                # the first kept record of this stream at or after ``at`` (and the one before)
                after = before = None
                for row, stop, first in spans:
                    for i in range(max(row, row + at - first), stop):
                        if kept is None or kept[i]:
                            after = i
                            break
                    if after is not None:
                        break
                for row, stop, first in reversed(spans):
                    lo = min(stop, row + max(0, at - first)) - 1
                    for i in range(lo, row - 1, -1):
                        if kept is None or kept[i]:
                            before = i
                            break
                    if before is not None:
                        break
                name = self.meta.buffers[s.buffer].name
                prefix = f"{name}: " if name else ""
                what = f"{count} EVENTS DROPPED" if count is not None else "EVENTS DROPPED"
                out.append(
                    {
                        "kind": GAP_LOST,
                        "cpu": s.cpu,
                        "count": count,
                        "line": int(rank[after]) if after is not None else n,
                        "text": f"{prefix}CPU:{s.cpu} [{what}]",
                        "ts_start": int(ts[before]) if before is not None else None,
                        "ts_end": int(ts[after]) if after is not None else None,
                    }
                )
        return out


class _Drain:
    """Reads the rest of the source in the background so its content hash completes."""

    def __init__(self, rest: Iterator[bytes]) -> None:
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._rest = rest
        self._thread = threading.Thread(target=self._run, name="tracedat-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for _ in self._rest:
                if self._stop.is_set():
                    return
        except BaseException as e:  # re-raised by join()
            self.error = e

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _lazy_resched(release: str | None) -> bool:
    """Whether ``common_flags`` bit 0x02 means NEED_RESCHED_LAZY (Linux >= 6.13)."""
    m = re.match(r"(\d+)\.(\d+)", release or "")
    if not m:
        return True
    return (int(m.group(1)), int(m.group(2))) >= (6, 13)
