"""Options several commands share, each declared once, and what they open."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from rmapscope.analysis._output import FORMATS
from rmapscope.dataset import ENV
from rmapscope.engines import Engine, open_engine
from rmapscope.errors import UsageError

from ._settings import Settings, switch_on

P = ParamSpec("P")
R = TypeVar("R")

#: The global options: the app takes them before the command's name, every command after it.
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries.")]
GLOBAL_OPTIONS = tuple(
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=opt)
    for name, opt in (("debug", DebugOpt), ("quiet", QuietOpt))
)

DatasetOpt = Annotated[
    Path | None,
    typer.Option(
        "--dataset", "-d", help=f"Dataset directory [default: ${ENV} or ./rmapscope-data]."
    ),
]
#: How `sql` and `query` print their result, and where to.
ResultFormatOpt = Annotated[str, typer.Option("--format", help=f"{', '.join(FORMATS)}.")]
ResultOutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write to FILE.")]
EngineOpt = Annotated[
    str,
    typer.Option(
        help="duckdb: run here, in this process (the default); spark: run on Apache Spark "
        "(pip install 'rmapscope[spark]', needs Java 17+).",
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        help="Spark master URL (local[4], spark://host:7077, yarn, ...) [default: the one "
        "spark-submit gives, else local[*]].",
        show_default=False,
    ),
]
ConfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--conf",
        help="Spark setting KEY=VALUE (repeatable), as spark-submit --conf.",
        show_default=False,
    ),
]


def start_engine(
    name: str, master: str | None, conf: list[str] | None, settings: Settings
) -> Engine:
    """The engine of ``--engine``/``--master``/``--conf`` (Spark logs more with ``--debug``)."""
    return open_engine(name, master, conf, verbose=settings.debug)


def check_result_options(fmt: str, output: str | None) -> None:
    """A usage error for a result ``--format`` that cannot work with ``-o``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "parquet" and not output:
        raise UsageError("--format parquet needs -o FILE")


def with_global_options(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` (which takes ``ctx: typer.Context``) also taking ``--debug`` and
    ``--quiet``/``-q`` after its name, with the effect they have before it
    (:func:`~rmapscope.cli._settings.switch_on`)."""
    signature = inspect.signature(command, eval_str=True)

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        debug, quiet = (bool(kwargs.pop(p.name, False)) for p in GLOBAL_OPTIONS)
        # typer passes every parameter by keyword
        switch_on(kwargs.get("ctx"), debug=debug, quiet=quiet)  # type: ignore[arg-type]
        return command(*args, **kwargs)

    # typer reads the options from the signature
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *GLOBAL_OPTIONS]
    )
    return run
