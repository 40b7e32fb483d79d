"""How the CLI prints what the library returns: an ingest's result, a replay's findings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._console import out, warning

if TYPE_CHECKING:  # imported when used: `rmapscope ingest` need not load replay
    from rmapscope.ingest import IngestResult
    from rmapscope.replay.findings import TraceFindings

#: Findings printed per trace; the rest are in the ``violations`` table.
SHOWN = 20


def ingest_result(r: IngestResult) -> None:
    """One line for an ingested (or skipped) file; a warning when lines were rejected,
    and the result's own warnings (no events, ptes of an arch not decoded)."""
    if r.skipped:
        out.print(
            f"{r.source}: already in the dataset as trace {r.trace_id} (use --force to replace)"
        )
        if r.host not in r.existing_hosts:
            # the id is the content's hash: the same bytes are one trace, whatever --host says
            warning(
                f"{r.source}: not added for host {r.host}: the same content is filed under "
                f"host {', '.join(r.existing_hosts)} (--force re-files it under {r.host})"
            )
        return
    verb = "replaced" if r.replaced else "ingested"
    out.print(
        f"{r.source}: {verb} trace {r.trace_id} (host {r.host}, format {r.format}): "
        f"{r.events:,} events, {r.gaps} gaps ({r.lost_events:,} events lost)"
    )
    if r.errors.total:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.counts.items()))
        warning(
            f"{r.source}: {r.errors.total} lines not ingested ({reasons}); "
            f"see the ingest_errors table"
        )
    for w in r.warnings:
        warning(w)


def findings(summaries: list[TraceFindings]) -> None:
    """A summary line per trace and its first findings."""
    from rmapscope.replay.findings import ALL_FINDINGS_SQL

    for s in summaries:
        outcomes = ", ".join(f"{n:,} {o}" for o, n in s.outcomes.items())
        if s.unmeasured and not outcomes:
            outcomes = f"not measured: {s.unmeasured}"
        out.print(
            f"trace {s.trace_id}: {s.batches:,} migration batches, "
            f"folio migrations: {outcomes or 'none'}; {s.forks:,} forks; "
            f"{s.violations} violations, {s.inconclusive} inconclusive findings"
            + (f", {s.hazards} hazards" if s.hazards else "")
        )
        for r in s.findings.head(SHOWN).iter_rows(named=True):
            out.print(f"  {r['verdict']:12} {r['rule']:26} {r['explanation']}")
        if s.findings.height > SHOWN:
            more = s.findings.height - SHOWN
            out.print(f"  ... {more} more: rmapscope sql '{ALL_FINDINGS_SQL}'")
