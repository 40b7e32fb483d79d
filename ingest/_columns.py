"""Columns across the compiled core's boundary (``rmapscope._native``): what it returns,
tuples of Arrow buffers, as pyarrow arrays and polars frames; and a polars string column as
the buffers it reads."""

from __future__ import annotations

from typing import cast

import polars as pl
import pyarrow as pa

_ARROW = {
    "i64": pa.int64(),
    "i32": pa.int32(),
    "u64": pa.uint64(),
    "bool": pa.bool_(),
    "str": pa.large_string(),
}


def array(col: tuple) -> pa.Array:
    """A column the core returned: (kind, rows, nulls, validity, buffers...)."""
    kind, rows, nulls, validity, *buffers = col
    bufs = [None if validity is None else pa.py_buffer(validity), *map(pa.py_buffer, buffers)]
    return pa.Array.from_buffers(_ARROW[kind], rows, bufs, null_count=nulls)


def frame(cols: dict[str, tuple]) -> pl.DataFrame:
    """Columns the core returned as a polars frame (no copy of numbers)."""
    table = pa.table({name: array(col) for name, col in cols.items()})
    return cast(pl.DataFrame, pl.from_arrow(table))


def series(col: tuple) -> pl.Series:
    """One column the core returned as a polars series."""
    return cast(pl.Series, pl.from_arrow(array(col)))


def string_buffers(text: pl.Series) -> tuple[int, int, pa.Buffer | None, pa.Buffer, pa.Buffer]:
    """A string series as the core reads it: (rows, offset, validity | None, int64 offsets,
    UTF-8 data) of an Arrow ``large_string`` array."""
    arr = text.to_arrow(compat_level=pl.CompatLevel.oldest())
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    valid, offsets, data = arr.buffers()
    if offsets is None:  # an empty array
        offsets = pa.py_buffer(bytes(8))
    return len(arr), arr.offset, valid, offsets, data if data is not None else pa.py_buffer(b"")


def polars_schema(schema: pa.Schema) -> pl.Schema:
    """The polars types of an Arrow schema (through empty columns: ``schema.empty_table()``
    and ``pa.array`` import pandas, half a second of every ingest)."""
    empty = pl.from_arrow(pa.table({f.name: pa.nulls(0, type=f.type) for f in schema}))
    assert isinstance(empty, pl.DataFrame)  # an arrow table becomes a DataFrame
    return empty.schema


def rows_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """A small table (gaps, errors, the manifest) of ``rows``, through polars: pyarrow's
    ``from_pylist`` imports pandas. Map columns take ``(key, value)`` pairs."""
    types = polars_schema(schema)
    data = [
        {
            k: [{"key": a, "value": b} for a, b in v] if isinstance(types[k], pl.Map) and v else v
            for k, v in row.items()
        }
        for row in rows
    ]
    return pl.DataFrame(data, schema=types, orient="row").to_arrow().cast(schema)
