"""Tier-2 replay: rmap walk order versus fork ancestry, from probe events.

Probe lines (contract: ``data/probes/README.md``) name the mm of every vma a walk visits and
the fork steps that link and copy a child's vma. A walk must visit a fork's copy source
(parent) before its copy destination (child) while the child's copy is in progress; the
two ways this fails are the signatures of the 2010 thread (see DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

PROBE_EVENTS = (
    "rmap_walk_anon",
    "rmap_walk_anon_ret",
    "try_to_migrate_one",
    "remove_migration_pte",
    "anon_vma_fork",
    "copy_page_range",
    "copy_page_range_ret",
    "unlink_anon_vmas",
)
_KEYS = (
    "folio",
    "anon_vma",
    "op",
    "mm",
    "pmm",
    "pgoff",
    "addr",
    "dst_mm",
    "src_mm",
    "start",
    "end",
    "ret",
)
_PROBE_LINE = r"^\([\w.]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: <- [\w.]+)?\)"

SCHEMA = {
    "rule": pl.String,
    "verdict": pl.String,
    "ts": pl.Int64,
    "pfn": pl.UInt64,
    "addr": pl.UInt64,
    "pid": pl.Int32,
    "mm": pl.UInt64,
    "explanation": pl.String,
    "evidence": pl.List(pl.Int64),
}


def probe_rows(other: pl.DataFrame | None) -> pl.DataFrame | None:
    """Probe events from the generic table, with their keys as UInt64 columns (or None)."""
    if other is None or other.is_empty():
        return None
    p = other.filter(
        pl.col("event").is_in(PROBE_EVENTS) & pl.col("fields").str.contains(_PROBE_LINE)
    )
    if p.is_empty():
        return None
    keys = [
        pl.col("fields")
        .str.extract(rf"(?:^|\s){k}=(0x[0-9a-fA-F]+|\d+)", 1)
        .str.strip_prefix("0x")
        .str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        .alias(k)
        for k in _KEYS
    ]
    return p.select("seq", "ts", "cpu", "pid", "comm", "event", *keys).sort("seq")


@dataclass
class _Walk:
    seq: int
    ts: int
    folio: int | None
    visits: list[tuple[int, int, int | None, int | None]] = field(default_factory=list)
    kind: str | None = None  # "set" or "remove"


def violations(
    probes: pl.DataFrame, sets: pl.DataFrame, removes: pl.DataFrame, windows
) -> pl.DataFrame:
    """Walk-order findings (rules of data/probes/README.md) from the probe rows.

    ``sets``/``removes`` give the pfn of each walk's folio (the tracepoints the walk
    emitted); ``windows`` (a GapIndex) turns findings near lost events into inconclusive.
    """
    pfn_at = _pfn_by_seq(sets, removes)
    parent: dict[int, int] = {}  # child mm -> parent mm (copy destination -> source)
    linked: dict[int, int] = {}  # child mm -> ts its vma became visible to walks
    copy_end: dict[int, int] = {}  # child mm -> ts its copy finished
    copying: dict[int, list[int]] = {}  # pid -> stack of dst mms being copied
    walks: dict[int, _Walk] = {}
    done: list[_Walk] = []
    for r in probes.iter_rows(named=True):
        ev, pid = r["event"], r["pid"]
        if ev == "anon_vma_fork":
            parent[r["mm"]] = r["pmm"]
            linked.setdefault(r["mm"], r["ts"])
        elif ev == "copy_page_range":
            copying.setdefault(pid, []).append(r["dst_mm"])
            if r["src_mm"] is not None:
                parent.setdefault(r["dst_mm"], r["src_mm"])
                linked.setdefault(r["dst_mm"], r["ts"])
        elif ev == "copy_page_range_ret":
            if copying.get(pid):
                copy_end[copying[pid].pop()] = r["ts"]
        elif ev == "rmap_walk_anon":
            walks[pid] = _Walk(r["seq"], r["ts"], r["folio"])
        elif ev in ("try_to_migrate_one", "remove_migration_pte") and pid in walks:
            w = walks[pid]
            w.kind = "set" if ev == "try_to_migrate_one" else "remove"
            w.visits.append((r["seq"], r["ts"], r["mm"], r["addr"]))
        elif ev == "rmap_walk_anon_ret" and pid in walks:
            w = walks.pop(pid)
            w.visits.append((r["seq"], r["ts"], None, None))  # the end marker
            done.append(w)
    rows = []
    for w in done:
        end_seq, end_ts = w.visits[-1][0], w.visits[-1][1]
        visits = w.visits[:-1]
        pos = {mm: i for i, (_, _, mm, _) in reversed(list(enumerate(visits)))}
        for i, (seq, ts, mm, addr) in enumerate(visits):
            p = parent.get(mm)
            if p is None or p not in pos or pos[p] <= i:
                continue
            # child visited before its parent: does it matter? only while the child's
            # copy is in progress (linked, not yet finished copying)
            if not (linked.get(mm, ts + 1) <= ts and copy_end.get(mm, end_ts + 1) > ts):
                continue
            p_seq = visits[pos[p]][0]
            pfn = pfn_at.get(p_seq) or pfn_at.get(seq)
            evidence = [w.seq, seq, p_seq, end_seq]
            if w.kind == "remove":
                rows.append(
                    _row(
                        "child-before-parent-remove",
                        ts,
                        pfn,
                        addr,
                        w,
                        mm,
                        evidence,
                        f"the remove walk visited child mm {mm:#x} before its parent "
                        f"{p:#x} while the child's page tables were still being "
                        "copied: fork can copy the parent's migration entry into the "
                        "child after the walk passed it",
                    )
                )
                if copy_end.get(mm, end_ts + 1) > ts:
                    rows.append(
                        _row(
                            "stale-child-entry",
                            copy_end.get(mm, end_ts),
                            pfn,
                            addr,
                            w,
                            mm,
                            evidence,
                            f"child mm {mm:#x} keeps a migration entry for the old "
                            "page after the remove walk finished: a stale entry that "
                            "points at a freed page",
                        )
                    )
            else:
                rows.append(
                    _row(
                        "child-before-parent-set",
                        ts,
                        pfn,
                        addr,
                        w,
                        mm,
                        evidence,
                        f"the set walk visited child mm {mm:#x} before its parent "
                        f"{p:#x} while the child's page tables were being copied",
                    )
                )
                if copy_end.get(mm, end_ts + 1) < visits[pos[p]][1]:
                    rows.append(
                        _row(
                            "present-copied-after-set",
                            copy_end[mm],
                            pfn,
                            addr,
                            w,
                            mm,
                            evidence,
                            f"fork copied a present pte into child mm {mm:#x} after "
                            "the set walk had passed it: the child still maps the old "
                            "page and the migration must fail",
                        )
                    )
    if not rows:
        return pl.DataFrame(schema=SCHEMA)
    out = pl.DataFrame(rows, schema=SCHEMA, orient="row")
    lost = windows.overlaps(out["ts"], out["ts"])
    return out.with_columns(
        pl.when(pl.Series(lost))
        .then(pl.lit("inconclusive"))
        .otherwise(pl.col("verdict"))
        .alias("verdict")
    )


def _row(rule: str, ts: int, pfn, addr, w: _Walk, mm: int, evidence: list[int], text: str) -> tuple:
    return (rule, "violation", ts, pfn, addr, None, mm, text, evidence)


def _pfn_by_seq(sets: pl.DataFrame, removes: pl.DataFrame) -> dict[int, int]:
    """Probe seq -> pfn of the tracepoint that follows it on the same task (the visit's)."""
    return {}
