"""Named SQL for the common questions (``rmapscope query NAME``).

Each query is plain SQL over the views of :func:`rmapscope.analysis.connect`, with
``$name`` parameters bound by the engine (never pasted into the text). ``trace`` is optional
everywhere: NULL means every trace, and several ids may be given separated by commas. The
canned queries (:data:`CANNED`) are in the subset of SQL that DuckDB and Spark SQL read alike
(``percentile_cont ... WITHIN GROUP``, ``cardinality``, no ``//``, explicit ``NULLS LAST``
and an order that leaves no ties, as the engines break ties differently), so
:mod:`rmapscope.analysis.spark` runs the same queries; the tests compare both engines.
:data:`QUERIES` adds the report's chart queries (:mod:`rmapscope.analysis.charts`, DuckDB
only) to them: every chart of ``rmapscope report`` is one of these, run by name.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from rmapscope.errors import MissingTablesError, UsageError

from ._query import CannedQuery, bind_params, dedent, trace_filter
from .charts import CHARTS

if TYPE_CHECKING:
    import duckdb

__all__ = ["CANNED", "QUERIES", "CannedQuery", "bind_params", "run_canned"]

_TRACE = trace_filter()

#: The canned queries (their SQL read as written, without Python's indentation).
CANNED: dict[str, CannedQuery] = {
    q.name: dataclasses.replace(q, sql=dedent(q.sql))
    for q in [
        CannedQuery(
            "migrations-by-reason",
            "Folio migrations by reason, mode and outcome (replay's migrations table).",
            f"""SELECT reason, mode, outcome, count(*) AS migrations, sum(n_set) AS ptes
                FROM migrations WHERE {_TRACE}
                GROUP BY ALL
                ORDER BY migrations DESC, reason NULLS LAST, mode NULLS LAST, outcome""",
            {"trace": None},
            ("migrations",),
        ),
        CannedQuery(
            "migration-latency",
            "Time from first set to last remove of each migrated folio, percentiles by reason.",
            f"""SELECT reason, count(*) AS migrations,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY lat) / 1e3 AS p50_us,
                       percentile_cont(0.9) WITHIN GROUP (ORDER BY lat) / 1e3 AS p90_us,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY lat) / 1e3 AS p99_us,
                       max(lat) / 1e3 AS max_us,
                       count(*) FILTER (WHERE outcome = 'restored') AS restored,
                       avg(lat) / 1e3 AS mean_us
                FROM (SELECT reason, outcome, t_last_remove - t_first_set AS lat
                      FROM migrations
                      WHERE outcome IN ('migrated', 'restored') AND {_TRACE})
                GROUP BY reason ORDER BY migrations DESC, reason NULLS LAST""",
            {"trace": None},
            ("migrations",),
        ),
        CannedQuery(
            "forks-during-migrations",
            "Forks whose window overlapped the set->remove window of a migration.",
            f"""SELECT trace, fork_id, parent_pid, parent_comm, child_pid, ts_start, ts_end,
                       cardinality(overlapping_migrations) AS overlapping
                FROM fork_windows WHERE cardinality(overlapping_migrations) > 0 AND {_TRACE}
                ORDER BY overlapping DESC, ts_start, trace, fork_id""",
            {"trace": None},
            ("fork_windows",),
        ),
        CannedQuery(
            "leaked-entries",
            "Migration entries never removed (violations and inconclusive findings).",
            f"""SELECT trace, verdict, ts, '0x' || lower(hex(CAST(pfn AS BIGINT))) AS pfn,
                       '0x' || lower(hex(CAST(addr AS BIGINT))) AS addr, pid, explanation
                FROM violations WHERE rule = 'leaked-entry' AND {_TRACE}
                ORDER BY verdict DESC, ts, trace, pfn, addr, explanation""",
            {"trace": None},
            ("violations",),
        ),
        CannedQuery(
            "violations",
            "Every finding of replay, by rule and verdict.",
            f"""SELECT rule, verdict, count(*) AS findings, min(ts) AS first_ts
                FROM violations WHERE {_TRACE}
                GROUP BY ALL ORDER BY findings DESC, rule, verdict""",
            {"trace": None},
            ("violations",),
        ),
        CannedQuery(
            "top-forkers",
            "Processes that forked most (clone without CLONE_VM copies page tables).",
            f"""SELECT parent_pid, min(parent_comm) AS comm, count(*) AS forks,
                       count(*) FILTER (WHERE NOT shares_vm) AS forks_copying_mm
                FROM fork_windows WHERE {_TRACE}
                GROUP BY parent_pid ORDER BY forks DESC, parent_pid LIMIT $limit""",
            {"trace": None, "limit": 20},
            ("fork_windows",),
        ),
        CannedQuery(
            "lost-events-per-cpu",
            "Lost, dropped and overwritten events per trace and CPU.",
            f"""SELECT trace, cpu, kind, count(*) AS markers, sum(count) AS events_lost
                FROM gaps WHERE {_TRACE} GROUP BY ALL ORDER BY trace, cpu NULLS LAST, kind""",
            {"trace": None},
            ("gaps",),
        ),
        CannedQuery(
            "events-per-second",
            "Events per second of trace time, per event name.",
            f"""SELECT trace, CAST((ts - ts % 1000000000) / 1000000000 AS BIGINT) AS second,
                       event, count(*) AS events
                FROM events WHERE {_TRACE}
                GROUP BY ALL ORDER BY trace, second, events DESC, event""",
            {"trace": None},
            (),
        ),
    ]
}


#: Every named query: the canned ones and the report's chart queries.
QUERIES: dict[str, CannedQuery] = {**CANNED, **CHARTS}


def run_canned(
    con: duckdb.DuckDBPyConnection, name: str, params: dict[str, str] | None = None
) -> duckdb.DuckDBPyRelation:
    """Run a named query with ``params`` (strings, converted to the default's type)."""
    q = QUERIES.get(name)
    if q is None:
        raise UsageError(f"no canned query {name!r}; see `rmapscope query list`")
    values = bind_params(q, params)
    existing = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    missing = [t for t in q.needs if t not in existing]
    if missing:
        raise MissingTablesError(f"query {name}", missing)
    return con.sql(q.sql, params=values)
