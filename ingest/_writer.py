"""Stage 4: store. Buffer parsed rows per table and write Parquet into a staging directory."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 1 << 19
MAX_BUFFERED_ROWS = 1 << 20


class StagingWriter:
    """Writes one Parquet file per table (``<root>/<table>/part-00000.parquet``).

    Rows are buffered per table and written in row groups of up to ``ROW_GROUP_ROWS``;
    when all buffers together exceed ``MAX_BUFFERED_ROWS`` the largest is flushed, so memory
    stays bounded whatever the input size.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._buffers: dict[str, list[pa.Table]] = {}
        self._buffered: dict[str, int] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._io = ThreadPoolExecutor(1)
        self._pending: list[Future] = []
        self.rows: dict[str, int] = {}

    def add(self, table: str, frame: pl.DataFrame, schema: pa.Schema) -> None:
        """Queue ``frame`` (columns in ``schema`` order) for ``table``."""
        if frame.height == 0:
            return
        schema = self._schemas.setdefault(table, schema)
        # Copy into compact Arrow buffers now: polars string columns are views into the
        # whole block they were cut from, and a few rows of a rare event would otherwise keep
        # every block alive until their row group fills.
        data = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        data = data.select(schema.names).cast(schema, safe=False)
        self._buffers.setdefault(table, []).append(data)
        self._buffered[table] = self._buffered.get(table, 0) + frame.height
        self.rows[table] = self.rows.get(table, 0) + frame.height
        if self._buffered[table] >= ROW_GROUP_ROWS:
            self._flush(table)
        elif sum(self._buffered.values()) > MAX_BUFFERED_ROWS:
            self._flush(max(self._buffered, key=self._buffered.__getitem__))

    def _flush(self, table: str) -> None:
        parts = self._buffers.pop(table, [])
        self._buffered.pop(table, None)
        if not parts:
            return
        # Encoding and compressing run on one background thread, in order; at most two
        # row groups wait, so memory stays bounded.
        self._pending.append(self._io.submit(self._write, table, parts))
        while len(self._pending) > 2:
            self._pending.pop(0).result()

    def _write(self, table: str, parts: list[pa.Table]) -> None:
        schema = self._schemas[table]
        data = pa.concat_tables(parts)
        writer = self._writers.get(table)
        if writer is None:
            path = self.root / table / "part-00000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            strings = [f.name for f in schema if pa.types.is_string(f.type)]
            writer = pq.ParquetWriter(
                path, schema, compression="zstd", compression_level=1, use_dictionary=strings
            )
            self._writers[table] = writer
        writer.write_table(data, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> list[str]:
        """Flush everything and close the files; returns the tables written."""
        for table in list(self._buffers):
            self._flush(table)
        for f in self._pending:
            f.result()
        self._io.shutdown()
        for writer in self._writers.values():
            writer.close()
        return sorted(self.rows)

    def abort(self) -> None:
        """Close open files without flushing (the staging directory is discarded)."""
        self._io.shutdown(wait=True, cancel_futures=True)
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()


def write_side_table(root: Path, table: str, data: pa.Table) -> None:
    """Write a small side table (gaps, errors, manifest) of a staged trace in one go."""
    path = root / table / "part-00000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path, compression="zstd")


def fill_migration_kinds(root: Path, kinds: dict[int, str]) -> None:
    """Fill ``migration_kind`` of the staged set_migration_* tables from the per-trace
    calibration (swap type -> kind), one row group at a time."""
    mapping = pl.DataFrame(
        {"swp_type": list(kinds), "kind": list(kinds.values())},
        schema={"swp_type": pl.Int16, "kind": pl.String},
    )
    for name in ("set_migration_pte", "set_migration_pmd"):
        path = root / f"event={name}" / "part-00000.parquet"
        if not path.exists():
            continue
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
        tmp = path.with_suffix(".tmp")
        strings = [f.name for f in schema if pa.types.is_string(f.type)]
        with pq.ParquetWriter(
            tmp, schema, compression="zstd", compression_level=1, use_dictionary=strings
        ) as out:
            for i in range(source.num_row_groups):
                df = pl.from_arrow(source.read_row_group(i)).drop("migration_kind")
                df = df.join(mapping, on="swp_type", how="left", maintain_order="left")
                df = df.rename({"kind": "migration_kind"}).select(schema.names)
                out.write_table(df.to_arrow().cast(schema), row_group_size=ROW_GROUP_ROWS)
        source.close()
        tmp.replace(path)
