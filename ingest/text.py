"""Stage 2: split records. Parse blocks of ftrace text into event rows, gaps and errors.

Handles tracefs ``trace`` (with or without the flags column, 4- or 5-character flags,
pid width 5 or 7, the ``(tgid)`` column, ``latency-format``), ``trace_pipe`` streams,
``trace-cmd report`` (2.x/3.x, ``-l``, ``-t``, non-ns clocks, instance/file prefixes),
``perf script`` text and bpftrace output.
The event lines of a block are split by the compiled tokenizer (``rmapscope._native``,
native/core/src/text: one pass in Rust, the GIL released); the few lines it leaves (markers,
comments, stack frames, continuation lines, odd lines) are classified here, vectorised over
those lines.

``perf script`` (``perf_script``): ``comm tid [cpu] secs.frac: sys:event: payload`` with the
default fields, ``pid/tid`` with ``-F ...,pid,tid,...`` (pid becomes tgid), perf 5.x and 6.x
widths, ``--ns``, ``--header`` comments, optional period, no ``[cpu]``. The event is stored
without its ``sys:``. Callchain frames (tab-indented lines after an event) become
``stack_frame`` rows of ``other_events`` that inherit the event's time, cpu and task; the
blank separator lines are skipped. ``PERF_RECORD_*`` lines of ``--show-task-events`` become
``other_events`` rows named after the record. Samples of non-tracepoint events
(``cpu-clock:``, ``cycles:u:``) are ``other_events`` rows under the whole name (``cycles:u``),
their fields ``period=N`` and the rest of the line. Timestamps are perf's clock (``perf``).

bpftrace (``bpftrace``): lines ``<nsecs> [<cpu>] <comm>-<pid> <event>: <payload>`` printed by
the script (the layout of ``data/probes/rmapscope.bt``), CLOCK_MONOTONIC ns (clock ``mono``).
bpftrace reads its per-CPU buffers in turns, so **its lines are not in time order**: ``seq``
keeps the file order and whoever replays must sort by ``ts``. ``Lost N events`` lines are
gaps without a cpu; ``Attaching N probes...`` is skipped; map dumps at exit (``@name[k]: v``
and histogram rows) and bpftrace's own ``ERROR:``/``WARNING:`` lines are not events: they
are counted in ``ingest_errors`` (reasons ``bpftrace_map``, ``tool_message``). Numbers that
the script printed where the kernel prints a symbol (``reason=0``, ``group_dead=1``) are
mapped to the kernel's text through the event's print fmt before typing.

Probe lines (payload ``(func+0x0/0x..) key=0x..``, see ``data/probes/README.md``) go to
``other_events`` even when the probe shares a tracepoint's name.

A message holding newlines (``trace_marker``, ``trace_printk``) goes on over lines that are
no event: in the tracefs and trace-cmd formats they are joined to their event's payload
with ``\n`` (:meth:`TextParser._join_continuations`, docs/formats.md section 2.1).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Self

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rmapscope import _native
from rmapscope.catalog import (
    BAD_TIMESTAMP,
    BPFTRACE_MAP,
    GAP_BUFFER_STARTED,
    GAP_DROPPED,
    GAP_LOST,
    GENERIC_DIR,
    STACK_FRAME,
    TOOL_MESSAGE,
    UNPARSED_LINE,
    unparsed_fields,
)
from rmapscope.errors import InputError
from rmapscope.schema import (
    COMMON_NAMES,
    EventSchema,
    Registry,
    column_for,
    is_syscall_event,
    syscall_schema,
)

from . import probes
from ._batch import Batch, ErrorLog, HeaderInfo, kind_stats
from ._bytes import escape
from ._columns import (
    array,
    column_args,
    mask,
    string_buffers,
    table,
    to_arrow,
    to_polars,
    to_series,
)
from ._source import Source
from .fields import FieldParser, syscall_arg_names
from .pte import resolve_arch

# Formats this module parses, and what the user may pass to --format.
TEXT_FORMATS = (
    "tracefs",
    "trace_pipe",
    "tracefs_latency",
    "tcreport",
    "tcreport_latency",
    "perf_script",
    "bpftrace",
)

# The regex of each format's event line header (named groups instance, comm, pid, tgid,
# cpu, flags, secs, frac, period): the compiled tokenizer's (native/core/src/text), used here
# for the rare lines it leaves (odd bodies, perf records) and to find event lines.
_HEADERS = {fmt: _native.header_pattern(fmt) for fmt in TEXT_FORMATS}
# a kernel function (``tracing_mark_write``, ``my_func.isra.0``): what tracefs prints as the
# "event" of a trace_printk line; trace-cmd's message events (print, bprint, bputs) too
_FUNCTION_NAME = re.compile(r"[A-Za-z_][\w.]*")
_MULTILINE = ("tracefs", "trace_pipe", "tracefs_latency", "tcreport", "tcreport_latency")
_GROUPS = ("instance", "comm", "pid", "tgid", "cpu", "flags", "secs", "frac", "event", "rest")

_MARKERS = re.compile(
    r"^\s*(?:[^\s:]+: )?(?:CPU:(?P<lcpu>\d+) \[LOST(?: (?P<lost>\d+))? EVENTS\]"
    r"|CPU:(?P<dcpu>\d+) \[(?:(?P<dropped>\d+) )?EVENTS DROPPED\]"
    r"|##### CPU (?P<scpu>\d+) buffer started ####)"
)
_IGNORED = re.compile(r"^\s*(?:#.*|(?:[^\s:]+: )?cpus=\d+|CPU \d+ is empty|version = \d+|\s*)\r?$")
# a stack frame: " => func+off/size" (tracefs, trace-cmd 2.x), "=> func (addr)" at column 0
# (trace-cmd 3.x)
_CONTINUATION = re.compile(r"^\s*=>\s")
# perf script callchain frame: "\t<hex ip> <sym>+<off> (<dso>)", the ip right-aligned.
_PERF_FRAME = r"^\t\s*[0-9a-fA-F]+\s"
_PERF_RECORD = r"(?P<body>PERF_RECORD_[A-Z_]+)(?P<tail>[^\r\n]*)$"
_BPF_ATTACH = r"^\s*Attach(?:ing|ed) \d+ probes?\b"
_BPF_LOST = re.compile(r"^\s*Lost (\d+) events\s*$")
# map dumps at exit: "@name: v", "@name[k1, k2]: v", "@s: count 2, average ..." and the
# rows of a histogram ("[4K, 8K)   2 |@@@@   |", "(..., 0)", "[1M, ...)").
_BPF_MAP = re.compile(r"^@[\w.]*(?:\[.*\])?:|^[\[(].*[\])]\s+\d+\s*\|")
_TOOL_MESSAGE = re.compile(r"^(?:ERROR|WARNING|Error|Warning)\b:?")


@dataclass
class Block:
    """One parsed block: event rows (common columns + ``rest``), gap markers, and stats."""

    events: pa.Table  # lineno ts cpu pid tgid comm flags event rest instance
    markers: list[dict]
    lines: int
    clock: str  # "ns" (printed as seconds.fraction), "counter" (raw ticks), "relative_us"


def split_lines(block: bytes) -> pl.Series:
    """The lines of ``block`` as a polars String series (trailing newlines kept), bytes that
    are not UTF-8 escaped (:mod:`._bytes`, done by the compiled core)."""
    text = pa.py_buffer(_native.escape_block(block))
    buf = np.frombuffer(text, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if len(buf) and (len(ends) == 0 or ends[-1] != len(buf)):
        ends = np.append(ends, len(buf))
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    arr = pa.Array.from_buffers(pa.large_string(), len(ends), [None, pa.py_buffer(offsets), text])
    return pl.Series("line", arr)


def _timestamp_expr(fmt: str) -> pl.Expr:
    """Exact int64 ns from the printed seconds and fraction, never through float."""
    # null where the number does not fit in int64 ns (a damaged line; _finish reports it)
    secs = pl.col("secs").cast(pl.Int64, strict=False)
    if fmt == "tracefs_latency":
        return pl.when(secs < _MAX_NS // 1000).then(secs * 1000)  # us since the reset
    if fmt == "bpftrace":
        return secs  # nsecs
    frac = pl.col("frac")
    n = frac.str.len_bytes().cast(pl.Int64)
    f = frac.cast(pl.Int64, strict=False)
    return (
        pl.when(frac.is_null())
        .then(secs)  # raw counter clock
        .when((n == 12) & (secs < _MAX_NS // 10**12))
        .then(secs * 10**12 + f)  # trace-cmd renders raw counters as %5llu.%012llu
        .when((n <= 9) & (secs < _MAX_NS // 1_000_000_000))
        .then(secs * 1_000_000_000 + f * pl.lit(10, pl.Int64).pow(9 - n))
        .otherwise(None)
    )


_MAX_NS = (1 << 63) - 1


def read_header(fmt: str, head: list[str]) -> HeaderInfo:
    """Parse what the comment header (and ``cpus=``) says: kernel, CPUs, buffer counts, and
    for trace-cmd reports the CPUs it says are empty."""
    info = HeaderInfo(format=fmt)
    if fmt == "bpftrace":
        info.clock = "mono"  # bpf_ktime_get_ns()
    elif fmt == "perf_script":
        _perf_header(info, head)
        return info
    trace_cmd = fmt in ("tcreport", "tcreport_latency")
    empty: set[int] = set()
    for line in head:
        if trace_cmd and (m := re.match(r"\s*CPU (\d+) is empty\s*$", line)):
            empty.add(int(m.group(1)))
            continue
        if m := re.match(r"#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)", line):
            info.entries_in_buffer, info.entries_written = int(m.group(1)), int(m.group(2))
            info.cpus = int(m.group(3))
        elif m := re.search(r"latency trace v[\d.]+ on (\S+)", line):
            info.kernel = m.group(1)
        elif (m := re.search(r"#P:(\d+)", line)) or (
            m := re.match(r"\s*(?:[^\s:]+: )?cpus=(\d+)", line)
        ):
            info.cpus = int(m.group(1))
    if trace_cmd and (empty or info.cpus is not None):
        # trace-cmd prints "CPU N is empty" for each CPU without data before the events
        info.empty_cpus = sorted(empty)
    return info


#: perf's ``--header`` clockid names (``perf record -k``) -> trace clock names.
_PERF_CLOCKS = {"monotonic": "mono", "monotonic_raw": "mono_raw", "boottime": "boot"}


def _perf_header(info: HeaderInfo, head: list[str]) -> None:
    """What ``perf script --header`` says: host, kernel, machine, CPUs, clock."""
    info.clock = "perf"  # perf_clock(), unless recorded with -k (then the header says)
    for line in head:
        m = re.match(r"#\s*(hostname|os release|arch|nrcpus online|clockid)\s*:\s*(\S+)", line)
        if not m:
            continue
        key, value = m.groups()
        if key == "hostname":
            info.host = value
        elif key == "os release":
            info.kernel = value
        elif key == "arch":
            info.arch = value
        elif key == "nrcpus online" and value.isdigit():
            info.cpus = int(value)
        elif key == "clockid":
            info.clock = _PERF_CLOCKS.get(value.lower(), value.lower())


class TextParser:
    """Parses blocks of one text trace into event rows. Stateless per block, so blocks
    can be parsed in parallel; ordering state (seq, gaps) is applied by the caller."""

    def __init__(self, fmt: str, name: str) -> None:
        if fmt not in _HEADERS:
            raise InputError(
                f"{name}: format {fmt!r} is not a text format ({', '.join(TEXT_FORMATS)})"
            )
        self.fmt = fmt
        self.name = name
        # event lines: the compiled tokenizer (native/core/src/text); what it leaves is
        # classified here (markers, comments, frames, continuation lines, odd lines)
        self._tokenizer = _native.TextTokenizer(fmt)
        self._ts = _timestamp_expr(fmt)
        # tracefs and trace-cmd print a message holding newlines on several lines
        self.multiline = fmt in _MULTILINE
        #: whether an event's text may go on over the following lines (see
        #: _join_continuations); the reader knows the typed events
        self.continuable: Callable[[str], bool] = lambda name: True

    def parse(self, block: bytes, line_base: int, errors: ErrorLog) -> Block:
        """Parse one block whose first line is line number ``line_base + 1``."""
        lines, counter, cols, other = self._tokenizer.tokenize(block, line_base)
        events: pa.Table | pl.DataFrame = table(cols)
        markers: list[dict] = []
        extra: list[pl.DataFrame] = []
        if other["lineno"][1]:
            rest = to_polars(table(other))
            unparsed: list[tuple[int, str]] = []
            blank: list[int] = []
            extra = self._classify_other(rest, markers, errors, unparsed, blank)
            if unparsed and self.multiline:
                linenos = np.arange(line_base + 1, line_base + lines + 1, dtype=np.int64)
                events, unparsed = self._join_continuations(linenos, events, unparsed, blank)
            if unparsed:
                errors.add(UNPARSED_LINE, [r[0] for r in unparsed], [r[1] for r in unparsed])
        events = self._finish(events, extra, errors)
        return Block(events=events, markers=markers, lines=lines, clock=self._clock(counter))

    def _clock(self, counter: bool) -> str:
        if self.fmt == "tracefs_latency":
            return "relative_us"
        if self.fmt in ("bpftrace", "perf_script"):
            return "ns"
        return "counter" if counter else "ns"

    def _classify_other(
        self,
        rest: pl.DataFrame,
        markers: list[dict],
        errors: ErrorLog,
        unparsed: list[tuple[int, str]],
        blank: list[int],
    ) -> list[pl.DataFrame]:
        """Lines that are not ``event: payload`` rows: markers, comments, odd events. Lines
        not understood go to ``unparsed`` (line number, text), the numbers of blank lines to
        ``blank``."""
        text = rest["line"].str.strip_chars_end("\r\n")
        rest = rest.with_columns(text.alias("line"))
        ignored = rest["line"].str.contains(_IGNORED.pattern) & ~rest["line"].str.contains(
            r"^##### CPU \d+ buffer started"
        )
        if self.multiline:
            blank.extend(rest.filter(rest["line"].str.contains(r"^\s*$"))["lineno"].to_list())
        rest = rest.filter(~ignored)
        extra: list[pl.DataFrame] = []
        if self.fmt == "perf_script":
            rest = self._perf_other(rest, extra)
        elif self.fmt == "bpftrace":
            rest = rest.filter(~rest["line"].str.contains(_BPF_ATTACH))
        if not rest.height:
            return extra
        unparsed_rows = unparsed
        tool_rows: dict[str, list[tuple[int, str]]] = {BPFTRACE_MAP: [], TOOL_MESSAGE: []}
        # Lines whose header parses but whose body is not "event: payload" (e.g.
        # "<stack trace>"): kept as generic events named after the body.
        body_rx = _HEADERS[self.fmt] + r"(?P<body><[^<>\r\n]+>)\s*$"
        odd = rest.select(
            "lineno", "line", pl.col("line").str.extract_groups(body_rx).alias("g")
        ).unnest("g")
        odd_ok = odd["body"].is_not_null()
        if odd_ok.any():
            name = (
                pl.col("body").str.strip_chars().str.strip_chars("<>").str.replace_all(r"\s+", "_")
            )
            extra.append(
                odd.filter(odd_ok).with_columns(name.alias("event"), pl.lit("").alias("rest"))
            )
        for lineno, line in zip(
            odd.filter(~odd_ok)["lineno"], odd.filter(~odd_ok)["line"], strict=True
        ):
            m = _MARKERS.match(line)
            if m:
                if m.group("lcpu") is not None:
                    kind, cpu, count = GAP_LOST, m.group("lcpu"), m.group("lost")
                elif m.group("dcpu") is not None:
                    kind, cpu, count = GAP_DROPPED, m.group("dcpu"), m.group("dropped")
                else:
                    kind, cpu, count = GAP_BUFFER_STARTED, m.group("scpu"), None
                markers.append(
                    {
                        "kind": kind,
                        "cpu": int(cpu),
                        "count": int(count) if count else None,
                        "line": lineno,
                        "text": line.strip(),
                    }
                )
            elif _CONTINUATION.match(line):
                extra.append(
                    pl.DataFrame(
                        {
                            "lineno": [lineno],
                            "event": [STACK_FRAME],
                            "rest": [line.strip()],
                            "continuation": [True],
                        }
                    )
                )
            elif self.fmt == "bpftrace" and (lost := _BPF_LOST.match(line)):
                markers.append(
                    {
                        "kind": GAP_LOST,
                        "cpu": None,  # bpftrace does not say which buffer lost them
                        "count": int(lost.group(1)),
                        "line": lineno,
                        "text": line.strip(),
                    }
                )
            elif self.fmt == "bpftrace" and _BPF_MAP.match(line):
                tool_rows[BPFTRACE_MAP].append((lineno, line))
            elif self.fmt == "bpftrace" and _TOOL_MESSAGE.match(line):
                tool_rows[TOOL_MESSAGE].append((lineno, line))
            else:
                unparsed_rows.append((lineno, line))
        for reason, got in tool_rows.items():
            if got:  # not events: counted, with samples, in ingest_errors
                errors.add(reason, [r[0] for r in got], [r[1] for r in got])
        return extra

    def _join_continuations(
        self,
        lines: np.ndarray,
        events: pa.Table | pl.DataFrame,
        unparsed: list[tuple[int, str]],
        blank: list[int],
    ) -> tuple[pa.Table | pl.DataFrame, list[tuple[int, str]]]:
        """Give the text of an event whose message holds newlines (a ``trace_marker`` write,
        ``trace_printk``) its continuation lines back: a line that is no event, marker,
        frame or comment, right after such an event (or its other continuation lines), is
        joined to the event's payload with ``\\n``, blank lines between included. An event
        may continue when it has no typed table or its print fmt ends with a ``%s``
        (:attr:`continuable`); other lines stay ``unparsed``, which is returned. ``lines``: the
        numbers of all lines of the block."""
        cand = np.array([n for n, _ in unparsed], dtype=np.int64)
        loose = np.isin(lines, cand) | np.isin(lines, np.array(blank, dtype=np.int64))
        barrier = lines[~loose]  # every other line ends a run of continuation lines
        if not len(barrier):
            return events, unparsed
        at = np.searchsorted(barrier, cand) - 1
        owner = np.where(at >= 0, barrier[np.maximum(at, 0)], -1)
        events = to_polars(events) if isinstance(events, pa.Table) else events
        heads = events.filter(pl.col("lineno").is_in(np.unique(owner[owner >= 0]).tolist()))
        names = dict(zip(heads["lineno"].to_list(), heads["event"].to_list(), strict=True))
        ok = {n for n, name in names.items() if self.continuable(name)}
        if not ok:
            return events, unparsed
        text = {n: t for n, t in unparsed}
        last: dict[int, int] = {}
        left = []
        for (n, t), o in zip(unparsed, owner.tolist(), strict=True):
            if o in ok:
                last[o] = n
            else:
                left.append((n, t))
        joined = {
            o: "\n".join(text.get(k, "") for k in range(o + 1, n + 1)) for o, n in last.items()
        }
        more = pl.col("lineno").replace_strict(
            list(joined), list(joined.values()), default=None, return_dtype=pl.String
        )
        rest = pl.col("rest").str.strip_chars_end("\r\n")
        events = events.with_columns(
            pl.when(more.is_null())
            .then(pl.col("rest"))
            .otherwise(pl.concat_str(rest, pl.lit("\n"), more))
            .alias("rest")
        )
        return events, left

    @staticmethod
    def _perf_other(rest: pl.DataFrame, extra: list[pl.DataFrame]) -> pl.DataFrame:
        """perf callchain frames and ``PERF_RECORD_*`` lines into ``extra``; the rest back."""
        frame = rest["line"].str.contains(_PERF_FRAME)
        if frame.any():
            extra.append(
                rest.filter(frame).select(
                    "lineno",
                    pl.lit(STACK_FRAME).alias("event"),
                    pl.col("line").str.strip_chars().alias("rest"),
                    pl.lit(True).alias("continuation"),
                )
            )
            rest = rest.filter(~frame)
        if not rest.height:
            return rest
        rx = _HEADERS["perf_script"] + _PERF_RECORD
        rec = rest.select(
            "lineno", "line", pl.col("line").str.extract_groups(rx).alias("g")
        ).unnest("g")
        ok = rec["body"].is_not_null()
        if ok.any():
            extra.append(
                rec.filter(ok).with_columns(
                    pl.col("body").alias("event"), pl.col("tail").str.strip_chars().alias("rest")
                )
            )
            rest = rest.filter(~ok)
        return rest

    def _finish(
        self, events: pa.Table | pl.DataFrame, extra: list[pl.DataFrame], errors: ErrorLog
    ) -> pa.Table:
        """Type the common columns of the odd and continuation rows and merge them back with
        the (typed) event rows in line order.

        Event lines whose timestamp does not fit in int64 ns are errors (``bad_timestamp``).
        """
        if isinstance(events, pa.Table):
            if not extra and not events.column("ts").null_count:
                return events  # the tokenizer's columns as they are (no copy)
            events = to_polars(events)
        typed = events.with_columns(pl.lit(False).alias("continuation"))
        out = pl.concat([typed, *map(self._typed, extra)], how="vertical_relaxed")
        bad = pl.col("ts").is_null() & ~pl.col("continuation")
        if out.select(bad.any()).item():
            rejected = out.filter(bad)
            errors.add(
                BAD_TIMESTAMP,
                rejected["lineno"].to_list(),
                [f"{e}: {r}" for e, r in zip(rejected["event"], rejected["rest"], strict=True)],
            )
            out = out.filter(~bad)
        if extra:
            out = out.sort("lineno")
            # a continuation line (" => func") inherits time, cpu and task of the line before
            inherit = ["ts", "cpu", "pid", "tgid", "comm", "flags"]
            cont = pl.col("continuation")
            out = out.with_columns(
                pl.when(cont).then(pl.col(c).forward_fill()).otherwise(pl.col(c)).alias(c)
                for c in inherit
            )
        return to_arrow(out.drop("continuation"))

    def _typed(self, frame: pl.DataFrame) -> pl.DataFrame:
        missing = [g for g in (*_GROUPS, "continuation") if g not in frame.columns]
        frame = frame.with_columns(
            pl.lit(None, pl.Boolean if g == "continuation" else pl.String).alias(g) for g in missing
        )
        return frame.select(
            pl.col("lineno").cast(pl.Int64),
            self._ts.alias("ts"),
            pl.col("cpu").cast(pl.Int32, strict=False),
            pl.col("pid").cast(pl.Int32, strict=False),
            pl.col("tgid").cast(pl.Int32, strict=False),
            pl.col("comm"),
            pl.col("flags"),
            pl.col("event"),
            pl.col("rest").str.strip_chars_end("\r"),
            pl.col("instance"),
            pl.col("continuation").fill_null(False),
        )


class TextReader:
    """Reads one text trace of format ``fmt``: blocks of lines parsed in a thread pool, in
    order. Implements :class:`~rmapscope.ingest.readers.Reader`.

    The constructor raises :class:`InputError` (file, line or byte offset) when the start
    of the input is not ``fmt`` at all: binary data, or not one of its first lines in the
    format's layout. Its rows are in time order except bpftrace's.
    """

    workers = 2
    #: how much of the first block is checked for the format's layout
    check_bytes = 1 << 16
    check_lines = 400

    def __init__(
        self,
        src: Source,
        first: bytes,
        rest: Iterator[bytes],
        fmt: str,
        arch: str,
        registry: Registry,
    ) -> None:
        self.src = src
        self.first = first
        self.rest = rest
        self.registry = registry
        self.parser = TextParser(fmt, src.name)
        self.parser.continuable = self._continuable
        self._check_start(first)
        self.time_ordered = fmt != "bpftrace"  # bpftrace reads its per-CPU buffers in turns
        # perf script --header: host and kernel come before one line per recorded event
        head_lines = 1000 if fmt == "perf_script" else 100
        head = escape(first[: 1 << 16]).splitlines()[:head_lines]
        self.header = read_header(fmt, head)
        if self.header.arch:  # perf's header names the machine: it wins over the default
            self.header.arch = arch = resolve_arch(arch, self.header.arch)
        self.fields = FieldParser(arch)
        self._partition = _native.EventPartition(probes.PROBE_PAYLOAD)
        self._numbers: dict[str, list[tuple[str, str]]] = {}

    def _continuable(self, name: str) -> bool:
        """Whether event ``name``'s text may hold newlines: it has no typed table and is named
        like a message (``tracing_mark_write``, trace-cmd's ``print``, or a C function: the
        caller tracefs prints for a ``trace_printk``), or its print fmt ends with a string."""
        schema = self.registry.get(name)
        if schema is None:
            return _FUNCTION_NAME.fullmatch(name) is not None
        pf = schema.print_fmt
        return (
            pf is not None
            and bool(pf.conversions)
            and pf.conversions[-1].kind == "str"
            and not pf.literals[-1].strip()
        )

    def _check_start(self, first: bytes) -> None:
        """Raise :class:`InputError` when the start of the input is not text of this
        format: nothing but white space, a NUL byte in its first 64 KiB, or lines among its
        first 400 of which none is understood (an event, a lost-event marker, a tool's
        message; comments and blank lines count neither way)."""
        name, fmt = self.src.name, self.parser.fmt
        if not first.strip():
            raise InputError(f"{name}: empty input, no trace events")
        sample = first[: self.check_bytes]
        nul = sample.find(b"\0")
        if nul >= 0:
            raise InputError(f"{name}: not a {fmt} trace: binary data (NUL byte at offset {nul})")
        cut = -1
        for _ in range(self.check_lines):
            at = sample.find(b"\n", cut + 1)
            if at < 0:
                break
            cut = at
        errors = ErrorLog()
        parsed = self.parser.parse(sample[: cut + 1] if cut >= 0 else sample, 0, errors)
        if parsed.events.num_rows or parsed.markers or set(errors.first) - {UNPARSED_LINE}:
            return
        if UNPARSED_LINE in errors.first:
            line, text = errors.first[UNPARSED_LINE], errors.samples[UNPARSED_LINE][0][1]
            raise InputError(
                f"{name}: not a {fmt} trace: line {line} is not in its layout: {text[:80]!r}"
            )

    def close(self) -> None:
        """Nothing to release: the parsing threads end with :meth:`batches`, and the
        source is closed by whoever opened it."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self) -> Iterator[Batch]:
        """Parsed blocks in trace order (at most ``workers`` + 1 in flight)."""
        inflight: deque[Future[tuple[Batch, int | None, dict | None]]] = deque()
        context: dict | None = None
        with ThreadPoolExecutor(self.workers) as pool:
            blocks = _chain(self.first, self.rest)
            if self.parser.multiline:
                blocks = _events_first(blocks, re.compile(_HEADERS[self.parser.fmt]))
            for block in blocks:
                inflight.append(pool.submit(self.parse_block, block))
                while len(inflight) > self.workers:
                    batch, context = _carry_context(*inflight.popleft().result(), context)
                    yield batch
            while inflight:
                batch, context = _carry_context(*inflight.popleft().result(), context)
                yield batch

    def parse_block(self, block: bytes) -> tuple[Batch, int | None, dict | None]:
        """Parse one block; line numbers are relative to it (``consume`` shifts them).
        Returns the batch, the ``rel`` of its first timed row and the context (time, cpu,
        task) of its last (None: no timed row), for :func:`_carry_context`."""
        errors = ErrorLog()
        parsed = self.parser.parse(block, 0, errors)
        ev = parsed.events
        frames: dict[str, pl.DataFrame | pa.Table] = {}
        generic: list[pl.DataFrame] = []
        names = ev.column_names
        groups = self._partition.partition(
            string_buffers(ev.column("event")),
            string_buffers(ev.column("rest")),
            [column_args(ev.column(n)) for n in names],
        )
        for name, rows_col, probe_col, cols in groups:
            rows = array(rows_col)
            part = pa.Table.from_arrays([*map(array, cols), rows], names=[*names, "rel"])
            # Probe lines ("(func+0x0/0x1a0) k=v") of the contract get typed probe tables; a
            # probe may carry a tracepoint's name (the probe on remove_migration_pte), so the
            # payload decides, not the name.
            if probe_col is not None:
                probe = array(probe_col)
                rows_p = to_polars(part.filter(probe))
                if name in probes.PROBES:
                    frames[f"event={probes.table_name(name)}"] = probes.parse(name, rows_p).select(
                        "rel", *probes.probe_schema(name).names[1:]
                    )
                else:
                    generic.append(rows_p)
                part = part.filter(pc.invert(probe))
                if not part.num_rows:
                    continue
            schema = self.registry.get(name) if name is not None else None
            payload = part.column("rest").chunk(0)
            if name is not None and is_syscall_event(name):
                schema = self._syscall_schema(name, schema, to_series(payload))
            if schema is None:
                generic.append(to_polars(part))
                continue
            if self.parser.fmt == "bpftrace":
                words = self._kernel_words(schema, to_series(payload))
                payload = words.to_arrow(compat_level=pl.CompatLevel.oldest())
            typed, ok = self.fields.parse(schema, payload)
            good = pa.Table.from_arrays(
                [part.column("rel"), *(part.column(c) for c in COMMON_NAMES[1:]), *typed.columns],
                names=["rel", *COMMON_NAMES[1:], *typed.column_names],
            )
            if not ok.all():
                assert name is not None  # a typed event has a name
                bad = part.filter(mask(~ok))
                errors.add(
                    unparsed_fields(name),
                    bad.column("lineno").to_pylist(),
                    [f"{name}: {r}" for r in bad.column("rest").to_pylist()],
                )
                generic.append(to_polars(bad))
                good = good.filter(mask(ok))
            frames[f"event={name}"] = good
        if generic:
            g = pl.concat(generic).select("rel", *COMMON_NAMES[1:], pl.col("rest").alias("fields"))
            frames[GENERIC_DIR] = g
        evp = to_polars(ev.select(["lineno", "ts", "cpu"])) if ev.num_rows else None
        for m in parsed.markers:
            # a marker without a cpu (bpftrace "Lost N events") sits between the lines around it
            if evp is None:
                m["ts_start"] = m["ts_end"] = None
                continue
            same = pl.col("cpu") == m["cpu"] if m["cpu"] is not None else pl.lit(True)
            on_cpu = evp.filter(same & pl.col("ts").is_not_null())
            before = on_cpu.filter(pl.col("lineno") < m["line"])
            after = on_cpu.filter(pl.col("lineno") > m["line"])
            m["ts_start"] = before["ts"][-1] if before.height else None
            m["ts_end"] = after["ts"][0] if after.height else None
        ts = ev.column("ts")
        timed = evp["ts"].is_not_null().arg_true() if evp is not None else pl.Series([])
        first = int(timed[0]) if len(timed) else None
        last = None
        if len(timed):
            last = ev.slice(int(timed[-1]), 1).select(list(_INHERITED)).to_pylist()[0]
        span = pc.min_max(ts)
        batch = Batch(
            frames=frames,
            markers=parsed.markers,
            n_events=ev.num_rows,
            lines=parsed.lines,
            cpu_edges=Batch.edges(evp) if evp is not None else {},
            ts_range=(span["min"].as_py(), span["max"].as_py()),
            clock=parsed.clock,
            kind_stats=kind_stats(frames),
            errors=errors,
        )
        return batch, first, last

    def _syscall_schema(
        self, name: str, schema: EventSchema | None, payload: pl.Series
    ) -> EventSchema:
        """The schema of syscall event ``name``: its known format's, unless there is none or
        the text prints other argument names (another kernel's syscall); then one made from
        the names printed (see :func:`~rmapscope.schema.syscall_schema`)."""
        args = syscall_arg_names(payload)
        if schema is not None:
            known = [
                f.name
                for f in schema.fields
                if f.name != "__syscall_nr" and not f.name.startswith("common_")
            ]
            if name.startswith("sys_exit_") or not args or args == known:
                return schema
        return self.registry.add(syscall_schema(name, args), replace=schema is not None)

    def _kernel_words(self, schema: EventSchema, payload: pl.Series) -> pl.Series:
        """bpftrace scripts print numbers where the kernel prints words (``reason=0``,
        ``mode=2``, ``group_dead=1``): put the kernel's words back, from the print fmt's
        symbol tables and ``cond ? "a" : "b"`` choices, so the rows type like tracefs ones."""
        subs = self._numbers.get(schema.name)
        if subs is None:
            subs = []
            pf = schema.print_fmt
            convs = {column_for(c.column): c for c in pf.conversions} if pf else {}
            for key, col in (pf.keys(column_for) if pf else {}).items():
                conv = convs[col]
                if conv.kind == "symbolic":
                    pairs = [(str(n), text) for n, text in conv.table]
                elif conv.kind == "bool" and conv.choices:
                    pairs = [(str(int(v)), text) for text, v in conv.choices]
                else:
                    continue
                for number, text in pairs:
                    rx = rf"(^|[\s,]){re.escape(key)}={number}([\s,]|$)"
                    subs.append((rx, "${1}" + key + "=" + text.replace("$", "$$") + "${2}"))
            self._numbers[schema.name] = subs
        for rx, repl in subs:
            payload = payload.str.replace_all(rx, repl)
        return payload


#: What a stack or callchain frame line takes from the event line above it.
_INHERITED = ("ts", "cpu", "pid", "tgid", "comm", "flags")


def _carry_context(
    batch: Batch, first: int | None, last: dict | None, context: dict | None
) -> tuple[Batch, dict | None]:
    """Give the frame lines at the top of a block (a callchain or stack the block boundary
    cut from its event) the time, cpu and task of the last event of the blocks before;
    return the batch and the context for the next one (``first``, ``last``: the ``rel`` of
    the batch's first timed row and its last one's context, see ``parse_block``)."""
    frames = batch.frames.get(GENERIC_DIR)
    if context is not None and isinstance(frames, pl.DataFrame):
        lead = (pl.col("event") == STACK_FRAME) & pl.col("ts").is_null()
        if first is not None:
            lead = lead & (pl.col("rel") < first)
        batch.frames[GENERIC_DIR] = frames.with_columns(
            pl.when(lead).then(pl.lit(context[c], frames.schema[c])).otherwise(pl.col(c)).alias(c)
            for c in _INHERITED
        )
    return batch, last if last is not None else context


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


#: at most this much of a block's head moves to the block before it (see _events_first)
_MOVE_BYTES = 1 << 20


def _events_first(blocks: Iterator[bytes], event_line: re.Pattern[str]) -> Iterator[bytes]:
    """The blocks, with the lines at the top of each that are no event line (the
    continuation lines of a message holding newlines, stack frames, markers) moved to the
    end of the block before: a message is never cut from its event by a block boundary.
    Line numbers do not change (they count across blocks)."""
    prev: bytes | None = None
    for block in blocks:
        if prev is None:
            prev = block
            continue
        cut = 0
        while cut < min(len(block), _MOVE_BYTES):
            end = block.find(b"\n", cut)
            end = len(block) if end < 0 else end + 1
            if event_line.match(block[cut:end].decode("utf-8", "replace")):
                break
            cut = end
        if cut:
            prev, block = prev + block[:cut], block[cut:]
        if block:
            yield prev
            prev = block
    if prev is not None:
        yield prev
