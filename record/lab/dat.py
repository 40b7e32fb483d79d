"""The trace.dat of a guest's recording, assembled here from what ``data/lab/init.sh`` sends
in ``tracedat.tar``: every CPU's ring-buffer pages (``per_cpu/cpuN/trace_pipe_raw``, read
after the text ``trace``, so both are the same events), ``events/header_page``,
``events/header_event``, the format of every enabled event and of ftrace's own,
``/proc/kallsyms``, ``printk_formats``, ``saved_cmdlines``, ``trace_clock`` and the CPU
count. Written as trace-cmd's version 6 file by :mod:`rmapscope.record.tracedat`."""

from __future__ import annotations

import io
import re
import tarfile

from rmapscope.errors import LabError
from rmapscope.record.tracedat import BufferSpec, TraceSpec, write

__all__ = ["assemble"]

_PAGE = re.compile(r"field:\s*char data;\s*offset:(\d+);\s*size:(\d+);")
_COMMIT = re.compile(r"field:\s*local_t commit;\s*offset:\d+;\s*size:(\d+);")


def _members(tar: bytes) -> dict[str, bytes]:
    try:
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            return {
                m.name.removeprefix("./"): t.extractfile(m).read()  # type: ignore[union-attr]
                for m in t.getmembers()
                if m.isfile()
            }
    except (tarfile.TarError, OSError, EOFError) as e:
        raise LabError(f"the guest's tracedat.tar is unreadable: {e}") from None


def _clock(text: bytes) -> str:
    """The selected clock of a ``trace_clock`` file (``local [global] ...``)."""
    m = re.search(r"\[(\w[\w-]*)\]", text.decode(errors="replace"))
    return m.group(1) if m else "local"


def trace_clock(tar: bytes) -> str:
    """The clock the guest traced with, from its ``tracedat.tar``."""
    return _clock(_members(tar).get("trace_clock", b""))


def assemble(tar: bytes, uname: str) -> bytes:
    """The trace.dat (v6) of the guest's ``tracedat.tar``; ``uname`` is trace-cmd's
    ``sysname nodename release version machine``."""
    files = _members(tar)
    need = ("header_page", "header_event", "cpus", "trace_clock", "saved_cmdlines")
    missing = [n for n in need if n not in files]
    if missing or not any(n.startswith("raw/cpu") for n in files):
        what = ", ".join(missing) or "raw/cpuN"
        raise LabError(f"the guest's tracedat.tar lacks {what}: no trace.dat assembled")
    header_page = files["header_page"].decode()
    page, commit = _PAGE.search(header_page), _COMMIT.search(header_page)
    if page is None or commit is None:
        raise LabError("the guest's events/header_page names no data or commit field")
    page_size = int(page.group(1)) + int(page.group(2))
    cpus = int(files["cpus"])
    pages = {}
    for name, data in files.items():
        if name.startswith("raw/cpu"):
            if len(data) % page_size:
                raise LabError(
                    f"the guest's {name} (trace_pipe_raw) is {len(data)} bytes, not whole "
                    f"{page_size}-byte pages"
                )
            if data:
                pages[int(name[len("raw/cpu") :])] = data
    clock = _clock(files["trace_clock"])
    formats = []
    for name in sorted(files):
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "events":
            formats.append((parts[1], files[name].decode()))
    spec = TraceSpec(
        formats=formats,
        buffers=[BufferSpec(cpus=pages, clock=clock)],
        cmdlines=files["saved_cmdlines"].decode(errors="replace"),
        printk=files.get("printk_formats", b""),
        kallsyms=files.get("kallsyms", b""),
        uname=uname,
        clock=clock,
        page_size=page_size,
        long_size=int(commit.group(1)),
        header_page=header_page,
        header_event=files["header_event"].decode(),
        cpus=cpus,
    )
    return write(spec, version=6)[0]
