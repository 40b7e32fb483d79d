"""Stage 4: store. Buffer parsed rows per table and write Parquet into a staging directory."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rmapscope.catalog import MIGRATION_SETS, directory

ROW_GROUP_ROWS = 1 << 17
MAX_BUFFERED_ROWS = 1 << 18
#: Columns written with DELTA_BINARY_PACKED: ``seq`` and ``ts`` rise (almost) monotonically,
#: so deltas encode in a fraction of the time and space of plain values plus zstd.
DELTA_COLUMNS = ("seq", "ts")
IO_THREADS = 2
_DICT = pa.dictionary(pa.int32(), pa.string())


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
        self._stored: dict[str, pa.Schema] = {}  # as staged: dictionary-encoded string columns
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="staging-writer")
        self._pending: list[Future] = []
        self._last: dict[str, Future] = {}  # each table's latest write (they run in order)
        self.rows: dict[str, int] = {}

    def add(self, table: str, frame: pl.DataFrame | pa.Table, schema: pa.Schema) -> None:
        """Queue ``frame`` (a polars frame or pyarrow table holding ``schema``'s columns) for
        ``table``.

        String columns may come as polars ``Enum``/``Categorical`` (a reader that knows its
        few distinct values); the first frame of a table decides, and they are then staged
        and written dictionary-encoded as they are (no per-row string copy or hashing). The
        Parquet files read back as plain ``string`` either way.
        """
        rows = len(frame)
        if rows == 0:
            return
        schema = self._schemas.setdefault(table, schema)
        stored = self._stored.get(table)
        if stored is None:
            stored = self._stored[table] = _stored_schema(schema, frame)
        # Copy into compact Arrow buffers now: polars string columns are views into the
        # whole block they were cut from, and a few rows of a rare event would otherwise keep
        # every block alive until their row group fills. (Casting to the staged types waits
        # for the writing thread: the caller's thread has other work.)
        # (A pyarrow table's columns are compact already: the core built them per table.)
        if isinstance(frame, pl.DataFrame):
            data = frame.to_arrow(compat_level=pl.CompatLevel.oldest()).select(schema.names)
        else:
            data = frame.select(schema.names)
        self._buffers.setdefault(table, []).append(data)
        self._buffered[table] = self._buffered.get(table, 0) + rows
        self.rows[table] = self.rows.get(table, 0) + rows
        if self._buffered[table] >= ROW_GROUP_ROWS:
            self._flush(table)
        elif sum(self._buffered.values()) > MAX_BUFFERED_ROWS:
            self._flush(max(self._buffered, key=self._buffered.__getitem__))

    def _flush(self, table: str) -> None:
        parts = self._buffers.pop(table, [])
        self._buffered.pop(table, None)
        if not parts:
            return
        # Casting, encoding and compressing run on background threads (each table's row
        # groups in order, tables side by side); at most three row groups wait, so memory
        # stays bounded.
        future = self._io.submit(self._write, table, parts, self._last.get(table))
        self._last[table] = future
        self._pending.append(future)
        while len(self._pending) > 3:
            self._pending.pop(0).result()

    def _write(self, table: str, parts: list[pa.Table], before: Future | None) -> None:
        if before is not None:
            # submitted earlier to the same FIFO pool, so already running or done
            before.result()
        schema = self._schemas[table]
        stored = self._stored[table]
        data = pa.concat_tables([_conform(p, stored) for p in parts])
        dictionaries = stored != schema
        if dictionaries:
            # one dictionary per column, so Parquet takes the indices as they are
            data = data.unify_dictionaries()
        writer = self._writers.get(table)
        if writer is None:
            path = self.root / table / "part-00000.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            # a stored Arrow schema would make dictionary columns read back as
            # dictionaries; without it every column reads back as ``schema`` says
            writer = _parquet_writer(path, stored, schema, data, store_schema=not dictionaries)
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


def _delta(field: pa.Field, data: pa.Table) -> bool:
    """Whether to write a column DELTA_BINARY_PACKED: ``seq`` and ``ts``, and 64-bit
    integers whose first row group spans less than 2^32 (page frame numbers, counters):
    their deltas pack in a few bits, in half the time plain values take to compress.
    Scattered 64-bit values (pointers, raw ptes) stay plain, which compresses them faster."""
    if not (pa.types.is_int64(field.type) or pa.types.is_uint64(field.type)):
        return False
    if field.name in DELTA_COLUMNS:
        return True
    span = pc.min_max(data.column(field.name))
    lo, hi = span["min"].as_py(), span["max"].as_py()
    return lo is not None and hi - lo < 1 << 32


def _stored_schema(schema: pa.Schema, frame: pl.DataFrame | pa.Table) -> pa.Schema:
    """``schema`` with the string columns that ``frame`` holds as Enum/Categorical made
    dictionaries."""
    if isinstance(frame, pa.Table):
        return schema
    fields = []
    for f in schema:
        dtype = frame.schema.get(f.name)
        if pa.types.is_string(f.type) and isinstance(dtype, (pl.Enum, pl.Categorical)):
            f = f.with_type(_DICT)
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def _conform(data: pa.Table, stored: pa.Schema) -> pa.Table:
    """``data`` cast to the staged schema (dictionary columns encoded or re-typed)."""
    columns = []
    for f, col in zip(stored, data.columns, strict=True):
        if col.type == f.type:
            columns.append(col)
        elif f.type == _DICT:
            if pa.types.is_dictionary(col.type):
                chunks = [
                    pa.DictionaryArray.from_arrays(
                        c.indices.cast(pa.int32()), c.dictionary.cast(pa.string()), safe=False
                    )
                    for c in col.chunks
                ]
                columns.append(pa.chunked_array(chunks, _DICT))
            else:
                columns.append(col.cast(pa.string()).dictionary_encode().cast(_DICT))
        else:
            columns.append(col.cast(f.type, safe=False))
    return pa.Table.from_arrays(columns, schema=stored)


def write_side_table(root: Path, table: str, data: pa.Table) -> None:
    """Write a small side table (gaps, errors, manifest) of a staged trace in one go."""
    path = root / table / "part-00000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path, compression="zstd")


def fill_migration_kinds(root: Path, kinds: dict[int, str]) -> None:
    """Fill ``migration_kind`` of the staged set_migration_* tables from the per-trace
    calibration (swap type -> kind), one row group at a time, written as they were."""
    # through polars: ``pa.array`` imports pandas (0.3 s of the ingest)
    types = pl.Series(list(kinds), dtype=pl.Int64).to_arrow()
    names = pl.Series(list(kinds.values()), dtype=pl.String).to_arrow()
    for name in MIGRATION_SETS:
        path = root / directory(name) / "part-00000.parquet"
        if not path.exists():
            continue
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
        at = schema.get_field_index("migration_kind")
        tmp = path.with_suffix(".tmp")
        out = None
        for i in range(source.num_row_groups):
            data = source.read_row_group(i)
            swp = data.column("swp_type").cast(pa.int64())
            kind = pc.take(names, pc.index_in(swp, value_set=types))  # null: no kind known
            data = data.set_column(at, schema.field(at), kind.cast(schema.field(at).type))
            if out is None:
                out = _parquet_writer(tmp, schema, schema, data, store_schema=True)
            out.write_table(data, row_group_size=ROW_GROUP_ROWS)
        source.close()
        if out is not None:
            out.close()
            tmp.replace(path)


def _parquet_writer(
    path: Path, stored: pa.Schema, schema: pa.Schema, first: pa.Table, store_schema: bool
) -> pq.ParquetWriter:
    """The Parquet writer of one staged table (``stored``: its columns as written, ``schema``
    as they read back; ``first``: its first rows, which pick the delta-encoded columns)."""
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    delta = {f.name: "DELTA_BINARY_PACKED" for f in schema if _delta(f, first)}
    return pq.ParquetWriter(
        path,
        stored,
        compression="zstd",
        compression_level=1,
        use_dictionary=strings,
        column_encoding=delta or None,
        # values handed to the encoders at a time (default 1024): per-batch costs, e.g.
        # the statistics of dictionary columns, are paid 8x less often
        write_batch_size=8192,
        store_schema=store_schema,
    )


def swap_collapse_file_args(root: Path) -> bool:
    """Undo ``mm_khugepaged_collapse_file``'s swapped arguments (kernels 6.2 to 6.11, see
    :func:`rmapscope.kernels.collapse_file_args_swapped`) in the staged typed table: the
    printed ``addr`` is the real is_shmem, the printed ``is_shmem`` only says addr != 0, so
    ``is_shmem`` gets ``addr != 0`` and ``addr`` becomes null (lost). False: no such table."""
    path = root / directory("mm_khugepaged_collapse_file") / "part-00000.parquet"
    if not path.exists():
        return False
    data = pq.read_table(path)
    if not {"addr", "is_shmem"} <= set(data.column_names):
        return False
    addr = data.column("addr")
    shmem = pc.not_equal(addr, pa.scalar(0, addr.type)).cast(data.schema.field("is_shmem").type)
    data = data.set_column(data.schema.get_field_index("is_shmem"), "is_shmem", shmem)
    data = data.set_column(
        data.schema.get_field_index("addr"), "addr", pa.nulls(len(data), addr.type)
    )
    tmp = path.with_suffix(".tmp")
    pq.write_table(data, tmp, compression="zstd")
    tmp.replace(path)
    return True
