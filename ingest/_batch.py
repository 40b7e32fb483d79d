"""The unit every reader produces, and the assembler that stages batches in trace order.

A reader (text, trace.dat, ...) turns its input into :class:`Batch` es: the rows of each
table for a stretch of the trace, in trace order, with a batch-relative ``rel`` index instead
of the final ``seq``. The :class:`Assembler` assigns ``seq``, counts events, resolves the
time range of lost-event gaps across batches and calibrates migration-entry kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import polars as pl
import pyarrow as pa

from rmapscope.catalog import (
    EVENT_PREFIX,
    GAP_OVERWRITTEN,
    INGEST_ERRORS,
    MIGRATION_REMOVES,
    MIGRATION_SETS,
    directory,
)

from . import pte as ptemod
from ._columns import rows_table, shifted

MAX_ERROR_SAMPLES = 10


@dataclass
class ErrorLog:
    """Counts rejected lines per reason (complete) and keeps a few samples of each."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def add(
        self, reason: str, lines: list[int], texts: list[str], total: int | None = None
    ) -> None:
        """Record ``total`` (default: len(lines)) rejects; ``lines``/``texts`` are samples."""
        n = len(lines) if total is None else total
        if n == 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + n
        self.first.setdefault(reason, lines[0] if lines else 0)
        kept = self.samples.setdefault(reason, [])
        for ln, tx in zip(lines, texts, strict=False):
            if len(kept) >= MAX_ERROR_SAMPLES:
                break
            kept.append((ln, tx[:500]))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def table(self) -> pa.Table:
        """The ``ingest_errors`` rows."""
        rows = [
            {
                "reason": r,
                "count": self.counts[r],
                "first_line": self.first[r],
                "sample_lines": [ln for ln, _ in self.samples[r]],
                "samples": [tx for _, tx in self.samples[r]],
            }
            for r in sorted(self.counts)
        ]
        return rows_table(rows, INGEST_ERRORS.arrow_schema())


@dataclass
class HeaderInfo:
    """What the comment header and layout of a text trace told us."""

    format: str
    kernel: str | None = None
    cpus: int | None = None
    empty_cpus: list[int] | None = None  # trace-cmd report's "CPU N is empty" lines
    entries_in_buffer: int | None = None
    entries_written: int | None = None
    clock: str | None = None  # trace clock name when the trace says (trace.dat)
    host: str | None = None  # host name when the trace says (trace.dat uname)
    arch: str | None = None  # machine when the trace says


@dataclass
class Batch:
    """Rows of one stretch of a trace, per table (``event=<name>`` or ``other_events``).

    Each frame has the table's columns except ``seq``, plus ``rel``: the row's position in
    the batch (0-based, trace order, across all tables). Markers are gap rows
    (kind, cpu, count, line, text, ts_start, ts_end) with batch-relative ``line``.
    """

    #: table -> rows with a batch-relative "rel" index (polars, or pyarrow as the text
    #: reader builds its typed tables)
    frames: dict[str, pl.DataFrame | pa.Table]
    markers: list[dict]
    n_events: int
    lines: int
    cpu_edges: dict[int, tuple[int, int]]  # cpu -> (first ts, last ts)
    ts_range: tuple[int | None, int | None]
    clock: str
    kind_stats: pl.DataFrame | None
    errors: ErrorLog

    @staticmethod
    def edges(rows: pl.DataFrame) -> dict[int, tuple[int, int]]:
        """Per cpu, the first and last timestamp of ``rows`` (in trace order)."""
        if not rows.height:
            return {}
        agg = (
            rows.filter(pl.col("cpu").is_not_null() & pl.col("ts").is_not_null())
            .group_by("cpu")
            .agg(pl.col("ts").first().alias("first"), pl.col("ts").last().alias("last"))
        )
        return {cpu: (first, last) for cpu, first, last in agg.iter_rows()}


def _columns(frame: pl.DataFrame | pa.Table | None, names: list[str]) -> pl.DataFrame | None:
    """Columns ``names`` of a batch frame as a polars frame."""
    if frame is None or isinstance(frame, pl.DataFrame):
        return frame
    return cast(pl.DataFrame, pl.from_arrow(frame.select(names)))


def kind_stats(frames: dict[str, pl.DataFrame | pa.Table]) -> pl.DataFrame | None:
    """Per swap type: sets seen, and how many removes paired with it restored a writable pte."""
    parts = []
    for set_event, remove_event in zip(MIGRATION_SETS, MIGRATION_REMOVES, strict=True):
        sets = _columns(frames.get(directory(set_event)), ["rel", "pid", "addr", "swp_type"])
        if sets is None:
            continue
        stats = sets.group_by("swp_type").agg(pl.len().cast(pl.Int64).alias("sets"))
        removes = _columns(frames.get(directory(remove_event)), ["rel", "pid", "addr", "writable"])
        if removes is not None and removes.height:
            pairs = (
                removes.select("rel", "pid", "addr", "writable")
                .sort("rel")
                .join_asof(
                    sets.select("rel", "pid", "addr", "swp_type").sort("rel"),
                    on="rel",
                    by=["pid", "addr"],
                    strategy="backward",
                    check_sortedness=False,
                )
                .filter(pl.col("swp_type").is_not_null())
            )
            w = pairs.group_by("swp_type").agg(
                pl.col("writable").sum().cast(pl.Int64).alias("writable"),
                pl.len().cast(pl.Int64).alias("restores"),
            )
            stats = stats.join(w, on="swp_type", how="full", coalesce=True)
        else:
            stats = stats.with_columns(
                pl.lit(0, pl.Int64).alias("writable"), pl.lit(0, pl.Int64).alias("restores")
            )
        parts.append(stats.select("swp_type", "sets", "writable", "restores").fill_null(0))
    return pl.concat(parts) if parts else None


class Assembler:
    """Takes batches in trace order: assigns ``seq``, counts, gaps, time range, clock."""

    def __init__(self) -> None:
        self.seq = 0
        self.lines = 0
        self.counts: dict[str, int] = {}
        self.errors = ErrorLog()
        self.gaps: list[dict] = []
        self.pending_gaps: list[dict] = []
        self.last_ts: dict[int, int] = {}
        self.ts_first: int | None = None
        self.ts_last: int | None = None
        self.clock: str | None = None
        self.kind_stats: list[pl.DataFrame] = []

    def consume(self, out: Batch, stage: Callable[[str, pl.DataFrame | pa.Table], None]) -> None:
        """Give ``seq`` to the batch's rows, hand them to ``stage(table, frame)``, keep stats."""
        for table, frame in out.frames.items():
            if isinstance(frame, pa.Table):
                seq = shifted(frame.column("rel"), self.seq)
                at = frame.schema.get_field_index("rel")
                frame = frame.set_column(at, "seq", seq)
            else:
                seq_expr = (pl.col("rel").cast(pl.Int64) + self.seq).alias("seq")
                frame = frame.with_columns(seq_expr).drop("rel")
            name = table[len(EVENT_PREFIX) :] if table.startswith(EVENT_PREFIX) else None
            if name:
                self.counts[name] = self.counts.get(name, 0) + len(frame)
            else:
                assert isinstance(frame, pl.DataFrame)  # other_events rows are polars
                for ev_name, n in frame.group_by("event").len().iter_rows():
                    self.counts[ev_name] = self.counts.get(ev_name, 0) + n
            stage(table, frame)
        for m in out.markers:
            m["line"] += self.lines
            if m["ts_start"] is None:
                m["ts_start"] = self.last_ts.get(m["cpu"])
            (self.gaps if m["ts_end"] is not None else self.pending_gaps).append(m)
        for m in list(self.pending_gaps):
            if m not in out.markers and m["cpu"] in out.cpu_edges:
                m["ts_end"] = out.cpu_edges[m["cpu"]][0]
                self.pending_gaps.remove(m)
                self.gaps.append(m)
        for cpu, (_, last) in out.cpu_edges.items():
            self.last_ts[cpu] = last
        lo, hi = out.ts_range
        if lo is not None and hi is not None:
            self.ts_first = lo if self.ts_first is None else min(self.ts_first, lo)
            self.ts_last = hi if self.ts_last is None else max(self.ts_last, hi)
        if self.clock is None or out.clock == "counter":
            self.clock = out.clock if out.n_events else self.clock
        if out.kind_stats is not None:
            self.kind_stats.append(out.kind_stats)
        for reason, n in out.errors.counts.items():
            samples = out.errors.samples[reason]
            self.errors.add(
                reason, [s[0] + self.lines for s in samples], [s[1] for s in samples], total=n
            )
        self.seq += out.n_events
        self.lines += out.lines

    def calibration(
        self, kernel: str | None = None, config: dict | None = None, arch: str | None = None
    ) -> tuple[dict[int, str], str]:
        """Swap type -> migration kind for this trace of kernel release ``kernel`` with
        ``config`` on ``arch`` (see :func:`pte.calibrate_kinds`)."""
        if not self.kind_stats:
            return ptemod.calibrate_kinds({}, {}, kernel, config, arch)
        st = (
            pl.concat(self.kind_stats)
            .group_by("swp_type")
            .agg(pl.col("sets").sum(), pl.col("writable").sum(), pl.col("restores").sum())
        )
        seen = {t: n for t, n, _, _ in st.iter_rows() if n}
        restores = {t: (w, r) for t, _, w, r in st.iter_rows()}
        return ptemod.calibrate_kinds(seen, restores, kernel, config, arch)

    def gap_rows(self, header: HeaderInfo) -> list[dict]:
        """The ``gaps`` rows: markers seen, plus events a wrapped buffer overwrote."""
        rows = [
            {k: m.get(k) for k in ("kind", "cpu", "ts_start", "ts_end", "count", "line", "text")}
            for m in self.gaps + self.pending_gaps
        ]
        written, held = header.entries_written or 0, header.entries_in_buffer or 0
        if written > held:
            lost = written - held
            rows.append(
                {
                    "kind": GAP_OVERWRITTEN,
                    "cpu": None,
                    "ts_start": None,
                    "ts_end": self.ts_first,
                    "count": lost,
                    "line": 3,
                    "text": f"entries-in-buffer/entries-written: "
                    f"{header.entries_in_buffer}/{header.entries_written}",
                }
            )
        return sorted(rows, key=lambda r: r["line"] or 0)
