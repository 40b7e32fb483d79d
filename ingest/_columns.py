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
