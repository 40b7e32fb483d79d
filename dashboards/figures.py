"""The report's drawing: pure functions from a query's rows (a polars frame) to a plotly
figure or an HTML table, testable without DuckDB.

Each ``*_figure`` / ``*_table`` takes the frame one chart query of
:mod:`rmapscope.analysis.charts` returns (or the ``migration-latency`` canned query), plus
at most the traces' manifest rows or a flag, and draws it; none runs SQL. An empty frame
gives an empty (but laid out) figure. Strings from the trace are escaped
(:func:`esc_plotly`) before they go into a figure; tables escape every cell
(:func:`rmapscope.dashboards._html.table`).

Times in figures are seconds since the first event of each trace (traces from different
boxes have unrelated clocks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ._html import Column, table
from ._panel import Kpi

OUTCOME_COLORS = {
    "migrated": "#2e7d32",
    "restored": "#1565c0",
    "leaked": "#c62828",
    "inconclusive": "#ef8f00",
}
FORK_COLORS = {"fork during a migration": "#7b1fa2", "fork": "#37474f"}
STATE_COLORS = {"migration-entry": "#ef8f00", "present": "#2e7d32"}
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
TEMPLATE = "plotly_white"
#: The x axis title of every chart over time.
SECONDS = "seconds since the trace's first event"


def _fmt_secs(ns: int | None) -> str:
    if ns is None:
        return ""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def fmt_duration(ns: int) -> str:
    """A bucket width for people: '500 µs', '20 ms', '100 s'."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:g} {unit}"
    return f"{ns} ns"


def _fmt_int(v: Any) -> str:
    return f"{int(v):,}"


def _fmt_hex(v: Any) -> str:
    return f"0x{int(v):x}"


def _fmt_float(digits: int) -> Callable[[Any], str]:
    return lambda v: f"{float(v):,.{digits}f}"


#: How text is escaped for plotly, which draws strings as pseudo-HTML and decodes only
#: a few named entities (amp, lt, gt) and numeric ones back for display.
_PLOTLY_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;"))


def esc_plotly(text: str) -> str:
    """``text`` escaped for a plotly label, hover text or name."""
    for a, b in _PLOTLY_ESCAPES:
        text = text.replace(a, b)
    return text


def _esc_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Every string column escaped with :func:`esc_plotly` (vectorised)."""
    exprs = []
    for name, dtype in df.schema.items():
        if dtype == pl.String:
            e = pl.col(name)
            for a, b in _PLOTLY_ESCAPES:
                e = e.str.replace_all(a, b, literal=True)
            exprs.append(e)
    return df.with_columns(exprs) if exprs else df


def _reds(values: list[int]) -> list[str]:
    """A light-to-dark red per value, on a log scale of the largest."""
    top = math.log10(max([1, *values]) + 1)
    return sample_colorscale("Reds", [0.25 + 0.75 * math.log10(v + 1) / top for v in values])


def _row_label(multi: bool, host: str | None, trace: str, what: str) -> str:
    """A y-axis row name: 'cpu 3', or with several traces 'host 1a2b3c4d cpu 3'."""
    if not multi:
        return what
    return f"{host or '?'} {trace[:8]} {what}"


def _layout(fig: go.Figure, height: float, **kw: Any) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        height=int(height),
        margin={"l": 70, "r": 30, "t": 30, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0},
        hoverlabel={"namelength": -1},
        **kw,
    )
    return fig


def _add_lane_bars(fig: go.Figure, g: pl.DataFrame, name: str, color: str, **kw: Any) -> None:
    """Draw ``g``'s ``start_s``..``end_s`` spans as horizontal bars on their ``row`` lanes."""
    dur = (g["end_s"] - g["start_s"]).clip(lower_bound=0)
    fig.add_bar(
        y=g["row"].to_list(),
        x=dur.to_numpy(),
        base=g["start_s"].to_numpy(),
        orientation="h",
        name=name,
        marker={"color": color, "line": {"width": 1, "color": color}},
        **kw,
    )


def _lane_layout(fig: go.Figure, rows: list[str], max_height: int) -> None:
    """Lay out a swimlane chart: one category row per lane, first lane on top."""
    _layout(
        fig,
        max(260, min(150 + 34 * len(rows), max_height)),
        barmode="overlay",
        xaxis={"title": SECONDS},
        yaxis={
            "categoryorder": "array",
            "categoryarray": rows[::-1],
            "automargin": True,
            "type": "category",
            "range": [-0.6, len(rows) - 0.4],
        },
    )


# --------------------------------------------------------------------------- tables
def traces_table(df: pl.DataFrame) -> str:
    """The ``report-traces`` rows as a table."""
    cols = [
        Column("trace", "trace", cls="mono"),
        Column("host", "host"),
        Column("kernel", "kernel"),
        Column("arch", "arch"),
        Column("format", "format"),
        Column("clock", "clock"),
        Column("cpus", "cpus", cls="num"),
        Column("ts_first", "first event (s)", _fmt_secs, "num"),
        Column("ts_last", "last event (s)", _fmt_secs, "num"),
        Column("duration_s", "span (s)", _fmt_float(3), "num"),
        Column("events", "events", _fmt_int, "num"),
        Column("lost_events", "lost", _fmt_int, "num"),
        Column("errors", "rejected lines", _fmt_int, "num"),
        Column("bytes", "input bytes", _fmt_int, "num"),
        Column("sha256", "input sha256", cls="hash"),
        Column("tool_version", "ingested by"),
        Column("ingested_at", "ingested at", lambda v: str(v)[:19]),
        Column("source", "source file", cls="mono"),
    ]
    return table(df, cols)


#: The overview's per-trace count columns, in order (those from replay only after replay).
OVERVIEW_COUNTS = [
    "events",
    "lost_events",
    "rejected_lines",
    "migrations",
    "migrated",
    "restored",
    "leaked",
    "inconclusive",
    "forks",
    "forks_in_windows",
    "violations",
    "inconclusive_findings",
]


def overview_table(df: pl.DataFrame) -> str:
    """The ``report-overview`` (or ``report-overview-ingest``) rows as a table."""
    columns = [Column("trace", "trace", cls="mono"), Column("host", "host")] + [
        Column(c, c.replace("_", " "), _fmt_int, "num") for c in OVERVIEW_COUNTS if c in df.columns
    ]
    return table(df, columns)


def overview_kpis(df: pl.DataFrame) -> list[Kpi]:
    """The report's big numbers: totals over the overview's rows."""

    def total(c: str) -> int:
        return int(df[c].sum()) if c in df.columns and df.height else 0

    k = [
        (f"{df.height:,}", "traces", ""),
        (f"{total('events'):,}", "events", ""),
        (f"{total('lost_events'):,}", "events lost", "warn" if total("lost_events") else "good"),
    ]
    if "migrations" in df.columns:
        k.append((f"{total('migrations'):,}", "folio migrations", ""))
        bad = total("leaked")
        k.append((f"{bad:,}", "leaked entries", "bad" if bad else "good"))
    if "forks" in df.columns:
        k.append((f"{total('forks_in_windows'):,}", "forks in migration windows", ""))
    if "violations" in df.columns:
        v = total("violations")
        k.append((f"{v:,}", "violations", "bad" if v else "good"))
        k.append(
            (
                f"{total('inconclusive_findings'):,}",
                "inconclusive findings",
                "warn" if total("inconclusive_findings") else "good",
            )
        )
    return k


def ingest_errors_table(df: pl.DataFrame) -> str:
    """The ``report-ingest-errors`` rows as a table, samples as 'line N: text' lines."""
    examples = [
        "\n".join(f"line {n}: {t}" for n, t in zip(lines or [], texts or [], strict=False))
        for lines, texts in df.select("sample_lines", "samples").iter_rows()
    ]
    d = df.with_columns(pl.Series("examples", examples, dtype=pl.String))
    cols = [
        Column("trace", "trace", cls="mono"),
        Column("host", "host"),
        Column("reason", "reason"),
        Column("count", "lines", _fmt_int, "num"),
        Column("first_line", "first line", _fmt_int, "num"),
        Column("examples", "samples", cls="pre wide"),
    ]
    return table(d, cols)


def latency_table(df: pl.DataFrame) -> str:
    """The ``migration-latency`` rows as a table (a migration without a reason: 'unknown')."""
    f1 = _fmt_float(1)
    cols = [
        Column("reason", "reason"),
        Column("migrations", "migrations", _fmt_int, "num"),
        Column("restored", "restored", _fmt_int, "num"),
        Column("p50_us", "p50 (µs)", f1, "num"),
        Column("p90_us", "p90 (µs)", f1, "num"),
        Column("p99_us", "p99 (µs)", f1, "num"),
        Column("max_us", "max (µs)", f1, "num"),
        Column("mean_us", "mean (µs)", f1, "num"),
    ]
    return table(df.with_columns(pl.col("reason").fill_null("unknown")), cols)


def violations_table(df: pl.DataFrame) -> str:
    """The ``report-findings`` rows as a table."""
    cols = [
        Column("n", "#", cls="num"),
        Column("trace", "trace", lambda v: v[:8], "mono"),
        Column("host", "host"),
        Column("rule", "rule"),
        Column("verdict", "verdict"),
        Column("t_s", "time (s)", _fmt_float(6), "num"),
        Column("pid", "pid", cls="num"),
        Column("pfn", "pfn", _fmt_hex, "mono"),
        Column("addr", "addr", _fmt_hex, "mono"),
        Column("mm", "mm", _fmt_hex, "mono"),
        Column("explanation", "explanation", cls="wide"),
        Column("n_evidence", "evidence", _fmt_int, "num"),
        Column("evidence_events", "evidence events", cls="pre"),
    ]
    return table(df, cols)


# --------------------------------------------------------------------------- figures
def event_counts_figure(df: pl.DataFrame, n_traces: int = 1) -> go.Figure:
    """``report-event-counts``: one horizontal bar per event type and trace (log scale);
    ``n_traces`` (the traces in the report) sets the height."""
    d = _esc_frame(df)
    fig = go.Figure()
    totals = d.group_by("event").agg(pl.col("events").sum()).sort("events", "event")
    order = totals["event"].to_list()
    for i, ((trace, host), g) in enumerate(d.group_by(["trace", "host"], maintain_order=True)):
        fig.add_bar(
            y=g["event"].to_list(),
            x=g["events"].to_numpy(),
            orientation="h",
            name=f"{host} {trace[:8]}",
            marker_color=PALETTE[i % len(PALETTE)],
            hovertemplate="%{y}: %{x:,} events<extra>%{fullData.name}</extra>",
        )
    n = len(order)
    return _layout(
        fig,
        min(140 + n * 16 * max(1.0, 0.6 * n_traces), 2600),
        barmode="group",
        xaxis={"type": "log", "title": "events"},
        yaxis={"categoryorder": "array", "categoryarray": order, "automargin": True},
        showlegend=True,
    )


def cpu_activity_figure(df: pl.DataFrame, traces: pl.DataFrame) -> go.Figure:
    """``report-cpu-activity``: a heatmap of events per CPU row and time bucket (log colour);
    ``traces`` (manifest rows: trace_id, ts_first, ts_last) says where each trace ends, and
    several of them label the rows with host and trace."""
    d = _esc_frame(df).with_columns(pl.col("cpu").fill_null(-1))
    b = int(d["bucket_ns"].item(0)) if d.height else 1
    multi = traces.height > 1
    keys = d.select("trace", "host", "cpu").unique().sort("trace", "cpu")
    nb = int(d.select(pl.col("bucket").max()).item()) + 1 if d.height else 0
    ends = {
        r["trace_id"]: ((r["ts_last"] or 0) - (r["ts_first"] or 0)) // b
        for r in traces.iter_rows(named=True)
    }
    labels: list[str] = []
    index: dict[tuple[str, int], int] = {}
    z = np.full((keys.height, nb), np.nan, dtype=np.float32)  # NaN: after the trace's end
    for r in keys.iter_rows(named=True):
        cpu = "cpu ?" if r["cpu"] < 0 else f"cpu {r['cpu']}"
        index[(r["trace"], r["cpu"])] = len(labels)
        z[len(labels), : ends.get(r["trace"], nb - 1) + 1] = 0
        labels.append(_row_label(multi, r["host"], r["trace"], cpu))
    rows = [index[k] for k in d.select("trace", "cpu").iter_rows()]
    z[rows, d["bucket"].to_numpy()] = d["events"].to_numpy()
    x = (np.arange(nb) + 0.5) * b / 1e9
    # colour on a log scale (busy bursts would otherwise flatten everything else to black);
    # the hover shows the count itself. float32 arrays go into the page base64-encoded.
    logz = np.log10(z + 1)
    top = float(np.nanmax(logz)) if np.isfinite(logz).any() else 1.0
    counts = [0] + [10**i for i in range(1, int(top) + 1)]
    fig = go.Figure(
        go.Heatmap(
            z=logz,
            x=x,
            y=labels,
            customdata=z,
            colorscale="Viridis",
            zmin=0,
            colorbar={
                "title": "events",
                "tickvals": [math.log10(c + 1) for c in counts],
                "ticktext": [f"{c:,}" for c in counts],
            },
            hovertemplate="%{y} at %{x:.3f} s: %{customdata:,} events<extra></extra>",
        )
    )
    return _layout(
        fig,
        min(160 + 26 * len(labels), 2000),
        xaxis={"title": SECONDS},
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
    )


def gaps_figure(df: pl.DataFrame, multi: bool = False) -> go.Figure:
    """``report-gaps``: one bar per window of lost events on its CPU's row, redder for more
    lost; ``multi`` labels the rows with host and trace."""
    d = _esc_frame(df).with_columns(pl.col("lost").fill_null(0))
    labels = [
        _row_label(multi, h, t, "all cpus" if c is None else f"cpu {c}")
        for t, h, c in d.select("trace", "host", "cpu").iter_rows()
    ]
    start = d["start_s"].to_numpy()
    width = (d["end_s"] - d["start_s"]).clip(lower_bound=0).to_numpy()
    fig = go.Figure(
        go.Bar(
            y=labels,
            x=width,
            base=start,
            orientation="h",
            # colours computed here: plotly.js 4 warns about numeric bar colours
            marker={"color": _reds(d["lost"].to_list()), "line": {"width": 1, "color": "#c62828"}},
            text=[f"{v:,} lost" for v in d["lost"].to_list()],
            textposition="inside",
            insidetextanchor="middle",
            customdata=list(
                zip(
                    d["kind"].to_list(),
                    d["lost"].to_list(),
                    d["line"].to_list(),
                    d["text"].to_list(),
                    d["start_s"].to_list(),
                    strict=True,
                )
            ),
            hovertemplate="%{y}: %{customdata[0]}, %{customdata[1]:,} events lost<br>"
            "from %{customdata[4]:.6f} s for %{x:.6f} s<br>line %{customdata[2]}: "
            "%{customdata[3]}<extra></extra>",
            name="lost",
        )
    )
    n = len(set(labels))
    return _layout(
        fig,
        min(150 + 30 * n, 1600),
        xaxis={"title": SECONDS},
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        showlegend=False,
        barmode="overlay",
    )


def migration_timeline_figure(df: pl.DataFrame, multi: bool = False) -> go.Figure:
    """``report-migration-timeline``: migration windows as bars on their CPU's row coloured
    by outcome, forks as diamonds; ``multi`` labels the rows with host and trace."""
    d = _esc_frame(df)
    labels = [
        _row_label(multi, h, t, "cpu ?" if c is None else f"cpu {c}")
        for t, h, c in d.select("trace", "host", "cpu").iter_rows()
    ]
    d = d.with_columns(pl.Series("row", labels, dtype=pl.String))
    rows = d.select("trace", "cpu", "row").unique().sort("trace", "cpu")["row"].to_list()
    fig = go.Figure()
    for kind, color in OUTCOME_COLORS.items():
        g = d.filter(pl.col("kind") == kind)
        if g.is_empty():
            continue
        _add_lane_bars(
            fig,
            g,
            kind,
            color,
            customdata=list(
                zip(
                    g["n"].to_list(),
                    g["start_s"].to_list(),
                    ((g["end_s"] - g["start_s"]).clip(lower_bound=0) * 1e6).to_list(),
                    g["pid"].to_list(),
                    g["comm"].to_list(),
                    g["reason"].to_list(),
                    g["first_id"].to_list(),
                    strict=True,
                )
            ),
            hovertemplate="%{y}: %{customdata[0]} " + kind + " migration(s), first id "
            "%{customdata[6]}<br>from %{customdata[1]:.6f} s for %{customdata[2]:,.1f} µs"
            "<br>by %{customdata[4]} (pid %{customdata[3]}), %{customdata[5]}<extra></extra>",
        )
    for kind, color in FORK_COLORS.items():
        g = d.filter(pl.col("kind") == kind)
        if g.is_empty():
            continue
        fig.add_scatter(
            y=g["row"].to_list(),
            x=g["end_s"].to_numpy(),
            mode="markers",
            name=kind,
            marker={
                "symbol": "diamond",
                "size": 9,
                "color": color,
                "line": {"width": 1, "color": "white"},
            },
            customdata=list(
                zip(g["n"].to_list(), g["pid"].to_list(), g["comm"].to_list(), strict=True)
            ),
            hovertemplate="%{y}: %{customdata[0]} " + kind + "(s) at %{x:.6f} s<br>"
            "parent %{customdata[2]} (pid %{customdata[1]})<extra></extra>",
        )
    _lane_layout(fig, rows, max_height=2200)
    return fig


def latency_histogram_figure(df: pl.DataFrame) -> go.Figure:
    """``report-latency-histogram``: overlaid bars per reason over log-spaced latency bins."""
    d = _esc_frame(df)
    fig = go.Figure()
    for i, (reason, g) in enumerate(d.group_by("reason", maintain_order=True)):
        lo = (10 ** g["log10_us"]).to_numpy()
        hi = (10 ** (g["log10_us"] + 0.1)).to_numpy()
        fig.add_bar(
            x=lo,
            y=g["migrations"].to_numpy(),
            width=hi - lo,
            offset=0,
            name=str(reason[0] if isinstance(reason, tuple) else reason),
            marker_color=PALETTE[i % len(PALETTE)],
            opacity=0.75,
            customdata=hi,
            hovertemplate="%{x:.3g}-%{customdata:.3g} µs: %{y:,} migrations"
            "<extra>%{fullData.name}</extra>",
        )
    return _layout(
        fig,
        380,
        barmode="overlay",
        xaxis={"type": "log", "title": "latency (µs)"},
        yaxis={"title": "folio migrations"},
    )


def migration_rate_figure(df: pl.DataFrame, traces: pl.DataFrame) -> go.Figure:
    """``report-migration-rate``: stacked bars of migrations per second by reason and
    outcome, one subplot per trace; ``traces`` (manifest rows) gives each x range."""
    d = _esc_frame(df)
    rows_ = d.select("trace", "host").unique(maintain_order=True).rows()
    fig = make_subplots(
        rows=max(len(rows_), 1),
        cols=1,
        vertical_spacing=min(0.12, 0.45 / max(len(rows_), 1)),
        subplot_titles=[f"{h} {t[:8]}" for t, h in rows_] if len(rows_) > 1 else None,
    )
    series = d.select("reason", "outcome").unique().sort("reason", "outcome").rows()
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    shown: set[str] = set()
    for row, (trace, _host) in enumerate(rows_, 1):
        for reason, outcome in series:
            g = d.filter(
                (pl.col("trace") == trace)
                & (pl.col("reason") == reason)
                & (pl.col("outcome") == outcome)
            )
            if g.is_empty():
                continue
            name = f"{reason} / {outcome}"
            w = int(g["width_ns"].item(0))
            fig.add_bar(
                x=((g["bucket"] + 0.5) * w / 1e9).to_numpy(),
                y=g["per_second"].to_numpy(),
                width=w / 1e9,
                name=name,
                legendgroup=name,
                showlegend=name not in shown,
                marker_color=colors[(reason, outcome)],
                customdata=g["migrations"].to_numpy(),
                hovertemplate="%{x:.4f} s: %{y:,.0f}/s (%{customdata} migrations in "
                + f"{fmt_duration(w)})<extra>%{{fullData.name}}</extra>",
                row=row,
                col=1,
            )
            shown.add(name)
        span = traces.filter(pl.col("trace_id") == trace).select(
            (pl.col("ts_last") - pl.col("ts_first")) / 1e9
        )
        fig.update_xaxes(
            title_text=SECONDS if row == len(rows_) else None,
            range=[0, float(span.item() or 0) or None],
            row=row,
            col=1,
        )
    if not rows_:
        fig.update_xaxes(title_text=SECONDS)
    fig.update_yaxes(title_text="migrations/s")
    return _layout(fig, 130 + 240 * len(rows_), barmode="stack", bargap=0)


#: Marker colours of the forks chart, per kind of fork.
FORK_KIND_COLORS = {
    "during a migration window": "#7b1fa2",
    "outside migration windows": "#607d8b",
    "thread (shares the mm)": "#b0bec5",
}


def forks_figure(df: pl.DataFrame, multi: bool = False) -> go.Figure:
    """``report-forks``: a marker per fork at the number of migrations open during its
    window (log axis, 0 drawn at 0.5); ``multi`` names the series with host and trace."""
    d = _esc_frame(df)
    symbols = ["circle", "square", "triangle-up", "diamond", "cross", "star"]
    top = int(df.select(pl.col("overlapping").max()).item() or 0)
    ticks = [10**i for i in range(len(str(max(top, 1))))]
    fig = go.Figure()
    traces = d.select("trace", "host").unique(maintain_order=True).rows()
    for ti, (trace, host) in enumerate(traces):
        for kind, color in FORK_KIND_COLORS.items():
            g = d.filter((pl.col("trace") == trace) & (pl.col("kind") == kind))
            if g.is_empty():
                continue
            flags = [None if v is None else f"0x{int(v):x}" for v in g["clone_flags"].to_list()]
            fig.add_scatter(
                x=g["t_s"].to_numpy(),
                # log axis: forks that overlapped nothing sit on the "0" line at 0.5
                y=g["overlapping"].cast(pl.Float64).clip(lower_bound=0.5).to_numpy(),
                mode="markers",
                name=f"{host} {trace[:8]}: {kind}" if multi else kind,
                marker={
                    "color": color,
                    "size": 9,
                    "symbol": symbols[ti % len(symbols)],
                    "line": {"width": 1, "color": "white"},
                },
                customdata=list(
                    zip(
                        g["parent_comm"].to_list(),
                        g["parent_pid"].to_list(),
                        g["child_pid"].to_list(),
                        g["window_us"].to_list(),
                        flags,
                        g["forks"].to_list(),
                        g["overlapping"].to_list(),
                        strict=True,
                    )
                ),
                hovertemplate="%{customdata[0]} (pid %{customdata[1]}) forked pid "
                "%{customdata[2]} at %{x:.6f} s<br>window %{customdata[3]:,.1f} µs, "
                "clone flags %{customdata[4]}<br>%{customdata[6]} migrations open; "
                "%{customdata[5]} fork(s) here<extra></extra>",
            )
    return _layout(
        fig,
        380,
        xaxis={"title": SECONDS},
        yaxis={
            "title": "migrations open during the fork window",
            "type": "log",
            "tickvals": [0.5, *ticks],
            "ticktext": ["0", *[f"{t:,}" for t in ticks]],
            "range": [math.log10(0.35), math.log10(max(top, 1) * 2)],
        },
    )


def page_states_figure(df: pl.DataFrame, multi: bool = False) -> go.Figure:
    """``report-page-states``: one row per mapping of a page, its states as bars (orange a
    migration entry, green a present pte), crosses at the findings; ``multi`` labels the
    rows with host and trace."""
    d = _esc_frame(df)

    def label(r: dict) -> str:
        text = "addr ?" if r["addr"] is None else f"addr 0x{r['addr']:x}"
        if r["mm"] is not None:
            text += f" mm 0x{r['mm']:x}"
        if r["mapping"] is not None and r["mm"] is None:
            text += f" pte #{r['mapping']}"
        return _row_label(multi, r["host"], r["trace"], text)

    d = d.with_columns(
        pl.Series("row", [label(r) for r in d.iter_rows(named=True)], dtype=pl.String),
        pl.Series(
            "pfn_hex", [None if v is None else f"0x{v:x}" for v in d["pfn"]], dtype=pl.String
        ),
    )
    rows = (
        d.select("trace", "addr", "mm", "mapping", "row")
        .unique()
        .sort("trace", "addr", "mm", "mapping", nulls_last=True)["row"]
        .unique(maintain_order=True)
        .to_list()
    )
    fig = go.Figure()
    for state, color in STATE_COLORS.items():
        g = d.filter(pl.col("state") == state)
        if g.is_empty():
            continue
        _add_lane_bars(
            fig,
            g,
            state,
            color,
            text=g["pfn_hex"].to_list(),
            textposition="inside",
            insidetextanchor="start",
            customdata=list(
                zip(
                    g["pfn_hex"].to_list(),
                    g["migration_id"].to_list(),
                    g["start_s"].to_list(),
                    g["end_s"].to_list(),
                    ["(open: no end seen)" if o else "" for o in g["open_ended"].to_list()],
                    strict=True,
                )
            ),
            hovertemplate="%{y}: " + state + " pfn %{customdata[0]}<br>%{customdata[2]:.6f}"
            " - %{customdata[3]:.6f} s %{customdata[4]}<br>migration %{customdata[1]}"
            "<extra></extra>",
        )
    f = d.filter(pl.col("state") == "finding")
    if f.height:
        fig.add_scatter(
            y=f["row"].to_list(),
            x=f["start_s"].to_numpy(),
            mode="markers",
            name="finding",
            marker={
                "symbol": "x",
                "size": 12,
                "color": [
                    "#c62828" if v == "violation" else "#ef8f00" for v in f["verdict"].to_list()
                ],
            },
            customdata=list(
                zip(
                    f["rule"].to_list(), f["verdict"].to_list(), f["pfn_hex"].to_list(), strict=True
                )
            ),
            hovertemplate="%{y}: %{customdata[1]} %{customdata[0]} for pfn %{customdata[2]}"
            " at %{x:.6f} s<extra></extra>",
        )
    _lane_layout(fig, rows, max_height=2000)
    return fig
