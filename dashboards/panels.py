"""The report's panels: each runs one named query and hands its rows to a figure function.

Every panel function takes a :class:`Ctx` (a DuckDB connection from
:func:`rmapscope.analysis.connect` and the traces in scope) and returns a :class:`Panel`
with the SQL it ran, the resulting polars frame, and a plotly figure or an HTML table.
The SQL is a named query of :mod:`rmapscope.analysis` (the report's chart queries in
:mod:`rmapscope.analysis.charts`, and the ``migration-latency`` canned query) with its
parameters bound, so ``rmapscope query NAME -p trace=ID`` gives the rows of any chart; the
drawing is in :mod:`rmapscope.dashboards.figures`, which runs no SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import polars as pl

from rmapscope.analysis import QUERIES, bind_params, bound_sql, invocation

# The limits of the chart queries, bound by the panels from here (so a caller can change them).
from rmapscope.analysis.charts import (
    DRILL_MAPPINGS,
    DRILL_PAGES,
    EVIDENCE_PER_ROW,
    FORK_CAP,
    FORK_TOTAL_CAP,
    GAP_ROWS,
    HEATMAP_CELLS,
    TIMELINE_ROW_CAP,
    TIMELINE_TOTAL_CAP,
    VIOLATION_ROWS,
)
from rmapscope.kernels import as_counts, migration_pte_note

from . import figures
from ._panel import Panel

__all__ = [
    "DRILL_MAPPINGS",
    "DRILL_PAGES",
    "EVIDENCE_PER_ROW",
    "FORK_CAP",
    "FORK_TOTAL_CAP",
    "GAP_ROWS",
    "HEATMAP_CELLS",
    "SECTIONS",
    "TIMELINE_ROW_CAP",
    "TIMELINE_TOTAL_CAP",
    "VIOLATION_ROWS",
    "Ctx",
    "Panel",
]

REPLAY_HINT = "run `rmapscope replay --all` to make the replay tables"
#: The overview's migration counts, left blank for a trace whose migrations were not measured.
UNMEASURED_COUNTS = ("migrations", "migrated", "restored", "leaked", "inconclusive")


@dataclass
class Ctx:
    """What every panel needs: the connection, the traces in scope, their manifest rows."""

    con: duckdb.DuckDBPyConnection
    trace_ids: list[str] | None
    traces: pl.DataFrame  # manifest rows in scope: trace_id, host, ts_first, ts_last, cpus
    _columns: dict[str, set[str]] = field(default_factory=dict)

    def sql(self, name: str, **params: object) -> str:
        """Named query ``name`` scoped to the traces in scope, with ``params``, bound: the
        text the panel runs and shows, headed by the ``rmapscope query`` line that gives the
        same rows."""
        q = QUERIES[name]
        trace = None if self.trace_ids is None else ",".join(self.trace_ids)
        values = bind_params(q, {"trace": trace, **params})
        return f"-- {invocation(q, values)}\n{bound_sql(q, values)}"

    def columns(self, view: str) -> set[str]:
        """The columns of ``view`` (none when the dataset has no such table)."""
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
        """The rows of ``sql`` as a polars frame."""
        return self.con.sql(sql).pl()

    def unmeasured(self) -> dict[str, str]:
        """Per trace in scope whose migrations were not measured, why (its kernel has no
        migration-entry tracepoints, or the trace none of their events)."""
        if not {"kernel", "event_counts"} <= set(self.traces.columns):
            return {}
        rows = self.traces.select("trace_id", "kernel", "event_counts").rows()
        notes = {t: migration_pte_note(k, as_counts(c)) for t, k, c in rows}
        return {t: n for t, n in notes.items() if n}

    def all_unmeasured(self, empty: str) -> str:
        """``empty``, or why no trace in scope measured migrations when none did."""
        notes = self.unmeasured()
        if not notes or len(notes) < self.traces.height:
            return empty
        return "Not measured: " + "; ".join(sorted(set(notes.values()))) + "."

    @property
    def multi(self) -> bool:
        """Whether the report covers several traces (rows then name host and trace)."""
        return self.traces.height > 1


def _panel(
    ctx: Ctx,
    pid: str,
    title: str,
    description: str,
    sql: str,
    why: str,
    empty: str,
    draw: Callable[[pl.DataFrame], Panel],
) -> Panel:
    """Run ``sql`` unless ``why`` (then an empty panel saying why), and ``draw`` the rows;
    no rows: an empty panel saying ``empty``."""
    if why:
        return Panel(pid, title, sql, None, description=description, empty=why)
    df = ctx.run(sql)
    if df.is_empty():
        return Panel(pid, title, sql, None, description=description, empty=empty)
    return draw(df)


# --------------------------------------------------------------------------- header
def traces_panel(ctx: Ctx) -> Panel:
    """The traces in the report: hosts, kernels, time ranges, hashes, tool versions."""
    sql = ctx.sql("report-traces")
    df = ctx.run(sql)
    return Panel(
        "traces",
        "Traces",
        sql,
        df,
        table_html=figures.traces_table(df),
        description="Each trace in this report, from the dataset's traces manifest: the "
        "input's sha256 identifies it (the trace id is its first 16 hex digits).",
    )


def overview_panel(ctx: Ctx) -> Panel:
    """Per trace: events, losses, migrations by outcome, forks in windows, findings."""
    replayed = not (
        ctx.missing("migrations", "outcome")
        or ctx.missing("fork_windows", "fork_id", "n_overlapping")
        or ctx.missing("violations", "verdict")
    )
    sql = ctx.sql("report-overview" if replayed else "report-overview-ingest")
    df = ctx.run(sql)
    notes = ctx.unmeasured()
    note = "" if replayed else f"No replay tables yet: {REPLAY_HINT}."
    if notes and "trace" in df.columns:  # no counts shown as if measured
        blank = [c for c in UNMEASURED_COUNTS if c in df.columns]
        df = df.with_columns(
            pl.when(pl.col("trace").is_in(list(notes))).then(None).otherwise(pl.col(c)).alias(c)
            for c in blank
        )
        said = "; ".join(f"trace {t}: {n}" for t, n in sorted(notes.items()))
        note = f"{note} Migrations not measured ({said})".strip()
    return Panel(
        "overview",
        "At a glance",
        sql,
        df,
        table_html=figures.overview_table(df),
        kpis=figures.overview_kpis(df),
        note=note,
        description="Events and losses from ingest; folio migrations by outcome, forks "
        "whose copy window overlapped a migration, and findings from replay.",
    )


# --------------------------------------------------------------------------- ingest health
def event_counts_panel(ctx: Ctx) -> Panel:
    """Events per event type and trace (from the manifest's exact counts)."""
    title = "Events per type"
    desc = "How many events of each type every trace holds (log scale)."
    sql = ctx.sql("report-event-counts")

    def draw(df: pl.DataFrame) -> Panel:
        fig = figures.event_counts_figure(df, ctx.traces.height)
        return Panel("event_counts", title, sql, df, figure=fig, description=desc)

    return _panel(ctx, "event_counts", title, desc, sql, "", "No events.", draw)


def cpu_activity_panel(ctx: Ctx) -> Panel:
    """Events per CPU over time: dark stripes are where a CPU recorded nothing (or lost)."""
    title = "Events per CPU over time"
    sql = ctx.sql("report-cpu-activity", cells=HEATMAP_CELLS)
    desc = (
        "Events recorded per CPU in {} buckets. A CPU row that goes dark "
        "while others are busy is a CPU whose events were lost or not captured."
    )

    def draw(df: pl.DataFrame) -> Panel:
        text = desc.format(figures.fmt_duration(int(df["bucket_ns"][0])))
        fig = figures.cpu_activity_figure(df, ctx.traces)
        return Panel("cpu_activity", title, sql, df, figure=fig, description=text)

    return _panel(ctx, "cpu_activity", title, desc.format("time"), sql, "", "No events.", draw)


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
    sql = ctx.sql("report-gaps", limit=GAP_ROWS)

    def draw(df: pl.DataFrame) -> Panel:
        note = f"Only the first {GAP_ROWS:,} windows are drawn." if df.height >= GAP_ROWS else ""
        fig = figures.gaps_figure(df, ctx.multi)
        return Panel("gaps", title, sql, df, figure=fig, description=desc, note=note)

    why = "No lost events recorded." if why else ""
    empty = "No lost events: every CPU's buffer kept up."
    return _panel(ctx, "gaps", title, desc, sql, why, empty, draw)


def ingest_errors_panel(ctx: Ctx) -> Panel:
    """Lines ingest rejected, per reason, with sample lines."""
    title = "Ingest errors"
    desc = "Input lines ingest could not parse, counted per reason, with up to 5 samples."
    sql = ctx.sql("report-ingest-errors")
    why = "No ingest errors." if ctx.missing("ingest_errors", "reason", "samples") else ""

    def draw(df: pl.DataFrame) -> Panel:
        html = figures.ingest_errors_table(df)
        return Panel("ingest_errors", title, sql, df, table_html=html, description=desc)

    empty = "No ingest errors: every line parsed."
    return _panel(ctx, "ingest_errors", title, desc, sql, why, empty, draw)


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
    why = ctx.missing("migrations", "t_first_set", "outcome", "cpu") or ctx.missing(
        "fork_windows", "fork_id", "ts_end", "cpu", "n_overlapping"
    )
    sql = ctx.sql(
        "report-migration-timeline", row_cap=TIMELINE_ROW_CAP, total_cap=TIMELINE_TOTAL_CAP
    )

    def draw(df: pl.DataFrame) -> Panel:
        fig = figures.migration_timeline_figure(df, ctx.multi)
        note = ""
        merged = df.filter(pl.col("n") > 1)
        if merged.height:
            note = (
                f"{int(merged['n'].sum()):,} items were merged into {merged.height:,} bars "
                "(rows over the cap)."
            )
        return Panel("migration_timeline", title, sql, df, figure=fig, description=desc, note=note)

    empty = ctx.all_unmeasured("No migrations and no forks.")
    return _panel(ctx, "migration_timeline", title, desc, sql, why, empty, draw)


def latency_histogram_panel(ctx: Ctx) -> Panel:
    """Distribution of migration latency (first set to last remove), by reason."""
    title = "Migration latency distribution"
    desc = (
        "Time from a folio's first migration entry to its last remove (completed "
        "migrations, migrated or restored), in tenth-of-a-decade bins on a log axis."
    )
    why = ctx.missing("migrations", "t_first_set", "t_last_remove", "reason", "outcome")
    sql = ctx.sql("report-latency-histogram")

    def draw(df: pl.DataFrame) -> Panel:
        fig = figures.latency_histogram_figure(df)
        return Panel("latency_hist", title, sql, df, figure=fig, description=desc)

    empty = ctx.all_unmeasured("No completed migrations.")
    return _panel(ctx, "latency_hist", title, desc, sql, why, empty, draw)


def latency_percentiles_panel(ctx: Ctx) -> Panel:
    """Latency percentiles by reason: the ``migration-latency`` canned query, scoped."""
    title = "Migration latency percentiles by reason"
    desc = "Percentiles of the first-set-to-last-remove time of completed folio migrations."
    why = ctx.missing("migrations", "t_first_set", "t_last_remove", "reason", "outcome")
    sql = ctx.sql("migration-latency")

    def draw(df: pl.DataFrame) -> Panel:
        html = figures.latency_table(df)
        return Panel("latency_pct", title, sql, df, table_html=html, description=desc)

    empty = ctx.all_unmeasured("No completed migrations.")
    return _panel(ctx, "latency_pct", title, desc, sql, why, empty, draw)


def migration_rate_panel(ctx: Ctx) -> Panel:
    """Migrations per second over time, stacked by reason and outcome (one row per trace)."""
    title = "Migrations per second by reason and outcome"
    why = ctx.missing("migrations", "t_first_set", "reason", "outcome")
    desc = (
        "Folio migrations started per second, stacked by reason and outcome, in time "
        "buckets of about 1/150 of each trace's span (the bucket is in the hover)."
    )
    sql = ctx.sql("report-migration-rate")

    def draw(df: pl.DataFrame) -> Panel:
        fig = figures.migration_rate_figure(df, ctx.traces)
        return Panel("migration_rate", title, sql, df, figure=fig, description=desc)

    empty = ctx.all_unmeasured("No migrations.")
    return _panel(ctx, "migration_rate", title, desc, sql, why, empty, draw)


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
    why = ctx.missing(
        "fork_windows", "fork_id", "ts_start", "ts_end", "parent_comm", "n_overlapping"
    )
    sql = ctx.sql("report-forks", cap=FORK_CAP, total_cap=FORK_TOTAL_CAP)

    def draw(df: pl.DataFrame) -> Panel:
        fig = figures.forks_figure(df, ctx.multi)
        n_in = int(df.filter(pl.col("kind") == "during a migration window")["forks"].sum())
        note = f"{n_in:,} of {int(df['forks'].sum()):,} forks overlapped a migration window."
        return Panel("forks", title, sql, df, figure=fig, description=desc, note=note)

    return _panel(ctx, "forks", title, desc, sql, why, "No forks in these traces.", draw)


# --------------------------------------------------------------------------- findings
def violations_panel(ctx: Ctx) -> Panel:
    """Every finding of replay, violations first, with its evidence events."""
    title = "Violations and inconclusive findings"
    desc = (
        "Replay's findings: a violation is proven by the evidence events; a finding whose "
        "window overlaps lost events, a missing CPU or the trace's end is inconclusive; a "
        "hazard is a window in which a race no tracepoint shows was possible (an mremap or a "
        "huge page collapse during a migration), never counted as a violation "
        "(`rmapscope explain RULE` tells what each rule means). "
        f"Evidence lists the first {EVIDENCE_PER_ROW} cited events (#seq event cpu pid comm)."
    )
    why = ctx.missing("violations", "rule", "verdict", "evidence")
    sql = ctx.sql("report-findings", rows=VIOLATION_ROWS, evidence=EVIDENCE_PER_ROW)

    def draw(df: pl.DataFrame) -> Panel:
        total = int(df["total"][0])
        nv = int((df["verdict"] == "violation").sum())
        nh = int((df["verdict"] == "hazard").sum())
        note = f"{nv:,} violations" + (f", {nh:,} hazards" if nh else "")
        note += f" among the {df.height:,} findings listed"
        note += f" (of {total:,}; the first {VIOLATION_ROWS} shown)." if total > df.height else "."
        html = figures.violations_table(df)
        return Panel("violations", title, sql, df, table_html=html, description=desc, note=note)

    empty = "No findings: every migration entry was accounted for."
    return _panel(ctx, "violations", title, desc, sql, why, empty, draw)


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
    sql = ctx.sql("report-page-states", pages=DRILL_PAGES, mappings=DRILL_MAPPINGS)

    def draw(df: pl.DataFrame) -> Panel:
        fig = figures.page_states_figure(df, ctx.multi)
        pages = df.filter(pl.col("state") == "finding").select("trace", "pfn", "addr").n_unique()
        note = f"{pages} page(s) drawn" + (
            f" (at most {DRILL_PAGES})." if pages >= DRILL_PAGES else "."
        )
        return Panel("page_drilldown", title, sql, df, figure=fig, description=desc, note=note)

    return _panel(ctx, "page_drilldown", title, desc, sql, why, "No findings name a page.", draw)


#: The report's sections and the panel functions in each, in order.
SECTIONS: list[tuple[str, str, list[Callable[[Ctx], Panel]]]] = [
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
