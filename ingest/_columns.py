"""Columns across the compiled core's boundary (``rmapscope._native``): what it returns,
tuples of Arrow buffers, as pyarrow arrays and polars frames; and a polars string column as
the buffers it reads."""

from __future__ import annotations

from typing import cast

import numpy as np
import polars as pl
import pyarrow as pa

_ARROW = {
    "i64": pa.int64(),
    "i32": pa.int32(),
    "u32": pa.uint32(),
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


def table(cols: dict[str, tuple]) -> pa.Table:
    """Columns the core returned as a pyarrow table (no copy)."""
    return pa.table({name: array(col) for name, col in cols.items()})


def to_polars(data: pa.Table) -> pl.DataFrame:
    """A pyarrow table as a polars frame."""
    return cast(pl.DataFrame, pl.from_arrow(data))


def to_arrow(data: pl.DataFrame) -> pa.Table:
    """A polars frame as a pyarrow table of the types the core returns (``large_string``)."""
    return data.to_arrow(compat_level=pl.CompatLevel.oldest())


def _one(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array of a column (no copy when it is one chunk)."""
    if isinstance(values, pa.ChunkedArray):
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


_KINDS = {pa.int64(): "i64", pa.int32(): "i32", pa.large_string(): "str"}


def column_args(values: pa.Array | pa.ChunkedArray) -> tuple:
    """An int64, int32 or ``large_string`` column as the core gathers it: (kind, rows,
    offset, validity | None, values or offsets, string data | None)."""
    arr = _one(values)
    kind = _KINDS[arr.type]
    if kind == "str":
        return (kind, *string_buffers(arr))
    valid, data = arr.buffers()
    return kind, len(arr), arr.offset, valid, data or pa.py_buffer(b""), None


def bools(col: tuple) -> np.ndarray:
    """A bool column the core returned (no nulls) as a numpy array (pyarrow's ``to_numpy``
    of a bool array imports pandas)."""
    kind, rows, _, _, bits = col
    assert kind == "bool"
    packed = np.frombuffer(pa.py_buffer(bits), dtype=np.uint8)
    return np.unpackbits(packed, count=rows, bitorder="little").astype(bool)


_NUMPY = {pa.uint32(): np.uint32, pa.int32(): np.int32, pa.int64(): np.int64}


def shifted(values: pa.Array | pa.ChunkedArray, by: int) -> pa.Array:
    """An integer column without nulls (``rel``) plus ``by``, as int64, through numpy
    (``pa.scalar``, and so ``pc.add`` of a Python int, imports pandas: 0.3 s)."""
    arr = _one(values)
    assert not arr.null_count
    data = np.frombuffer(arr.buffers()[1] or b"", dtype=_NUMPY[arr.type])
    out = data[arr.offset : arr.offset + len(arr)].astype(np.int64) + by
    return pa.Array.from_buffers(pa.int64(), len(out), [None, pa.py_buffer(out)])


def to_series(values: pa.Array | pa.ChunkedArray) -> pl.Series:
    """A pyarrow column as a polars series."""
    return cast(pl.Series, pl.from_arrow(values))


def mask(values: np.ndarray) -> pa.Array:
    """A numpy bool array as a pyarrow one (``pa.array`` would import pandas)."""
    bits = np.packbits(values.astype(bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def string_buffers(
    text: pl.Series | pa.Array | pa.ChunkedArray,
) -> tuple[int, int, pa.Buffer | None, pa.Buffer, pa.Buffer]:
    """A string column as the core reads it: (rows, offset, validity | None, int64 offsets,
    UTF-8 data) of an Arrow ``large_string`` array."""
    arr = _one(
        text.to_arrow(compat_level=pl.CompatLevel.oldest()) if isinstance(text, pl.Series) else text
    )
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
