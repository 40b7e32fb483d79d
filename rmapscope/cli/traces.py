"""``rmapscope traces``: the manifest of the dataset."""

from __future__ import annotations

import typer
from rich.table import Table

from rmapscope.dataset import Dataset

from ._console import out
from ._errors import handles_errors
from ._options import DatasetOpt

COLUMNS = (
    "trace",
    "host",
    "format",
    "kernel",
    "first ts (s)",
    "last ts (s)",
    "events",
    "gaps",
    "lost",
    "errors",
    "source",
)


def _secs(ns: int | None) -> str:
    return "-" if ns is None else f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def traces(ctx: typer.Context, dataset: DatasetOpt = None) -> None:
    """List the traces in the dataset: id, host, format, kernel, time range, events, gaps."""
    ds = Dataset(dataset)
    ds.require()
    df = ds.traces()
    if df.is_empty():
        out.print("no traces")
        return
    table = Table(*COLUMNS)
    for r in df.iter_rows(named=True):
        table.add_row(
            r["trace_id"],
            r["host"],
            r["format"],
            r["kernel"] or "-",
            _secs(r["ts_first"]),
            _secs(r["ts_last"]),
            f"{r['events']:,}",
            str(r["gaps"]),
            f"{r['lost_events']:,}",
            str(r["errors"]),
            r["source"],
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``traces`` to ``app``."""
    app.command("traces")(handles_errors(traces))
