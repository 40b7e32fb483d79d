"""Replay on Apache Spark: the same :func:`~rmapscope.replay.replay_trace` per (host, trace).

The driver reads every table replay needs with Spark, packs each table's columns into one
struct column (so tables with clashing column types never meet), unions them and groups by
(host, trace); ``applyInArrow`` hands each group to :func:`_replay_group` on an executor,
which unpacks the tables exactly as the local engine reads them (column types from the
trace's own Parquet footers, rows in file order), replays them and writes the replay tables
into a staging directory of the dataset. The driver then publishes every trace that
succeeded in one atomic commit; a trace whose replay failed is reported and the others
still land.

A trace is one group: executors need the memory the local engine needs for the largest
trace (the local engine's batch-aligned partitioning of huge traces is not used here).
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmapscope.dataset import REPLAY_TABLES, Dataset

from .engine import INPUT_EVENTS, PROBE_TABLES, replay_trace
from .store import commit_staged, select_traces, write_tables

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Side tables a replay reads besides the events.
_SIDE = ("gaps", "traces")
#: Columns added to each packed row: which file it came from and its index there.
_FILE, _ROW = "_file", "_row"

RESULT_SCHEMA = "host string, trace string, error string, seconds double, events long, rows string"
_RESULT_ARROW = pa.schema(
    [
        ("host", pa.string()),
        ("trace", pa.string()),
        ("error", pa.string()),
        ("seconds", pa.float64()),
        ("events", pa.int64()),
        ("rows", pa.string()),
    ]
)


@dataclass
class TraceReplay:
    """What the Spark replay of one trace did (``error`` set when it failed)."""

    host: str
    trace_id: str
    seconds: float
    events: int
    rows: dict[str, int]
    error: str | None = None


def replay_spark(
    ds: Dataset,
    spark: SparkSession,
    trace_ids: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TraceReplay]:
    """Replay the given traces (all when None) on Spark and publish their replay tables.

    Returns one :class:`TraceReplay` per trace, in manifest order; the traces with an
    ``error`` were not published (an earlier replay of them stays as it was).
    """
    known = select_traces(ds, trace_ids)
    staging = ds.new_staging()
    try:
        packed = _packed_events(spark, ds, list(known))
        root, staged = str(ds.root.resolve()), str(staging.path.resolve())

        def job(packed: pa.Table) -> pa.Table:  # type hints tell Spark it takes a whole group
            return _replay_group(packed, root=root, staging=staged)

        if progress:
            progress(f"replaying {len(known)} traces on {spark.sparkContext.master}")
        rows = packed.groupBy("host", "trace").applyInArrow(job, RESULT_SCHEMA).collect()
        done = {
            r["trace"]: TraceReplay(
                r["host"], r["trace"], r["seconds"], r["events"], json.loads(r["rows"]), r["error"]
            )
            for r in rows
        }
        results = [done[t] for t in known if t in done]
        ok = [r for r in results if r.error is None]
        if ok:
            commit_staged(
                ds, staging, [(r.trace_id, r.host, r.trace_id, list(REPLAY_TABLES)) for r in ok]
            )
        return results
    finally:
        staging.release()


def _packed_events(spark: SparkSession, ds: Dataset, trace_ids: list[str]) -> DataFrame:
    """One row per input row of the given traces: host, trace and one struct per table."""
    from pyspark.sql import functions as F

    parts = []
    for name in (*INPUT_EVENTS, *PROBE_TABLES, *_SIDE):
        path = ds.root / (name if name in _SIDE else f"event={name}")
        if not any(path.glob("host=*/trace=*/*.parquet")):
            continue
        df = (
            spark.read.option("mergeSchema", "true")
            .option("basePath", str(path))
            .parquet(str(path))
            .where(F.col("trace").isin(trace_ids))
        )
        fields = [c for c in df.columns if c not in ("host", "trace")]
        parts.append(
            df.select(
                "host",
                "trace",
                F.struct(
                    *fields,
                    F.col("_metadata.file_path").alias(_FILE),
                    F.col("_metadata.row_index").alias(_ROW),
                ).alias(name),
            )
        )
    if not parts:
        # every trace has a manifest row, so this only happens in an empty dataset
        raise ValueError(f"{ds.root}: nothing to replay")
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)


def _replay_group(packed: pa.Table, *, root: str, staging: str) -> pa.Table:
    """Replay one trace's packed rows (runs on an executor) and stage its replay tables."""
    host, trace = packed["host"][0].as_py(), packed["trace"][0].as_py()
    start = time.perf_counter()
    try:
        tables, gaps, manifest = unpack(packed, Path(root), host, trace)
        out = replay_trace(tables, gaps, manifest)
        write_tables(Path(staging) / trace, out)
        rows, error = {k: v.height for k, v in out.items()}, None
    except Exception as e:  # reported per trace by the driver; the other traces still land
        rows, error = {}, f"{type(e).__name__}: {e} [{_where(e)}]"
    return pa.Table.from_pylist(
        [
            {
                "host": host,
                "trace": trace,
                "error": error,
                "seconds": time.perf_counter() - start,
                "events": _event_rows(packed),
                "rows": json.dumps(rows),
            }
        ],
        schema=_RESULT_ARROW,
    )


def _where(e: Exception) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def _event_rows(packed: pa.Table) -> int:
    """How many event rows of the trace replay read."""
    return sum(
        packed.num_rows - packed[name].null_count
        for name in packed.column_names
        if name not in ("host", "trace", *_SIDE)
    )


def unpack(
    packed: pa.Table, root: Path, host: str, trace: str
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, dict]:
    """The tables, gaps and manifest row of one trace, as :func:`load_trace` reads them.

    Each table's rows are put back in file order and cast to the schema of the trace's own
    Parquet files (Spark reads unsigned integers as wider signed or decimal types, and a
    table's merged schema may have columns this trace's files lack).
    """
    tables: dict[str, pl.DataFrame] = {}
    gaps = pl.DataFrame()
    manifest: dict = {}
    for name in packed.column_names:
        if name in ("host", "trace"):
            continue
        directory = root / (name if name in _SIDE else f"event={name}") / f"host={host}"
        files = sorted((directory / f"trace={trace}").glob("*.parquet"))
        if not files:
            continue
        schema = pq.read_schema(files[0])
        column = packed[name]
        rows = packed.filter(pc.is_valid(column))[name].combine_chunks()
        flat = pa.Table.from_struct_array(rows) if len(rows) else None
        if flat is None:
            frame = pl.from_arrow(schema.empty_table())
        else:
            flat = flat.sort_by([(_FILE, "ascending"), (_ROW, "ascending")])
            # a table's own host column (the manifest's) reads as the partition column
            for col, value in (("host", host), ("trace", trace)):
                if col in schema.names and col not in flat.column_names:
                    flat = flat.append_column(col, pa.repeat(value, flat.num_rows))
            frame = pl.from_arrow(flat.select(schema.names).cast(schema))
        if name == "gaps":
            gaps = frame
        elif name == "traces":
            manifest = frame.row(0, named=True)
        elif frame.height:
            tables[name] = frame
    return tables, gaps, manifest
