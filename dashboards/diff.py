"""The HTML diff report (``rmapscope diff -o report.html``): the page of ``rmapscope
report`` (:mod:`rmapscope.dashboards._html`: self-contained, every trace string escaped, a
Content-Security-Policy) over a :class:`~rmapscope.analysis.diff.DiffResult`.

Panels: the verdicts and every metric; the migration latency ECDFs of both sides overlaid,
per reason; the rate ratios B/A with their intervals; the findings side by side; each with
the SQL that read its rows (per side, with that side's trace ids).
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl

from rmapscope import __version__
from rmapscope.analysis.diff import DIRECTIONS, VERDICTS, DiffResult, summary
from rmapscope.errors import UsageError

from . import _html
from ._html import Column, table
from ._panel import Panel, Section
from .figures import TEMPLATE, esc_plotly

__all__ = ["diff_sections", "latency_ecdf_figure", "rate_ratio_figure", "write_diff_report"]

SIDE_COLORS = ("#1f77b4", "#d62728")
VERDICT_TONES = {"worse": "bad", "better": "good", "changed": "warn"}
#: Most points drawn per ECDF curve (an even quantile grid beyond that).
ECDF_POINTS = 1500


def _num(v: float) -> str:
    return f"{v:.4g}"


def _sql(result: DiffResult, key: str) -> str:
    text = result.sql[key]
    out = []
    for side in (result.a, result.b):
        which = (
            text.format(predicate=side.predicate)
            if key == "traces"
            else text.format(side=side.in_clause())
        )
        out.append(f"-- side {side.label}\n{which};")
    return "\n\n".join(out)


def _ecdf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs = np.sort(x)
    ys = np.arange(1, xs.size + 1) / xs.size
    if xs.size > ECDF_POINTS:
        idx = np.linspace(0, xs.size - 1, ECDF_POINTS).round().astype(int)
        xs, ys = xs[idx], ys[idx]
    return xs, ys


def latency_ecdf_figure(
    reason: str, a: np.ndarray, b: np.ndarray, labels: tuple[str, str]
) -> go.Figure:
    """The ECDFs of one reason's migration latencies, side A and side B overlaid."""
    fig = go.Figure()
    for x, label, color in zip((a, b), labels, SIDE_COLORS, strict=True):
        if x.size == 0:
            continue
        xs, ys = _ecdf(x)
        fig.add_trace(
            go.Scatter(
                x=xs, y=ys, mode="lines", line={"color": color, "shape": "hv"},
                name=esc_plotly(f"{label} (n={x.size:,})"),
                hovertemplate="%{x:.4g} µs: %{y:.3f}<extra>%{fullData.name}</extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=360, margin={"l": 70, "r": 30, "t": 40, "b": 50},
        title={"text": esc_plotly(f"reason {reason}"), "font": {"size": 13}},
        xaxis={"title": {"text": "latency, first set to last remove (µs)"}, "type": "log"},
        yaxis={"title": {"text": "share of migrations"}, "range": [0, 1.02]},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0},
    )  # fmt: skip
    return fig


def rate_ratio_figure(rates: pl.DataFrame) -> go.Figure:
    """One bar per rate metric: B/A with its interval (log axis; 1 = no change)."""
    f = rates.filter(
        (pl.col("a") > 0) & (pl.col("b") > 0) & pl.col("ci_low").is_finite()
        & pl.col("ci_high").is_finite() & (pl.col("ci_low") > 0)
    )  # fmt: skip
    ratio = (f["b"] / f["a"]).to_numpy()
    names = [esc_plotly(f"{m}: {g}") for m, g in zip(f["metric"], f["group"], strict=True)]
    colors = [
        {"worse": "#c62828", "better": "#2e7d32", "changed": "#ef8f00"}.get(v, "#78909c")
        for v in f["verdict"]
    ]
    fig = go.Figure(
        go.Bar(
            y=names, x=ratio, orientation="h", marker={"color": colors},
            error_x={"type": "data", "symmetric": False,
                     "array": (f["ci_high"].to_numpy() - ratio).tolist(),
                     "arrayminus": (ratio - f["ci_low"].to_numpy()).tolist()},
            customdata=[esc_plotly(v) for v in f["verdict"]],
            hovertemplate="%{y}: B/A %{x:.3f}, %{customdata}<extra></extra>",
            base=0,
        )
    )  # fmt: skip
    fig.update_layout(
        template=TEMPLATE, height=int(120 + 22 * max(1, f.height)),
        margin={"l": 300, "r": 30, "t": 30, "b": 50},
        xaxis={"title": {"text": "rate B / rate A (95% interval; 1 = the same)"}, "type": "log"},
        yaxis={"autorange": "reversed"},
        shapes=[{"type": "line", "x0": 1, "x1": 1, "y0": 0, "y1": 1, "yref": "paper",
                 "line": {"dash": "dot", "color": "#555"}}],
    )  # fmt: skip
    return fig


_METRIC_COLUMNS = [
    Column("metric", "metric"),
    Column("group", "group", cls="wide"),
    Column("better_when", "better when"),
    Column("a", "A", _num, "num"),
    Column("b", "B", _num, "num"),
    Column("change", "B - A", _num, "num"),
    Column("effect", "effect", _num, "num"),
    Column("ci_low", "interval low", _num, "num"),
    Column("ci_high", "interval high", _num, "num"),
    Column("ci_of", "interval of"),
    Column("n_a", "n A", str, "num"),
    Column("n_b", "n B", str, "num"),
    Column("test", "test"),
    Column("p_adj", "p (corrected)", _num, "num"),
    Column("verdict", "verdict"),
    Column("note", "note"),
]


def diff_sections(result: DiffResult) -> list[Section]:
    """The report's sections."""
    m = result.metrics
    counts = summary(result)
    labels = (result.a.label, result.b.label)
    kpis = [(f"{counts[v]}", v, VERDICT_TONES.get(v, "")) for v in VERDICTS]
    sides = pl.concat(
        [s.traces.select(pl.lit(s.label).alias("side"), "trace_id", "host", "kernel", "cpus",
                         "duration_s", "events", "lost_events")
         for s in (result.a, result.b)]
    )  # fmt: skip
    overview = [
        Panel(
            "verdicts", "Verdicts", _sql(result, "traces"), m,
            table_html=table(m, _METRIC_COLUMNS),
            description=(
                f"Side B against side A. Significance: p < {result.alpha:g} after Holm's "
                f"correction over every test, and beyond a relative change of "
                f"{result.min_effect:g}. Directions: "
                + "; ".join(f"{k}: {v}" for k, v in DIRECTIONS.items()) + "."
            ),
            kpis=kpis,
        ),
        Panel(
            "sides", "The two sides", _sql(result, "traces"), sides,
            table_html=table(sides, [Column(c, c, _num if c == "duration_s" else None)
                                     for c in sides.columns]),
            description=f"A: {result.a.predicate}   B: {result.b.predicate}",
        ),
    ]  # fmt: skip
    latency = [
        Panel(
            f"latency-{i}", f"Migration latency ECDF: {reason}", _sql(result, "migrations"),
            None, figure=latency_ecdf_figure(reason, xa, xb, labels),
            description="Share of migrations (migrated or restored) at most this long, "
            "both sides overlaid.",
        )
        for i, (reason, (xa, xb)) in enumerate(sorted(result.latencies.items()))
        if xa.size or xb.size
    ]  # fmt: skip
    if not latency:
        latency = [Panel("latency-none", "Migration latency", _sql(result, "migrations"), None,
                         empty="No migration on either side.")]  # fmt: skip
    rates = m.filter(pl.col("test") == "poisson-exact")
    rate_panel = Panel(
        "rates", "Rates, B against A", _sql(result, "traces"), rates,
        description="Events, migrations, findings and lost events per second (lost: per "
        "CPU-second); the bar is rate B / rate A with the exact Poisson 95% interval.",
    )  # fmt: skip
    if rates.filter((pl.col("a") > 0) & (pl.col("b") > 0)).height:
        rate_panel.figure = rate_ratio_figure(rates)
    else:
        rate_panel.empty = "No rate is non-zero on both sides."
    f = result.findings
    findings = Panel(
        "findings", "Findings side by side", _sql(result, "violations"), f,
        table_html=table(f, [Column("rule", "rule"), Column("verdict", "verdict"),
                             Column("a", f"{labels[0]}", str, "num"),
                             Column("b", f"{labels[1]}", str, "num")]) if f.height else None,
        empty="No findings on either side.",
    )  # fmt: skip
    return [
        Section("overview", "Overview", overview),
        Section("latency", "Latency", latency),
        Section("rates", "Rates", [rate_panel]),
        Section("findings", "Findings", [findings]),
    ]


def write_diff_report(
    result: DiffResult,
    output: str | os.PathLike[str],
    *,
    dataset: str = "",
    embed_plotly: bool = True,
    csp: bool = True,
) -> Path:
    """Write the HTML diff report of ``result`` to ``output``; returns its path."""
    out = Path(output)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory; give a file name such as diff.html")
    if not out.parent.is_dir():
        raise UsageError(f"{out}: directory {out.parent} does not exist")
    meta = [
        ("dataset", dataset or "-"),
        ("A", f"{result.a.traces.height} trace(s)"),
        ("B", f"{result.b.traces.height} trace(s)"),
        ("generated", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("rmapscope", __version__),
    ]
    text = _html.page(
        title="rmapscope diff",
        meta=meta,
        sections=diff_sections(result),
        embed_plotly=embed_plotly,
        with_csp=csp,
        footer=f"Made by rmapscope {__version__}. Each panel's SQL runs as is in "
        "`rmapscope sql` on the same dataset.",
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 would hide the report from others
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
