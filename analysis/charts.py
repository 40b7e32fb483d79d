"""The report's chart queries: one named query per chart of ``rmapscope report``.

Each is a :class:`CannedQuery` like the canned ones, run by name (``rmapscope query
report-gaps -p trace=ID`` gives the rows of the report's lost-events chart for that trace;
the report shows each chart's SQL with its parameters bound). They aggregate or downsample
in DuckDB (time buckets, at most a few thousand bars per CPU), so raw events never reach
Python and the page stays small whatever the size of the dataset. Unlike the canned queries
they use DuckDB's dialect (``//``, ``any_value``, ``QUALIFY``, list slices, ``unnest``):
they serve the report, which runs on DuckDB only.

Times are nanoseconds or seconds since the first event of each trace (traces from different
boxes have unrelated clocks). The limits below are the defaults of the queries' parameters.
"""

from __future__ import annotations

import math

from ._query import CannedQuery, dedent
from ._query import trace_filter as _t

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
#: Time buckets over each trace's span in the migration-rate chart (about).
RATE_BUCKETS = 150


def nice_bucket(ns: float) -> int:
    """The smallest 1-2-5 multiple of a power of ten (in ns) that is >= ``ns``: the rule
    :func:`nice_bucket_sql` computes in SQL.

    >>> [nice_bucket(x) for x in (0, 3, 11, 49_000_000)]
    [1, 5, 20, 50000000]
    """
    ns = max(float(ns), 1.0)
    exp = 10 ** math.floor(math.log10(ns))
    for m in (1, 2, 5, 10):
        if m * exp >= ns:
            return int(m * exp)
    return int(10 * exp)  # pragma: no cover


def nice_bucket_sql(source: str, indent: int = 12) -> str:
    """A subquery adding ``width``, :func:`nice_bucket` of column ``x``, to ``source``'s rows
    (its lines after the first indented by ``indent``, to sit in an indented query)."""
    pad = " " * indent
    return (
        "SELECT *, CAST(CASE WHEN p10 >= x THEN p10 WHEN 2 * p10 >= x THEN 2 * p10\n"
        f"{pad}             WHEN 5 * p10 >= x THEN 5 * p10 ELSE 10 * p10 END AS BIGINT) AS width\n"
        f"{pad}      FROM (SELECT *, pow(10, floor(log10(greatest(x, 1)))) AS p10 FROM {source})"
    )


def _q(
    name: str, description: str, sql: str, needs: tuple[str, ...], **params: object
) -> CannedQuery:
    return CannedQuery(name, description, dedent(sql), {"trace": None, **params}, needs)


_OVERVIEW_REPLAY = f"""
    SELECT t.trace, t.host, t.events, t.lost_events, t.errors AS rejected_lines,
           coalesce(migrations, 0) AS migrations,
           coalesce(migrated, 0) AS migrated,
           coalesce(restored, 0) AS restored,
           coalesce(leaked, 0) AS leaked,
           coalesce(inconclusive, 0) AS inconclusive,
           coalesce(forks, 0) AS forks,
           coalesce(forks_in_windows, 0) AS forks_in_windows,
           coalesce(violations, 0) AS violations,
           coalesce(inconclusive_findings, 0) AS inconclusive_findings
    FROM traces t
    LEFT JOIN (SELECT trace, count(*) AS migrations,
                      count(*) FILTER (WHERE outcome = 'migrated') AS migrated,
                      count(*) FILTER (WHERE outcome = 'restored') AS restored,
                      count(*) FILTER (WHERE outcome = 'leaked') AS leaked,
                      count(*) FILTER (WHERE outcome = 'inconclusive') AS inconclusive
               FROM migrations WHERE {_t()} GROUP BY trace) m USING (trace)
    LEFT JOIN (SELECT trace, count(*) AS forks,
                      count(*) FILTER (WHERE n_overlapping > 0) AS forks_in_windows
               FROM fork_windows WHERE {_t()} GROUP BY trace) f USING (trace)
    LEFT JOIN (SELECT trace,
                      count(*) FILTER (WHERE verdict = 'violation') AS violations,
                      count(*) FILTER (WHERE verdict = 'inconclusive') AS inconclusive_findings
               FROM violations WHERE {_t()} GROUP BY trace) v USING (trace)
    WHERE {_t("t.trace")}
    ORDER BY t.host, t.ts_first
"""

_FINDINGS = f"""
    WITH v AS (
      SELECT v.*, v.ts - t.ts_first AS t_rel,
             row_number() OVER (ORDER BY v.verdict = 'violation' DESC, v.trace, v.ts,
                              v.rule, v.pfn, v.addr, v.evidence[1]) AS n,
             count(*) OVER () AS total
      FROM violations v JOIN traces t ON t.trace = v.trace
      WHERE {_t("v.trace")}
      QUALIFY n <= $rows
    ),
    cited AS (
      SELECT n, trace, unnest(evidence[1:$evidence]) AS seq FROM v
    ),
    ev AS (
      SELECT c.n, string_agg(format('#{{}} {{}} cpu{{}} pid {{}} {{}}', e.seq, e.event,
                                    e.cpu, e.pid, e.comm), chr(10) ORDER BY e.seq)
               AS evidence_events
      FROM cited c JOIN events e ON e.trace = c.trace AND e.seq = c.seq
      WHERE {_t("e.trace")}
      GROUP BY c.n
    )
    SELECT v.n, v.total, v.trace, v.host, v.rule, v.verdict, v.t_rel / 1e9 AS t_s,
           v.pid, v.pfn, v.addr, v.mm, v.explanation, len(v.evidence) AS n_evidence,
           ev.evidence_events
    FROM v LEFT JOIN ev ON ev.n = v.n
    ORDER BY v.n
"""

_PAGE_STATES = f"""
    WITH pages AS (
      SELECT DISTINCT trace, pfn, addr FROM violations
      WHERE {_t()} AND (pfn IS NOT NULL OR addr IS NOT NULL)
      ORDER BY trace, pfn, addr
      LIMIT $pages
    ),
    hit AS (
      SELECT s.* FROM page_states s JOIN pages p ON s.trace = p.trace
        AND (p.pfn IS NULL OR s.pfn = p.pfn) AND (p.addr IS NULL OR s.addr = p.addr)
      WHERE {_t("s.trace")}
    ),
    st AS (
      SELECT s.* FROM page_states s
        JOIN (SELECT DISTINCT trace, migration_id FROM hit
              WHERE migration_id IS NOT NULL) h
          ON h.trace = s.trace AND h.migration_id = s.migration_id
      WHERE {_t("s.trace")}
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
    WHERE m.mapping IS NULL OR m.mapping <= $mappings
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
"""

CHARTS: dict[str, CannedQuery] = {
    q.name: q
    for q in [
        _q(
            "report-traces",
            "Report: the traces, with hosts, kernels, time ranges, hashes and tool versions.",
            f"""
            SELECT trace_id AS trace, host, kernel, arch, format, clock, cpus,
                   ts_first, ts_last, (ts_last - ts_first) / 1e9 AS duration_s,
                   events, lines, gaps, lost_events, errors, bytes, sha256,
                   tool_version, ingested_at, source
            FROM traces
            WHERE {_t()}
            ORDER BY host, ts_first
            """,
            ("traces",),
        ),
        _q(
            "report-overview",
            "Report: per trace, events, losses, migrations by outcome, forks, findings.",
            _OVERVIEW_REPLAY,
            ("traces", "migrations", "fork_windows", "violations"),
        ),
        _q(
            "report-overview-ingest",
            "Report: per trace, events and losses (the overview before replay).",
            f"""
            SELECT t.trace, t.host, t.events, t.lost_events, t.errors AS rejected_lines
            FROM traces t
            WHERE {_t("t.trace")}
            ORDER BY t.host, t.ts_first
            """,
            ("traces",),
        ),
        _q(
            "report-event-counts",
            "Report: events per event type and trace (the manifest's exact counts).",
            f"""
            SELECT trace, host, unnest(map_keys(event_counts)) AS event,
                   unnest(map_values(event_counts)) AS events
            FROM traces
            WHERE {_t()}
            ORDER BY event, trace
            """,
            ("traces",),
        ),
        _q(
            "report-cpu-activity",
            "Report: events per CPU per time bucket (at most `cells` cells over all CPU rows).",
            f"""
            WITH s AS (
              SELECT greatest(coalesce(max(ts_last - ts_first), 1), 1)
                       / greatest(40, least(400, $cells // coalesce(nullif(
                           sum(coalesce(cpus, 4)), 0), 1))) AS x
              FROM traces
              WHERE {_t()}
            ),
            b AS ({nice_bucket_sql("s")})
            SELECT e.trace, any_value(e.host) AS host, e.cpu,
                   (e.ts - t.ts_first) // b.width AS bucket, count(*) AS events,
                   any_value(b.width) AS bucket_ns
            FROM events e JOIN traces t ON t.trace = e.trace CROSS JOIN b
            WHERE {_t("e.trace")}
            GROUP BY e.trace, e.cpu, bucket
            ORDER BY e.trace, e.cpu, bucket
            """,
            ("traces",),
            cells=HEATMAP_CELLS,
        ),
        _q(
            "report-gaps",
            "Report: windows of lost events per CPU, in seconds since the trace's start.",
            f"""
            SELECT g.trace, g.host, g.cpu, g.kind,
                   (coalesce(g.ts_start, t.ts_first) - t.ts_first) / 1e9 AS start_s,
                   (coalesce(g.ts_end, t.ts_last) - t.ts_first) / 1e9 AS end_s,
                   g.count AS lost, g.line, g.text
            FROM gaps g JOIN traces t ON t.trace = g.trace
            WHERE {_t("g.trace")}
            ORDER BY g.trace, g.cpu, start_s, g.line
            LIMIT $limit
            """,
            ("traces", "gaps"),
            limit=GAP_ROWS,
        ),
        _q(
            "report-ingest-errors",
            "Report: lines ingest rejected, per reason, with up to 5 sample lines.",
            f"""
            SELECT trace, host, reason, count, first_line,
                   sample_lines[1:5] AS sample_lines, samples[1:5] AS samples
            FROM ingest_errors
            WHERE {_t()}
            ORDER BY count DESC, trace, reason
            """,
            ("ingest_errors",),
        ),
        _q(
            "report-migration-timeline",
            "Report: folio migration windows and forks per CPU (merged per bucket over a cap).",
            f"""
            WITH w AS (
              SELECT m.trace, m.host, m.cpu, m.outcome AS kind, m.migration_id AS id,
                     m.pid, m.comm, m.reason,
                     m.t_first_set - t.ts_first AS t0,
                     coalesce(m.t_last_remove, m.ts_end, t.ts_last) - t.ts_first AS t1
              FROM migrations m JOIN traces t ON t.trace = m.trace
              WHERE {_t("m.trace")}
              UNION ALL
              SELECT f.trace, f.host, f.cpu,
                     CASE WHEN f.n_overlapping > 0 THEN 'fork during a migration'
                          ELSE 'fork' END,
                     f.fork_id, f.parent_pid, f.parent_comm, NULL,
                     f.ts_end - t.ts_first, f.ts_end - t.ts_first
              FROM fork_windows f JOIN traces t ON t.trace = f.trace
              WHERE {_t("f.trace")}
            ),
            r AS (
              SELECT trace, cpu, count(*) AS n, min(t0) AS lo, max(t1) AS hi,
                     least($row_cap, greatest(100, $total_cap // count(*) OVER ())) AS cap
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
            """,
            ("traces", "migrations", "fork_windows"),
            row_cap=TIMELINE_ROW_CAP,
            total_cap=TIMELINE_TOTAL_CAP,
        ),
        _q(
            "report-latency-histogram",
            "Report: completed folio migrations per reason in tenth-of-a-decade latency bins.",
            f"""
            SELECT coalesce(reason, 'unknown') AS reason,
                   floor(log10(greatest(t_last_remove - t_first_set, 1) / 1e3) * 10) / 10
                     AS log10_us,
                   count(*) AS migrations
            FROM migrations
            WHERE {_t()} AND outcome IN ('migrated', 'restored')
              AND t_last_remove IS NOT NULL
            GROUP BY ALL
            ORDER BY reason, log10_us
            """,
            ("migrations",),
        ),
        _q(
            "report-migration-rate",
            "Report: folio migrations started per second by reason and outcome, per time bucket.",
            f"""
            WITH s AS (
              SELECT trace, (coalesce(ts_last, 0) - coalesce(ts_first, 0)) / $buckets AS x
              FROM traces
              WHERE {_t()}
            ),
            b AS ({nice_bucket_sql("s")})
            SELECT m.trace, any_value(m.host) AS host, coalesce(m.reason, 'unknown') AS reason,
                   m.outcome, (m.t_first_set - t.ts_first) // b.width AS bucket,
                   any_value(b.width) AS width_ns, count(*) AS migrations,
                   count(*) / (any_value(b.width) / 1e9) AS per_second
            FROM migrations m JOIN traces t ON t.trace = m.trace JOIN b ON b.trace = m.trace
            WHERE {_t("m.trace")}
            GROUP BY m.trace, reason, m.outcome, bucket
            ORDER BY m.trace, bucket, reason, m.outcome
            """,
            ("traces", "migrations"),
            buckets=RATE_BUCKETS,
        ),
        _q(
            "report-forks",
            "Report: every fork with the migrations open during its window (merged over a cap).",
            f"""
            WITH f AS (
              SELECT f.trace, f.host, f.fork_id, f.parent_pid, f.parent_comm, f.child_pid,
                     f.shares_vm, f.clone_flags, f.ts_end - t.ts_first AS t_fork,
                     f.ts_end - f.ts_start AS window_ns,
                     f.n_overlapping AS overlapping
              FROM fork_windows f JOIN traces t ON t.trace = f.trace
              WHERE {_t("f.trace")}
            ),
            r AS (SELECT trace, count(*) AS n, min(t_fork) AS lo, max(t_fork) AS hi,
                         least($cap, greatest(100, $total_cap // count(*) OVER ())) AS cap
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
            """,
            ("traces", "fork_windows"),
            cap=FORK_CAP,
            total_cap=FORK_TOTAL_CAP,
        ),
        _q(
            "report-findings",
            "Report: replay's findings, violations first, with their first evidence events.",
            _FINDINGS,
            ("traces", "violations"),
            rows=VIOLATION_ROWS,
            evidence=EVIDENCE_PER_ROW,
        ),
        _q(
            "report-page-states",
            "Report: state over time of every mapping of the pages named in findings.",
            _PAGE_STATES,
            ("traces", "violations", "page_states"),
            pages=DRILL_PAGES,
            mappings=DRILL_MAPPINGS,
        ),
    ]
}
