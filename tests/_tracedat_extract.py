"""The metadata and first pages of a real trace.dat as a :class:`TraceSpec` (test helper:
the fuzzer and the benchmark rewrite real files with :mod:`rmapscope.record.tracedat`)."""

from __future__ import annotations

from rmapscope.ingest.tracedat._file import FileReader, read_metadata
from rmapscope.ingest.tracedat._pages import PageLayout, page_groups
from rmapscope.record.tracedat import HEADER_EVENT, BufferSpec, TraceSpec


def extract(path: str, max_pages: int | None = None, systems: set[str] | None = None) -> TraceSpec:
    """The metadata and (the first ``max_pages``) pages per CPU of a real trace.dat.

    ``systems``: keep only the formats of these event systems (and ftrace's), to make the
    file small.
    """
    f = FileReader(path, path)
    try:
        meta = read_metadata(f)
        _c, c_size, d_off = meta.page_header
        buffers = []
        for b in meta.buffers:
            layout = PageLayout(b.page_size, meta.big_endian, c_size, d_off)
            codec = meta.compression if b.compressed else None
            spec = BufferSpec(name=b.name, clock=b.clock or meta.clock or "local")
            for c in b.cpus:
                if not c.size:
                    continue
                pages = bytearray()
                for g in page_groups(f, c.offset, c.size, layout, codec, f"CPU {c.cpu}"):
                    pages += g.buf[: g.n_pages * b.page_size].tobytes()
                    if max_pages is not None and len(pages) >= max_pages * b.page_size:
                        break
                if max_pages is not None:
                    pages = pages[: max_pages * b.page_size]
                spec.cpus[c.cpu] = bytes(pages)
            buffers.append(spec)
    finally:
        f.close()
    formats = [(s, t) for s, t in meta.formats if systems is None or s == "ftrace" or s in systems]
    cmdlines = "".join(f"{pid} {comm}\n" for pid, comm in meta.cmdlines.items())
    return TraceSpec(
        formats=formats,
        buffers=buffers,
        cmdlines=cmdlines,
        printk=meta.printk,
        uname=meta.uname or "Linux box 6.18.0 x86_64",
        clock=meta.clock or "local",
        page_size=meta.page_size,
        long_size=meta.long_size,
        big_endian=meta.big_endian,
        header_page=meta.header_page,
        header_event=meta.header_event or HEADER_EVENT,
        cpus=meta.cpucount,
    )
