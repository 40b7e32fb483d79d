"""The report's panels: one SQL aggregate over the dataset views each, then its plot.

Every panel function takes a :class:`Ctx` (a DuckDB connection from
:func:`rmapscope.analysis.connect` and the traces in scope) and returns a :class:`Panel`
with the SQL it ran (exactly that text, shown in the report), the resulting polars frame,
and a plotly figure or an HTML table built from the frame. The analysis is the SQL: it
aggregates or downsamples in DuckDB (time buckets, at most a few thousand bars per CPU), so
raw events never reach Python and the page stays small whatever the size of the dataset.

Times in figures are seconds since the first event of each trace (traces from different
boxes have unrelated clocks); the header table gives each trace's absolute range.
Strings from the trace are escaped (:func:`_esc_frame`) before they go into a figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ._html import Column, table

#: At most this many bars per CPU row of the timeline (more: merged per time bucket).
TIMELINE_ROW_CAP = 5000
#: And at most this many bars over all rows of the timeline.
TIMELINE_TOTAL_CAP = 30000
#: Heatmap cells of the per-CPU activity chart (rows x time buckets) at most.
HEATMAP_CELLS = 120_000
#: Fork markers per trace at most (more: merged per time bucket).
FORK_CAP = 5000
#: And at most this many over all traces.
FORK_TOTAL_CAP = 20000
#: Violations listed in the table, and pages drawn in the drill-down, at most.
VIOLATION_ROWS = 500
DRILL_PAGES = 40
#: Mappings (ptes) per page and migration drawn in the drill-down, at most.
DRILL_MAPPINGS = 32
#: Evidence events shown per violation.
EVIDENCE_PER_ROW = 8
#: Gap windows drawn at most.
GAP_ROWS = 10000

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
REPLAY_HINT = "run `rmapscope replay --all` to make the replay tables"


@dataclass
class Panel:
    """One block of the report: its SQL, the frame it returned, and a figure or a table."""

    id: str
    title: str
    sql: str
    frame: pl.DataFrame | None
    figure: go.Figure | None = None
    table_html: str | None = None
    description: str = ""
    note: str = ""
    empty: str = ""
    kpis: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        return self.frame is not None and self.frame.height > 0


@dataclass
class Ctx:
    """What every panel needs: the connection, the traces in scope, their manifest rows."""

    con: duckdb.DuckDBPyConnection
    trace_ids: list[str] | None
    traces: pl.DataFrame  # manifest rows in scope: trace_id, host, ts_first, ts_last, cpus
    _columns: dict[str, set[str]] = field(default_factory=dict)

    def scope(self, alias: str = "") -> str:
        """The SQL condition selecting the traces in scope (``TRUE`` for all)."""
        if self.trace_ids is None:
            return "TRUE"
        col = f"{alias}.trace" if alias else "trace"
        ids = ", ".join("'" + t.replace("'", "''") + "'" for t in self.trace_ids)
        return f"{col} IN ({ids})"

    def columns(self, view: str) -> set[str]:
        if view not in self._columns:
            rows = self.con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [view]
            ).fetchall()
            self._columns[view] = {r[0] for r in rows}
        return self._columns[view]

    def missing(self, view: str, *cols: str) -> str:
        """Why ``view`` cannot serve a panel ('' when it can)."""
        have = self.columns(view)
        if not have:
            return f"no {view} table in the dataset: {REPLAY_HINT}"
        lacking = [c for c in cols if c not in have]
        if lacking:
            return f"the {view} table has no {', '.join(lacking)} column: {REPLAY_HINT} again"
        return ""

    def run(self, sql: str) -> pl.DataFrame:
        return self.con.sql(sql).pl()

    @property
    def multi(self) -> bool:
        return self.traces.height > 1

    def span_ns(self) -> int:
        spans = [
            (b - a)
            for a, b in zip(self.traces["ts_first"], self.traces["ts_last"], strict=True)
            if a is not None and b is not None
        ]
        return max([1, *spans])

    def fork_overlap(self, alias: str = "") -> str:
        """SQL for the number of migrations a fork window overlapped."""
        p = f"{alias}." if alias else ""
        if "n_overlapping" in self.columns("fork_windows"):
            return f"{p}n_overlapping"
        return f"len({p}overlapping_migrations)"


# --------------------------------------------------------------------------- helpers
def _sql(text: str) -> str:
    lines = text.strip("\n").splitlines()
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    return "\n".join(ln[indent:].rstrip() for ln in lines)


def nice_bucket(ns: float) -> int:
    """The smallest 1-2-5 multiple of a power of ten (in ns) that is >= ``ns``."""
    ns = max(float(ns), 1.0)
    exp = 10 ** math.floor(math.log10(ns))
    for m in (1, 2, 5, 10):
        if m * exp >= ns:
            return int(m * exp)
    return int(10 * exp)  # pragma: no cover


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


def _fmt_float(digits: int):
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


def _layout(fig: go.Figure, height: int, **kw: Any) -> go.Figure:
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
        xaxis={"title": "seconds since the trace's first event"},
        yaxis={
            "categoryorder": "array",
            "categoryarray": rows[::-1],
            "automargin": True,
            "type": "category",
            "range": [-0.6, len(rows) - 0.4],
        },
    )


def _empty(pid: str, title: str, sql: str, why: str, description: str = "") -> Panel:
    return Panel(pid, title, sql, None, description=description, empty=why)


# --------------------------------------------------------------------------- header
def traces_panel(ctx: Ctx) -> Panel:
    """The traces in the report: hosts, kernels, time ranges, hashes, tool versions."""
    sql = _sql(f"""
        SELECT trace_id AS trace, host, kernel, arch, format, clock, cpus,
               ts_first, ts_last, (ts_last - ts_first) / 1e9 AS duration_s,
               events, lines, gaps, lost_events, errors, bytes, sha256,
               tool_version, ingested_at, source
        FROM traces
        WHERE {ctx.scope()}
        ORDER BY host, ts_first
    """)
    df = ctx.run(sql)
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
    return Panel(
        "traces",
        "Traces",
        sql,
        df,
        table_html=table(df, cols),
        description="Each trace in this report, from the dataset's traces manifest: the "
        "input's sha256 identifies it (the trace id is its first 16 hex digits).",
    )


def overview_panel(ctx: Ctx) -> Panel:
    """Per trace: events, losses, migrations by outcome, forks in windows, findings."""
    joins, cols = [], []
    if not ctx.missing("migrations", "outcome"):
        joins.append(f"""
            LEFT JOIN (SELECT trace, count(*) AS migrations,
                              count(*) FILTER (WHERE outcome = 'migrated') AS migrated,
                              count(*) FILTER (WHERE outcome = 'restored') AS restored,
                              count(*) FILTER (WHERE outcome = 'leaked') AS leaked,
                              count(*) FILTER (WHERE outcome = 'inconclusive') AS inconclusive
                       FROM migrations WHERE {ctx.scope()} GROUP BY trace) m USING (trace)""")
        cols += ["migrations", "migrated", "restored", "leaked", "inconclusive"]
    if not ctx.missing("fork_windows", "fork_id"):
        joins.append(f"""
            LEFT JOIN (SELECT trace, count(*) AS forks,
                              count(*) FILTER (WHERE {ctx.fork_overlap()} > 0)
                                  AS forks_in_windows
                       FROM fork_windows WHERE {ctx.scope()} GROUP BY trace) f USING (trace)""")
        cols += ["forks", "forks_in_windows"]
    if not ctx.missing("violations", "verdict"):
        joins.append(f"""
            LEFT JOIN (SELECT trace,
                              count(*) FILTER (WHERE verdict = 'violation') AS violations,
                              count(*) FILTER (WHERE verdict = 'inconclusive')
                                  AS inconclusive_findings
                       FROM violations WHERE {ctx.scope()} GROUP BY trace) v USING (trace)""")
        cols += ["violations", "inconclusive_findings"]
    select = "".join(f",\n       coalesce({c}, 0) AS {c}" for c in cols)
    sql = _sql(f"""
        SELECT t.trace, t.host, t.events, t.lost_events, t.errors AS rejected_lines{select}
        FROM traces t{"".join(joins)}
        WHERE {ctx.scope("t")}
        ORDER BY t.host, t.ts_first
    """)
    df = ctx.run(sql)

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
    columns = [Column("trace", "trace", cls="mono"), Column("host", "host")] + [
        Column(c, c.replace("_", " "), _fmt_int, "num")
        for c in ["events", "lost_events", "rejected_lines", *cols]
    ]
    note = "" if cols else f"No replay tables yet: {REPLAY_HINT}."
    return Panel(
        "overview",
        "At a glance",
        sql,
        df,
        table_html=table(df, columns),
        kpis=k,
        note=note,
        description="Events and losses from ingest; folio migrations by outcome, forks "
        "whose copy window overlapped a migration, and findings from replay.",
    )


# --------------------------------------------------------------------------- ingest health
def event_counts_panel(ctx: Ctx) -> Panel:
    """Events per event type and trace (from the manifest's exact counts)."""
    sql = _sql(f"""
        SELECT trace, host, unnest(map_keys(event_counts)) AS event,
               unnest(map_values(event_counts)) AS events
        FROM traces
        WHERE {ctx.scope()}
        ORDER BY event, trace
    """)
    df = ctx.run(sql)
    title = "Events per type"
    desc = "How many events of each type every trace holds (log scale)."
    if df.is_empty():
        return _empty("event_counts", title, sql, "No events.", desc)
    d = _esc_frame(df)
    fig = go.Figure()
    totals = d.group_by("event").agg(pl.col("events").sum()).sort("events")
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
    _layout(
        fig,
        min(140 + n * 16 * max(1.0, 0.6 * ctx.traces.height), 2600),
        barmode="group",
        xaxis={"type": "log", "title": "events"},
        yaxis={"categoryorder": "array", "categoryarray": order, "automargin": True},
        showlegend=True,
    )
    return Panel("event_counts", title, sql, df, figure=fig, description=desc)


def cpu_activity_panel(ctx: Ctx) -> Panel:
    """Events per CPU over time: dark stripes are where a CPU recorded nothing (or lost)."""
    rows = int(ctx.traces["cpus"].fill_null(4).sum()) or 1
    buckets = max(40, min(400, HEATMAP_CELLS // rows))
    b = nice_bucket(ctx.span_ns() / buckets)
    sql = _sql(f"""
        SELECT e.trace, any_value(e.host) AS host, e.cpu,
               (e.ts - t.ts_first) // {b} AS bucket, count(*) AS events
        FROM events e JOIN traces t ON t.trace = e.trace
        WHERE {ctx.scope("e")}
        GROUP BY e.trace, e.cpu, bucket
        ORDER BY e.trace, e.cpu, bucket
    """)
    df = ctx.run(sql)
    title = "Events per CPU over time"
    desc = (
        f"Events recorded per CPU in {fmt_duration(b)} buckets. A CPU row that goes dark "
        "while others are busy is a CPU whose events were lost or not captured."
    )
    if df.is_empty():
        return _empty("cpu_activity", title, sql, "No events.", desc)
    d = _esc_frame(df).with_columns(pl.col("cpu").fill_null(-1))
    keys = d.select("trace", "host", "cpu").unique().sort("trace", "cpu")
    nb = int(d["bucket"].max()) + 1
    ends = {
        r["trace_id"]: ((r["ts_last"] or 0) - (r["ts_first"] or 0)) // b
        for r in ctx.traces.iter_rows(named=True)
    }
    labels = []
    index = {}
    z = np.full((keys.height, nb), np.nan, dtype=np.float32)  # NaN: after the trace's end
    for r in keys.iter_rows(named=True):
        cpu = "cpu ?" if r["cpu"] < 0 else f"cpu {r['cpu']}"
        index[(r["trace"], r["cpu"])] = len(labels)
        z[len(labels), : ends.get(r["trace"], nb - 1) + 1] = 0
        labels.append(_row_label(ctx.multi, r["host"], r["trace"], cpu))
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
    _layout(
        fig,
        min(160 + 26 * len(labels), 2000),
        xaxis={"title": "seconds since the trace's first event"},
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
    )
    return Panel("cpu_activity", title, sql, df, figure=fig, description=desc)


def gaps_panel(ctx: Ctx) -> Panel:
    """Windows of lost events per CPU (between the last event before and first after)."""
    title = "Lost events per CPU"
    desc = (
        "Each bar is a window in which a CPU lost events ([LOST N EVENTS], dropped, "
        "overwritten), from its last event before to its first event after the loss; "
        "the colour is how many were lost. Replay reports findings overlapping these "
        "windows as inconclusive."
    )
    why = ctx.missing("gaps", "cpu", "ts_start", "ts_end", "count")
    sql = _sql(f"""
        SELECT g.trace, g.host, g.cpu, g.kind,
               (coalesce(g.ts_start, t.ts_first) - t.ts_first) / 1e9 AS start_s,
               (coalesce(g.ts_end, t.ts_last) - t.ts_first) / 1e9 AS end_s,
               g.count AS lost, g.line, g.text
        FROM gaps g JOIN traces t ON t.trace = g.trace
        WHERE {ctx.scope("g")}
        ORDER BY g.trace, g.cpu, start_s, g.line
        LIMIT {GAP_ROWS}
    """)
    if why:
        return _empty("gaps", title, sql, "No lost events recorded.", desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("gaps", title, sql, "No lost events: every CPU's buffer kept up.", desc)
    d = _esc_frame(df).with_columns(pl.col("lost").fill_null(0))
    labels = [
        _row_label(ctx.multi, h, t, "all cpus" if c is None else f"cpu {c}")
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
    _layout(
        fig,
        min(150 + 30 * n, 1600),
        xaxis={"title": "seconds since the trace's first event"},
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        showlegend=False,
        barmode="overlay",
    )
    note = f"Only the first {GAP_ROWS:,} windows are drawn." if df.height >= GAP_ROWS else ""
    return Panel("gaps", title, sql, df, figure=fig, description=desc, note=note)


def ingest_errors_panel(ctx: Ctx) -> Panel:
    """Lines ingest rejected, per reason, with sample lines."""
    title = "Ingest errors"
    desc = "Input lines ingest could not parse, counted per reason, with up to 5 samples."
    sql = _sql(f"""
        SELECT trace, host, reason, count, first_line,
               sample_lines[1:5] AS sample_lines, samples[1:5] AS samples
        FROM ingest_errors
        WHERE {ctx.scope()}
        ORDER BY count DESC, trace, reason
    """)
    if ctx.missing("ingest_errors", "reason", "samples"):
        return _empty("ingest_errors", title, sql, "No ingest errors.", desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("ingest_errors", title, sql, "No ingest errors: every line parsed.", desc)
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
    return Panel("ingest_errors", title, sql, df, table_html=table(d, cols), description=desc)


# --------------------------------------------------------------------------- migrations
def migration_timeline_panel(ctx: Ctx) -> Panel:
    """Folio migration windows per CPU coloured by outcome, with forks overlaid."""
    title = "Migration timeline per CPU"
    desc = (
        "Each bar is one folio migration, from its first set_migration_pte to its last "
        "remove, on the CPU that migrated it, coloured by outcome (a leaked or inconclusive "
        "one runs to its batch's end, or the trace's). Diamonds are forks (at "
        "sched_process_fork), purple when the fork's copy window overlapped a migration. "
        f"Rows with more than {TIMELINE_ROW_CAP:,} items are merged per time bucket "
        "(hover shows how many)."
    )
    why = ctx.missing("migrations", "t_first_set", "outcome", "cpu")
    fork_ok = not ctx.missing("fork_windows", "fork_id", "ts_end", "cpu")
    forks = ""
    if fork_ok:
        forks = f"""
          UNION ALL
          SELECT f.trace, f.host, f.cpu,
                 CASE WHEN {ctx.fork_overlap("f")} > 0 THEN 'fork during a migration'
                      ELSE 'fork' END,
                 f.fork_id, f.parent_pid, f.parent_comm, NULL,
                 f.ts_end - t.ts_first, f.ts_end - t.ts_first
          FROM fork_windows f JOIN traces t ON t.trace = f.trace
          WHERE {ctx.scope("f")}"""
    sql = _sql(f"""
        WITH w AS (
          SELECT m.trace, m.host, m.cpu, m.outcome AS kind, m.migration_id AS id,
                 m.pid, m.comm, m.reason,
                 m.t_first_set - t.ts_first AS t0,
                 coalesce(m.t_last_remove, m.ts_end, t.ts_last) - t.ts_first AS t1
          FROM migrations m JOIN traces t ON t.trace = m.trace
          WHERE {ctx.scope("m")}{forks}
        ),
        r AS (
          SELECT trace, cpu, count(*) AS n, min(t0) AS lo, max(t1) AS hi,
                 least({TIMELINE_ROW_CAP}, greatest(100, {TIMELINE_TOTAL_CAP} // count(*) OVER ()))
                   AS cap
          FROM w GROUP BY trace, cpu
        )
        SELECT w.trace, any_value(w.host) AS host, w.cpu, w.kind,
               min(w.t0) / 1e9 AS start_s, max(w.t1) / 1e9 AS end_s, count(*) AS n,
               min(w.id) AS first_id, any_value(w.pid) AS pid, any_value(w.comm) AS comm,
               any_value(w.reason) AS reason
        FROM w JOIN r ON r.trace = w.trace AND r.cpu IS NOT DISTINCT FROM w.cpu
        GROUP BY w.trace, w.cpu, w.kind,
                 CASE WHEN r.n <= r.cap THEN w.id
                      ELSE (w.t0 - r.lo) * r.cap // greatest(r.hi - r.lo, 1) END
        ORDER BY w.trace, w.cpu, start_s, w.kind, first_id
    """)
    if why:
        return _empty("migration_timeline", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("migration_timeline", title, sql, "No migrations and no forks.", desc)
    d = _esc_frame(df)
    labels = [
        _row_label(ctx.multi, h, t, "cpu ?" if c is None else f"cpu {c}")
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
    note = ""
    merged = d.filter(pl.col("n") > 1)
    if merged.height:
        note = (
            f"{int(merged['n'].sum()):,} items were merged into {merged.height:,} bars "
            "(rows over the cap)."
        )
    return Panel("migration_timeline", title, sql, df, figure=fig, description=desc, note=note)


def latency_histogram_panel(ctx: Ctx) -> Panel:
    """Distribution of migration latency (first set to last remove), by reason."""
    title = "Migration latency distribution"
    desc = (
        "Time from a folio's first migration entry to its last remove (completed "
        "migrations, migrated or restored), in tenth-of-a-decade bins on a log axis."
    )
    why = ctx.missing("migrations", "t_first_set", "t_last_remove", "reason", "outcome")
    sql = _sql(f"""
        SELECT coalesce(reason, 'unknown') AS reason,
               floor(log10(greatest(t_last_remove - t_first_set, 1) / 1e3) * 10) / 10
                 AS log10_us,
               count(*) AS migrations
        FROM migrations
        WHERE {ctx.scope()} AND outcome IN ('migrated', 'restored')
          AND t_last_remove IS NOT NULL
        GROUP BY ALL
        ORDER BY reason, log10_us
    """)
    if why:
        return _empty("latency_hist", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("latency_hist", title, sql, "No completed migrations.", desc)
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
    _layout(
        fig,
        380,
        barmode="overlay",
        xaxis={"type": "log", "title": "latency (µs)"},
        yaxis={"title": "folio migrations"},
    )
    return Panel("latency_hist", title, sql, df, figure=fig, description=desc)


def latency_percentiles_panel(ctx: Ctx) -> Panel:
    """Latency percentiles by reason (the ``migration-latency`` canned query, scoped)."""
    title = "Migration latency percentiles by reason"
    desc = "Percentiles of the first-set-to-last-remove time of completed folio migrations."
    why = ctx.missing("migrations", "t_first_set", "t_last_remove", "reason", "outcome")
    sql = _sql(f"""
        SELECT coalesce(reason, 'unknown') AS reason, count(*) AS migrations,
               count(*) FILTER (WHERE outcome = 'restored') AS restored,
               quantile_cont(lat, 0.5) / 1e3 AS p50_us,
               quantile_cont(lat, 0.9) / 1e3 AS p90_us,
               quantile_cont(lat, 0.99) / 1e3 AS p99_us,
               max(lat) / 1e3 AS max_us,
               avg(lat) / 1e3 AS mean_us
        FROM (SELECT reason, outcome, t_last_remove - t_first_set AS lat FROM migrations
              WHERE {ctx.scope()} AND outcome IN ('migrated', 'restored')
                AND t_last_remove IS NOT NULL)
        GROUP BY ALL
        ORDER BY migrations DESC
    """)
    if why:
        return _empty("latency_pct", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("latency_pct", title, sql, "No completed migrations.", desc)
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
    return Panel("latency_pct", title, sql, df, table_html=table(df, cols), description=desc)


def migration_rate_panel(ctx: Ctx) -> Panel:
    """Migrations per second over time, stacked by reason and outcome (one row per trace)."""
    title = "Migrations per second by reason and outcome"
    why = ctx.missing("migrations", "t_first_set", "reason", "outcome")
    # about 150 buckets over each trace's span, rounded to 1-2-5 ns multiples
    widths = {
        r["trace_id"]: nice_bucket(((r["ts_last"] or 0) - (r["ts_first"] or 0)) / 150)
        for r in ctx.traces.iter_rows(named=True)
    }
    values = ", ".join(f"('{t}', {w})" for t, w in widths.items()) or "(NULL, 1)"
    desc = (
        "Folio migrations started per second, stacked by reason and outcome, in time "
        "buckets of about 1/150 of each trace's span (the bucket is in the hover)."
    )
    sql = _sql(f"""
        WITH b(trace, width) AS (VALUES {values})
        SELECT m.trace, any_value(m.host) AS host, coalesce(m.reason, 'unknown') AS reason,
               m.outcome, (m.t_first_set - t.ts_first) // b.width AS bucket,
               any_value(b.width) AS width_ns, count(*) AS migrations,
               count(*) / (any_value(b.width) / 1e9) AS per_second
        FROM migrations m JOIN traces t ON t.trace = m.trace JOIN b ON b.trace = m.trace
        WHERE {ctx.scope("m")}
        GROUP BY m.trace, reason, m.outcome, bucket
        ORDER BY m.trace, bucket, reason, m.outcome
    """)
    if why:
        return _empty("migration_rate", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("migration_rate", title, sql, "No migrations.", desc)
    d = _esc_frame(df)
    traces = d.select("trace", "host").unique(maintain_order=True).rows()
    fig = make_subplots(
        rows=len(traces),
        cols=1,
        vertical_spacing=min(0.12, 0.45 / max(len(traces), 1)),
        subplot_titles=[f"{h} {t[:8]}" for t, h in traces] if len(traces) > 1 else None,
    )
    series = d.select("reason", "outcome").unique().sort("reason", "outcome").rows()
    colors = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    shown: set[str] = set()
    for row, (trace, _host) in enumerate(traces, 1):
        for reason, outcome in series:
            g = d.filter(
                (pl.col("trace") == trace)
                & (pl.col("reason") == reason)
                & (pl.col("outcome") == outcome)
            )
            if g.is_empty():
                continue
            name = f"{reason} / {outcome}"
            w = int(g["width_ns"][0])
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
        span = ctx.traces.filter(pl.col("trace_id") == trace).select(
            (pl.col("ts_last") - pl.col("ts_first")) / 1e9
        )
        fig.update_xaxes(
            title_text="seconds since the trace's first event" if row == len(traces) else None,
            range=[0, float(span.item() or 0) or None],
            row=row,
            col=1,
        )
    fig.update_yaxes(title_text="migrations/s")
    _layout(fig, 130 + 240 * len(traces), barmode="stack", bargap=0)
    return Panel("migration_rate", title, sql, df, figure=fig, description=desc)


# --------------------------------------------------------------------------- forks
def forks_panel(ctx: Ctx) -> Panel:
    """Every fork, with how many migrations its copy window overlapped."""
    title = "Forks during migration windows"
    desc = (
        "Each marker is a fork or clone (at sched_process_fork): its height is how many "
        "folio migrations were open during its window (from the parent's last event "
        "before task_newtask to the fork), the window in which dup_mmap may copy a "
        "migration entry. Threads (CLONE_VM) share the mm and never count. "
        f"More than {FORK_CAP:,} forks per trace are merged per time bucket."
    )
    why = ctx.missing("fork_windows", "fork_id", "ts_start", "ts_end", "parent_comm")
    sql = _sql(f"""
        WITH f AS (
          SELECT f.trace, f.host, f.fork_id, f.parent_pid, f.parent_comm, f.child_pid,
                 f.shares_vm, f.clone_flags, f.ts_end - t.ts_first AS t_fork,
                 f.ts_end - f.ts_start AS window_ns,
                 {ctx.fork_overlap("f")} AS overlapping
          FROM fork_windows f JOIN traces t ON t.trace = f.trace
          WHERE {ctx.scope("f")}
        ),
        r AS (SELECT trace, count(*) AS n, min(t_fork) AS lo, max(t_fork) AS hi,
                     least({FORK_CAP}, greatest(100, {FORK_TOTAL_CAP} // count(*) OVER ()))
                       AS cap
              FROM f GROUP BY trace)
        SELECT f.trace, any_value(f.host) AS host,
               CASE WHEN overlapping > 0 THEN 'during a migration window'
                    WHEN shares_vm THEN 'thread (shares the mm)'
                    ELSE 'outside migration windows' END AS kind,
               min(t_fork) / 1e9 AS t_s, max(overlapping) AS overlapping, count(*) AS forks,
               any_value(parent_comm) AS parent_comm, any_value(parent_pid) AS parent_pid,
               any_value(child_pid) AS child_pid, max(window_ns) / 1e3 AS window_us,
               any_value(clone_flags) AS clone_flags
        FROM f JOIN r ON r.trace = f.trace
        GROUP BY f.trace, kind,
                 CASE WHEN r.n <= r.cap THEN f.fork_id
                      ELSE (t_fork - r.lo) * r.cap // greatest(r.hi - r.lo, 1) END
        ORDER BY f.trace, t_s, kind
    """)
    if why:
        return _empty("forks", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("forks", title, sql, "No forks in these traces.", desc)
    d = _esc_frame(df)
    colors = {
        "during a migration window": "#7b1fa2",
        "outside migration windows": "#607d8b",
        "thread (shares the mm)": "#b0bec5",
    }
    symbols = ["circle", "square", "triangle-up", "diamond", "cross", "star"]
    top = int(df["overlapping"].max() or 0)
    ticks = [10**i for i in range(len(str(max(top, 1))))]
    fig = go.Figure()
    traces = d.select("trace", "host").unique(maintain_order=True).rows()
    for ti, (trace, host) in enumerate(traces):
        for kind, color in colors.items():
            g = d.filter((pl.col("trace") == trace) & (pl.col("kind") == kind))
            if g.is_empty():
                continue
            flags = [None if v is None else f"0x{int(v):x}" for v in g["clone_flags"].to_list()]
            fig.add_scatter(
                x=g["t_s"].to_numpy(),
                # log axis: forks that overlapped nothing sit on the "0" line at 0.5
                y=g["overlapping"].cast(pl.Float64).clip(lower_bound=0.5).to_numpy(),
                mode="markers",
                name=f"{host} {trace[:8]}: {kind}" if ctx.multi else kind,
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
    _layout(
        fig,
        380,
        xaxis={"title": "seconds since the trace's first event"},
        yaxis={
            "title": "migrations open during the fork window",
            "type": "log",
            "tickvals": [0.5, *ticks],
            "ticktext": ["0", *[f"{t:,}" for t in ticks]],
            "range": [math.log10(0.35), math.log10(max(top, 1) * 2)],
        },
    )
    n_in = int(df.filter(pl.col("kind") == "during a migration window")["forks"].sum())
    note = f"{n_in:,} of {int(df['forks'].sum()):,} forks overlapped a migration window."
    return Panel("forks", title, sql, df, figure=fig, description=desc, note=note)


# --------------------------------------------------------------------------- findings
def violations_panel(ctx: Ctx) -> Panel:
    """Every finding of replay, violations first, with its evidence events."""
    title = "Violations and inconclusive findings"
    desc = (
        "Replay's findings: a violation is proven by the evidence events; a finding whose "
        "window overlaps lost events, a missing CPU or the trace's end is inconclusive. "
        f"Evidence lists the first {EVIDENCE_PER_ROW} cited events (#seq event cpu pid comm)."
    )
    why = ctx.missing("violations", "rule", "verdict", "evidence")
    sql = _sql(f"""
        WITH v AS (
          SELECT v.*, v.ts - t.ts_first AS t_rel,
                 row_number() OVER (ORDER BY v.verdict = 'violation' DESC, v.trace, v.ts,
                                  v.rule, v.pfn, v.addr, v.evidence[1]) AS n,
                 count(*) OVER () AS total
          FROM violations v JOIN traces t ON t.trace = v.trace
          WHERE {ctx.scope("v")}
          QUALIFY n <= {VIOLATION_ROWS}
        ),
        cited AS (
          SELECT n, trace, unnest(evidence[1:{EVIDENCE_PER_ROW}]) AS seq FROM v
        ),
        ev AS (
          SELECT c.n, string_agg(format('#{{}} {{}} cpu{{}} pid {{}} {{}}', e.seq, e.event,
                                        e.cpu, e.pid, e.comm), chr(10) ORDER BY e.seq)
                   AS evidence_events
          FROM cited c JOIN events e ON e.trace = c.trace AND e.seq = c.seq
          WHERE {ctx.scope("e")}
          GROUP BY c.n
        )
        SELECT v.n, v.total, v.trace, v.host, v.rule, v.verdict, v.t_rel / 1e9 AS t_s,
               v.pid, v.pfn, v.addr, v.mm, v.explanation, len(v.evidence) AS n_evidence,
               ev.evidence_events
        FROM v LEFT JOIN ev ON ev.n = v.n
        ORDER BY v.n
    """)
    if why:
        return _empty("violations", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty(
            "violations", title, sql, "No findings: every migration entry was accounted for.", desc
        )
    total = int(df["total"][0])
    nv = int((df["verdict"] == "violation").sum())
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
    note = f"{nv:,} violations among the {df.height:,} findings listed"
    note += f" (of {total:,}; the first {VIOLATION_ROWS} shown)." if total > df.height else "."
    return Panel(
        "violations", title, sql, df, table_html=table(df, cols), description=desc, note=note
    )


def page_drilldown_panel(ctx: Ctx) -> Panel:
    """State timeline of every mapping of the pages named in findings."""
    title = "Pages in findings: state of each mapping over time"
    desc = (
        "For each page (pfn, address) named by a finding: the state over time of every "
        "mapping of it, from replay's page_states (orange: a migration entry for the old "
        "page; green: a present pte for the new page), including the other side of the "
        "same migration. Without probe events the owner mm is unknown, so the mappings of "
        "one address are told apart by their order in the migration walk (pte #1, #2, ...). "
        "Crosses mark the findings, on the mapping their evidence names. A state with no "
        "end runs to the end of the trace."
    )
    why = ctx.missing("violations", "pfn", "addr", "evidence") or ctx.missing(
        "page_states", "state", "ts_start", "seq_start", "seq_end", "migration_id"
    )
    sql = _sql(f"""
        WITH pages AS (
          SELECT DISTINCT trace, pfn, addr FROM violations
          WHERE {ctx.scope()} AND (pfn IS NOT NULL OR addr IS NOT NULL)
          ORDER BY trace, pfn, addr
          LIMIT {DRILL_PAGES}
        ),
        hit AS (
          SELECT s.* FROM page_states s JOIN pages p ON s.trace = p.trace
            AND (p.pfn IS NULL OR s.pfn = p.pfn) AND (p.addr IS NULL OR s.addr = p.addr)
          WHERE {ctx.scope("s")}
        ),
        st AS (
          SELECT s.* FROM page_states s
            JOIN (SELECT DISTINCT trace, migration_id FROM hit
                  WHERE migration_id IS NOT NULL) h
              ON h.trace = s.trace AND h.migration_id = s.migration_id
          WHERE {ctx.scope("s")}
          UNION
          SELECT * FROM hit
        ),
        ranked AS (
          SELECT st.*, CASE WHEN st.state = 'migration-entry' THEN row_number() OVER (
                   PARTITION BY st.trace, st.addr, st.mm, st.migration_id, st.state
                   ORDER BY st.seq_start) END AS k
          FROM st
        ),
        mapped AS (
          SELECT r.*, coalesce(r.k, e.k) AS mapping
          FROM ranked r LEFT JOIN ranked e
            ON r.state = 'present' AND e.state = 'migration-entry'
           AND e.trace = r.trace AND e.seq_end = r.seq_start
        )
        SELECT m.trace, m.host, m.addr, m.mm, m.mapping, m.pfn, m.state, m.migration_id,
               (m.ts_start - t.ts_first) / 1e9 AS start_s,
               (coalesce(m.ts_end, t.ts_last) - t.ts_first) / 1e9 AS end_s,
               m.ts_end IS NULL AS open_ended, NULL AS rule, NULL AS verdict
        FROM mapped m JOIN traces t ON t.trace = m.trace
        WHERE m.mapping IS NULL OR m.mapping <= {DRILL_MAPPINGS}
        UNION ALL
        SELECT v.trace, v.host, v.addr, v.mm, e.k, v.pfn, 'finding', e.migration_id,
               (v.ts - t.ts_first) / 1e9, (v.ts - t.ts_first) / 1e9, false, v.rule, v.verdict
        FROM violations v
          JOIN pages p ON v.trace = p.trace
           AND v.pfn IS NOT DISTINCT FROM p.pfn AND v.addr IS NOT DISTINCT FROM p.addr
          JOIN traces t ON t.trace = v.trace
          LEFT JOIN ranked e ON e.trace = v.trace AND e.state = 'migration-entry'
           AND e.seq_start = v.evidence[1]
        ORDER BY trace, addr, mm, mapping, start_s, state, pfn
    """)
    if why:
        return _empty("page_drilldown", title, sql, why, desc)
    df = ctx.run(sql)
    if df.is_empty():
        return _empty("page_drilldown", title, sql, "No findings name a page.", desc)
    d = _esc_frame(df)

    def label(r: dict) -> str:
        text = "addr ?" if r["addr"] is None else f"addr 0x{r['addr']:x}"
        if r["mm"] is not None:
            text += f" mm 0x{r['mm']:x}"
        if r["mapping"] is not None and r["mm"] is None:
            text += f" pte #{r['mapping']}"
        return _row_label(ctx.multi, r["host"], r["trace"], text)

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
    pages = df.filter(pl.col("state") == "finding").select("trace", "pfn", "addr").n_unique()
    note = f"{pages} page(s) drawn" + (
        f" (at most {DRILL_PAGES})." if pages >= DRILL_PAGES else "."
    )
    return Panel("page_drilldown", title, sql, df, figure=fig, description=desc, note=note)


#: The report's sections and the panel functions in each, in order.
SECTIONS: list[tuple[str, str, list]] = [
    ("summary", "Traces", [traces_panel, overview_panel]),
    (
        "ingest",
        "Ingest health",
        [event_counts_panel, cpu_activity_panel, gaps_panel, ingest_errors_panel],
    ),
    (
        "migrations",
        "Migrations",
        [
            migration_timeline_panel,
            latency_histogram_panel,
            latency_percentiles_panel,
            migration_rate_panel,
        ],
    ),
    ("forks", "Forks", [forks_panel]),
    ("findings", "Findings", [violations_panel, page_drilldown_panel]),
]
