"""Datasets for the diff tests: the bundled sample replayed, a copy of it with migration
latencies stretched, and simulator runs of one scenario with different seeds."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from rmapscope.catalog import MIGRATION_REMOVES
from rmapscope.data import sample_trace
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from rmapscope.replay.simulator import simulate

#: A real recording made here (``rmapscope record`` of a fork + mmap + compact_memory
#: program, 4.3 s of it): 736 migration batches. The bundled sample's 22
#: batches are too few for a batch-level test to see a 30% change.
RERECORD = Path(__file__).parents[1] / "data" / "rerecord" / "run02.trace.zst"


def sample_ds(root: Path, host: str = "a", trace: Path | None = None) -> Dataset:
    """A trace (the bundled forkstorm sample by default), ingested under ``host`` and
    replayed."""
    ds = Dataset(root)
    ingest(str(trace or sample_trace()), ds, host=host)
    replay(ds)
    return ds


def stretched_ds(root: Path, factor: float = 1.3, trace: Path = RERECORD) -> Dataset:
    """``trace`` under host ``a``, and again under host ``b`` with its removes of
    migration entries shifted so that every migration's set -> remove time is ``factor``
    times as long; both replayed.

    Each remove moves to ``t_first_set + factor * (ts - t_first_set)`` of its migration
    (page_states' entry intervals end at the remove's seq); seqs stay, so replay pairs the
    same events.
    """
    ds = sample_ds(root, "a", trace)
    tid = ds.traces()["trace_id"][0]
    for part in sorted(ds.root.glob("*/host=a")):  # the same trace, under host b
        shutil.copytree(part, part.with_name("host=b"))
    for f in ds.files("traces", "b", tid):
        pl.read_parquet(f, hive_partitioning=False).with_columns(host=pl.lit("b")).write_parquet(f)
    entries = pl.read_parquet(ds.files("page_states", "b", tid)).filter(
        pl.col("state") == "migration-entry"
    )
    starts = pl.read_parquet(ds.files("migrations", "b", tid)).select("migration_id", "t_first_set")
    shift = (
        entries.join(starts, on="migration_id")
        .select(pl.col("seq_end").alias("seq"), "t_first_set")
        .unique("seq")
    )
    stretched = (pl.col("ts") - pl.col("t_first_set")) * factor
    for table in MIGRATION_REMOVES:
        for f in ds.files(table, "b", tid):
            df = pl.read_parquet(f, hive_partitioning=False)
            df = (
                df.join(shift, on="seq", how="left")
                .with_columns(
                    pl.when(pl.col("t_first_set").is_not_null())
                    .then(pl.col("t_first_set") + stretched.round().cast(pl.Int64))
                    .otherwise(pl.col("ts"))
                    .alias("ts")
                )
                .select(df.columns)
            )
            df.write_parquet(f)
    replay(ds)
    return ds


def two_seeds_ds(root: Path, scenario: str, seeds: tuple[int, int]) -> Dataset:
    """Two simulator runs of ``scenario`` (hosts ``s<seed>``), ingested and replayed."""
    ds = Dataset(root / "ds")
    for seed in seeds:
        path = root / f"{scenario}-{seed}.txt"
        path.write_text(simulate(scenario, seed).text)
        ingest(str(path), ds, host=f"s{seed}")
    replay(ds)
    return ds
