"""``rmapscope analyze``: the whole pipeline on one trace (the bundled sample by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rmapscope.data import sample_trace
from rmapscope.dataset import Dataset

from . import _show
from ._console import no_progress, out, progress_bar
from ._errors import handles_errors
from ._options import DatasetOpt
from ._settings import settings


def analyze(
    ctx: typer.Context,
    file: Annotated[
        str | None, typer.Argument(help="Trace to analyze [default: the bundled real sample].")
    ] = None,
    dataset: DatasetOpt = None,
    host: Annotated[str | None, typer.Option(help="Host the trace was recorded on.")] = None,
    report: Annotated[
        Path, typer.Option("--report", "-o", help="Where to write the HTML report.")
    ] = Path("rmapscope-report.html"),
) -> None:
    """Run the whole pipeline on one trace: ingest, replay, print the findings, write the
    HTML report (self-contained, opens offline).

    Exit code 1 when replay finds a violation.
    """
    from rmapscope.dashboards import build_report
    from rmapscope.ingest import ingest
    from rmapscope.replay import replay
    from rmapscope.replay.findings import summarize

    s = settings(ctx)
    ds = Dataset(dataset)
    path = file or str(sample_trace())
    if file is None and not s.quiet:
        out.print(f"no trace given: analyzing the bundled real sample {path}")
    around, progress = (no_progress if s.quiet else progress_bar)(path)
    with around:
        r = ingest(path, ds, host=host, progress=progress)
    if not s.quiet:
        _show.ingest_result(r)
        table = Table("event", "count", title=f"trace {r.trace_id} in {ds.root}")
        for name, n in sorted(r.event_counts.items(), key=lambda kv: -kv[1]):
            table.add_row(name, f"{n:,}")
        out.print(table)
        first, last = r.ts_first, r.ts_last
        span = (last - first) / 1e9 if first is not None and last is not None else 0
        out.print(
            f"{r.events:,} events over {span:.3f} s; {r.gaps} gaps; {r.errors.total} lines rejected"
        )
    found = summarize(replay(ds, [r.trace_id]), ds.traces())
    if not s.quiet:
        _show.findings(found)
    written = build_report(ds, [r.trace_id], output=report)
    out.print(f"report: {written.resolve()}")
    if any(f.violations for f in found):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to ``app``."""
    app.command("analyze")(handles_errors(analyze))
