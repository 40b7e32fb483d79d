"""Write query results in the formats ``rmapscope sql --format`` offers."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "csv", "json", "ndjson", "parquet", "markdown")


def write_result(rel: duckdb.DuckDBPyRelation | pl.DataFrame, fmt: str, output: str | None) -> None:
    """Render ``rel`` (rows) as ``fmt`` to ``output`` (a path) or stdout."""
    df = rel if isinstance(rel, pl.DataFrame) else rel.pl()
    if fmt == "parquet":
        if not output:
            raise ValueError("parquet needs an output path")
        df.write_parquet(output)
        return
    text = render(df, fmt)
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def _flat(df: pl.DataFrame) -> pl.DataFrame:
    """Nested columns (lists, maps, structs) as JSON text, for formats that need scalars."""
    nested = [c for c, t in df.schema.items() if t.is_nested()]
    return df.with_columns(
        pl.Series(
            c,
            [None if v is None else json.dumps(v, default=str) for v in df[c].to_list()],
            dtype=pl.String,
        )
        for c in nested
    )


#: Control characters (C0, DEL, C1): a trace's comm or field text may hold any of them (a
#: task names itself), and a terminal would act on them. The formats meant for reading on a
#: terminal show them as ``\xNN``; csv, json, ndjson and parquet keep the stored text.
_CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
_SHOWN = [f"\\x{ord(c):02x}" for c in _CONTROLS]


def _visible(df: pl.DataFrame) -> pl.DataFrame:
    r"""String columns with their control characters shown as ``\xNN``.

    >>> _visible(pl.DataFrame({"comm": ["a\x1b[2Jb"]}))["comm"][0]
    'a\\x1b[2Jb'
    """
    strings = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(pl.col(c).str.replace_many(_CONTROLS, _SHOWN) for c in strings)


def render(df: pl.DataFrame, fmt: str) -> str:
    """``df`` as text in one of the text formats."""
    if fmt == "csv":
        return _flat(df).write_csv()
    if fmt == "json":
        return df.write_json() + "\n"
    if fmt == "ndjson":
        return df.write_ndjson()
    if fmt == "markdown":
        return _markdown(_visible(_flat(df)))
    df = _visible(df)
    with pl.Config(
        tbl_rows=200,
        tbl_cols=-1,
        fmt_str_lengths=80,
        tbl_width_chars=200,
        tbl_hide_dataframe_shape=False,
    ):
        return str(df) + "\n"


def _markdown(df: pl.DataFrame) -> str:
    out = io.StringIO()
    out.write("| " + " | ".join(df.columns) + " |\n")
    out.write("|" + "---|" * len(df.columns) + "\n")
    for row in df.iter_rows():
        cells = ["" if v is None else str(v).replace("|", "\\|").replace("\n", " ") for v in row]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()
