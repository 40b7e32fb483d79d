"""Load one trace's events from a dataset and publish its replay tables (atomically)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from rmapscope.dataset import Dataset
from rmapscope.errors import DatasetError, UsageError

from .engine import INPUT_EVENTS, PROBE_TABLES, replay_trace


def _read(ds: Dataset, pattern: str, columns_filter: pl.Expr | None = None) -> pl.DataFrame:
    files = sorted(ds.root.glob(pattern))
    if not files:
        return pl.DataFrame()
    lf = pl.scan_parquet(files)
    if columns_filter is not None:
        lf = lf.filter(columns_filter)
    return lf.collect()


def load_trace(ds: Dataset, trace_id: str) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, dict]:
    """The events replay needs, the gaps and the manifest row of one trace."""
    manifest = _read(ds, f"traces/host=*/trace={trace_id}/*.parquet")
    if manifest.is_empty():
        raise UsageError(f"no trace {trace_id} in {ds.root} (see `rmapscope traces`)")
    row = manifest.row(0, named=True)
    tables = {}
    for name in (*INPUT_EVENTS, *PROBE_TABLES):
        df = _read(ds, f"event={name}/host=*/trace={trace_id}/*.parquet")
        if df.height:
            tables[name] = df
    gaps = _read(ds, f"gaps/host=*/trace={trace_id}/*.parquet")
    return tables, gaps, row


def replay(
    ds: Dataset, trace_ids: list[str] | None = None, progress: Callable[[str], None] | None = None
) -> dict[str, dict[str, pl.DataFrame]]:
    """Replay the given traces (all when None) and publish their replay tables.

    Re-running replaces a trace's replay tables. Returns the tables per trace id.
    """
    ds.require()
    manifest = ds.traces()
    if manifest.is_empty():
        raise DatasetError(f"{ds.root}: no traces to replay")
    known = dict(zip(manifest["trace_id"], manifest["host"], strict=True))
    ids = trace_ids or list(known)
    for t in ids:
        if t not in known:
            raise UsageError(f"no trace {t} in {ds.root} (see `rmapscope traces`)")
    results = {}
    for t in ids:
        if progress:
            progress(t)
        tables, gaps, row = load_trace(ds, t)
        out = replay_trace(tables, gaps, row)
        publish(ds, known[t], t, out)
        results[t] = out
    return results


def publish(ds: Dataset, host: str, trace_id: str, out: dict[str, pl.DataFrame]) -> None:
    """Write the replay tables of one trace, replacing any earlier replay of it."""
    staging = ds.new_staging()
    try:
        for name, df in out.items():
            path = staging.path / name / "part-00000.parquet"
            path.parent.mkdir(parents=True)
            df.write_parquet(path, compression="zstd")
        with ds.lock():
            ds.recover()
            targets = [f"{name}/host={host}/trace={trace_id}" for name in out]
            old = [t for t in targets if (ds.root / t).exists()]
            ds.commit(
                staging, [(name, f"{name}/host={host}/trace={trace_id}") for name in out], old
            )
    finally:
        staging.release()
