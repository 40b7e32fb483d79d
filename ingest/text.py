"""Stage 2: split records. Parse blocks of ftrace text into event rows, gaps and errors.

Handles tracefs ``trace`` (with or without the flags column, 4- or 5-character flags,
pid width 5 or 7, the ``(tgid)`` column, ``latency-format``), ``trace_pipe`` streams, and
``trace-cmd report`` (2.x/3.x, ``-l``, ``-t``, non-ns clocks, instance/file prefixes).
Every step is a vectorised polars expression over a whole block of lines.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from rmapscope.dataset import GENERIC_DIR
from rmapscope.errors import InputError
from rmapscope.schema import COMMON_NAMES, Registry

from ._batch import Batch, ErrorLog, HeaderInfo, kind_stats
from ._source import Source
from ._tokenize import split_events
from .fields import FieldParser

# Formats this module parses, and what the user may pass to --format.
TEXT_FORMATS = ("tracefs", "trace_pipe", "tracefs_latency", "tcreport", "tcreport_latency")

_REST = r"(?P<event>[^:\s]+):\s?(?P<rest>[^\r\n]*)"
_TS = r"(?P<secs>\d+)(?:\.(?P<frac>\d+))?"
_PREFIX = r"^\s*(?:(?P<instance>[^\s:]+): )?"
_HEADERS = {
    # comm: the shortest text before "-<pid>" that lets the rest of the line match.
    "tracefs": (
        r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\((?:\s*(?P<tgid>\d+)|-+)\)\s+)?"
        r"\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d]\S{3,6})\s+)?" + _TS + r":\s"
    ),
    "tracefs_latency": (
        r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>\S*)\s+"
        r"(?P<secs>\d+)us.:\s"
    ),
    "tcreport": (
        _PREFIX + r"\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
        r"(?:(?P<flags>[^\s\d]\S{3,6})\s+)?" + _TS + r":\s+"
    ),
    "tcreport_latency": (
        _PREFIX + r"\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>\S*)\s+" + _TS + r":\s+"
    ),
}
_HEADERS["trace_pipe"] = _HEADERS["tracefs"]
_GROUPS = ("instance", "comm", "pid", "tgid", "cpu", "flags", "secs", "frac", "event", "rest")

_MARKERS = re.compile(
    r"^\s*(?:[^\s:]+: )?(?:CPU:(?P<lcpu>\d+) \[LOST(?: (?P<lost>\d+))? EVENTS\]"
    r"|CPU:(?P<dcpu>\d+) \[(?:(?P<dropped>\d+) )?EVENTS DROPPED\]"
    r"|##### CPU (?P<scpu>\d+) buffer started ####)"
)
_IGNORED = re.compile(r"^\s*(?:#.*|(?:[^\s:]+: )?cpus=\d+|CPU \d+ is empty|version = \d+|\s*)\r?$")
_CONTINUATION = re.compile(r"^\s+=>\s")


@dataclass
class Block:
    """One parsed block: event rows (common columns + ``rest``), gap markers, and stats."""

    events: pl.DataFrame
    markers: list[dict]
    lines: int
    clock: str  # "ns" (printed as seconds.fraction), "counter" (raw ticks), "relative_us"


def split_lines(block: bytes) -> pl.Series:
    """The lines of ``block`` as a polars String series (trailing newlines kept).

    Invalid UTF-8 lines come back null (the caller reports them).
    """
    buf = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if len(block) and (len(ends) == 0 or ends[-1] != len(block)):
        ends = np.append(ends, len(block))
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends
    arr = pa.Array.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(block)]
    )
    return pl.Series("line", arr).cast(pl.String, strict=False)


def _timestamp_expr(fmt: str) -> pl.Expr:
    """Exact int64 ns from the printed seconds and fraction, never through float."""
    secs = pl.col("secs").cast(pl.Int64)
    if fmt == "tracefs_latency":
        return secs * 1000  # microseconds since the buffer was reset
    frac = pl.col("frac")
    n = frac.str.len_bytes().cast(pl.Int64)
    f = frac.cast(pl.Int64, strict=False)
    return (
        pl.when(frac.is_null())
        .then(secs)  # raw counter clock
        .when(n == 12)
        .then(secs * 10**12 + f)  # trace-cmd renders raw counters as %5llu.%012llu
        .when(n <= 9)
        .then(secs * 1_000_000_000 + f * pl.lit(10, pl.Int64).pow(9 - n))
        .otherwise(None)
    )


def read_header(fmt: str, head: list[str]) -> HeaderInfo:
    """Parse what the comment header (and ``cpus=``) says: kernel, CPUs, buffer counts."""
    info = HeaderInfo(format=fmt)
    for line in head:
        if m := re.match(r"#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)", line):
            info.entries_in_buffer, info.entries_written = int(m.group(1)), int(m.group(2))
            info.cpus = int(m.group(3))
        elif m := re.search(r"latency trace v[\d.]+ on (\S+)", line):
            info.kernel = m.group(1)
        elif (m := re.search(r"#P:(\d+)", line)) or (
            m := re.match(r"\s*(?:[^\s:]+: )?cpus=(\d+)", line)
        ):
            info.cpus = int(m.group(1))
    return info


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
        self._rx = _HEADERS[fmt] + _REST
        self._ts = _timestamp_expr(fmt)

    def parse(self, block: bytes, line_base: int, errors: ErrorLog) -> Block:
        """Parse one block whose first line is line number ``line_base + 1``."""
        lines = split_lines(block)
        df = pl.DataFrame({"line": lines}).with_row_index("lineno", offset=line_base + 1)
        df = df.with_columns(pl.col("lineno").cast(pl.Int64))
        if lines.null_count():
            bad = df.filter(pl.col("line").is_null())
            errors.add("invalid_utf8", bad["lineno"].to_list(), ["<invalid UTF-8>"] * bad.height)
        fast = self._fast(df)
        if fast is not None:
            events, done = fast
            slow = df.filter(~done & pl.col("line").is_not_null())
        else:
            events, slow = None, df.filter(pl.col("line").is_not_null())
        parsed = slow.select(
            "lineno", "line", pl.col("line").str.extract_groups(self._rx).alias("g")
        ).unnest("g")
        ok = parsed["event"].is_not_null()
        matched = parsed.filter(ok).drop("line")
        if events is None:
            events = matched
        elif matched.height:
            events = pl.concat([events, matched], how="diagonal_relaxed").sort("lineno")
        rest = parsed.filter(~ok)
        markers: list[dict] = []
        extra = []
        if rest.height:
            extra = self._classify_other(rest, markers, errors)
        clock = self._clock(events)
        events = self._finish(events, extra)
        return Block(events=events, markers=markers, lines=len(lines), clock=clock)

    def _fast(self, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series] | None:
        """Split the ordinary event lines without a regex; returns them and a done mask."""
        if self.fmt not in ("tracefs", "trace_pipe", "tcreport"):
            return None
        cand = df.filter(pl.col("line").is_not_null() & ~pl.col("line").str.starts_with("#"))
        cols = split_events(cand, padded_names=self.fmt == "tcreport")
        good = cols.filter(pl.col("ok")).drop("ok")
        done = df["lineno"].is_in(good["lineno"].implode())
        return good, done

    def _clock(self, events: pl.DataFrame) -> str:
        if self.fmt == "tracefs_latency":
            return "relative_us"
        frac = events.get_column("frac")
        if frac.is_null().any() or (frac.str.len_bytes() == 12).any():
            return "counter"
        return "ns"

    def _classify_other(
        self, rest: pl.DataFrame, markers: list[dict], errors: ErrorLog
    ) -> list[pl.DataFrame]:
        """Lines that are not ``event: payload`` rows: markers, comments, odd events."""
        text = rest["line"].str.strip_chars_end("\r\n")
        rest = rest.with_columns(text.alias("line"))
        ignored = rest["line"].str.contains(_IGNORED.pattern) & ~rest["line"].str.contains(
            r"^##### CPU \d+ buffer started"
        )
        rest = rest.filter(~ignored)
        extra: list[pl.DataFrame] = []
        if not rest.height:
            return extra
        unparsed_rows = []
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
                    kind, cpu, count = "lost", m.group("lcpu"), m.group("lost")
                elif m.group("dcpu") is not None:
                    kind, cpu, count = "dropped", m.group("dcpu"), m.group("dropped")
                else:
                    kind, cpu, count = "buffer_started", m.group("scpu"), None
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
                            "event": ["stack_frame"],
                            "rest": [line.strip()],
                            "continuation": [True],
                        }
                    )
                )
            else:
                unparsed_rows.append((lineno, line))
        if unparsed_rows:
            errors.add(
                "unparsed_line", [r[0] for r in unparsed_rows], [r[1] for r in unparsed_rows]
            )
        return extra

    def _finish(self, events: pl.DataFrame, extra: list[pl.DataFrame]) -> pl.DataFrame:
        """Type the common columns; merge odd and continuation rows back in line order."""
        frames = [events, *extra]
        out = pl.concat([self._typed(f) for f in frames], how="vertical_relaxed")
        if extra:
            out = out.sort("lineno")
            # a continuation line (" => func") inherits time, cpu and task of the line before
            inherit = ["ts", "cpu", "pid", "tgid", "comm", "flags"]
            cont = pl.col("continuation")
            out = out.with_columns(
                pl.when(cont).then(pl.col(c).forward_fill()).otherwise(pl.col(c)).alias(c)
                for c in inherit
            )
        return out.drop("continuation")

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
    """Reads one text trace: blocks of lines parsed in a thread pool, in order."""

    workers = 2

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
        self.fields = FieldParser(arch)
        head = first[: 1 << 16].decode("utf-8", "replace").splitlines()[:100]
        self.header = read_header(fmt, head)

    def batches(self) -> Iterator[Batch]:
        """Parsed blocks in trace order (at most ``workers`` + 1 in flight)."""
        inflight: deque[Future[Batch]] = deque()
        with ThreadPoolExecutor(self.workers) as pool:
            for block in _chain(self.first, self.rest):
                inflight.append(pool.submit(self.parse_block, block))
                while len(inflight) > self.workers:
                    yield inflight.popleft().result()
            while inflight:
                yield inflight.popleft().result()

    def parse_block(self, block: bytes) -> Batch:
        """Parse one block; line numbers are relative to it (``consume`` shifts them)."""
        errors = ErrorLog()
        parsed = self.parser.parse(block, 0, errors)
        ev = parsed.events.with_row_index("rel")
        frames: dict[str, pl.DataFrame] = {}
        generic: list[pl.DataFrame] = []
        for (name,), part in ev.partition_by("event", as_dict=True, maintain_order=True).items():
            schema = self.registry.get(name)
            if schema is None:
                generic.append(part)
                continue
            typed, ok = self.fields.parse(schema, part.get_column("rest"))
            good = part.select("rel", *COMMON_NAMES[1:]).hstack(typed)
            if not ok.all():
                bad = part.filter(~ok)
                errors.add(
                    f"unparsed_fields:{name}",
                    bad["lineno"].to_list(),
                    [f"{name}: {r}" for r in bad["rest"].to_list()],
                )
                generic.append(bad)
                good = good.filter(ok)
            frames[f"event={name}"] = good
        if generic:
            g = pl.concat(generic).select("rel", *COMMON_NAMES[1:], pl.col("rest").alias("fields"))
            frames[GENERIC_DIR] = g
        for m in parsed.markers:
            on_cpu = ev.filter((pl.col("cpu") == m["cpu"]) & pl.col("ts").is_not_null())
            before = on_cpu.filter(pl.col("lineno") < m["line"])
            after = on_cpu.filter(pl.col("lineno") > m["line"])
            m["ts_start"] = before["ts"][-1] if before.height else None
            m["ts_end"] = after["ts"][0] if after.height else None
        return Batch(
            frames=frames,
            markers=parsed.markers,
            n_events=ev.height,
            lines=parsed.lines,
            cpu_edges=Batch.edges(ev),
            ts_range=(ev["ts"].min(), ev["ts"].max()) if ev.height else (None, None),
            clock=parsed.clock,
            kind_stats=kind_stats(frames),
            errors=errors,
        )


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
