"""Datasets for the diff tests: the bundled sample replayed, a copy of it with migration
latencies stretched, and simulator runs of one scenario with different seeds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import zstandard

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
    new = _stretched_removes(ds, "b", tid, factor).select("seq", "stretched")
    for table in MIGRATION_REMOVES:
        for f in ds.files(table, "b", tid):
            df = pl.read_parquet(f, hive_partitioning=False)
            df = (
                df.join(new, on="seq", how="left")
                .with_columns(pl.coalesce("stretched", "ts").alias("ts"))
                .select(df.columns)
            )
            df.write_parquet(f)
    replay(ds)
    return ds


def _stretched_removes(ds: Dataset, host: str, tid: str, factor: float) -> pl.DataFrame:
    """The ``seq`` of each remove that ends a migration entry of ``host``'s trace ``tid``, its
    ``ts`` and the ``ts`` that makes its migration ``factor`` times as long."""
    entries = pl.read_parquet(ds.files("page_states", host, tid)).filter(
        pl.col("state") == "migration-entry"
    )
    starts = pl.read_parquet(ds.files("migrations", host, tid)).select(
        "migration_id", "t_first_set"
    )
    shift = (
        entries.join(starts, on="migration_id")
        .select(pl.col("seq_end").alias("seq"), "t_first_set")
        .unique("seq")
    )
    removes = pl.concat(
        pl.read_parquet(f, hive_partitioning=False, columns=["seq", "ts"]).join(shift, on="seq")
        for table in MIGRATION_REMOVES
        for f in ds.files(table, host, tid)
    )
    stretched = (pl.col("ts") - pl.col("t_first_set")) * factor
    return removes.with_columns(
        (pl.col("t_first_set") + stretched.round().cast(pl.Int64)).alias("stretched")
    )


def stretched_text(ds: Dataset, host: str, trace: Path, out: Path, factor: float = 1.3) -> int:
    """Write ``trace`` (tracefs text, zstd; ingested and replayed under ``host``) to ``out``
    with the timestamps of its migration-entry removes rewritten so every migration lasts
    ``factor`` times as long: a new recording's bytes, as a user's script would make it.
    Returns the number of lines rewritten. An event's ``seq`` is its index among the
    file's event lines (every line not starting with ``#``)."""
    tid = ds.traces().filter(pl.col("host") == host)["trace_id"][0]
    new = _stretched_removes(ds, host, tid, factor)
    with trace.open("rb") as f:
        lines = zstandard.ZstdDecompressor().stream_reader(f).read().decode().split("\n")
    events = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    stamp = re.compile(r"(\s)(\d+)\.(\d{6,9}):")
    done = 0
    for seq, ts in new.select("seq", "stretched").iter_rows():

        def put(m: re.Match[str], ts: int = ts) -> str:
            digits = len(m.group(3))
            frac = (ts % 10**9) // 10 ** (9 - digits)
            return f"{m.group(1)}{ts // 10**9}.{frac:0{digits}d}:"

        i = events[seq]
        lines[i], n = stamp.subn(put, lines[i], count=1)
        done += n
    out.write_text("\n".join(lines))
    return done


def two_seeds_ds(root: Path, scenario: str, seeds: tuple[int, int]) -> Dataset:
    """Two simulator runs of ``scenario`` (hosts ``s<seed>``), ingested and replayed."""
    ds = Dataset(root / "ds")
    for seed in seeds:
        path = root / f"{scenario}-{seed}.txt"
        path.write_text(simulate(scenario, seed).text)
        ingest(str(path), ds, host=f"s{seed}")
    replay(ds)
    return ds
