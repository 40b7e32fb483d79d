"""``rmapscope report``: one HTML report (:func:`rmapscope.dashboards.build_report`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rmapscope.dataset import Dataset
from rmapscope.errors import UsageError

from ._errors import handles_errors
from ._options import DatasetOpt


def report(
    ctx: typer.Context,
    trace: Annotated[
        list[str] | None,
        typer.Option(
            "--trace", "-t", help="Trace id (or a unique prefix) to report on (repeatable)."
        ),
    ] = None,
    all_traces: Annotated[
        bool, typer.Option("--all", help="Report on every trace (the default).")
    ] = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
    plotly_cdn: Annotated[
        bool,
        typer.Option(
            "--plotly-cdn",
            help="Reference plotly.js from its CDN (pinned by hash) instead of embedding "
            "it: about 4.8 MB smaller, but the page then needs network access to draw.",
        ),
    ] = False,
    dataset: DatasetOpt = None,
) -> None:
    """Write one self-contained HTML report: ingest health, migrations, forks, findings.

    Every chart shows the SQL behind it; plotly.js is embedded so the file works
    offline. Every string that came from a trace is escaped. Run `rmapscope replay`
    first for the migration, fork and findings panels. Prints the report's path.
    """
    from rmapscope.dashboards import build_report

    if trace and all_traces:
        raise UsageError("give either --trace ID (repeatable) or --all, not both")
    path = build_report(
        Dataset(dataset),
        trace_ids=list(trace) if trace else None,
        output=output,
        embed_plotly=not plotly_cdn,
    )
    print(path)


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command("report")(handles_errors(report))
