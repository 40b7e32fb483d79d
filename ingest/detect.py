"""Detect the format of a trace from its first bytes (after decompression).

Detection only names a format (one of :data:`~rmapscope.ingest.readers.READERS`); the
reader of that format then reads the trace. ``--format`` skips detection altogether.
"""

from __future__ import annotations

import re

from rmapscope.errors import InputError

from ._bytes import escape
from .perf import MAGIC as PERF_MAGIC
from .text import _HEADERS
from .tracedat._file import MAGIC as TRACEDAT_MAGIC

_PERF = re.compile(
    r"^\s*\S.*?\s+\d+(?:/\d+)?\s+(?:\[\d+\]\s+)?\d+\.\d+:\s+(?:\d+\s+)?"
    # "sys:event:" (a tracepoint), or a sample event "cpu-clock:", "cycles:u:", "cpu/cycles/:"
    r"(?:[\w-]+:[\w-]+:|[\w./-]+(?::[ukhpPIGHSDWeb]+)?:(?:\s|$))"
)
# perf's --show-task-events records, and callchain frame lines (tab, hex ip, symbol)
_PERF_TASK = re.compile(r"^\s*\S.*?\s+\d+(?:/\d+)?\s+(?:\[\d+\]\s+)?\d+\.\d+:\s+PERF_RECORD_")
_PERF_FRAME = re.compile(r"^\t\s*[0-9a-fA-F]+\s")
_TC_HEAD = re.compile(r"^\s*(?:[^\s:]+: )?cpus=\d+\s*$")
# what trace-cmd 2.x prints before "cpus=N": "version = 6", then "CPU N is empty" per empty CPU
_TC_VERSION = re.compile(r"^version = \d+\s*$")
_TC_EMPTY = re.compile(r"^CPU \d+ is empty\s*$")


def detect_format(head: bytes, name: str) -> str:
    """Name the format of a trace whose decompressed text starts with ``head``.

    Raises :class:`InputError` for empty input, binary junk, JSON and unknown text.
    """
    if not head.strip():
        raise InputError(f"{name}: empty input, no trace events")
    if head.startswith(TRACEDAT_MAGIC):
        return "trace_dat"
    if head.startswith(PERF_MAGIC):
        return "perf_data"
    sample = head[:65536]
    if b"\x00" in sample:
        offset = sample.index(b"\x00")
        raise InputError(f"{name}: binary data (NUL byte at offset {offset}), not a text trace")
    # bytes that are not UTF-8 (a comm is any 16 bytes): escaped as the readers do; the
    # input is "not text" only when they abound and no format is recognised either
    text = escape(sample)
    invalid = sample.decode("utf-8", errors="replace").count("\ufffd")
    stripped = text.lstrip()
    if stripped[:1] in "{[":
        raise InputError(f"{name}: looks like JSON, not a trace")
    lines = [ln for ln in text.splitlines()[:400] if ln.strip()]
    if any(ln.startswith("# tracer:") for ln in lines[:5]):
        if any("latency trace v" in ln for ln in lines[:10]):
            return "tracefs_latency"
        return "tracefs"
    if any(ln.startswith(("Attaching ", "Attached ")) and "probe" in ln for ln in lines[:5]):
        return "bpftrace"
    body = [ln for ln in lines if not ln.lstrip().startswith("#")][:100]
    # trace-cmd report: "cpus=N" first, or after 2.x's "version = N" and "CPU N is empty"
    versioned = bool(body) and bool(_TC_VERSION.match(body[0]))
    lead = int(versioned)
    while lead < len(body) and _TC_EMPTY.match(body[lead]):
        lead += 1
    cpus = lead < len(body) and bool(_TC_HEAD.match(body[lead]))
    if cpus or versioned:
        events = body[lead + int(cpus) :]
        if _fraction(events, "tcreport") >= _fraction(events, "tcreport_latency"):
            return "tcreport"
        return "tcreport_latency"
    if _fraction(body, "trace_pipe") >= 0.5:
        return "trace_pipe"
    # newer bpftrace prints "Attached N probes" on stderr: then only the lines tell
    if _fraction(body, "bpftrace") >= 0.5:
        return "bpftrace"
    perf = [ln for ln in body if not _PERF_FRAME.match(ln)]
    hits = sum(bool(_PERF.match(ln) or _PERF_TASK.match(ln)) for ln in perf)
    if perf and hits >= max(1, len(perf) // 2):
        return "perf_script"
    if invalid > len(sample) // 100 + 2:
        raise InputError(f"{name}: not text (invalid UTF-8 in the first {len(sample)} bytes)")
    raise InputError(
        f"{name}: not a recognised trace format (first line: {body[0][:80]!r})"
        if body
        else f"{name}: no trace events"
    )


def _fraction(lines: list[str], fmt: str) -> float:
    """Share of event lines (stack frames and lost-event markers aside) in ``fmt``'s layout."""
    lines = [ln for ln in lines if not re.match(r"\s*=>\s|\s*CPU:\d+ \[", ln)]
    if not lines:
        return 0.0
    rx = re.compile(_HEADERS[fmt])
    return sum(bool(rx.match(ln)) for ln in lines) / len(lines)
