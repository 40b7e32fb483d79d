"""Write trace-cmd ``trace.dat`` files (v6 and v7) from event formats and raw ring-buffer pages.

``rmapscope lab`` assembles the trace.dat of a guest's recording with it (the pages of every
CPU's ``trace_pipe_raw`` and the guest's tracefs metadata); the tests, the fuzzer and the
benchmark build files with it from scratch (hand-made ring-buffer pages exercising time
extends, absolute stamps, padding and lost events) or from a real trace.dat
(``tests/_tracedat_extract.py``). The layout follows trace-cmd 3.x (``trace-output.c``),
closely enough that ``trace-cmd report`` reads the files too: CPU data is page aligned, v7
CPU data is compressed in chunks of up to 10 pages, and metadata sections are compressed as
one block.

>>> page = make_page(1000, [data_entry(5, b"abcd")])
>>> len(page), int.from_bytes(page[8:16], "little")
(4096, 8)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

PAGES_IN_CHUNK = 10
HEADER_EVENT = (
    "# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n"
    "\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n"
    "\ttime_stamp : type == 31\n\tdata max type_len  == 28\n"
)


def header_page(page_size: int = 4096, long_size: int = 8) -> str:
    """The ``events/header_page`` text of a kernel with this page and long size."""
    data = 8 + long_size
    return (
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
        f"\tfield: local_t commit;\toffset:8;\tsize:{long_size};\tsigned:1;\n"
        "\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
        f"\tfield: char data;\toffset:{data};\tsize:{page_size - data};\tsigned:0;\n"
    )


# -- ring-buffer pages ---------------------------------------------------------------------


def data_entry(delta: int, payload: bytes, big: bool = False, force_len: bool = False) -> bytes:
    """A data entry: ``type_len = len/4`` (1..28), or type 0 with ``array[0] = len + 4``."""
    payload = payload + b"\0" * (-len(payload) % 4)
    e = ">" if big else "<"
    if len(payload) <= 112 and payload and not force_len:
        return _hdr(len(payload) // 4, delta, big) + payload
    return _hdr(0, delta, big) + struct.pack(e + "I", len(payload) + 4) + payload


def extend_entry(delta: int, big: bool = False) -> bytes:
    """A time extend adding ``delta`` (>= 2**27) to the clock."""
    e = ">" if big else "<"
    return _hdr(30, delta & ((1 << 27) - 1), big) + struct.pack(e + "I", delta >> 27)


def stamp_entry(ts: int, big: bool = False) -> bytes:
    """An absolute time stamp (low 59 bits of ``ts``)."""
    e = ">" if big else "<"
    return _hdr(31, ts & ((1 << 27) - 1), big) + struct.pack(e + "I", (ts >> 27) & 0xFFFFFFFF)


def padding_entry(delta: int, length: int, big: bool = False) -> bytes:
    """A discarded event / padding of ``4 + length`` bytes: ``array[0] = length`` counts
    itself and what follows (``delta`` 0: a null padding, the rest of the page)."""
    e = ">" if big else "<"
    return _hdr(29, delta, big) + struct.pack(e + "I", length) + b"\0" * max(0, length - 4)


def _hdr(type_len: int, delta: int, big: bool) -> bytes:
    if big:
        return struct.pack(">I", (type_len << 27) | (delta & ((1 << 27) - 1)))
    return struct.pack("<I", type_len | ((delta & ((1 << 27) - 1)) << 5))


def make_page(
    ts: int,
    entries: list[bytes],
    page_size: int = 4096,
    long_size: int = 8,
    big: bool = False,
    lost: int | None = None,
    lost_unknown: bool = False,
) -> bytes:
    """One ring-buffer page: header (time, commit) then ``entries``; ``lost`` sets the
    missed-events flags (and stores the count after the data)."""
    body = b"".join(entries)
    data_off = 8 + long_size
    if data_off + len(body) > page_size:
        raise ValueError("entries do not fit in the page")
    commit = len(body)
    tail = b""
    if lost is not None or lost_unknown:
        commit |= 1 << 31
        if lost is not None:
            commit |= 1 << 30
            tail = struct.pack((">" if big else "<") + ("q" if long_size == 8 else "i"), lost)
    e = ">" if big else "<"
    head = struct.pack(e + "Q", ts) + struct.pack(e + ("Q" if long_size == 8 else "I"), commit)
    page = head + body + tail
    if not tail and len(page) + 4 <= page_size:
        page += _hdr(29, 0, big)  # the kernel's null padding, after the committed data
    return page + b"\0" * (page_size - len(page))


def record(
    type_id: int, pid: int, payload: bytes, flags: int = 0, preempt: int = 0, big: bool = False
) -> bytes:
    """An event record: the common header then the event's own fields."""
    e = ">" if big else "<"
    return struct.pack(e + "HBBi", type_id, flags, preempt, pid) + payload


# -- whole files -----------------------------------------------------------------------------


@dataclass
class BufferSpec:
    """One ftrace buffer to write: its pages per CPU (raw bytes, whole pages)."""

    name: str = ""
    clock: str = "local"
    cpus: dict[int, bytes] = field(default_factory=dict)


@dataclass
class TraceSpec:
    """Everything :func:`write` puts into a file."""

    formats: list[tuple[str, str]]  # (system, format text); system "ftrace" for ftrace's
    buffers: list[BufferSpec]
    cmdlines: str = ""
    printk: bytes = b""
    kallsyms: bytes = b""  # /proc/kallsyms text
    uname: str = "Linux box 6.18.0 x86_64"
    clock: str = "local"
    page_size: int = 4096
    long_size: int = 8
    big_endian: bool = False
    header_page: str = ""
    header_event: str = HEADER_EVENT
    cpus: int | None = None
    extra_options: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class Layout:
    """Offsets of interesting places in a written file (for the fuzzer)."""

    size_fields: list[tuple[int, int]] = field(default_factory=list)  # (offset, width)
    page_starts: list[int] = field(default_factory=list)  # uncompressed page headers
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (start, end)


class _Out:
    def __init__(self, big: bool) -> None:
        self.buf = bytearray()
        self.e = ">" if big else "<"
        self.layout = Layout()

    def tell(self) -> int:
        return len(self.buf)

    def raw(self, data: bytes) -> None:
        self.buf += data

    def num(self, fmt: str, value: int, size_field: bool = False) -> int:
        at = len(self.buf)
        self.buf += struct.pack(self.e + fmt, value)
        if size_field:
            self.layout.size_fields.append((at, struct.calcsize(fmt)))
        return at

    def patch(self, at: int, fmt: str, value: int) -> None:
        struct.pack_into(self.e + fmt, self.buf, at, value)

    def align(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)


def _compress(codec: str | None, data: bytes) -> bytes:
    if codec == "zstd":
        import zstandard  # only v7 zstd compression needs it

        return zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data)
    if codec == "zlib":
        return zlib.compress(data, 9)
    return data


def _systems(formats: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    ftrace = [t for s, t in formats if s == "ftrace"]
    systems: dict[str, list[str]] = {}
    for s, t in formats:
        if s != "ftrace":
            systems.setdefault(s, []).append(t)
    return ftrace, list(systems.items())


def _header_block(o: _Out, spec: TraceSpec) -> None:
    hp = (spec.header_page or header_page(spec.page_size, spec.long_size)).encode()
    o.raw(b"header_page\0")
    o.num("Q", len(hp), True)
    o.raw(hp)
    he = spec.header_event.encode()
    o.raw(b"header_event\0")
    o.num("Q", len(he), True)
    o.raw(he)


def _ftrace_block(o: _Out, ftrace: list[str]) -> None:
    o.num("I", len(ftrace), True)
    for text in ftrace:
        data = text.encode()
        o.num("Q", len(data), True)
        o.raw(data)


def _events_block(o: _Out, systems: list[tuple[str, list[str]]]) -> None:
    o.num("I", len(systems), True)
    for name, texts in systems:
        o.raw(name.encode() + b"\0")
        o.num("I", len(texts), True)
        for text in texts:
            data = text.encode()
            o.num("Q", len(data), True)
            o.raw(data)


def _option(o: _Out, oid: int, data: bytes) -> None:
    o.num("H", oid)
    o.num("I", len(data), True)
    o.raw(data)


def write(
    spec: TraceSpec, version: int = 7, compression: str | None = None
) -> tuple[bytes, Layout]:
    """The bytes of a trace.dat holding ``spec``, and where its interesting parts are."""
    o = _Out(spec.big_endian)
    o.raw(b"\x17\x08\x44tracing" + str(version).encode() + b"\0")
    o.raw(bytes([1 if spec.big_endian else 0, spec.long_size]))
    o.num("I", spec.page_size)
    o.layout.regions["initial"] = (0, o.tell())
    ncpus = spec.cpus or max((max(b.cpus) + 1 for b in spec.buffers if b.cpus), default=1)
    if version == 6:
        _write_v6(o, spec, ncpus)
    else:
        _write_v7(o, spec, ncpus, compression)
    return bytes(o.buf), o.layout


def _clock_text(spec: TraceSpec) -> bytes:
    clocks = ["local", "global", "counter", "uptime", "perf", "mono", "mono_raw", "boot"]
    return (" ".join(f"[{c}]" if c == spec.clock else c for c in clocks) + "\n").encode() + b"\0"


def _write_v6(o: _Out, spec: TraceSpec, ncpus: int) -> None:
    start = o.tell()
    _header_block(o, spec)
    ftrace, systems = _systems(spec.formats)
    _ftrace_block(o, ftrace)
    _events_block(o, systems)
    o.num("I", len(spec.kallsyms), True)
    o.raw(spec.kallsyms)
    o.num("I", len(spec.printk), True)
    o.raw(spec.printk)
    cmd = spec.cmdlines.encode()
    o.num("Q", len(cmd), True)
    o.raw(cmd)
    o.num("I", ncpus, True)
    o.layout.regions["metadata"] = (start, o.tell())
    start = o.tell()
    o.raw(b"options  \0")
    _option(o, 5, spec.uname.encode() + b"\0")
    _option(o, 4, _clock_text(spec))
    _option(o, 8, struct.pack(o.e + "I", ncpus))
    for oid, data in spec.extra_options:
        _option(o, oid, data)
    instance_at = []
    for b in spec.buffers[1:]:
        o.num("H", 3)
        o.num("I", 8 + len(b.name) + 1, True)
        instance_at.append(o.num("Q", 0, True))
        o.raw(b.name.encode() + b"\0")
    o.num("H", 0)
    o.layout.regions["options"] = (start, o.tell())
    o.raw(b"flyrecord\0")
    tables = [_cpu_table(o, ncpus)]
    clock = f"[{spec.clock}]".encode()
    o.num("Q", len(clock), True)
    o.raw(clock)
    for at, _b in zip(instance_at, spec.buffers[1:], strict=True):
        o.patch(at, "Q", o.tell())
        o.raw(b"flyrecord\0")
        tables.append(_cpu_table(o, ncpus))
    for b, table in zip(spec.buffers, tables, strict=True):
        for cpu in range(ncpus):
            pages = b.cpus.get(cpu, b"")
            o.align(spec.page_size)
            off = o.tell()
            _pages(o, pages, spec.page_size, record=True)
            o.patch(table[cpu], "Q", off if pages else 0)
            o.patch(table[cpu] + 8, "Q", len(pages))


def _cpu_table(o: _Out, ncpus: int) -> list[int]:
    out = []
    for _ in range(ncpus):
        out.append(o.num("Q", 0, True))
        o.num("Q", 0, True)
    return out


def _pages(o: _Out, pages: bytes, page_size: int, record: bool) -> None:
    base = o.tell()
    o.raw(pages)
    if record:
        o.layout.page_starts += range(base, base + len(pages), page_size)


def _section(o: _Out, sid: int, body: bytes, codec: str | None) -> int:
    at = o.tell()
    if codec:
        comp = _compress(codec, body)
        payload = struct.pack(o.e + "II", len(comp), len(body)) + comp
        o.layout.size_fields += [(at + 16, 4), (at + 20, 4)]
    else:
        payload = body
    o.num("H", sid)
    o.num("H", 1 if codec else 0)
    o.num("I", 0)
    o.num("Q", len(payload), True)
    o.raw(payload)
    o.layout.regions[f"section{sid}"] = (at, o.tell())
    return at


def _sub(spec: TraceSpec, fill) -> bytes:
    sub = _Out(spec.big_endian)
    fill(sub)
    return bytes(sub.buf)


def _write_v7(o: _Out, spec: TraceSpec, ncpus: int, codec: str | None) -> None:
    if codec:
        o.raw(codec.encode() + b"\0" + (b"1.5.5\0" if codec == "zstd" else b"1.2.13\0"))
    else:
        o.raw(b"none\0\0")
    first_options = o.num("Q", 0, True)
    ftrace, systems = _systems(spec.formats)
    sections = {
        16: _section(o, 16, _sub(spec, lambda s: _header_block(s, spec)), codec),
        17: _section(o, 17, _sub(spec, lambda s: _ftrace_block(s, ftrace)), codec),
        18: _section(o, 18, _sub(spec, lambda s: _events_block(s, systems)), codec),
    }
    if spec.kallsyms:
        kallsyms = struct.pack(o.e + "I", len(spec.kallsyms)) + spec.kallsyms
        sections[19] = _section(o, 19, kallsyms, codec)
    printk = struct.pack(o.e + "I", len(spec.printk)) + spec.printk
    sections[20] = _section(o, 20, printk, codec)
    cmd = spec.cmdlines.encode()
    sections[21] = _section(o, 21, struct.pack(o.e + "Q", len(cmd)) + cmd, codec)
    buffer_opts = []
    for b in spec.buffers:
        sec = o.tell()
        o.num("H", 3)
        o.num("H", 1 if codec else 0)
        o.num("I", 0)
        size_at = o.num("Q", 0)
        start = o.tell()
        cpus = []
        for cpu in sorted(b.cpus):
            pages = b.cpus[cpu]
            o.align(spec.page_size)
            off = o.tell()
            if codec:
                chunks = [
                    pages[i : i + PAGES_IN_CHUNK * spec.page_size]
                    for i in range(0, len(pages), PAGES_IN_CHUNK * spec.page_size)
                ]
                o.num("I", len(chunks), True)
                for chunk in chunks:
                    comp = _compress(codec, chunk)
                    o.num("I", len(comp), True)
                    o.num("I", len(chunk), True)
                    o.raw(comp)
                size = o.tell() - off - 4  # trace-cmd records it without the chunk count
            else:
                _pages(o, pages, spec.page_size, record=True)
                size = len(pages)
            cpus.append((cpu, off, size))
        o.patch(size_at, "Q", o.tell() - start)
        data = struct.pack(o.e + "Q", sec) + b.name.encode() + b"\0" + b.clock.encode() + b"\0"
        data += struct.pack(o.e + "II", spec.page_size, len(cpus))
        for cpu, off, size in cpus:
            data += struct.pack(o.e + "IQQ", cpu, off, size)
        buffer_opts.append(data)
    # one options section for everything, then one per buffer (like trace-cmd)
    head = _Out(spec.big_endian)
    _option(head, 5, spec.uname.encode() + b"\0")
    _option(head, 4, _clock_text(spec))
    _option(head, 8, struct.pack(o.e + "I", ncpus))
    for oid, data in spec.extra_options:
        _option(head, oid, data)
    for sid, at in sections.items():
        _option(head, sid, struct.pack(o.e + "Q", at))
    bodies = [bytes(head.buf)]
    for data in buffer_opts:
        one = _Out(spec.big_endian)
        _option(one, 3, data)
        bodies.append(bytes(one.buf))
    done_at = first_options
    for body in bodies:
        at = o.tell()
        o.patch(done_at, "Q", at)
        full = body + struct.pack(o.e + "HIQ", 0, 8, 0)
        o.num("H", 0)
        o.num("H", 0)
        o.num("I", 0)
        o.num("Q", len(full), True)
        base = o.tell()
        o.raw(full)
        o.layout.regions.setdefault("options", (at, o.tell()))
        o.layout.regions[f"options@{at}"] = (at, o.tell())
        done_at = base + len(body) + 6
