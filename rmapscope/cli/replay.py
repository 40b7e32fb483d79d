"""``rmapscope replay``: replay traces, publish the replay tables, print the findings."""

from __future__ import annotations

from typing import Annotated

import typer

from rmapscope.dataset import Dataset
from rmapscope.errors import UsageError

from . import _show
from ._console import err
from ._errors import handles_errors, print_error
from ._options import ConfOpt, DatasetOpt, EngineOpt, MasterOpt, start_engine
from ._settings import settings


def replay(
    ctx: typer.Context,
    trace: Annotated[
        list[str] | None, typer.Option("--trace", "-t", help="Trace id to replay (repeatable).")
    ] = None,
    all_traces: Annotated[bool, typer.Option("--all", help="Replay every trace.")] = False,
    dataset: DatasetOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Replay traces: per-page rmap state, migrations, fork windows and violations.

    Writes the tables migrations, migration_batches, page_states, fork_windows and
    violations next to the events (replacing an earlier replay of the same trace) and prints
    the findings. With --engine spark each trace is replayed by a Spark task (the same
    code) and every trace that succeeded is published in one commit. Exit code 1 when a
    violation is found (or, on Spark, a trace failed), 0 otherwise.
    """
    from rmapscope.replay.findings import summarize

    if not trace and not all_traces:
        raise UsageError("say which traces: --trace ID (repeatable) or --all")
    s = settings(ctx)
    ds = Dataset(dataset)
    run = start_engine(engine, master, conf, s).replay(
        ds, None if all_traces else trace, progress=None if s.quiet else err.print
    )
    for f in run.failures:
        print_error(f"trace {f.trace_id} (host {f.host}): replay failed: {f.error}")
    found = summarize(run.tables, ds.traces())
    if not s.quiet:
        _show.findings(found)
    if any(f.violations for f in found) or run.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``replay`` to ``app``."""
    app.command("replay")(handles_errors(replay))
