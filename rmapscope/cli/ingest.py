"""``rmapscope ingest``: trace files into the dataset."""

from __future__ import annotations

from typing import Annotated

import typer

from rmapscope.dataset import Dataset
from rmapscope.errors import RmapscopeError

from . import _show
from ._console import no_progress, progress_bar
from ._errors import handles_errors, report
from ._options import ConfOpt, DatasetOpt, EngineOpt, MasterOpt, start_engine
from ._settings import settings


def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[str], typer.Argument(help="Trace files (gzip/zstd/xz/bz2 detected), or - for stdin.")
    ],
    dataset: DatasetOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Host the traces were recorded on [default: unknown].")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Override format detection: tracefs, trace_pipe, tracefs_latency, "
            "tcreport, tcreport_latency, trace_dat, perf_script, perf_data, bpftrace.",
        ),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            help="Architecture for pte decoding when the trace does not say: "
            "x86_64, x86_64-la57, arm64 [default: the trace's, else x86_64]."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Replace a trace that is already in the dataset.")
    ] = False,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Ingest trace files into the dataset (one typed Parquet table per event).

    Re-ingesting the same content is a no-op. A file that is not a trace is reported
    as `error: FILE: why` and nothing of it is written; the other files still land.
    With --engine spark the files (globs are expanded) are ingested in parallel by the
    executors and published together in one commit at the end.
    """
    s = settings(ctx)
    done = start_engine(engine, master, conf, s).ingest(
        files,
        Dataset(dataset),
        host=host,
        fmt=fmt,
        arch=arch,
        force=force,
        progress_for=no_progress if s.quiet else progress_bar,
    )
    failed = 0
    for r in done:
        if isinstance(r, RmapscopeError):
            failed = max(failed, report(r, s))
        elif not s.quiet:
            _show.ingest_result(r)
    if failed:
        raise typer.Exit(failed)


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to ``app``."""
    app.command("ingest")(handles_errors(ingest))
