"""What a replay found, per trace: the counts ``rmapscope replay`` and ``analyze`` print.

>>> import polars as pl
>>> tables = {
...     "migrations": pl.DataFrame({"outcome": ["migrated", "leaked", "migrated"]}),
...     "migration_batches": pl.DataFrame({"mode": ["a", "b"]}),
...     "fork_windows": pl.DataFrame({"ts_start": [1]}),
...     "violations": pl.DataFrame(
...         {"verdict": ["violation", "inconclusive"], "rule": ["r", "r"], "explanation": ["", ""]}
...     ),
... }
>>> s = summarize({"t1": tables})[0]
>>> s.outcomes, s.batches, s.forks, s.violations, s.inconclusive
({'leaked': 1, 'migrated': 2}, 2, 1, 1, 1)
>>> old = pl.DataFrame({"trace_id": ["t1"], "kernel": ["5.15.0"], "event_counts": [[]]})
>>> summarize({"t1": tables}, old)[0].unmeasured[:46]
'no migration-entry tracepoints on this kernel '
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from rmapscope.kernels import as_counts, migration_pte_note

__all__ = ["ALL_FINDINGS_SQL", "TraceFindings", "summarize"]

#: The query that lists every finding of every trace.
ALL_FINDINGS_SQL = "SELECT * FROM violations"


@dataclass
class TraceFindings:
    """The findings of one trace's replay."""

    trace_id: str
    #: migration batches (``mm_migrate_pages_start`` .. ``mm_migrate_pages``)
    batches: int
    #: folio migration attempts per outcome (``migrated``, ``leaked``...), by outcome name
    outcomes: dict[str, int]
    #: forks and clones (rows of ``fork_windows``)
    forks: int
    violations: int
    inconclusive: int
    #: the rows of ``violations`` (every verdict), in the table's order
    findings: pl.DataFrame
    #: why the migration counts are not measured ('' when they are): the kernel has no
    #: migration-entry tracepoints, or the trace holds none of their events
    unmeasured: str = ""
    #: windows where a race no tracepoint shows was possible (verdict ``hazard``)
    hazards: int = 0


def summarize(
    results: dict[str, dict[str, pl.DataFrame]], manifest: pl.DataFrame | None = None
) -> list[TraceFindings]:
    """The findings of each trace of ``results`` (replay tables per trace id, as
    :func:`rmapscope.replay.replay` returns them), in the order of ``results``; with the
    ``manifest`` (the traces table: ``kernel``, ``event_counts``), each says when its
    migrations were not measured (:func:`rmapscope.kernels.migration_pte_note`)."""
    notes = {}
    if manifest is not None and {"kernel", "event_counts"} <= set(manifest.columns):
        for tid, kernel, counts in manifest.select("trace_id", "kernel", "event_counts").rows():
            notes[tid] = migration_pte_note(kernel, as_counts(counts))
    out = []
    for trace_id, tables in results.items():
        m, v = tables["migrations"], tables["violations"]
        counts = m.group_by("outcome").len().filter(pl.col("outcome").is_not_null())
        outcomes = dict(sorted((o, n) for o, n in counts.iter_rows() if o))
        n_viol = v.filter(pl.col("verdict") == "violation").height
        n_hazard = v.filter(pl.col("verdict") == "hazard").height
        out.append(
            TraceFindings(
                trace_id=trace_id,
                batches=tables["migration_batches"].height,
                outcomes=outcomes,
                forks=tables["fork_windows"].height,
                violations=n_viol,
                inconclusive=v.filter(pl.col("verdict") == "inconclusive").height,
                findings=v,
                unmeasured=notes.get(trace_id, ""),
                hazards=n_hazard,
            )
        )
    return out
