"""``rmapscope query``: the named queries (:data:`rmapscope.analysis.QUERIES`)."""

from __future__ import annotations

from typing import Annotated

import typer

from rmapscope.analysis import QUERIES
from rmapscope.analysis._output import write_result
from rmapscope.dataset import Dataset
from rmapscope.errors import UsageError

from ._console import out
from ._errors import handles_errors
from ._options import (
    ConfOpt,
    DatasetOpt,
    EngineOpt,
    MasterOpt,
    ResultFormatOpt,
    ResultOutputOpt,
    check_result_options,
    start_engine,
)
from ._settings import settings


def query(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A canned query, or `list`.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="k=v parameter (repeatable).")
    ] = None,
    fmt: ResultFormatOpt = "table",
    output: ResultOutputOpt = None,
    dataset: DatasetOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Run a named query for a common question (`rmapscope query list` shows them).

    The canned queries run on DuckDB and, with --engine spark, the same SQL on Spark SQL;
    the report-* queries (one per report chart) run on DuckDB only."""
    if name == "list":
        for q in QUERIES.values():
            defaults = " ".join(f"{k}={'' if v is None else v}" for k, v in q.params.items())
            out.print(f"{q.name:26} {q.description}  [{defaults}]")
        return
    params: dict[str, str] = {}
    for p in param or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise UsageError(f"--param takes k=v, not {p!r}")
        params[k] = v
    check_result_options(fmt, output)
    session = start_engine(engine, master, conf, settings(ctx)).sql(Dataset(dataset))
    write_result(session.canned(name, params), fmt, output)


def register(app: typer.Typer) -> None:
    """Add ``query`` to ``app``."""
    app.command("query")(handles_errors(query))
