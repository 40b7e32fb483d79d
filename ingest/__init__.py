"""Ingest traces into a dataset: read bytes -> split records -> parse fields -> store.

>>> from rmapscope.ingest import ingest  # doctest: +SKIP
>>> result = ingest("trace.txt.gz", Dataset("rmapscope-data"), host="box1")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

from rmapscope import __version__
from rmapscope.dataset import GENERIC_DIR, Dataset
from rmapscope.errors import InputError, UsageError
from rmapscope.schema import (
    COMMON_NAMES,
    ERRORS_COLUMNS,
    GAPS_COLUMNS,
    GENERIC_COLUMNS,
    TRACES_COLUMNS,
    Registry,
    arrow_schema,
    default_registry,
)

from . import pte as ptemod
from ._source import open_source, read_blocks
from ._writer import StagingWriter, fill_migration_kinds, write_side_table
from .detect import NOT_YET, detect_format
from .fields import FieldParser
from .text import TEXT_FORMATS, ErrorLog, HeaderInfo, TextParser, read_header

__all__ = ["FORMATS", "IngestResult", "ingest"]

#: Values accepted by ``--format``.
FORMATS = TEXT_FORMATS

_WORKERS = 2


@dataclass
class IngestResult:
    """What one ingest did."""

    trace_id: str
    host: str
    source: str
    format: str
    events: int = 0
    lines: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    lost_events: int = 0
    errors: ErrorLog = field(default_factory=ErrorLog)
    skipped: bool = False  # the same content was already in the dataset
    replaced: bool = False
    ts_first: int | None = None
    ts_last: int | None = None


@dataclass
class _BlockOut:
    frames: dict[str, pl.DataFrame]  # table -> rows with a block-relative "rel" index
    markers: list[dict]
    n_events: int
    lines: int
    cpu_edges: dict[int, tuple[int | None, int | None]]  # cpu -> (first ts, last ts)
    ts_range: tuple[int | None, int | None]
    clock: str
    kind_stats: pl.DataFrame | None
    errors: ErrorLog


class _TraceIngest:
    """Parses one text trace block by block (in a thread pool) and stages its tables."""

    def __init__(self, name: str, fmt: str, arch: str, registry: Registry) -> None:
        self.name = name
        self.fmt = fmt
        self.registry = registry
        self.parser = TextParser(fmt, name)
        self.fields = FieldParser(arch)
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

    # runs in worker threads -----------------------------------------------------------
    def parse_block(self, block: bytes) -> _BlockOut:
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
        edges = {}
        if ev.height:
            agg = (
                ev.filter(pl.col("cpu").is_not_null() & pl.col("ts").is_not_null())
                .group_by("cpu")
                .agg(pl.col("ts").first().alias("f"), pl.col("ts").last().alias("last"))
            )
            edges = {cpu: (first, last) for cpu, first, last in agg.iter_rows()}
        for m in parsed.markers:
            on_cpu = ev.filter((pl.col("cpu") == m["cpu"]) & pl.col("ts").is_not_null())
            before = on_cpu.filter(pl.col("lineno") < m["line"])
            after = on_cpu.filter(pl.col("lineno") > m["line"])
            m["ts_start"] = before["ts"][-1] if before.height else None
            m["ts_end"] = after["ts"][0] if after.height else None
        return _BlockOut(
            frames=frames,
            markers=parsed.markers,
            n_events=ev.height,
            lines=parsed.lines,
            cpu_edges=edges,
            ts_range=(ev["ts"].min(), ev["ts"].max()) if ev.height else (None, None),
            clock=parsed.clock,
            kind_stats=_kind_stats(frames),
            errors=errors,
        )

    # runs in the main thread, in block order -------------------------------------------
    def consume(self, out: _BlockOut, stage: Callable[[str, pl.DataFrame], None]) -> None:
        for table, frame in out.frames.items():
            frame = frame.with_columns((pl.col("rel").cast(pl.Int64) + self.seq).alias("seq")).drop(
                "rel"
            )
            name = table[len("event=") :] if table.startswith("event=") else None
            if name:
                self.counts[name] = self.counts.get(name, 0) + frame.height
            else:
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
        if lo is not None:
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

    def calibration(self) -> tuple[dict[int, str], str]:
        """Swap type -> migration kind for this trace (see :func:`pte.calibrate_kinds`)."""
        if not self.kind_stats:
            return ptemod.calibrate_kinds({}, {})
        st = (
            pl.concat(self.kind_stats)
            .group_by("swp_type")
            .agg(pl.col("sets").sum(), pl.col("writable").sum(), pl.col("restores").sum())
        )
        seen = {t: n for t, n, _, _ in st.iter_rows() if n}
        restores = {t: (w, r) for t, _, w, r in st.iter_rows()}
        return ptemod.calibrate_kinds(seen, restores)


def _kind_stats(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    """Per swap type: sets seen, and how many removes paired with it restored a writable pte."""
    parts = []
    for kind in ("pte", "pmd"):
        sets = frames.get(f"event=set_migration_{kind}")
        if sets is None:
            continue
        stats = sets.group_by("swp_type").agg(pl.len().cast(pl.Int64).alias("sets"))
        removes = frames.get(f"event=remove_migration_{kind}")
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


def ingest(
    path: str,
    dataset: Dataset,
    *,
    host: str | None = None,
    fmt: str | None = None,
    arch: str = "x86_64",
    force: bool = False,
    registry: Registry | None = None,
    progress: Callable[[int, int | None, int], None] | None = None,
) -> IngestResult:
    """Ingest one trace file (``-`` for stdin) into ``dataset``.

    ``progress(bytes_done, bytes_total, events)`` is called after each block. Re-ingesting
    the same content is a no-op unless ``force``. Raises :class:`InputError` for input that
    is not a trace; then nothing is written.
    """
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if arch not in ptemod.ARCHES:
        raise UsageError(f"unknown arch {arch!r}; known: {', '.join(ptemod.ARCHES)}")
    registry = registry or default_registry()
    src = open_source(path)
    staging = writer = None
    try:
        blocks = read_blocks(src)
        first = next(blocks, b"")
        detected = detect_format(first, src.name)
        if fmt is None:
            if detected in NOT_YET:
                raise InputError(f"{src.name}: {NOT_YET[detected]} is not supported yet")
            fmt = detected
        header = read_header(fmt, first[: 1 << 16].decode("utf-8", "replace").splitlines()[:100])
        dataset.create()
        staging = dataset.new_staging()
        writer = StagingWriter(staging.path)
        job = _TraceIngest(src.name, fmt, arch, registry)
        schemas: dict[str, pa.Schema] = {}

        def stage(table: str, frame: pl.DataFrame) -> None:
            if table not in schemas:
                if table == GENERIC_DIR:
                    schemas[table] = arrow_schema(GENERIC_COLUMNS)
                else:
                    schemas[table] = registry.get(table[len("event=") :]).arrow_schema()
            writer.add(table, frame, schemas[table])

        inflight: deque[Future[_BlockOut]] = deque()
        with ThreadPoolExecutor(_WORKERS) as pool:
            for block in _chain(first, blocks):
                inflight.append(pool.submit(job.parse_block, block))
                while len(inflight) > _WORKERS:
                    job.consume(inflight.popleft().result(), stage)
                    if progress:
                        progress(src.compressed_position(), src.size, job.seq)
            while inflight:
                job.consume(inflight.popleft().result(), stage)
        if progress:
            progress(src.compressed_position(), src.size, job.seq)
        if job.seq == 0 and not job.gaps and not job.pending_gaps:
            raise InputError(
                f"{src.name}: no trace events found ({job.errors.total} lines not understood)"
            )
        kinds, how = job.calibration()
        writer.close()
        writer = None
        fill_migration_kinds(staging.path, kinds)
        trace_id = src.hexdigest()[:16]
        host = host or "unknown"
        gaps = _gap_rows(job, header)
        result = IngestResult(
            trace_id=trace_id,
            host=host,
            source=src.name,
            format=fmt,
            events=job.seq,
            lines=job.lines,
            event_counts=dict(sorted(job.counts.items())),
            gaps=len(gaps),
            lost_events=sum(g["count"] or 0 for g in gaps),
            errors=job.errors,
            ts_first=job.ts_first,
            ts_last=job.ts_last,
        )
        write_side_table(
            staging.path, "gaps", pa.Table.from_pylist(gaps, schema=arrow_schema(GAPS_COLUMNS))
        )
        write_side_table(
            staging.path, "ingest_errors", job.errors.table().cast(arrow_schema(ERRORS_COLUMNS))
        )
        write_side_table(
            staging.path, "traces", _manifest(result, header, arch, job.clock, src, kinds, how)
        )
        with dataset.lock():
            dataset.recover()
            if dataset.has_trace(trace_id) and not force:
                result.skipped = True
                return result
            old = [str(p.relative_to(dataset.root)) for p in dataset.trace_dirs(trace_id)]
            result.replaced = bool(old)
            moves = [
                (t, f"{t}/host={host}/trace={trace_id}")
                for t in sorted(p.name for p in staging.path.iterdir() if p.is_dir())
                if t != "trash"
            ]
            dataset.commit(staging, moves, old)
        return result
    finally:
        if writer is not None:
            writer.abort()
        src.close()
        if staging is not None:
            staging.release()


def _chain(first: bytes, rest):
    if first:
        yield first
    yield from rest


def _gap_rows(job: _TraceIngest, header: HeaderInfo) -> list[dict]:
    rows = [
        {k: m.get(k) for k in ("kind", "cpu", "ts_start", "ts_end", "count", "line", "text")}
        for m in job.gaps + job.pending_gaps
    ]
    if (header.entries_written or 0) > (header.entries_in_buffer or 0):
        lost = header.entries_written - header.entries_in_buffer
        rows.append(
            {
                "kind": "overwritten",
                "cpu": None,
                "ts_start": None,
                "ts_end": job.ts_first,
                "count": lost,
                "line": 3,
                "text": f"entries-in-buffer/entries-written: "
                f"{header.entries_in_buffer}/{header.entries_written}",
            }
        )
    return sorted(rows, key=lambda r: r["line"] or 0)


def _manifest(
    result: IngestResult,
    header: HeaderInfo,
    arch: str,
    clock: str | None,
    src,
    kinds: dict[int, str],
    how: str,
) -> pa.Table:
    row = {
        "trace_id": result.trace_id,
        "host": result.host,
        "source": result.source,
        "format": result.format,
        "kernel": header.kernel,
        "arch": arch,
        "clock": clock,
        "cpus": header.cpus,
        "ts_first": result.ts_first,
        "ts_last": result.ts_last,
        "events": result.events,
        "lines": result.lines,
        "gaps": result.gaps,
        "lost_events": result.lost_events,
        "errors": result.errors.total,
        "event_counts": list(result.event_counts.items()),
        "bytes": src.bytes_read,
        "sha256": src.hexdigest(),
        "migration_types": json.dumps({"types": {str(k): v for k, v in kinds.items()}, "how": how}),
        "ingested_at": dt.datetime.now(dt.UTC),
        "tool_version": __version__,
    }
    return pa.Table.from_pylist([row], schema=arrow_schema(TRACES_COLUMNS))
