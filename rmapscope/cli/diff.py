"""``rmapscope diff``: two sides of a dataset compared, metric by metric
(:func:`rmapscope.analysis.diff.diff`), as a table, JSON, Markdown and an HTML report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rmapscope.dataset import Dataset
from rmapscope.errors import UsageError

from ._errors import handles_errors
from ._options import ConfOpt, DatasetOpt, EngineOpt, MasterOpt, start_engine
from ._settings import settings

FORMATS = ("table", "json", "markdown")
CORRECTIONS = ("holm", "bh")
#: The columns of the table and Markdown output (JSON has every column).
TABLE_COLUMNS = ("metric", "group", "better_when", "a", "b", "ci_low", "ci_high", "p_adj",
                 "verdict")  # fmt: skip


def diff(
    ctx: typer.Context,
    a: Annotated[
        str | None, typer.Argument(help="Side A: a trace id (or unique prefix) or host:NAME.")
    ] = None,
    b: Annotated[
        str | None, typer.Argument(help="Side B: a trace id (or unique prefix) or host:NAME.")
    ] = None,
    pred_a: Annotated[
        str | None, typer.Option("--a", help="Side A as a SQL predicate over `traces`.")
    ] = None,
    pred_b: Annotated[
        str | None, typer.Option("--b", help="Side B as a SQL predicate over `traces`.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help=f"{', '.join(FORMATS)}.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the HTML diff report here.")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="regression: exit 1 when a metric is significantly worse."),
    ] = None,
    alpha: Annotated[
        float, typer.Option(help="Significance level, after the --correction.")
    ] = 0.01,
    min_effect: Annotated[
        float,
        typer.Option(
            help="Smallest relative change that counts (0.1 = 10%; for a distribution of "
            "two sets of recordings, the rank-biserial effect)."
        ),
    ] = 0.0,
    correction: Annotated[
        str,
        typer.Option(
            help="Multiple-comparison correction over every test of the diff: holm "
            "(family-wise error) or bh (Benjamini-Hochberg, false discovery rate)."
        ),
    ] = "holm",
    seed: Annotated[
        int,
        typer.Option(help="Seed of the bootstrap intervals (the same seed, the same output)."),
    ] = 0,
    drift: Annotated[
        float | None,
        typer.Option(
            help="With fewer than 5 recordings a side: the factor by which re-recordings of "
            "the workload differ in median latency on this machine (e.g. 20). Latency is "
            "then compared, and only a change beyond it counts [default: not compared]."
        ),
    ] = None,
    dataset: DatasetOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Compare two sides (B against A): rates, latencies, outcomes, findings, lost events.

    Each metric has both values, the change, an interval, a corrected p-value (Holm, or
    Benjamini-Hochberg) and a verdict (better, worse, changed, no change, not comparable) in
    its stated better-direction. Latency and batch-size tests count batches (or traces, when
    each side has 5 or more), not single migrations; latency of the same recording on both
    sides is paired, and of fewer than 5 different recordings a side is not compared (see
    --drift). Exits 1 with --fail-on regression when a metric is worse.
    """
    from rmapscope.analysis._output import render
    from rmapscope.analysis.diff import diff as run_diff
    from rmapscope.analysis.diff import regressions, side_predicate

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fail_on not in (None, "regression"):
        raise UsageError(f"--fail-on takes `regression`, not {fail_on!r}")
    if correction not in CORRECTIONS:
        raise UsageError(
            f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}"
        )
    sides = []
    for label, positional, pred in (("A", a, pred_a), ("B", b, pred_b)):
        if (positional is None) == (pred is None):
            raise UsageError(f"give side {label} either as an argument or as --{label.lower()}")
        sides.append(pred if pred is not None else side_predicate(positional or ""))
    ds = Dataset(dataset)
    session = start_engine(engine, master, conf, settings(ctx)).sql(ds)
    result = run_diff(session, sides[0], sides[1], alpha=alpha, min_effect=min_effect,
                      correction=correction, seed=seed, drift=drift)  # fmt: skip
    if output is not None:
        from rmapscope.dashboards.diff import write_diff_report

        write_diff_report(result, output, dataset=str(ds.root))
    shown = result.metrics if fmt == "json" else result.metrics.select(TABLE_COLUMNS)
    sys.stdout.write(render(shown, fmt))
    if fail_on and regressions(result).height:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``diff`` to ``app``."""
    app.command("diff")(handles_errors(diff))
