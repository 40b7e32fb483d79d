"""Stage 4: store. Buffer parsed rows per table and write Parquet into a staging directory."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 1 << 20
MAX_BUFFERED_ROWS = 3 << 20


class StagingWriter:
    """Writes one Parquet file per table (``<root>/<table>/part-00000.parquet``).

    Rows are buffered per table and written in row groups of up to ``ROW_GROUP_ROWS``;
    when all buffers together exceed ``MAX_BUFFERED_ROWS`` the largest is flushed, so memory
    stays bounded whatever the input size.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._buffers: dict[str, list[pl.DataFrame]] = {}
        self._buffered: dict[str, int] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}

    def add(self, table: str, frame: pl.DataFrame, schema: pa.Schema) -> None:
        """Queue ``frame`` (columns in ``schema`` order) for ``table``."""
        if frame.height == 0:
            return
        self._schemas.setdefault(table, schema)
        self._buffers.setdefault(table, []).append(frame)
        self._buffered[table] = self._buffered.get(table, 0) + frame.height
        self.rows[table] = self.rows.get(table, 0) + frame.height
        if self._buffered[table] >= ROW_GROUP_ROWS:
            self._flush(table)
        elif sum(self._buffered.values()) > MAX_BUFFERED_ROWS:
            self._flush(max(self._buffered, key=self._buffered.__getitem__))

    def _flush(self, table: str) -> None:
        frames = self._buffers.pop(table, [])
        self._buffered.pop(table, None)
        if not frames:
            return
        schema = self._schemas[table]
        data = pl.concat(frames, how="vertical_relaxed").to_arrow()
        data = data.select(schema.names).cast(schema, safe=False)
        writer = self._writers.get(table)
        if writer is None:
            path = self.root / table / "part-00000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = pq.ParquetWriter(path, schema, compression="zstd", compression_level=1)
            self._writers[table] = writer
        writer.write_table(data, row_group_size=ROW_GROUP_ROWS)

    def write_table(self, table: str, data: pa.Table) -> None:
        """Write a small side table (gaps, errors, manifest) in one go."""
        path = self.root / table / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data, path, compression="zstd")
        self.rows[table] = data.num_rows

    def close(self) -> list[str]:
        """Flush everything and close the files; returns the tables written."""
        for table in list(self._buffers):
            self._flush(table)
        for writer in self._writers.values():
            writer.close()
        return sorted(self.rows)

    def abort(self) -> None:
        """Close open files without flushing (the staging directory is discarded)."""
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the files are thrown away
                pass
