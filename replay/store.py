"""Load one trace's events from a dataset and publish its replay tables (atomically).

A trace with more migration events than ``RMAPSCOPE_REPLAY_PARTITION_ROWS`` (default 20
million) is replayed in partitions of its event order, cut only where no migration batch
is open: tier 1 pairs sets and removes within a batch and unmap groups never cross one, so
each partition is replayed by the same pure function with bounded memory, and its page
states go straight to disk. Traces with probe events (tier 2, which needs the whole order
of walks and forks) are replayed whole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from rmapscope import config
from rmapscope.catalog import (
    EVENT_PREFIX,
    GENERIC_DIR,
    MIGRATION_EVENTS,
    PROBE_TABLES,
    REPLAY_TABLES,
)
from rmapscope.dataset import Dataset, StagedTrace
from rmapscope.errors import DatasetError, UsageError

from . import _tier1 as t1
from .engine import (
    BATCH_COUNTS,
    INPUT_EVENTS,
    PARENT_EVENTS,
    UNORDERED_FORMATS,
    parent_events,
    replay_trace,
)


def partition_rows() -> int:
    """Migration events above which a trace is replayed in partitions."""
    return config.replay_partition_rows()


def _read(ds: Dataset, table: str, trace_id: str) -> pl.DataFrame:
    files = ds.files(table, trace_id=trace_id)
    if not files:
        return pl.DataFrame()
    return pl.scan_parquet(files).collect()


def load_trace(
    ds: Dataset, trace_id: str, skip: tuple[str, ...] = ()
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, dict]:
    """The events replay needs (but the tables in ``skip``), gaps and manifest of a trace.

    Of every other event table (and ``other_events``) only the forking parents' events are
    read, as :data:`~rmapscope.replay.engine.PARENT_EVENTS` (where fork windows start)."""
    manifest = _read(ds, "traces", trace_id)
    if manifest.is_empty():
        raise UsageError(f"no trace {trace_id} in {ds.root} (see `rmapscope traces`)")
    row = manifest.row(0, named=True)
    tables = {}
    for name in (*INPUT_EVENTS, *PROBE_TABLES):
        if name in skip:
            continue
        df = _read(ds, name, trace_id)
        if df.height:
            tables[name] = df
    wanted = {*INPUT_EVENTS, *PROBE_TABLES}
    others = [
        pl.scan_parquet(files)
        for name, path in ds.table_dirs().items()
        if name not in wanted and (name == GENERIC_DIR or path.name.startswith(EVENT_PREFIX))
        if (files := ds.files(name, trace_id=trace_id))
    ]
    tables[PARENT_EVENTS] = parent_events(others, tables.get("sched_process_fork"))
    gaps = _read(ds, "gaps", trace_id)
    return tables, gaps, row


def read_replay(ds: Dataset, trace_id: str, skip: tuple[str, ...] = ()) -> dict[str, pl.DataFrame]:
    """The published replay tables of one trace (but those in ``skip``)."""
    return {name: _read(ds, name, trace_id) for name in REPLAY_TABLES if name not in skip}


def replay(
    ds: Dataset,
    trace_ids: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    partitions: int | None = None,
) -> dict[str, dict[str, pl.DataFrame]]:
    """Replay the given traces (all when None) and publish their replay tables.

    Re-running replaces a trace's replay tables. Returns the tables per trace id (for a
    partitioned replay without ``page_states``, which stays on disk). ``partitions``
    forces a number of address partitions (1: whole).
    """
    known = select_traces(ds, trace_ids)
    results = {}
    for t in known:
        if progress:
            progress(t)
        parts = partitions or _parts_needed(ds, t)
        if parts > 1 and not _has_probe_files(ds, t) and _time_ordered(ds, t):
            results[t] = _replay_partitioned(ds, known[t], t, parts)
            continue
        tables, gaps, row = load_trace(ds, t)
        out = replay_trace(tables, gaps, row)
        publish(ds, known[t], t, out)
        results[t] = out
    return results


def select_traces(ds: Dataset, trace_ids: list[str] | None) -> dict[str, str]:
    """The traces to replay (all when None), trace id -> host; unknown ids are an error."""
    ds.require()
    manifest = ds.traces()
    if manifest.is_empty():
        raise DatasetError(f"{ds.root}: no traces to replay")
    known = dict(zip(manifest["trace_id"], manifest["host"], strict=True))
    for t in trace_ids or []:
        if t not in known:
            raise UsageError(f"no trace {t} in {ds.root} (see `rmapscope traces`)")
    return {t: known[t] for t in trace_ids} if trace_ids else known


def _migration_files(ds: Dataset, trace_id: str) -> dict[str, list[Path]]:
    return {n: ds.files(n, trace_id=trace_id) for n in MIGRATION_EVENTS}


def _parts_needed(ds: Dataset, trace_id: str) -> int:
    rows = sum(
        pq.ParquetFile(f).metadata.num_rows
        for files in _migration_files(ds, trace_id).values()
        for f in files
    )
    limit = partition_rows()
    return 1 if rows <= limit else math.ceil(rows / limit)


def _time_ordered(ds: Dataset, trace_id: str) -> bool:
    """Whether a trace's seqs are in time order (partitions are cut in seq order)."""
    manifest = _read(ds, "traces", trace_id)
    return manifest.is_empty() or manifest["format"][0] not in UNORDERED_FORMATS


def _has_probe_files(ds: Dataset, trace_id: str) -> bool:
    return any(ds.files(t, trace_id=trace_id) for t in PROBE_TABLES)


def _replay_partitioned(ds: Dataset, host: str, trace_id: str, parts: int) -> dict:
    """Replay a trace partition by partition (see the module docstring)."""
    tables, gaps, row = load_trace(ds, trace_id, skip=MIGRATION_EVENTS)
    files = _migration_files(ds, trace_id)
    staging = ds.new_staging()
    try:
        migs, viols, batches = [], [], []
        offset = 0
        (staging.path / "page_states").mkdir()
        bounds = _cuts(t1.batches(tables), row, parts)
        for p, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            part = dict(tables)
            span = (pl.col("seq") >= lo) & (pl.col("seq") < hi)
            for name, fs in files.items():
                if fs:
                    df = pl.scan_parquet(fs).filter(span).collect()
                    if df.height:
                        part[name] = df
            out = replay_trace(part, gaps, row)
            shift = pl.col("migration_id") + offset
            migs.append(out["migrations"].with_columns(shift))
            out["page_states"].with_columns(shift).write_parquet(
                staging.path / "page_states" / f"part-{p:05d}.parquet", compression="zstd"
            )
            viols.append(out["violations"])
            batches.append(out["migration_batches"])
            offset += out["migrations"].height
        migrations = pl.concat(migs, how="diagonal_relaxed")
        result = {
            "migrations": migrations,
            "migration_batches": _merge_batches(batches),
            "fork_windows": t1.fork_windows(tables, migrations, t1.all_events(tables)),
            "violations": pl.concat(viols, how="diagonal_relaxed").sort("ts"),
        }
        write_tables(staging.path, result)
        ds.publish(staging, [StagedTrace(host, trace_id, tables=[*result, "page_states"])])
    finally:
        staging.release()
    return result


def _cuts(batch: pl.DataFrame, row: dict, parts: int) -> list[int]:
    """Seq boundaries of about ``parts`` partitions, each cut where no batch is open."""
    total = (row.get("events") or 0) + 1
    quiet = [0]
    if batch.height:
        b = batch.select(
            pl.coalesce("seq_start", "seq_end").alias("lo"),
            pl.coalesce("seq_end", pl.lit(total)).alias("hi"),
        ).sort("lo")
        reach = -1
        for lo, hi in b.iter_rows():
            if lo > reach:
                quiet.append(lo)  # nothing open just before this batch starts
            reach = max(reach, hi)
    cuts = [0]
    for k in range(1, parts):
        want = total * k // parts
        best = min(quiet, key=lambda q: abs(q - want))
        if best > cuts[-1]:
            cuts.append(best)
    return [*cuts, total]


def _merge_batches(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """One batch table from the partitions': the kernel's columns once, replay's summed."""
    counts = list(BATCH_COUNTS)
    first = parts[0]
    if first.is_empty():
        return first
    sums = (
        pl.concat([p.select("batch_id", *counts) for p in parts])
        .group_by("batch_id")
        .agg(pl.col(c).sum() for c in counts)
    )
    return first.drop(counts).join(sums, on="batch_id", how="left").select(first.columns)


def publish(ds: Dataset, host: str, trace_id: str, out: dict[str, pl.DataFrame]) -> None:
    """Write the replay tables of one trace, replacing any earlier replay of it."""
    staging = ds.new_staging()
    try:
        write_tables(staging.path, out)
        ds.publish(staging, [StagedTrace(host, trace_id, tables=list(out))])
    finally:
        staging.release()


def write_tables(root: Path, out: dict[str, pl.DataFrame]) -> None:
    """Write replay tables as ``<root>/<table>/part-00000.parquet`` (a staged trace)."""
    for name, df in out.items():
        path = root / name / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path, compression="zstd")
