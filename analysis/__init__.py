"""Ad hoc SQL over a dataset with DuckDB: one view per table, plus ``events`` over all.

>>> import tempfile
>>> from rmapscope.data import sample_trace
>>> from rmapscope.dataset import Dataset
>>> from rmapscope.ingest import ingest
>>> ds = Dataset(tempfile.mkdtemp())
>>> result = ingest(str(sample_trace()), ds)
>>> from rmapscope.analysis import connect
>>> con = connect(ds)
>>> con.sql("SELECT count(*) FROM events").fetchall() == [(result.events,)]
True
>>> con.sql("SELECT count(DISTINCT trace) FROM traces").fetchall()
[(1,)]

Every table of the dataset is a view named after it (``set_migration_pte``,
``other_events``, ``traces``, ``gaps``, ``ingest_errors``, and the replay tables
``migrations``, ``migration_batches``, ``page_states``, ``fork_windows``, ``violations``),
reading the Hive partitions with filter and column pushdown, so ``WHERE trace = '...'`` only
opens that trace's files. ``events`` holds one row per event of every table with the common
columns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rmapscope.catalog import COMMON_NAMES, GENERIC_DIR
from rmapscope.dataset import Dataset

from ._query import bind_params, bound_sql, invocation
from .queries import CANNED, QUERIES, CannedQuery, run_canned

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "CANNED",
    "QUERIES",
    "CannedQuery",
    "bind_params",
    "bound_sql",
    "connect",
    "invocation",
    "run_canned",
    "table_names",
]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parquet(glob: str) -> str:
    path = glob.replace("'", "''")
    return f"read_parquet('{path}', hive_partitioning = true, union_by_name = true)"


def table_names(dataset: Dataset) -> dict[str, Path]:
    """Tables that have at least one file, name -> directory."""
    return {name: path for name, path in dataset.table_dirs().items() if dataset.files(name)}


def connect(
    dataset: Dataset | str | os.PathLike[str] | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a view for every table of ``dataset`` and ``events``."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    import duckdb  # here: most commands never open a connection, and it imports in 0.1 s

    ds.require()
    con = con or duckdb.connect()
    tables = table_names(ds)
    event_tables = []
    for name, path in tables.items():
        con.execute(
            f"CREATE OR REPLACE VIEW {_quote(name)} AS SELECT * FROM {_parquet(ds.pattern(name))}"
        )
        if path.name.startswith("event=") or name == GENERIC_DIR:
            event_tables.append(name)
    common = ", ".join([*COMMON_NAMES, "host", "trace"])
    if event_tables:
        union = " UNION ALL ".join(f"SELECT {common} FROM {_quote(t)}" for t in event_tables)
    else:
        nulls = ", ".join(f"NULL AS {c}" for c in [*COMMON_NAMES, "host", "trace"])
        union = f"SELECT {nulls} WHERE false"
    con.execute(f"CREATE OR REPLACE VIEW events AS {union}")
    return con
