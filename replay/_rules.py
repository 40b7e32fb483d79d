"""Tier-1 rules with real-bug precedents, and the hazard windows (issue 13).

Each rule is a few joins and filters over tier 1's tables (the paired sets, the surplus
removes, the migrations and batches) plus the page-allocator, syscall and khugepaged
tracepoints; the meaning, precedent and fix of every rule id live in
:data:`rmapscope.replay.rulebook.RULES` (``rmapscope explain RULE``). Lost-events
discipline: a finding whose evidence window meets lost events (or a missing CPU) is
``inconclusive``, never ``violation``. Hazards (``mremap-overlaps-migration``,
``collapse-overlaps-migration``) are windows in which a race no tracepoint shows was
possible; their verdict is ``hazard`` and they never count as violations.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import polars as pl

from rmapscope.catalog import PROBE_PREFIX

from ._tier1 import GapIndex, in_interrupt, walk_of

#: Tables the rules read besides tier 1's (the engine loads them with its input events).
RULE_EVENTS = (
    "mm_page_alloc",
    "mm_compaction_isolate_freepages",
    "sys_enter_mremap",
    "sys_exit_mremap",
    "sys_enter_mprotect",
    "sys_enter_pkey_mprotect",
    "sys_enter_ioctl",
    "sys_enter_userfaultfd",
    "mm_khugepaged_scan_pmd",
    "mm_collapse_huge_page_isolate",
    "mm_collapse_huge_page",
)
#: Syscalls that may write-protect a migration entry (change_pte_range; UFFDIO_WRITEPROTECT).
PROTECTING = ("sys_enter_mprotect", "sys_enter_pkey_mprotect", "sys_enter_ioctl")

_OUT = pl.Schema(
    {
        "rule": pl.String(),
        "verdict": pl.String(),
        "ts": pl.Int64(),
        "pfn": pl.UInt64(),
        "addr": pl.UInt64(),
        "pid": pl.Int32(),
        "mm": pl.UInt64(),
        "explanation": pl.String(),
        "evidence": pl.List(pl.Int64),
    }
)


def check(
    tables: dict[str, pl.DataFrame],
    paired: pl.DataFrame,
    surplus: pl.DataFrame,
    migs: pl.DataFrame,
    batch: pl.DataFrame,
    windows: GapIndex,
) -> pl.DataFrame:
    """Every finding of the rules of this module, in the violations table's columns."""
    forks = _fork_intervals(tables)
    found = [
        _entry_rules(tables, paired, surplus, batch, forks, windows),
        _unexplained_surplus(surplus, batch, forks, windows, paired, tables),
        _count_mismatch(migs, batch, windows),
        _stale_old_pfn(tables, paired, migs, windows),
        _hazards(tables, batch),
    ]
    found = [f for f in found if f.height]
    if not found:
        return pl.DataFrame(schema=_OUT)
    return pl.concat([f.select(list(_OUT)).cast(_OUT) for f in found]).sort("ts")


# -- helpers ------------------------------------------------------------------------------


def _hex(c: str) -> pl.Expr:
    return pl.format("{}", pl.col(c).map_elements(hex, return_dtype=pl.String))


def _covered(intervals: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each window [lo, hi], whether one of ``intervals`` ((n, 2) start/end, sorted by
    start) intersects it."""
    if not len(intervals) or not len(lo):
        return np.zeros(len(lo), dtype=bool)
    starts = intervals[:, 0]
    ends = np.maximum.accumulate(intervals[:, 1])
    n = np.searchsorted(starts, hi, side="right")
    reach = np.where(n > 0, ends[np.maximum(n - 1, 0)], np.iinfo(np.int64).min)
    return (n > 0) & (reach >= lo)


def _verdict(df: pl.DataFrame, windows: GapIndex, lo: str, hi: str) -> pl.DataFrame:
    """``verdict``: violation, or inconclusive where [lo, hi] meets an untrusted span."""
    lost = windows.overlaps(df[lo], df[hi]) if df.height else []
    return df.with_columns(
        pl.Series("_lost", lost, dtype=pl.Boolean),
    ).with_columns(
        pl.when("_lost")
        .then(pl.lit("inconclusive"))
        .otherwise(pl.lit("violation"))
        .alias("verdict")
    )


def _lost_note(e: pl.Expr) -> pl.Expr:
    return pl.when("_lost").then(e + pl.lit("; but events were lost meanwhile")).otherwise(e)


def _guess_note(e: pl.Expr) -> pl.Expr:
    return _lost_note(
        pl.when("_mixed")
        .then(
            e
            + pl.lit(
                "; but other entries of that address in the batch differ, so which remove "
                "restored this entry is a guess"
            )
        )
        .otherwise(e)
    )


def _fork_intervals(tables: dict[str, pl.DataFrame]) -> np.ndarray:
    """(start, end) of every fork that copies page tables, sorted by start.

    The end is ``sched_process_fork``. The start is the parent's previous event among the
    tracepoints replay reads and the parent's events of the other tables (the clone syscall
    entry when recorded), leaving out lines printed in interrupt context (an RCU callback's
    ``sched_process_free``, a timer: they print under whichever task they interrupt, in the
    middle of its copy), the probes and the page allocator: dup_mmap allocates
    page tables, and with probes the parent's last line before task_newtask is the end of the
    last copy. Without such an event the window reaches back to the trace's start. With
    the fork probes, every page-table copy is a window too (:func:`_copy_spans`), a failed
    fork's included. A generous window only ever explains more, so the rules that use it
    stay sound.
    """
    out = pl.concat([_fork_tracepoint_spans(tables), _copy_spans(tables)]).sort("s")
    return out.to_numpy().astype(np.int64).reshape(-1, 2)


_SPANS = pl.Schema({"s": pl.Int64, "e": pl.Int64})


def _copy_spans(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(start, end) of every page-table copy the fork probes show (``copy_page_range`` to
    the task's next ``copy_page_range_ret``), whether or not the fork completed: a fork
    that fails after dup_mmap (a fatal signal, no memory) prints no ``sched_process_fork``,
    but its copies of migration entries are linked to the anon_vma until its mm is torn
    down, and the remove walk restores them."""
    start = tables.get(PROBE_PREFIX + "copy_page_range")
    if start is None or start.is_empty():
        return pl.DataFrame(schema=_SPANS)
    ret = tables.get(PROBE_PREFIX + "copy_page_range_ret")
    s = start.select(pl.col("pid").cast(pl.Int64), "seq", pl.col("ts").alias("s")).sort("seq")
    if ret is None or ret.is_empty():
        return s.select("s", pl.lit(np.iinfo(np.int64).max, pl.Int64).alias("e"))
    r = ret.select(
        pl.col("pid").cast(pl.Int64), pl.col("seq").alias("_rseq"), pl.col("ts").alias("e")
    )
    spans = s.join_asof(
        r.sort("_rseq"),
        left_on="seq",
        right_on="_rseq",
        by="pid",
        strategy="forward",
        check_sortedness=False,
    )  # a copy the trace ends in reaches to the end
    return spans.select("s", pl.col("e").fill_null(np.iinfo(np.int64).max)).cast(_SPANS)


def _fork_tracepoint_spans(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(start, end) of every completed fork from the tracepoints (see _fork_intervals)."""
    fork = tables.get("sched_process_fork")
    if fork is None or fork.is_empty():
        return pl.DataFrame(schema=_SPANS)
    f = fork.select("seq", "ts", pl.col("parent_pid").alias("pid"), "child_pid")
    newtask = tables.get("task_newtask")
    if newtask is not None and newtask.height and "clone_flags" in newtask.columns:
        n = newtask.select(
            pl.col("field_pid").alias("child_pid"),
            pl.col("seq").alias("_nseq"),
            ((pl.col("clone_flags") & 0x100) != 0).alias("_shares"),
        ).sort("_nseq")
        f = (
            f.sort("seq")
            .join_asof(
                n,
                left_on="seq",
                right_on="_nseq",
                by="child_pid",
                strategy="backward",
                check_sortedness=False,
            )
            .filter(~pl.col("_shares").fill_null(False))
        )
        anchor = pl.coalesce("_nseq", "seq")
    else:
        anchor = pl.col("seq")
    own = [
        df.filter(~in_interrupt(df.columns)).select(
            pl.col("pid").cast(pl.Int32), pl.col("seq").alias("_pseq"), pl.col("ts").alias("_pts")
        )
        for name, df in tables.items()
        if (name in OWN_TABLES or name == "parent_events") and df.height
    ]
    f = f.with_columns(anchor.alias("_anchor"), pl.col("pid").cast(pl.Int32)).sort("_anchor")
    if own:
        prev = pl.concat(own).sort("_pseq")
        f = f.join_asof(
            prev,
            left_on="_anchor",
            right_on="_pseq",
            by="pid",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        start = pl.col("_pts").fill_null(np.iinfo(np.int64).min)
    else:
        start = pl.lit(np.iinfo(np.int64).min, pl.Int64)
    return f.select(start.alias("s"), pl.col("ts").alias("e")).cast(_SPANS)


#: The tables replay reads whose lines may bound a fork window's start (see
#: _fork_intervals and :func:`rmapscope.replay.engine.bounds_fork_window`).
OWN_TABLES = (
    "set_migration_pte",
    "set_migration_pmd",
    "remove_migration_pte",
    "remove_migration_pmd",
    "mm_migrate_pages_start",
    "mm_migrate_pages",
    "sched_process_fork",
    "sched_process_exit",
    "exit_mmap",
)


def _with_bits(tables: dict[str, pl.DataFrame], paired: pl.DataFrame) -> pl.DataFrame:
    """``paired`` with the uffd-wp and soft-dirty bits of each set and of its remove."""
    bits = ["uffd_wp", "soft_dirty"]

    def side(names: tuple[str, ...], prefix: str, key: str) -> pl.DataFrame | None:
        parts = [
            tables[n].select(pl.col("seq").alias(key), *[pl.col(b).alias(prefix + b) for b in bits])
            for n in names
            if n in tables and tables[n].height and set(bits) <= set(tables[n].columns)
        ]
        return pl.concat(parts) if parts else None

    out = paired
    for names, prefix, key in (
        (("set_migration_pte", "set_migration_pmd"), "s_", "seq"),
        (("remove_migration_pte", "remove_migration_pmd"), "r_", "r_seq"),
    ):
        s = side(names, prefix, key)
        if s is None:
            out = out.with_columns(pl.lit(None, pl.Boolean).alias(prefix + b) for b in bits)
        else:
            out = out.join(s, on=key, how="left")
    return out


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=_OUT)


# -- rules 1-3: one migration entry, from its set to its remove ---------------------------


def _entry_rules(
    tables: dict[str, pl.DataFrame],
    paired: pl.DataFrame,
    surplus: pl.DataFrame,
    batch: pl.DataFrame,
    forks: np.ndarray,
    windows: GapIndex,
) -> pl.DataFrame:
    """``read-entry-restored-writable``, ``uffd-wp-lost`` and ``unexplained-downgrade``.

    Precedents (``rmapscope explain RULE`` for the whole text): Peter Xu, "mm/migrate: Fix
    read-only page got writable when recover pte" (Nov 2022, Fixes b1f9e876862d: a READ entry
    on shmem came back writable from vm_page_prot); Peter Xu, "mm/userfaultfd: fix uffd-wp
    special cases for fork()" (5.14, 8f34f1eac382: fork rewrote the parent's pmd entry READ
    without uffd-wp) and "mm/hugetlb: fix uffd-wp during fork()" (2023, 5a2f8d22ace4); Naoya
    Horiguchi, "hugetlb: fix copy_hugetlb_page_range() to handle migration/hwpoisoned entry"
    (2014, 4a705fef9862: since then only fork, mprotect and uffd-wp downgrade an entry).

    NUMA balancing downgrades too: task_numa_work() runs change_prot_numa(), that is
    change_protection() with MM_CP_PROT_NUMA, whose change_pte_range() makes every WRITE
    migration entry it meets READ_EXCLUSIVE (anon) or READ ("A protection check is
    difficult so just be safe and disable write") from task_work, with no syscall. So
    where the trace shows NUMA balancing at work (:func:`_numa_balancing`: a NUMA-hinting
    migration), a downgrade is ``inconclusive``. A machine balancing NUMA whose trace has
    no such migration may still get a false violation.
    """
    if paired.is_empty() or "r_writable" not in paired.columns:
        return _empty()
    # first in, first out pairs a set with the wrong remove when the entries of one address
    # differ (a parent's WRITE entry and a child's READ one, or two pages) and an entry may
    # lack its remove line (an exit zaps it silently) or a remove its set line (a fork's
    # copy): where the lines do not balance, or an exit or a fork falls between the first
    # set and the last remove there, the pairs of that (task, address, batch) are a guess;
    # so are they, whatever the entries, where both an exit and a fork fall in between
    keys = ["pid", "addr", "kind", "batch_id"]
    p = _with_bits(tables, paired)
    # With the walk probes naming the owner mm of every set and remove there, tier 1 paired
    # them per pte (one entry at a time): that pairing is no guess.
    has_mm = "mm" in p.columns and "mm" in surplus.columns
    if surplus.height:
        extra = surplus.group_by(keys).agg(
            pl.len().alias("_extra"),
            (pl.col("mm").is_null().any() if has_mm else pl.lit(True)).alias("_extra_unowned"),
        )
        p = p.join(extra, on=keys, how="left", nulls_equal=True)
    else:
        p = p.with_columns(
            pl.lit(None, pl.UInt32).alias("_extra"),
            pl.lit(None, pl.Boolean).alias("_extra_unowned"),
        )
    owned = (
        (pl.col("mm").is_not_null().all() & ~pl.col("_extra_unowned").fill_null(False).any())
        if has_mm
        else pl.lit(False)
    ).over(keys)
    differ = pl.struct("pfn", "migration_kind", "s_uffd_wp").n_unique() > 1
    removes = pl.col("r_seq").count() + pl.col("_extra").fill_null(0).first()
    p = p.with_columns(
        (differ & (pl.len() != removes)).over(keys).alias("_mixed"),
        pl.col("ts").min().over(keys).alias("_g_lo"),
        pl.max_horizontal("ts", "r_ts").max().over(keys).alias("_g_hi"),
    )
    lo, hi = p["_g_lo"].to_numpy(), p["_g_hi"].to_numpy()
    iv = np.array(windows.exits, dtype=np.int64).reshape(-1, 2)
    exited, forked = _covered(iv, lo, hi), _covered(forks, lo, hi)
    # (an exit and a fork both: a zapped entry's remove slot may go to a fork copy's remove)
    p = p.with_columns(
        (
            (
                pl.col("_mixed")
                | (differ.over(keys) & pl.Series(exited | forked, dtype=pl.Boolean))
                | pl.Series(exited & forked, dtype=pl.Boolean)
            )
            & ~owned
        ).alias("_mixed")
    )
    # and a pair is wrong for sure where one new page receives two old pages in a batch,
    # or one old page is restored onto two new ones
    moved = pl.col("r_pfn") != pl.col("pfn")
    p = p.with_columns(
        (pl.col("pfn").filter(moved).n_unique() > 1).over("batch_id", "r_pfn").alias("_into"),
        (pl.col("r_pfn").filter(moved).n_unique() > 1).over("batch_id", "pfn").alias("_from"),
    ).with_columns(
        (pl.col("_mixed") | (moved & (pl.col("_into") | pl.col("_from"))))
        .fill_null(False)
        .alias("_mixed")
    )
    p = p.filter(pl.col("r_seq").is_not_null())
    if p.is_empty():
        return _empty()
    numa = _numa_balancing(batch)
    kind = pl.col("migration_kind")
    read = kind.is_in(["read", "read_exclusive"]) & pl.col("r_writable").fill_null(False)
    lost_wp = pl.col("s_uffd_wp").fill_null(False) & ~pl.col("r_uffd_wp").fill_null(True)
    lost_sd = pl.col("s_soft_dirty").fill_null(False) & ~pl.col("r_soft_dirty").fill_null(True)
    down = (kind == "write") & ~pl.col("r_writable").fill_null(True)
    cand = p.filter(read | lost_wp | lost_sd | down)
    if cand.is_empty():
        return _empty()
    cand = cand.with_columns(
        pl.Series(
            "_forked",
            _covered(forks, cand["ts"].to_numpy(), cand["r_ts"].to_numpy()),
            dtype=pl.Boolean,
        ),
        pl.Series("_syscall", _protected(tables, cand), dtype=pl.Boolean),
    )
    # events lost anywhere in the batch before the remove may hide a set of that address
    # (and shift the pairing): the window starts with the batch
    if batch.height and "ts_start" in batch.columns:
        starts = batch.select("batch_id", pl.col("ts_start").alias("_b_lo"))
        cand = cand.join(starts, on="batch_id", how="left", nulls_equal=False)
    else:
        cand = cand.with_columns(pl.lit(None, pl.Int64).alias("_b_lo"))
    cand = cand.with_columns(pl.min_horizontal(pl.coalesce("_b_lo", "ts"), "ts").alias("_b_lo"))
    cand = _verdict(cand, windows, "_b_lo", "r_ts").with_columns(
        pl.when("_mixed").then(pl.lit("inconclusive")).otherwise("verdict").alias("verdict")
    )
    what = pl.format(
        "{} entry for pfn {} at {} (set by {} pid {}) was restored onto pfn {}",
        kind,
        _hex("pfn"),
        _hex("addr"),
        "comm",
        pl.col("pid").cast(pl.String),
        _hex("r_pfn"),
    )
    common: list[pl.Expr | str] = [
        pl.col("r_ts").alias("ts"),
        "pfn",
        "addr",
        pl.lit(None, pl.Int32).alias("pid"),
        pl.lit(None, pl.UInt64).alias("mm"),
        pl.concat_list("seq", "r_seq").alias("evidence"),
    ]
    out = [
        cand.filter(read).select(
            pl.lit("read-entry-restored-writable").alias("rule"),
            "verdict",
            *common,
            _guess_note(what + pl.lit(" writable: a read-only page became writable")).alias(
                "explanation"
            ),
        ),
        cand.filter(lost_wp | lost_sd).select(
            pl.lit("uffd-wp-lost").alias("rule"),
            # UFFDIO_WRITEPROTECT (an ioctl) may clear uffd-wp from an entry, clear_refs (a
            # write to /proc/PID/clear_refs, which names no page) soft-dirty
            pl.when((pl.col("verdict") == "violation") & lost_wp & ~pl.col("_syscall"))
            .then(pl.lit("violation"))
            .otherwise(pl.lit("inconclusive"))
            .alias("verdict"),
            *common,
            _guess_note(
                what
                + pl.when(lost_wp)
                .then(
                    pl.lit(" without its uffd-wp bit: writes now bypass userfaultfd")
                    + pl.when("_syscall")
                    .then(
                        pl.lit(
                            " (but the trace has no syscall events, or an ioctl ran "
                            "meanwhile: UFFDIO_WRITEPROTECT may have cleared it)"
                        )
                    )
                    .otherwise(pl.lit(""))
                )
                .otherwise(
                    pl.lit(
                        " without its soft-dirty bit (clear_refs may have cleared it: the "
                        "trace cannot tell)"
                    )
                )
            ).alias("explanation"),
        ),
        cand.filter(down & ~pl.col("_forked")).select(
            pl.lit("unexplained-downgrade").alias("rule"),
            pl.when((pl.col("verdict") == "violation") & ~pl.col("_syscall") & ~pl.lit(numa))
            .then(pl.lit("violation"))
            .otherwise(pl.lit("inconclusive"))
            .alias("verdict"),
            *common,
            _guess_note(
                what
                + pl.lit(" read-only, and no fork copying page tables meanwhile explains it")
                + pl.when("_syscall")
                .then(
                    pl.lit(
                        " (but the trace has no syscall events, or an mprotect/ioctl "
                        "ran meanwhile, that may have write-protected it)"
                    )
                )
                .otherwise(pl.lit(""))
                + pl.lit(
                    " (but NUMA balancing runs in this trace: its change_prot_numa() "
                    "write-protects migration entries with no syscall)"
                    if numa
                    else ""
                )
            ).alias("explanation"),
        ),
    ]
    return pl.concat(out)


def _numa_balancing(batch: pl.DataFrame) -> bool:
    """Whether the trace shows NUMA balancing at work: a NUMA-hinting migration
    (``mm_migrate_pages`` reason ``numa_misplaced``)."""
    return "reason" in batch.columns and bool((batch["reason"] == "numa_misplaced").any())


def _protected(tables: dict[str, pl.DataFrame], cand: pl.DataFrame) -> np.ndarray:
    """Per candidate, whether a syscall that may write-protect an entry could explain it:
    one ran inside [set, remove], or the trace records no syscalls at all."""
    syscalls = [n for n in tables if n.startswith("sys_enter_") or n.startswith("sys_exit_")]
    if not syscalls:
        return np.ones(cand.height, dtype=bool)
    ts = [tables[n]["ts"].to_numpy() for n in PROTECTING if n in tables and tables[n].height]
    if not ts:
        return np.zeros(cand.height, dtype=bool)
    t = np.sort(np.concatenate(ts)).astype(np.int64)
    iv = np.stack([t, t], axis=1)
    return _covered(iv, cand["ts"].to_numpy(), cand["r_ts"].to_numpy())


# -- rule 4 --------------------------------------------------------------------------------


def _quiet_set_visits(tables: dict[str, pl.DataFrame], paired: pl.DataFrame | None) -> pl.DataFrame:
    """Set-walk visits (``try_to_migrate_one``) that printed no set: ``pid``, ``mm``,
    ``_v_seq``, ``_v_addr``. Over a PMD-mapped THP that the walk splits (TTU_SPLIT_HUGE_PMD:
    split_huge_pmd freezes the pmd into 512 pte migration entries, no tracepoint) such a
    visit is where the entries whose pte removes come later were made."""
    v = tables.get(PROBE_PREFIX + "try_to_migrate_one")
    schema = {"pid": pl.Int32, "mm": pl.UInt64, "_v_seq": pl.Int64, "_v_addr": pl.UInt64}
    if v is None or v.is_empty() or paired is None or "visit_seq" not in paired.columns:
        return pl.DataFrame(schema=schema)
    walks = tables.get(PROBE_PREFIX + "rmap_walk_anon")
    if walks is None or walks.is_empty():
        return pl.DataFrame(schema=schema)
    of = walk_of(v, walks)
    printed = paired.select(pl.col("visit_seq").alias("seq"), "order").drop_nulls("seq")
    # only walks over a large folio (a set of a non-zero order printed in it)
    large = printed.filter(pl.col("order") > 0).join(of, on="seq").select("_walk").unique()
    return (
        v.join(printed, on="seq", how="anti")
        .join(of, on="seq")
        .join(large, on="_walk", how="semi")
        .select(
            pl.col("pid").cast(pl.Int32),
            pl.col("mm").cast(pl.UInt64),
            pl.col("seq").alias("_v_seq"),
            pl.col("addr").cast(pl.UInt64).alias("_v_addr"),
        )
    )


def _unexplained_surplus(
    surplus: pl.DataFrame,
    batch: pl.DataFrame,
    forks: np.ndarray,
    windows: GapIndex,
    paired: pl.DataFrame | None = None,
    tables: dict[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """``unexplained-surplus-remove``: a remove inside a batch that no set of the batch, no
    fork copying page tables and no THP split of the batch explains.

    A pte remove of an mm inside the 2 MB of a PMD entry the same mm got in the batch (set
    earlier, never removed as a pmd) is explained too: the owner split its pmd while it held
    the migration entry (mprotect, munmap: split_huge_pmd makes 512 pte entries of it,
    without a tracepoint), and the remove walk restored those ptes.

    Removes outside every batch are a split's remap (``__folio_split`` freezes the mappings
    with migration entries, a PMD without a tracepoint): explained. An mremap overlapping
    the batch up to the remove makes it inconclusive: move_ptes moves a migration entry to
    the new address, where the remove walk restores it (the set was printed at the old
    one), as a healthy kernel does. Precedent: an entry of
    unknown origin is what Gavin Guo's "mm/huge_memory: fix dereferencing invalid pmd
    migration entry" (6.15, Fixes 84c3fc4e9c56) was about.
    """
    if surplus.is_empty() or "batch_id" not in surplus.columns or batch.is_empty():
        return _empty()
    split = [c for c in ("thp_split", "large_folio_split") if c in batch.columns]
    b = batch.select(
        "batch_id",
        pl.col("ts_start").alias("_b_start"),
        pl.col("seq_start").alias("_b_seq"),
        (
            pl.sum_horizontal(*[pl.col(c).fill_null(0) for c in split]) > 0
            if split
            else pl.lit(False)
        ).alias("_split"),
    )
    s = surplus.filter(pl.col("batch_id").is_not_null()).join(b, on="batch_id", how="left")
    s = s.filter(~pl.col("_split"))
    if paired is not None and s.height and {"mm", "r_seq", "kind"} <= set(paired.columns):
        pmds = paired.filter(
            (pl.col("kind") == "pmd") & pl.col("r_seq").is_null() & pl.col("mm").is_not_null()
        ).select(
            "batch_id",
            pl.col("mm").cast(pl.UInt64),
            pl.col("addr").alias("_pmd"),
            pl.col("seq").alias("_pmd_seq"),
        )
        if pmds.height and "mm" in s.columns:
            pmd_split = (
                s.filter(pl.col("kind") == "pte")
                .select("seq", "batch_id", pl.col("mm").cast(pl.UInt64), "addr")
                .join(pmds, on=["batch_id", "mm"])
                .filter(
                    (pl.col("_pmd_seq") < pl.col("seq"))
                    & (pl.col("_pmd") <= pl.col("addr"))
                    & (pl.col("addr") < pl.col("_pmd") + (1 << 21))
                )
                .select("seq")
            )
            s = s.join(pmd_split, on="seq", how="anti")
    quiet = _quiet_set_visits(tables or {}, paired)
    if quiet.height and s.height and "mm" in s.columns:
        frozen = (
            s.filter(pl.col("kind") == "pte")
            .select("seq", "pid", pl.col("mm").cast(pl.UInt64), "addr", "_b_seq")
            .join(quiet, on=["pid", "mm"])
            .filter(
                (pl.col("_v_seq") > pl.col("_b_seq"))
                & (pl.col("_v_seq") < pl.col("seq"))
                & (pl.col("_v_addr") <= pl.col("addr"))
                & (pl.col("addr") < pl.col("_v_addr") + (1 << 21))
            )
            .select("seq")
        )
        s = s.join(frozen, on="seq", how="anti")
    if s.is_empty():
        return _empty()
    lo = s["_b_start"].fill_null(s["ts"]).to_numpy()
    s = s.with_columns(
        pl.Series("_forked", _covered(forks, lo, s["ts"].to_numpy()), dtype=pl.Boolean),
        pl.coalesce("_b_start", "ts").alias("_lo"),
    ).filter(~pl.col("_forked"))
    if s.is_empty():
        return _empty()
    s = _verdict(s, windows, "_lo", "ts")
    # an mremap meanwhile (move_ptes moves migration entries to the new address, where the
    # remove walk then finds them) may explain it: inconclusive
    moved = _mremap_windows(tables or {})
    iv = (
        moved.select("lo", "hi").sort("lo").to_numpy().astype(np.int64).reshape(-1, 2)
        if moved is not None
        else np.zeros((0, 2), dtype=np.int64)
    )
    s = s.with_columns(
        pl.Series("_moved", _covered(iv, s["_lo"].to_numpy(), s["ts"].to_numpy()), pl.Boolean)
    )
    return s.select(
        pl.lit("unexplained-surplus-remove").alias("rule"),
        pl.when("_moved").then(pl.lit("inconclusive")).otherwise("verdict").alias("verdict"),
        "ts",
        "pfn",
        "addr",
        pl.lit(None, pl.Int32).alias("pid"),
        pl.lit(None, pl.UInt64).alias("mm"),
        _lost_note(
            pl.format(
                "{} ({} pid {}) restored a migration entry at {} onto pfn {} that no set of "
                "its batch made, with no fork nor THP split to explain it",
                pl.col("kind"),
                "comm",
                pl.col("pid").cast(pl.String),
                _hex("addr"),
                _hex("pfn"),
            )
            + pl.when("_moved")
            .then(pl.lit(" (but an mremap ran meanwhile: it moves migration entries)"))
            .otherwise(pl.lit(""))
        ).alias("explanation"),
        pl.concat_list(pl.col("_b_seq").fill_null(pl.col("seq")), "seq").alias("evidence"),
    )


# -- rule 5 --------------------------------------------------------------------------------


def _count_mismatch(migs: pl.DataFrame, batch: pl.DataFrame, windows: GapIndex) -> pl.DataFrame:
    """``count-mismatch``: a batch restored more pages onto new pfns than it reports
    succeeded (compared in folios when the batch moved large folios: older kernels counted
    a THP once). migrate_pages() counts a folio succeeded only after remove_migration_ptes
    onto its new page, so the two must agree."""
    if migs.is_empty() or "batch_id" not in migs.columns or "succeeded" not in batch.columns:
        return _empty()
    moved = (
        migs.filter((pl.col("outcome") == "migrated") & pl.col("batch_id").is_not_null())
        .group_by("batch_id")
        .agg(
            pl.len().alias("_folios"),
            pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64)).sum().alias("_pages"),
            (pl.col("order") > 0).any().alias("_large"),
            pl.col("seq_first_set").head(8).alias("_sets"),
        )
    )
    b = batch.filter(pl.col("succeeded").is_not_null() & pl.col("seq_start").is_not_null())
    j = b.join(moved, on="batch_id")
    bad = pl.when("_large").then(pl.col("_folios")).otherwise(pl.col("_pages")) > pl.col(
        "succeeded"
    ).cast(pl.Int64)
    j = j.filter(bad)
    if j.is_empty():
        return _empty()
    j = _verdict(j, windows, "ts_start", "ts_end")
    return j.select(
        pl.lit("count-mismatch").alias("rule"),
        "verdict",
        pl.col("ts_end").alias("ts"),
        pl.lit(None, pl.UInt64).alias("pfn"),
        pl.lit(None, pl.UInt64).alias("addr"),
        pl.col("pid").cast(pl.Int32),
        pl.lit(None, pl.UInt64).alias("mm"),
        _lost_note(
            pl.format(
                "batch of pid {} restored {} pages ({} folios) onto new pfns but "
                "mm_migrate_pages reports nr_succeeded={} nr_failed={}",
                pl.col("pid").cast(pl.String),
                pl.col("_pages").cast(pl.String),
                pl.col("_folios").cast(pl.String),
                pl.col("succeeded").cast(pl.String),
                pl.col("failed").cast(pl.String),
            )
        ).alias("explanation"),
        pl.concat_list("seq_start", "_sets", "seq_end").alias("evidence"),
    )


# -- rule 6 --------------------------------------------------------------------------------


def _pages(df: pl.DataFrame, pfn: str, order: str) -> pl.DataFrame:
    """One row per page of each row's ``[pfn, pfn + 2**order)``."""
    return (
        df.with_columns(
            pl.int_ranges(0, pl.lit(2, pl.Int64).pow(pl.col(order).cast(pl.Int64))).alias("_i")
        )
        .explode("_i")
        .with_columns((pl.col(pfn).cast(pl.Int64) + pl.col("_i")).alias("page"))
        .drop("_i")
    )


def _stale_old_pfn(
    tables: dict[str, pl.DataFrame], paired: pl.DataFrame, migs: pl.DataFrame, windows: GapIndex
) -> pl.DataFrame:
    """``stale-old-pfn``: after a successful migration, the old page is mapped again (a set
    of it, or a restore onto it) before any event gives it a new life: an ``mm_page_alloc``
    of it, its use as another migration's target, or a compaction scan isolating free pages
    over it. Without ``mm_page_alloc`` events in the trace the rule is not checked: a page
    freed by migration is reused by untraced allocations all the time (pages moved back and
    forth between two nodes come back to the same pfns), so every healthy trace would show
    such references; without compaction's free-page scans a finding is inconclusive
    (compaction_alloc hands pages out untraced). A hugetlb page's set is a new life of its
    pages too (:func:`_pool_sets`): the hugetlb pool (dequeue_hugetlb_folio_nodemask, for a
    fault or a migration target) hands pages out without an ``mm_page_alloc`` line, and
    free_huge_folio takes them back without an ``mm_page_free`` one, so a healthy trace
    that migrates hugetlb pages twice would otherwise show the old page mapped again (a
    stale hugetlb entry is then missed, never claimed). Precedent: the 2010 fork-vs-migration
    race and the vma_adjust race (Mel Gorman, "mm,migration: Prevent rmap_walk_[anon|ksm]
    seeing the wrong VMA information", May 2010) left entries pointing at the freed page."""
    if migs.is_empty() or "outcome" not in migs.columns or paired.is_empty():
        return _empty()
    done = migs.filter(
        (pl.col("outcome") == "migrated") & pl.col("seq_last_remove").is_not_null()
    ).select(
        "old_pfn",
        "order",
        pl.col("seq_last_remove").alias("seq"),
        pl.col("t_last_remove").alias("ts"),
        pl.col("migration_id"),
    )
    if done.is_empty():
        return _empty()
    i64 = pl.Schema({"page": pl.Int64, "seq": pl.Int64, "ts": pl.Int64, "migration_id": pl.Int64})
    lives = [
        _pages(done, "old_pfn", "order").select(
            "page", "seq", "ts", pl.lit("done").alias("what"), "migration_id"
        )
    ]
    alloc = tables.get("mm_page_alloc")
    if alloc is None or not alloc.height:
        return _empty()
    a = alloc.filter(pl.col("pfn").is_not_null())
    lives.append(
        _pages(a, "pfn", "order").select(
            "page",
            "seq",
            "ts",
            pl.lit("new").alias("what"),
            pl.lit(None, pl.Int64).alias("migration_id"),
        )
    )
    lives.append(
        _pages(_pool_sets(paired), "pfn", "order").select(
            "page",
            "seq",
            "ts",
            pl.lit("new").alias("what"),
            pl.lit(None, pl.Int64).alias("migration_id"),
        )
    )
    targets = paired.filter(pl.col("r_seq").is_not_null() & (pl.col("r_pfn") != pl.col("pfn")))
    lives.append(
        targets.select(
            pl.col("r_pfn").cast(pl.Int64).alias("page"),
            pl.col("r_seq").alias("seq"),
            pl.col("r_ts").alias("ts"),
            pl.lit("new").alias("what"),
            pl.lit(None, pl.Int64).alias("migration_id"),
        )
    )
    life = (
        pl.concat([x.cast(i64) for x in lives]).sort("seq").rename({"seq": "_lseq", "ts": "_lts"})
    )
    sets = paired.select("seq", "ts", pl.col("pfn").cast(pl.Int64).alias("page"), "addr", "pfn")
    restores = paired.filter(pl.col("r_seq").is_not_null() & (pl.col("r_pfn") == pl.col("pfn")))
    refs = pl.concat(  # (the ``pfn`` of a restore is its set's: the page it maps again)
        [
            sets,
            restores.select(
                pl.col("r_seq").alias("seq"),
                pl.col("r_ts").alias("ts"),
                pl.col("r_pfn").cast(pl.Int64).alias("page"),
                "addr",
                "pfn",
            ),
        ]
    ).sort("seq")
    j = refs.join_asof(
        life,
        left_on="seq",
        right_on="_lseq",
        by="page",
        strategy="backward",
        check_sortedness=False,
    ).filter(pl.col("what") == "done")
    if j.is_empty():
        return _empty()
    j = j.with_columns(pl.Series("_reused", _isolated(tables, j), dtype=pl.Boolean)).filter(
        ~pl.col("_reused")
    )
    if j.is_empty():
        return _empty()
    j = _verdict(j, windows, "_lts", "ts")
    blind = "mm_compaction_isolate_freepages" not in tables
    return j.select(
        pl.lit("stale-old-pfn").alias("rule"),
        (pl.lit("inconclusive") if blind else pl.col("verdict")).alias("verdict"),
        "ts",
        "pfn",
        "addr",
        pl.lit(None, pl.Int32).alias("pid"),
        pl.lit(None, pl.UInt64).alias("mm"),
        _lost_note(
            pl.format(
                "pfn {} was migrated away (its last remove is event {}) and is mapped again "
                "at {} before any allocation of it: an entry still pointing at the freed page",
                _hex("pfn"),
                pl.col("_lseq").cast(pl.String),
                _hex("addr"),
            )
            + (
                pl.lit(
                    " (but the trace lacks compaction's free-page scans: it may "
                    "have been reused unseen)"
                )
                if blind
                else pl.lit("")
            )
        ).alias("explanation"),
        pl.concat_list("_lseq", "seq").alias("evidence"),
    )


def _pool_sets(paired: pl.DataFrame) -> pl.DataFrame:
    """The sets of hugetlb folios: pte-level sets of a large folio whose batch printed only
    its head pfn, one line for the whole folio (``set_huge_pte_at``: a hugetlb page is one
    huge pte, where a pte-mapped THP prints a line per page). The hugetlb pool hands its
    pages out without an ``mm_page_alloc`` line, so such a set is a new life of its pages.
    A pte-mapped THP of which the batch met only the head page looks the same: the rule
    then misses a stale reference there, never claims one."""
    if not {"kind", "order", "batch_id"} <= set(paired.columns):
        return paired.head(0).select("pfn", "order", "seq", "ts")
    head = pl.col("pfn").cast(pl.Int64) // _pow2(pl.col("order")) * _pow2(pl.col("order"))
    large = paired.filter((pl.col("kind") == "pte") & (pl.col("order") > 0)).with_columns(
        head.alias("_head")
    )
    return large.filter(
        (pl.col("pfn").cast(pl.Int64) == pl.col("_head")).all().over("batch_id", "_head", "order")
    ).select("pfn", "order", "seq", "ts")


def _pow2(order: pl.Expr) -> pl.Expr:
    return pl.lit(2, pl.Int64).pow(order.cast(pl.Int64))


def _isolated(tables: dict[str, pl.DataFrame], j: pl.DataFrame) -> np.ndarray:
    """Per stale candidate, whether a compaction free-page scan covering its page ran between
    the migration and the reference (compaction_alloc hands such pages out untraced)."""
    iso = tables.get("mm_compaction_isolate_freepages")
    if iso is None or iso.is_empty() or not {"start_pfn", "end_pfn"} <= set(iso.columns):
        return np.zeros(j.height, dtype=bool)
    if "nr_taken" in iso.columns:
        iso = iso.filter(pl.col("nr_taken") > 0)
    s = iso["start_pfn"].cast(pl.Int64).to_numpy()
    e = iso["end_pfn"].cast(pl.Int64).to_numpy()
    t = iso["ts"].to_numpy()
    out = np.zeros(j.height, dtype=bool)
    for k, (page, lo, hi) in enumerate(j.select("page", "_lts", "ts").iter_rows()):
        out[k] = bool(np.any((s <= page) & (page < e) & (t >= lo) & (t <= hi)))
    return out


# -- hazards -------------------------------------------------------------------------------


def _hazards(tables: dict[str, pl.DataFrame], batch: pl.DataFrame) -> pl.DataFrame:
    """``mremap-overlaps-migration`` and ``collapse-overlaps-migration``: one hazard per
    window that overlaps a migration batch (the batch's first one named as evidence).
    Precedents: "mm/mremap: hold the rmap lock in write mode when moving page table
    entries" (2021) and Jann Horn's "mm/mremap: fix move_normal_pmd/retract_page_tables
    race" (2024): races between moving or retracting page tables and an rmap walk, which
    no tracepoint shows."""
    if batch.is_empty():
        return _empty()
    if "n_set" in batch.columns:  # only batches that walked mapped pages (and, replayed in
        batch = batch.filter(pl.col("n_set") > 0)  # partitions, those of this partition)
    b = batch.select(
        pl.coalesce("ts_start", "ts_end").alias("b_lo"),
        pl.coalesce("ts_end", "ts_start").alias("b_hi"),
        pl.coalesce("seq_start", "seq_end").alias("b_seq"),
        pl.col("pid").alias("b_pid"),
    ).filter(pl.col("b_lo").is_not_null())
    if b.is_empty():
        return _empty()
    out = []
    for rule, win, what in (
        ("mremap-overlaps-migration", _mremap_windows(tables), "mremap"),
        ("collapse-overlaps-migration", _collapse_windows(tables), "huge page collapse"),
    ):
        if win is None or win.is_empty():
            continue
        hit = win.join(b, how="cross").filter(
            (pl.col("b_lo") <= pl.col("hi")) & (pl.col("lo") <= pl.col("b_hi"))
        )
        if hit.is_empty():
            continue
        hit = (
            hit.sort("b_lo")
            .group_by("seq_lo", maintain_order=True)
            .agg(pl.all().first(), pl.len().alias("n"))
        )
        out.append(
            hit.select(
                pl.lit(rule).alias("rule"),
                pl.lit("hazard").alias("verdict"),
                pl.col("lo").alias("ts"),
                pl.lit(None, pl.UInt64).alias("pfn"),
                pl.col("addr").cast(pl.UInt64),
                pl.col("pid").cast(pl.Int32),
                pl.lit(None, pl.UInt64).alias("mm"),
                pl.format(
                    "a {} by {} (pid {}) overlapped {} migration batch(es), the first by pid "
                    "{}: a race no tracepoint shows was possible if the batch walked this "
                    "process's pages (tracepoints do not name the walked mm)",
                    pl.lit(what),
                    "comm",
                    pl.col("pid").cast(pl.String),
                    pl.col("n").cast(pl.String),
                    pl.col("b_pid").cast(pl.String),
                ).alias("explanation"),
                pl.concat_list("seq_lo", "seq_hi", "b_seq").alias("evidence"),
            )
        )
    return pl.concat(out) if out else _empty()


def _mremap_windows(tables: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    enter = tables.get("sys_enter_mremap")
    if enter is None or enter.is_empty():
        return None
    addr = pl.col("addr") if "addr" in enter.columns else pl.lit(None, pl.UInt64)
    e = enter.select(
        "pid",
        "comm",
        pl.col("seq").alias("seq_lo"),
        pl.col("ts").alias("lo"),
        addr.cast(pl.UInt64).alias("addr"),
    ).sort("seq_lo")
    exit_ = tables.get("sys_exit_mremap")
    if exit_ is not None and exit_.height:
        x = exit_.select("pid", pl.col("seq").alias("seq_hi"), pl.col("ts").alias("hi")).sort(
            "seq_hi"
        )
        e = e.join_asof(
            x,
            left_on="seq_lo",
            right_on="seq_hi",
            by="pid",
            strategy="forward",
            check_sortedness=False,
        )
    else:
        e = e.with_columns(
            pl.lit(None, pl.Int64).alias("seq_hi"), pl.lit(None, pl.Int64).alias("hi")
        )
    last = max(
        cast(int, df["ts"].max()) for df in tables.values() if df.height and "ts" in df.columns
    )
    return e.with_columns(
        pl.col("hi").fill_null(last), pl.col("seq_hi").fill_null(pl.col("seq_lo"))
    )


def _collapse_windows(tables: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    done = tables.get("mm_collapse_huge_page")
    if done is None or done.is_empty():
        return None
    d = done.select("pid", "comm", pl.col("seq").alias("seq_hi"), pl.col("ts").alias("hi")).sort(
        "seq_hi"
    )
    starts = [
        tables[n].select("pid", pl.col("seq").alias("seq_lo"), pl.col("ts").alias("lo"))
        for n in ("mm_khugepaged_scan_pmd", "mm_collapse_huge_page_isolate")
        if n in tables and tables[n].height
    ]
    if starts:
        s = pl.concat(starts).sort("seq_lo")
        # the collapse's own scan: the pid's first scan/isolate after its previous collapse
        prev = d.select("pid", pl.col("seq_hi").alias("_prev")).sort("_prev")
        s = s.join_asof(
            prev,
            left_on="seq_lo",
            right_on="_prev",
            by="pid",
            strategy="backward",
            check_sortedness=False,
        )
        s = s.group_by("pid", "_prev").agg(pl.col("seq_lo").min(), pl.col("lo").min())
        d = d.with_columns(pl.col("seq_hi").shift(1).over("pid").alias("_prev"))
        d = d.join(s, on=["pid", "_prev"], how="left", nulls_equal=True)
    else:
        d = d.with_columns(
            pl.lit(None, pl.Int64).alias("seq_lo"), pl.lit(None, pl.Int64).alias("lo")
        )
    return d.select(
        "pid",
        "comm",
        pl.coalesce("seq_lo", "seq_hi").alias("seq_lo"),
        pl.coalesce("lo", "hi").alias("lo"),
        "seq_hi",
        "hi",
        pl.lit(None, pl.UInt64).alias("addr"),
    )
