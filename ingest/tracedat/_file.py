"""Read the metadata of a trace-cmd ``trace.dat`` (file versions 6 and 7).

Layout (see docs/formats.md section 3 and trace-cmd's ``trace-input.c``):

* v6 is sequential: initial header, ``header_page``/``header_event``, ftrace and event
  formats, kallsyms, printk formats, saved cmdlines, CPU count, ``options`` and
  ``flyrecord`` (per-CPU offset and size), the trace clock, then the CPU data.
* v7 has a compression header and a chain of OPTIONS sections; options point at the other
  sections (formats, cmdlines, ...) and describe each buffer (top and instances) with its
  clock, sub-buffer size and per-CPU data, which may be compressed in chunks.

Every size or offset read from the file is checked against the file size (and sane limits)
before anything is allocated; every problem raises :class:`InputError` naming the file and
the byte offset.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field

import zstandard

from rmapscope.errors import InputError

from .._bytes import escape
from ..pte import resolve_arch

MAGIC = b"\x17\x08\x44tracing"

#: Option / section ids (trace-cmd-private.h).
OPT_DONE, OPT_DATE, OPT_CPUSTAT, OPT_BUFFER, OPT_TRACECLOCK, OPT_UNAME = 0, 1, 2, 3, 4, 5
OPT_OFFSET, OPT_CPUCOUNT, OPT_VERSION, OPT_TRACEID, OPT_TIME_SHIFT = 7, 8, 9, 11, 12
OPT_TSC2NSEC, OPT_STRINGS, OPT_HEADER_INFO, OPT_FTRACE_EVENTS = 14, 15, 16, 17
OPT_EVENT_FORMATS, OPT_KALLSYMS, OPT_PRINTK, OPT_CMDLINES, OPT_BUFFER_TEXT = 18, 19, 20, 21, 22
SEC_FL_COMPRESS = 1

#: Sane limits: nothing in a real trace.dat comes close.
MAX_META = 256 << 20  # one uncompressed metadata block (formats, cmdlines, ...)
MAX_CHUNK = 64 << 20  # one uncompressed chunk of CPU data
MAX_PAGE = 16 << 20  # ring-buffer sub-buffer size
MAX_CPUS = 1 << 16
MAX_OPTIONS_SECTIONS = 4096
MAX_FORMATS = 1 << 20


@dataclass
class CpuData:
    """Where one CPU's ring-buffer pages are in the file."""

    cpu: int
    offset: int
    size: int


@dataclass
class BufferInfo:
    """One ftrace buffer (the top one, ``name == ""``, or an instance)."""

    name: str
    clock: str | None
    page_size: int
    cpus: list[CpuData] = field(default_factory=list)
    compressed: bool = False
    latency: bool = False
    section: int = 0  # v7: file offset of the buffer's section header


@dataclass
class Metadata:
    """What the file says besides the events themselves."""

    version: int
    big_endian: bool
    long_size: int  # kernel long size (from header_page's commit field)
    page_size: int
    compression: str | None = None  # None, "zlib", "zstd"
    header_page: str = ""
    header_event: str = ""
    formats: list[tuple[str, str]] = field(default_factory=list)  # (system, format text)
    cmdlines: dict[int, str] = field(default_factory=dict)
    printk: bytes = b""
    kallsyms: bytes = b""  # the recording kernel's /proc/kallsyms (empty: none recorded)
    uname: str | None = None
    tool_version: str | None = None
    cpucount: int | None = None
    clock: str | None = None
    ts_offset: int = 0  # ns, from the DATE and OFFSET options
    tsc2nsec: tuple[int, int, int] | None = None  # (mult, shift, offset)
    buffers: list[BufferInfo] = field(default_factory=list)
    options_seen: list[int] = field(default_factory=list)

    @property
    def page_header(self) -> tuple[int, int, int]:
        """(commit field offset, commit size, data offset) of a ring-buffer page."""
        commit = re.search(
            r"field:\s*local_t\s+commit;\s*offset:(\d+);\s*size:(\d+);", self.header_page
        )
        data = re.search(r"field:\s*char\s+data;\s*offset:(\d+);", self.header_page)
        if commit and data:
            c_off, c_size, d_off = int(commit.group(1)), int(commit.group(2)), int(data.group(1))
            if c_size in (4, 8) and c_off == 8 and d_off == 8 + c_size:
                return c_off, c_size, d_off
        return 8, self.long_size, 8 + self.long_size

    def arch(self, given: str, machine: str | None) -> str:
        """The traced machine's arch: the uname's ``machine`` (see
        :func:`..pte.resolve_arch`), else ``given``; a 32-bit kernel (``long=4``) that
        names no machine is ``32-bit``, never one of the 64-bit arches."""
        if not machine and self.long_size == 4:
            return "32-bit"
        return resolve_arch(given, machine)


class FileReader:
    """Bounds-checked random access to a file by absolute offset."""

    def __init__(self, path: str, name: str) -> None:
        self.name = name
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise InputError(f"{name}: cannot open: {e.strerror}") from None
        self.size = os.fstat(self._f.fileno()).st_size

    def close(self) -> None:
        self._f.close()

    def check(self, offset: int, length: int, what: str) -> None:
        """Raise unless ``length`` bytes at ``offset`` lie inside the file."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise InputError(
                f"{self.name}: {what} at byte {offset} ({length} bytes) lies beyond the end "
                f"of the file ({self.size} bytes): truncated or corrupt trace.dat"
            )

    def read_into(self, offset: int, out: memoryview, what: str) -> None:
        """Fill ``out`` with the bytes at ``offset`` (no intermediate copy)."""
        self.check(offset, len(out), what)
        got = os.preadv(self._f.fileno(), [out], offset)
        if got != len(out):
            raise InputError(f"{self.name}: short read of {what} at byte {offset}")

    def read(self, offset: int, length: int, what: str) -> bytes:
        self.check(offset, length, what)
        data = os.pread(self._f.fileno(), length, offset)
        if len(data) != length:
            raise InputError(f"{self.name}: short read of {what} at byte {offset}")
        return data


class Cursor:
    """Sequential, bounds-checked reads from an in-memory block (``base``: its file offset,
    or None for decompressed data, which is reported by the section it came from)."""

    def __init__(self, data: bytes, name: str, base: int | None, where: str, big: bool) -> None:
        self.data = data
        self.pos = 0
        self.name = name
        self.base = base
        self.where = where
        self.e = ">" if big else "<"

    def at(self) -> str:
        if self.base is None:
            return f"byte {self.pos} of {self.where}"
        return f"byte {self.base + self.pos}"

    def fail(self, what: str) -> InputError:
        return InputError(f"{self.name}: {what} at {self.at()}: corrupt trace.dat")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InputError(
                f"{self.name}: {what} at {self.at()} needs {n} bytes but only "
                f"{len(self.data) - self.pos} remain: truncated or corrupt trace.dat"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, what: str) -> int:
        return struct.unpack(self.e + "H", self.take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack(self.e + "I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack(self.e + "Q", self.take(8, what))[0]

    def cstr(self, what: str, limit: int = 4096) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit)
        if end < 0:
            raise self.fail(f"unterminated {what}")
        s = self.data[self.pos : end].decode("utf-8", "replace")
        self.pos = end + 1
        return s

    def left(self) -> int:
        return len(self.data) - self.pos


class FileCursor:
    """Sequential reads straight from the file (v6 metadata), without loading what is skipped."""

    def __init__(self, f: FileReader, pos: int, big: bool) -> None:
        self.f = f
        self.pos = pos
        self.e = ">" if big else "<"

    def take(self, n: int, what: str) -> bytes:
        data = self.f.read(self.pos, n, what)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self.f.check(self.pos, n, what)
        self.pos += n

    def u32(self, what: str) -> int:
        return struct.unpack(self.e + "I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack(self.e + "Q", self.take(8, what))[0]

    def u16(self, what: str) -> int:
        return struct.unpack(self.e + "H", self.take(2, what))[0]

    def cstr(self, what: str, limit: int = 4096) -> str:
        start = self.pos
        chunk = self.f.read(start, min(limit, self.f.size - start), what)
        end = chunk.find(b"\0")
        if end < 0:
            raise InputError(
                f"{self.f.name}: unterminated {what} at byte {start}: corrupt trace.dat"
            )
        self.pos = start + end + 1
        return chunk[:end].decode("utf-8", "replace")

    def sized(self, n: int, what: str, limit: int = MAX_META) -> bytes:
        """Read a block whose size ``n`` came from the file."""
        if n > limit:
            raise InputError(
                f"{self.f.name}: {what} at byte {self.pos} claims {n} bytes (limit {limit}): "
                "corrupt trace.dat"
            )
        return self.take(n, what)


_ZSTD = threading.local()


def _zstd() -> zstandard.ZstdDecompressor:
    """One zstd decompression context per thread (making one costs more than a chunk)."""
    d = getattr(_ZSTD, "d", None)
    if d is None:
        d = _ZSTD.d = zstandard.ZstdDecompressor()
    return d


def decompress(
    codec: str | None, data: bytes | memoryview, expect: int, name: str, where: str
) -> bytes:
    """Decompress one block whose header says it holds ``expect`` bytes.

    The output may never exceed ``expect`` (itself capped by the caller); a block that is
    corrupt or decompresses to another size raises :class:`InputError`.
    """
    try:
        if codec == "zstd":
            out = _zstd().decompress(data, max_output_size=max(expect, 1))
        elif codec == "zlib":
            d = zlib.decompressobj()
            out = d.decompress(data, expect + 1)
        elif codec is None or codec == "none":
            out = bytes(data)
        else:
            raise InputError(f"{name}: unknown compression {codec!r} for {where}")
    except (zstandard.ZstdError, zlib.error) as e:
        raise InputError(f"{name}: corrupt {codec} data in {where}: {e}") from None
    if len(out) != expect:
        raise InputError(
            f"{name}: {where} decompresses to {len(out)} bytes, its header says {expect}: "
            "corrupt trace.dat"
        )
    return out


_CMDLINE = re.compile(r"\s*(-?\d+)\s+(.+)")


def _parse_cmdlines(text: bytes) -> dict[int, str]:
    """``pid comm`` lines; the first entry for a pid wins (as in libtraceevent)."""
    out: dict[int, str] = {}
    match = _CMDLINE.match
    for line in escape(text).split("\n"):  # comms that are not UTF-8: as in text traces
        m = match(line)
        if not m:
            if line.strip():
                break  # libtraceevent stops at the first malformed line
            continue
        pid = int(m.group(1))
        if pid and pid not in out:
            out[pid] = m.group(2)
    return out


def _clock_from(text: str) -> str | None:
    """The current clock of a ``trace_clock`` file: the word in brackets."""
    m = re.search(r"\[([^\]\s]+)\]", text)
    return m.group(1) if m else None


def _formats_block(cur: Cursor, system: str | None, out: list[tuple[str, str]]) -> None:
    """``u32 count`` then ``u64 size, text`` per format (ftrace formats when ``system``)."""
    count = cur.u32("format count")
    if count > MAX_FORMATS:
        raise cur.fail(f"absurd format count {count}")
    for _ in range(count):
        size = cur.u64("format size")
        text = cur.take(size, "event format")
        out.append((system or "ftrace", text.decode("utf-8", "replace")))


def _event_formats(cur: Cursor, out: list[tuple[str, str]]) -> None:
    systems = cur.u32("system count")
    if systems > MAX_FORMATS:
        raise cur.fail(f"absurd system count {systems}")
    for _ in range(systems):
        system = cur.cstr("system name")
        _formats_block(cur, system, out)


def _header_info(cur: Cursor, meta: Metadata) -> None:
    if cur.take(12, "header_page tag") != b"header_page\0":
        raise cur.fail("missing header_page")
    size = cur.u64("header_page size")
    meta.header_page = cur.take(size, "header_page").decode("utf-8", "replace")
    if cur.take(13, "header_event tag") != b"header_event\0":
        raise cur.fail("missing header_event")
    size = cur.u64("header_event size")
    meta.header_event = cur.take(size, "header_event").decode("utf-8", "replace")
    m = re.search(r"field:\s*local_t\s+commit;\s*offset:\d+;\s*size:(\d+);", meta.header_page)
    if m and int(m.group(1)) in (4, 8):
        meta.long_size = int(m.group(1))


def _apply_option(meta: Metadata, oid: int, data: bytes, cur: Cursor, sections: dict) -> None:
    """Record what one option says (v6 and v7)."""
    e = cur.e
    meta.options_seen.append(oid)
    text = data.split(b"\0", 1)[0].decode("utf-8", "replace")
    if oid == OPT_DATE:  # ASCII "0x..." microseconds
        with contextlib.suppress(ValueError):
            meta.ts_offset += int(text.strip(), 0) * 1000
    elif oid == OPT_OFFSET:  # ASCII nanoseconds
        with contextlib.suppress(ValueError):
            meta.ts_offset += int(text.strip(), 0)
    elif oid == OPT_TRACECLOCK:
        meta.clock = _clock_from(text) or meta.clock
    elif oid == OPT_UNAME:
        meta.uname = text
    elif oid == OPT_VERSION:
        meta.tool_version = text
    elif oid == OPT_CPUCOUNT and len(data) >= 4:
        n = struct.unpack(e + "I", data[:4])[0]
        if 0 < n <= MAX_CPUS:
            meta.cpucount = n
    elif oid == OPT_TSC2NSEC and len(data) >= 16:
        mult, shift, off = struct.unpack(e + "IIQ", data[:16])
        if mult and shift < 64:
            meta.tsc2nsec = (mult, shift, off)
    elif oid in (OPT_BUFFER, OPT_BUFFER_TEXT):
        _buffer_option(meta, oid, data, cur)
    elif OPT_STRINGS <= oid <= 25 and oid != OPT_BUFFER_TEXT and len(data) >= 8:
        sections[oid] = struct.unpack(e + "Q", data[:8])[0]


def _buffer_option(meta: Metadata, oid: int, data: bytes, cur: Cursor) -> None:
    b = Cursor(data, cur.name, None, f"BUFFER option at {cur.at()}", cur.e == ">")
    offset = b.u64("buffer offset")
    name = b.cstr("buffer name")
    if meta.version < 7:
        # resolved by _v6_instance(): the flyrecord table of the instance is at ``offset``
        meta.buffers.append(BufferInfo(name, None, meta.page_size, section=offset))
        return
    clock = b.cstr("buffer clock")
    if oid == OPT_BUFFER_TEXT:
        meta.buffers.append(BufferInfo(name, clock, meta.page_size, latency=True))
        return
    page_size = b.u32("buffer page size")
    if not 0 < page_size <= MAX_PAGE or page_size % 4:
        raise b.fail(f"absurd sub-buffer size {page_size}")
    ncpus = b.u32("buffer cpu count")
    if ncpus > MAX_CPUS or ncpus * 20 > b.left():
        raise b.fail(f"absurd cpu count {ncpus}")
    cpus = []
    for _ in range(ncpus):
        cpu = b.u32("cpu id")
        off = b.u64("cpu data offset")
        size = b.u64("cpu data size")
        if cpu >= MAX_CPUS:
            raise b.fail(f"absurd cpu id {cpu}")
        cpus.append(CpuData(cpu, off, size))
    if len({c.cpu for c in cpus}) != len(cpus):
        raise b.fail("a cpu appears twice")
    meta.buffers.append(
        BufferInfo(name, clock, page_size, sorted(cpus, key=lambda c: c.cpu), section=offset)
    )


def read_metadata(f: FileReader) -> Metadata:
    """Parse everything but the CPU data of the file behind ``f``."""
    head = f.read(0, min(f.size, 64), "initial header")
    if not head.startswith(MAGIC):
        raise InputError(f"{f.name}: not a trace-cmd trace.dat (bad magic at byte 0)")
    end = head.find(b"\0", len(MAGIC))
    if end < 0 or len(head) < end + 7:
        raise InputError(f"{f.name}: truncated trace.dat header at byte {len(MAGIC)}")
    try:
        version = int(head[len(MAGIC) : end].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"{f.name}: bad trace.dat version at byte {len(MAGIC)}") from None
    if version not in (6, 7):
        raise InputError(
            f"{f.name}: trace.dat file version {version} (at byte {len(MAGIC)}) is not "
            "supported (only 6 and 7)"
        )
    pos = end + 1
    big = head[pos] == 1
    if head[pos] not in (0, 1):
        raise InputError(f"{f.name}: bad endianness byte {head[pos]} at byte {pos}")
    long_size = head[pos + 1]
    page_size = struct.unpack((">" if big else "<") + "I", head[pos + 2 : pos + 6])[0]
    if long_size not in (4, 8):
        raise InputError(f"{f.name}: bad long size {long_size} at byte {pos + 1}")
    if not 0 < page_size <= MAX_PAGE or page_size % 4:
        raise InputError(f"{f.name}: absurd page size {page_size} at byte {pos + 2}")
    meta = Metadata(version=version, big_endian=big, long_size=long_size, page_size=page_size)
    pos += 6
    if version == 6:
        _read_v6(f, meta, pos)
    else:
        _read_v7(f, meta, pos)
    return meta


# -- version 6 ---------------------------------------------------------------------------


def _read_v6(f: FileReader, meta: Metadata, pos: int) -> None:
    big = meta.big_endian
    fc = FileCursor(f, pos, big)
    start = fc.pos
    # header_page / header_event
    if fc.take(12, "header_page tag") != b"header_page\0":
        raise InputError(f"{f.name}: missing header_page at byte {start}: corrupt trace.dat")
    size = fc.u64("header_page size")
    hp = fc.sized(size, "header_page", 1 << 20)
    at = fc.pos
    if fc.take(13, "header_event tag") != b"header_event\0":
        raise InputError(f"{f.name}: missing header_event at byte {at}: corrupt trace.dat")
    he = fc.sized(fc.u64("header_event size"), "header_event", 1 << 20)
    meta.header_event = he.decode("utf-8", "replace")
    meta.header_page = hp.decode("utf-8", "replace")
    m = re.search(r"field:\s*local_t\s+commit;\s*offset:\d+;\s*size:(\d+);", meta.header_page)
    if m and int(m.group(1)) in (4, 8):
        meta.long_size = int(m.group(1))
    # ftrace formats, event formats: read through a Cursor over the bytes as they come
    _v6_formats(fc, meta)
    # kallsyms, printk formats, cmdlines
    meta.kallsyms = fc.sized(fc.u32("kallsyms size"), "kallsyms")
    meta.printk = fc.sized(fc.u32("printk size"), "printk formats")
    meta.cmdlines = _parse_cmdlines(fc.sized(fc.u64("cmdlines size"), "saved cmdlines"))
    cpus = fc.u32("cpu count")
    if cpus > MAX_CPUS:
        raise InputError(f"{f.name}: absurd cpu count {cpus} at byte {fc.pos - 4}")
    tag_at = fc.pos
    tag = fc.take(10, "options/flyrecord tag")
    sections: dict[int, int] = {}
    if tag.startswith(b"options"):
        _v6_options(fc, meta, sections)
        tag_at = fc.pos
        tag = fc.take(10, "flyrecord tag")
    if tag.startswith(b"latency"):
        raise InputError(
            f"{f.name}: this trace.dat holds a latency (ASCII) trace (byte {tag_at}), not "
            "ring-buffer data; read it with `trace-cmd report`"
        )
    if not tag.startswith(b"flyrecord"):
        raise InputError(f"{f.name}: expected 'flyrecord' at byte {tag_at}: corrupt trace.dat")
    top = BufferInfo("", None, meta.page_size, _v6_cpu_table(fc, cpus))
    if OPT_TRACECLOCK in meta.options_seen:
        at = fc.pos
        try:
            size = fc.u64("trace clock size")
            text = fc.sized(size, "trace clock", 1 << 16)
            meta.clock = _clock_from(text.decode("utf-8", "replace")) or meta.clock
        except InputError:
            if meta.clock is None:
                raise InputError(f"{f.name}: bad trace clock at byte {at}") from None
    top.clock = meta.clock
    instances = meta.buffers
    meta.buffers = [top]
    for inst in instances:
        meta.buffers.append(_v6_instance(f, meta, inst, cpus))


def _v6_formats(fc: FileCursor, meta: Metadata) -> None:
    count = fc.u32("ftrace format count")
    if count > MAX_FORMATS:
        raise InputError(f"{fc.f.name}: absurd ftrace format count {count} at byte {fc.pos - 4}")
    for _ in range(count):
        size = fc.u64("ftrace format size")
        meta.formats.append(
            ("ftrace", fc.sized(size, "ftrace format", 1 << 20).decode("utf-8", "replace"))
        )
    systems = fc.u32("system count")
    if systems > MAX_FORMATS:
        raise InputError(f"{fc.f.name}: absurd system count {systems} at byte {fc.pos - 4}")
    for _ in range(systems):
        system = fc.cstr("system name")
        count = fc.u32("event format count")
        if count > MAX_FORMATS:
            raise InputError(f"{fc.f.name}: absurd event count {count} at byte {fc.pos - 4}")
        for _ in range(count):
            size = fc.u64("event format size")
            text = fc.sized(size, "event format", 1 << 20)
            meta.formats.append((system, text.decode("utf-8", "replace")))


def _v6_options(fc: FileCursor, meta: Metadata, sections: dict) -> None:
    for _ in range(1 << 16):
        at = fc.pos
        oid = fc.u16("option id")
        if oid == OPT_DONE:
            return
        size = fc.u32("option size")
        data = fc.sized(size, f"option {oid}", MAX_META)
        cur = Cursor(data, fc.f.name, at + 6, "option", meta.big_endian)
        _apply_option(meta, oid, data, cur, sections)
    raise InputError(f"{fc.f.name}: too many options at byte {fc.pos}: corrupt trace.dat")


def _v6_cpu_table(fc: FileCursor, cpus: int) -> list[CpuData]:
    out = []
    for cpu in range(cpus):
        off = fc.u64("cpu data offset")
        size = fc.u64("cpu data size")
        out.append(CpuData(cpu, off, size))
    return out


def _v6_instance(f: FileReader, meta: Metadata, inst: BufferInfo, cpus: int) -> BufferInfo:
    fc = FileCursor(f, inst.section, meta.big_endian)
    at = fc.pos
    tag = fc.take(10, f"buffer {inst.name!r} tag")
    if tag.startswith(b"options"):
        _v6_options(fc, meta, {})
        at = fc.pos
        tag = fc.take(10, f"buffer {inst.name!r} tag")
    if not tag.startswith(b"flyrecord"):
        raise InputError(
            f"{f.name}: buffer {inst.name!r}: expected 'flyrecord' at byte {at}: corrupt trace.dat"
        )
    return BufferInfo(inst.name, meta.clock, meta.page_size, _v6_cpu_table(fc, cpus))


# -- version 7 ---------------------------------------------------------------------------


def _section(f: FileReader, meta: Metadata, offset: int, want: int | None) -> tuple[int, bytes]:
    """Read the section at ``offset``: (flags, body), the body decompressed if needed."""
    hdr = f.read(offset, 16, "section header")
    sid, flags, _desc, size = struct.unpack(("<", ">")[meta.big_endian] + "HHIQ", hdr)
    if want is not None and sid != want:
        raise InputError(
            f"{f.name}: section at byte {offset} has id {sid}, expected {want}: corrupt trace.dat"
        )
    if size > MAX_META * 4:
        raise InputError(f"{f.name}: absurd section size {size} at byte {offset}")
    if not flags & SEC_FL_COMPRESS:
        return flags, f.read(offset + 16, size, f"section {sid} body")
    body = f.read(offset + 16, size, f"section {sid} body")
    cur = Cursor(body, f.name, offset + 16, "section", meta.big_endian)
    csize = cur.u32("compressed size")
    usize = cur.u32("uncompressed size")
    if usize > MAX_META:
        raise cur.fail(f"absurd uncompressed size {usize}")
    data = cur.take(csize, "compressed block")
    return flags, decompress(meta.compression, data, usize, f.name, f"section at byte {offset}")


def _read_v7(f: FileReader, meta: Metadata, pos: int) -> None:
    head = f.read(pos, min(f.size - pos, 512), "compression header")
    cur = Cursor(head, f.name, pos, "", meta.big_endian)
    codec = cur.cstr("compression name", 256)
    cur.cstr("compression version", 256)
    if codec in ("", "none"):
        meta.compression = None
    elif codec in ("zstd", "zlib"):
        meta.compression = codec
    else:
        raise InputError(f"{f.name}: unsupported compression {codec!r} at byte {pos}")
    offset = first = cur.u64("first options offset")
    sections: dict[int, int] = {}
    seen: set[int] = set()
    while offset:
        if offset in seen or len(seen) > MAX_OPTIONS_SECTIONS:
            raise InputError(f"{f.name}: options sections loop at byte {offset}: corrupt trace.dat")
        seen.add(offset)
        _flags, body = _section(f, meta, offset, OPT_DONE)
        cur = Cursor(
            body,
            f.name,
            offset + 16 if not _flags & SEC_FL_COMPRESS else None,
            f"options section at byte {offset}",
            meta.big_endian,
        )
        offset = 0
        while cur.left():
            oid = cur.u16("option id")
            size = cur.u32("option size")
            data = cur.take(size, f"option {oid}")
            if oid == OPT_DONE:
                if size < 8:
                    raise cur.fail("short DONE option")
                offset = struct.unpack(cur.e + "Q", data[:8])[0]
                break
            _apply_option(meta, oid, data, cur, sections)
    for need in (OPT_HEADER_INFO, OPT_EVENT_FORMATS):
        if need not in sections:
            raise InputError(
                f"{f.name}: trace.dat v7 without section {need} (options start at byte "
                f"{first}): corrupt trace.dat"
            )
    _flags, body = _section(f, meta, sections[OPT_HEADER_INFO], OPT_HEADER_INFO)
    where = f"the header section at byte {sections[OPT_HEADER_INFO]}"
    _header_info(Cursor(body, f.name, None, where, meta.big_endian), meta)
    if OPT_FTRACE_EVENTS in sections:
        _flags, body = _section(f, meta, sections[OPT_FTRACE_EVENTS], OPT_FTRACE_EVENTS)
        where = f"the ftrace formats section at byte {sections[OPT_FTRACE_EVENTS]}"
        _formats_block(Cursor(body, f.name, None, where, meta.big_endian), None, meta.formats)
    _flags, body = _section(f, meta, sections[OPT_EVENT_FORMATS], OPT_EVENT_FORMATS)
    where = f"the event formats section at byte {sections[OPT_EVENT_FORMATS]}"
    _event_formats(Cursor(body, f.name, None, where, meta.big_endian), meta.formats)
    if OPT_KALLSYMS in sections:
        _flags, body = _section(f, meta, sections[OPT_KALLSYMS], OPT_KALLSYMS)
        where = f"the kallsyms section at byte {sections[OPT_KALLSYMS]}"
        c = Cursor(body, f.name, None, where, meta.big_endian)
        meta.kallsyms = c.take(c.u32("kallsyms size"), "kallsyms")
    if OPT_PRINTK in sections:
        _flags, body = _section(f, meta, sections[OPT_PRINTK], OPT_PRINTK)
        where = f"the printk section at byte {sections[OPT_PRINTK]}"
        c = Cursor(body, f.name, None, where, meta.big_endian)
        meta.printk = c.take(c.u32("printk size"), "printk formats")
    if OPT_CMDLINES in sections:
        _flags, body = _section(f, meta, sections[OPT_CMDLINES], OPT_CMDLINES)
        where = f"the cmdlines section at byte {sections[OPT_CMDLINES]}"
        c = Cursor(body, f.name, None, where, meta.big_endian)
        meta.cmdlines = _parse_cmdlines(c.take(c.u64("cmdlines size"), "saved cmdlines"))
    buffers: list[BufferInfo] = []
    for b in meta.buffers:
        if b.latency:
            continue
        off = b.section
        hdr = f.read(off, 16, f"buffer {b.name!r} section header")
        sid, flags, _d, _s = struct.unpack(("<", ">")[meta.big_endian] + "HHIQ", hdr)
        if sid != OPT_BUFFER:
            raise InputError(
                f"{f.name}: buffer {b.name!r} section at byte {off} has id {sid}: corrupt trace.dat"
            )
        b.compressed = bool(flags & SEC_FL_COMPRESS)
        if b.compressed and meta.compression is None:
            raise InputError(
                f"{f.name}: buffer {b.name!r} at byte {off} is compressed but the file names "
                "no compression: corrupt trace.dat"
            )
        if b.name == "":
            meta.clock = meta.clock or b.clock
            buffers.insert(0, b)
        else:
            buffers.append(b)
    if not buffers and any(b.latency for b in meta.buffers):
        raise InputError(
            f"{f.name}: this trace.dat holds a latency (ASCII) trace (options at byte "
            f"{first}), not ring-buffer data; read it with `trace-cmd report`"
        )
    top = next((b for b in buffers if b.name == ""), None)
    if top is not None and top.clock:
        meta.clock = top.clock
    meta.buffers = buffers
