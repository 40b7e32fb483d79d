"""Tier-1 replay: what the upstream tracepoints alone can tell.

All steps are joins and window functions over the migration events of one trace:

* batches: ``mm_migrate_pages_start`` .. ``mm_migrate_pages`` of the same task;
* unmap groups: consecutive ``set_migration_*`` of one folio by one task (one rmap walk);
* pairing: each remove takes the oldest open set at the same (task, address, pte/pmd),
  first in first out; a remove with no open set is *surplus* (an entry made without a
  tracepoint: THP split freezing a PMD, or fork copying an entry);
* outcome per folio migration, page-state intervals, fork windows and the leaked-entry rule.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import polars as pl

from rmapscope.catalog import PROBE_PREFIX, VMEMMAP_BASE

PMD_ORDER = 9  # 2 MB on x86_64 and arm64 with 4K pages

EVENT_COLS = ["seq", "ts", "cpu", "pid", "comm", "addr", "pfn"]


def _pow2(order: pl.Expr) -> pl.Expr:
    return pl.lit(2, pl.UInt64).pow(order.cast(pl.UInt64))


def migration_events(tables: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Sets and removes of both sizes, with ``kind`` (pte/pmd) and ``order``."""
    sets: list[pl.DataFrame] = []
    removes: list[pl.DataFrame] = []
    for kind in ("pte", "pmd"):
        for name, out in ((f"set_migration_{kind}", sets), (f"remove_migration_{kind}", removes)):
            df = tables.get(name)
            if df is None or df.is_empty():
                continue
            order = pl.col("order") if kind == "pte" else pl.lit(PMD_ORDER)
            extra = ["migration_kind", "young", "dirty"] if name.startswith("set") else ["writable"]
            out.append(
                df.select(
                    *EVENT_COLS,
                    order.cast(pl.Int32).alias("order"),
                    pl.lit(kind).alias("kind"),
                    *[pl.col(c) for c in extra if c in df.columns],
                )
            )
    base = {
        "seq": pl.Int64,
        "ts": pl.Int64,
        "cpu": pl.Int32,
        "pid": pl.Int32,
        "comm": pl.String,
        "addr": pl.UInt64,
        "pfn": pl.UInt64,
        "order": pl.Int32,
        "kind": pl.String,
    }
    empty_sets = pl.DataFrame(
        schema={**base, "migration_kind": pl.String, "young": pl.Boolean, "dirty": pl.Boolean}
    )
    empty_removes = pl.DataFrame(schema={**base, "writable": pl.Boolean})
    s = pl.concat(sets, how="diagonal_relaxed").sort("seq") if sets else empty_sets
    r = pl.concat(removes, how="diagonal_relaxed").sort("seq") if removes else empty_removes
    return owners(tables, s, "try_to_migrate_one"), owners(tables, r, "remove_migration_pte")


def owners(tables: dict[str, pl.DataFrame], events: pl.DataFrame, visit: str) -> pl.DataFrame:
    """Add ``mm`` and ``pgoff``: the vma the task's rmap walk was visiting (probe ``visit``,
    ``try_to_migrate_one`` for sets, ``remove_migration_pte`` for removes) when it printed
    each event; null without such a visit since the task's last walk boundary."""
    typed = [pl.col("mm").cast(pl.UInt64), pl.col("pgoff").cast(pl.UInt64)]
    v = tables.get(PROBE_PREFIX + visit)
    if v is None or v.is_empty() or events.is_empty():
        return events.with_columns(
            pl.lit(None, pl.UInt64).alias("mm"),
            pl.lit(None, pl.UInt64).alias("pgoff"),
            pl.lit(None, pl.Int64).alias("visit_seq"),
        )
    visits = v.select(pl.col("pid").cast(pl.Int32), pl.col("seq").alias("_vseq"), *typed).sort(
        "_vseq"
    )
    bounds = [
        df.select(pl.col("pid").cast(pl.Int32), pl.col("seq").alias("_bseq"))
        for name in ("rmap_walk_anon", "rmap_walk_anon_ret")
        if (df := tables.get(PROBE_PREFIX + name)) is not None and df.height
    ]
    out = events.sort("seq").join_asof(
        visits, left_on="seq", right_on="_vseq", by="pid", check_sortedness=False
    )
    if bounds:
        b = pl.concat(bounds).sort("_bseq")
        out = out.join_asof(b, left_on="seq", right_on="_bseq", by="pid", check_sortedness=False)
        inside = pl.col("_bseq").is_null() | (pl.col("_vseq") > pl.col("_bseq"))
        out = out.with_columns(
            pl.when(inside).then(pl.col(c)).alias(c) for c in ("mm", "pgoff", "_vseq")
        ).drop("_bseq")
    return out.rename({"_vseq": "visit_seq"})


def batches(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """One row per ``mm_migrate_pages_start`` .. ``mm_migrate_pages`` window of a task."""
    start = tables.get("mm_migrate_pages_start")
    end = tables.get("mm_migrate_pages")
    cols = ["seq", "ts", "cpu", "pid", "mode", "reason"]
    counts = [
        "succeeded",
        "failed",
        "thp_succeeded",
        "thp_failed",
        "thp_split",
        "large_folio_split",
    ]
    parts = []
    if start is not None and start.height:
        parts.append(start.select(*cols).with_columns(pl.lit("start").alias("mark")))
    if end is not None and end.height:
        parts.append(
            end.select(*cols, *[pl.col(c) for c in counts if c in end.columns]).with_columns(
                pl.lit("end").alias("mark")
            )
        )
    if not parts:  # no batches: the same steps on no rows give the same columns
        types = {"seq": pl.Int64, "ts": pl.Int64, "cpu": pl.Int32, "pid": pl.Int32}
        none = pl.DataFrame(schema={**types, "mode": pl.String, "reason": pl.String})
        parts.append(none.with_columns(pl.lit("start").alias("mark")))
    marks = pl.concat(parts, how="diagonal_relaxed").sort("pid", "seq")
    prev = pl.col("mark").shift(1).over("pid")
    nxt = pl.col("mark").shift(-1).over("pid")
    marks = marks.with_columns(
        # an end closes the start just before it (same task); otherwise the start is missing
        pl.when(pl.col("mark") == "end")
        .then(prev == "start")
        .otherwise(nxt == "end")
        .fill_null(False)
        .alias("paired")
    )
    starts = marks.filter(pl.col("mark") == "start")
    ends = marks.filter(pl.col("mark") == "end")
    paired_ends = ends.filter(pl.col("paired"))
    s = starts.select(
        "pid",
        pl.col("seq").alias("seq_start"),
        pl.col("ts").alias("ts_start"),
        pl.col("cpu").alias("cpu"),
        "mode",
        "reason",
        "paired",
    ).sort("seq_start")
    e = paired_ends.select(
        "pid",
        pl.col("seq").alias("seq_end"),
        pl.col("ts").alias("ts_end"),
        pl.col("cpu").alias("cpu_end"),
        *[c for c in counts if c in ends.columns],
    ).sort("seq_end")
    joined = e.join_asof(
        s.filter(pl.col("paired")).drop("paired"),
        left_on="seq_end",
        right_on="seq_start",
        by="pid",
        strategy="backward",
        check_sortedness=False,
    )
    open_starts = s.filter(~pl.col("paired")).drop("paired")
    orphan_ends = ends.filter(~pl.col("paired")).select(
        "pid",
        pl.col("seq").alias("seq_end"),
        pl.col("ts").alias("ts_end"),
        pl.col("cpu").alias("cpu_end"),
        "mode",
        "reason",
        *[c for c in counts if c in ends.columns],
    )
    out = pl.concat([joined, open_starts, orphan_ends], how="diagonal_relaxed")
    out = out.with_columns(pl.coalesce("seq_start", "seq_end").alias("_order"))
    out = out.sort("_order").drop("_order").with_row_index("batch_id")
    return out.with_columns(pl.col("batch_id").cast(pl.Int64))


def assign_batches(events: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
    """Add ``batch_id``: the window of the same task that contains each event (or null)."""
    if events.is_empty() or batch.is_empty():
        return events.with_columns(pl.lit(None, pl.Int64).alias("batch_id"))
    b = (
        batch.filter(pl.col("seq_start").is_not_null())
        .select("pid", "batch_id", "seq_start", "seq_end")
        .sort("seq_start")
    )
    j = events.sort("seq").join_asof(
        b,
        left_on="seq",
        right_on="seq_start",
        by="pid",
        strategy="backward",
        check_sortedness=False,
    )
    inside = pl.col("seq_end").is_null() | (pl.col("seq") <= pl.col("seq_end"))
    return j.with_columns(
        pl.when(pl.col("batch_id").is_not_null() & inside)
        .then(pl.col("batch_id"))
        .alias("batch_id")
    ).drop("seq_start", "seq_end")


def mm_births(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """``mm``, ``seq``: where each mm was created, from the fork probes. The first copy line
    (``anon_vma_fork``, ``copy_page_range``) of one fork into an mm is its birth: dup_mm
    allocates it, and a pointer seen before belonged to an mm_struct its owner's exit freed
    (the slab hands it to a later fork). One fork of a task is its copy lines between two
    of its ``sched_process_fork`` lines."""
    parts = [
        df.select(pl.col(col).cast(pl.UInt64).alias("mm"), "seq", pl.col("pid").cast(pl.Int64))
        for name, col in (("anon_vma_fork", "mm"), ("copy_page_range", "dst_mm"))
        if (df := tables.get(PROBE_PREFIX + name)) is not None and df.height
    ]
    if not parts:
        return pl.DataFrame(schema={"mm": pl.UInt64, "seq": pl.Int64})
    lines = pl.concat(parts).sort("seq")
    fork = tables.get("sched_process_fork")
    if fork is not None and fork.height:
        ends = fork.select(
            pl.col("parent_pid").cast(pl.Int64).alias("pid"), pl.col("seq").alias("_fork")
        ).sort("_fork")
        lines = lines.join_asof(
            ends, left_on="seq", right_on="_fork", by="pid", strategy="backward",
            check_sortedness=False,
        )  # fmt: skip
    else:
        lines = lines.with_columns(pl.lit(None, pl.Int64).alias("_fork"))
    births = lines.group_by("mm", "pid", "_fork").agg(pl.col("seq").min())
    return births.select("mm", pl.col("seq").cast(pl.Int64)).sort("seq")


def _with_life(events: pl.DataFrame, births: pl.DataFrame | None) -> pl.DataFrame:
    """``events`` with ``life``: how many births of its ``mm`` (:func:`mm_births`) came
    before it (null without an owner mm)."""
    if births is None or births.is_empty() or events.is_empty():
        return events.with_columns(pl.lit(0, pl.Int64).alias("life"))
    b = births.sort("seq").with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("mm").alias("life"),
        pl.col("seq").alias("_bseq"),
    )
    out = events.sort("seq").join_asof(
        b.select("mm", "_bseq", "life"), left_on="seq", right_on="_bseq", by="mm",
        strategy="backward", check_sortedness=False,
    )  # fmt: skip
    return out.with_columns(pl.col("life").fill_null(0)).drop("_bseq")


def pair(
    sets: pl.DataFrame, removes: pl.DataFrame, births: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Match removes to sets first-in-first-out per (task, address, pte/pmd, batch) and
    attempt (a set after a remove of the same key starts the next one), and with the walk
    probes per owner mm and its life (``births``, :func:`mm_births`: an entry of an mm that
    died never takes the remove of the mm born again at its pointer).

    Returns the sets with the matched remove (``r_seq``, ``r_ts``, ``r_pfn``, ``r_cpu``;
    null when never removed; ``ambiguous`` when such a set shared its attempt with entries of
    other pages, so which of them lacks a remove is a guess) and the surplus removes (no open
    set when they came).
    """
    # within one batch: an entry is set and removed by the same migrate_pages call, so an
    # entry left open in an earlier batch (zapped by an exit, or lost) cannot take a remove
    # with the walk probes the owner mm is part of the key: parent and children share
    # addresses, and an entry is one pte of one mm
    cols = ["pid", "mm", "life", "addr", "kind", "batch_id"]
    sets, removes = (
        _with_life(
            df if "mm" in df.columns else df.with_columns(pl.lit(None, pl.UInt64).alias("mm")),
            births,
        )
        for df in (sets, removes)
    )
    ev = pl.concat(
        [
            sets.select("seq", *cols, pl.lit(1, pl.Int32).alias("delta"), pl.col("pfn")),
            removes.select(
                "seq",
                *cols,
                pl.lit(-1, pl.Int32).alias("delta"),
                pl.lit(None, pl.UInt64).alias("pfn"),
            ),
        ]
    ).sort([*cols, "seq"], nulls_last=True)
    # Groups are many and small, so the windows are segmented numpy scans over the rows
    # sorted by (group, seq) rather than polars windows per group.
    n = ev.height
    start = np.ones(n, dtype=bool)
    for c in cols:
        v = ev[c].to_physical() if ev[c].dtype == pl.String else ev[c]
        v = v.reinterpret(signed=True) if v.dtype == pl.UInt64 else v  # kernel pointers
        arr = v.fill_null(-1).to_numpy()
        if n > 1:
            start[1:] &= arr[1:] == arr[:-1]
    start = ~start
    if n:
        start[0] = True
    delta = ev["delta"].to_numpy().astype(np.int64)
    # a set that follows a remove of the same key starts a new attempt (migrate_pages
    # retrying a folio, or the next chunk of a batch): the removes of the earlier attempt
    # are over, and an entry of it they left (leaked, or replaced by a fork's copy) must
    # not take the new attempt's remove
    # With the owner mm known a key is one pte, which holds one entry: a second set there
    # without a remove between means the first entry went without one (zapped by an exiting
    # owner whose mm_struct a new process then got), so it starts a new attempt too.
    if n > 1:
        owned = ev["mm"].is_not_null().to_numpy()
        start[1:] |= (delta[1:] > 0) & ((delta[:-1] < 0) | ((delta[:-1] > 0) & owned[1:]))
    group = np.cumsum(start)
    opened = _segmented_cumsum(delta, start)
    # open entries = running sum clamped at zero; a remove that pushes the unclamped sum to
    # a new low found nothing open (Lindley recursion: open = S - min(0, min S))
    big = 2 * n + 2
    low = np.minimum(np.minimum.accumulate(opened - group * big) + group * big, 0)
    prev_low = np.where(start, 0, np.r_[0, low[:-1]])
    surplus = (delta < 0) & (low < prev_low)
    is_set = delta > 0
    matched = (delta < 0) & ~surplus
    rank = np.where(
        is_set,
        _segmented_cumsum(is_set.astype(np.int64), start),
        _segmented_cumsum(matched.astype(np.int64), start),
    )
    ev = ev.select("seq", "pfn").with_columns(
        pl.Series("_g", group),
        pl.Series("_rank", rank),
        pl.Series("_set", is_set),
        pl.Series("_matched", matched),
        pl.Series("surplus", surplus),
    )
    # first in, first out is a guess when one attempt at an address holds entries of
    # different pages (folios of different processes at the same address): an entry left
    # without a remove may be another page's than the one the guess leaves open
    ambiguous = (
        ev.group_by("_g")
        .agg(
            ((pl.col("pfn").drop_nulls().n_unique() > 1) & pl.col("_matched").any()).alias(
                "ambiguous"
            )
        )
        .filter("ambiguous")
    )
    set_rank = ev.filter(pl.col("_set")).select("seq", "_g", "_rank")
    rem_rank = ev.filter(pl.col("_matched")).select(pl.col("seq").alias("r_seq"), "_g", "_rank")
    surplus_seq = ev.filter(pl.col("surplus")).select("seq")
    pairs = (
        set_rank.join(rem_rank, on=["_g", "_rank"], how="left")
        .join(ambiguous, on="_g", how="left")
        .select(
            "seq",
            "r_seq",
            (pl.col("ambiguous").fill_null(False) & pl.col("r_seq").is_null()).alias("ambiguous"),
        )
    )
    r = removes.select(
        pl.col("seq").alias("r_seq"),
        pl.col("ts").alias("r_ts"),
        pl.col("pfn").alias("r_pfn"),
        pl.col("cpu").alias("r_cpu"),
        pl.col("order").alias("r_order"),
        pl.col("mm").alias("r_mm"),
        *([pl.col("visit_seq").alias("r_visit")] if "visit_seq" in removes.columns else []),
        *([pl.col("writable").alias("r_writable")] if "writable" in removes.columns else []),
    )
    out = sets.join(pairs, on="seq", how="left").join(r, on="r_seq", how="left").sort("seq")
    surplus = removes.join(surplus_seq, on="seq", how="semi")
    return out, surplus


def zaps(
    paired: pl.DataFrame, tables: dict[str, pl.DataFrame], batch: pl.DataFrame
) -> pl.DataFrame:
    """Add ``zap_seq``, ``zap_ts``: for an entry with a known owner (``mm``, from the walk
    probes) and no remove, the first line after its set, before its batch ended, that shows
    it gone: the owner's exit or its vma's unlinking (an exit or munmap zaps migration
    entries without a tracepoint), or a remove walk's visit that found nothing there (see
    :func:`_silent_visits`). Such an entry is gone, not leaked. Null otherwise. Also adds
    ``owned`` (see below)."""
    evidence, watched = zap_evidence(tables)
    # ``owned``: the owner is known and its exit would show (an unlink probe, or the fork
    # that made it): then a missing remove is the owner's own story, not another's exit
    seen = pl.lit(True) if watched is None else pl.col("mm").is_in(watched.implode())
    paired = paired.with_columns((pl.col("mm").is_not_null() & seen).alias("owned"))
    none = paired.with_columns(
        pl.lit(None, pl.Int64).alias("zap_seq"), pl.lit(None, pl.Int64).alias("zap_ts")
    )
    open_ = paired.filter(pl.col("r_seq").is_null() & pl.col("mm").is_not_null())
    if open_.is_empty():
        return none
    o = open_.select("seq", pl.col("mm").cast(pl.UInt64), "pgoff", "batch_id")
    if batch.height:
        b = batch.select("batch_id", pl.col("seq_start").alias("_start"), pl.col("seq_end"))
        o = o.join(b.rename({"seq_end": "_end"}), on="batch_id", how="left")
    else:
        o = o.with_columns(pl.lit(None, pl.Int64).alias(c) for c in ("_start", "_end"))
    # an exit printed before the set (Linux >= 6.16 prints it before the zap) counts from
    # the batch's start on
    hits = (
        o.join(evidence, on="mm")
        .filter(
            (pl.col("e_seq") > pl.coalesce("_start", "seq"))
            & (pl.col("_end").is_null() | (pl.col("e_seq") < pl.col("_end")))
            & (pl.col("e_pgoff").is_null() | (pl.col("e_pgoff") == pl.col("pgoff")))
        )
        .select("seq", "e_seq", "e_ts")
    )
    hits = pl.concat([hits, _silent_visits(paired, open_, o, tables)])
    hits = hits.group_by("seq").agg(
        pl.col("e_seq").min().alias("zap_seq"), pl.col("e_ts").min().alias("zap_ts")
    )
    return paired.join(hits, on="seq", how="left")


def _silent_visits(
    paired: pl.DataFrame, open_: pl.DataFrame, bounds: pl.DataFrame, tables: dict
) -> pl.DataFrame:
    """``seq`` of the open entries (and ``e_seq``, ``e_ts`` of the visit) that a remove walk
    of their own page visited, before the batch ended, in their owner's vma at their address
    without printing a remove: the entry was already gone (an exiting owner's zap, which
    prints its exit and unlink lines only later, Linux < 6.16) or a split mapped the zero
    page there for a zero-filled subpage (Linux 6.12+, no tracepoint).

    A remove walk runs over the destination folio (``remove_migration_ptes(src, dst)``
    walks ``dst``; a split's remap walks each new small folio, its own source), so the pages
    a walk restores are its folio pointer's and the old pfns of the entries whose removes it
    printed. (A walk over another folio of the same anon_vma visits the vma too, for nothing:
    only a walk over the entry's page tells.)"""
    empty = pl.DataFrame(schema={"seq": pl.Int64, "e_seq": pl.Int64, "e_ts": pl.Int64})
    v = tables.get(PROBE_PREFIX + "remove_migration_pte")
    if v is None or v.is_empty() or open_.is_empty():
        return empty
    base = vmemmap_base(paired, tables)
    visits = v.filter(pl.col("folio") >= base).select(
        pl.col("pid").cast(pl.Int32),
        pl.col("mm").cast(pl.UInt64),
        pl.col("addr").cast(pl.UInt64),
        ((pl.col("folio") - base) // 64).cast(pl.UInt64).alias("pfn"),
        pl.col("seq").alias("e_seq"),
        pl.col("ts").alias("e_ts"),
    )
    printed = pl.DataFrame(schema={"e_seq": pl.Int64, "pfn": pl.UInt64})
    if "r_visit" in paired.columns:  # the removes each visit printed, and their old pfns
        done = paired.filter(pl.col("r_visit").is_not_null())
        visits = visits.join(
            done.select(pl.col("r_visit").alias("e_seq"), pl.col("r_mm").alias("mm"), "addr"),
            on=["e_seq", "mm", "addr"],
            how="anti",
        )
        printed = done.select(pl.col("r_visit").alias("e_seq"), pl.col("pfn").cast(pl.UInt64))
    walk = tables.get(PROBE_PREFIX + "rmap_walk_anon")
    of = pl.DataFrame(schema={"e_seq": pl.Int64, "_walk": pl.Int64})  # visit -> its walk
    if walk is not None and walk.height:
        of = walk_of(v, walk).rename({"seq": "e_seq"})
        restored = printed.join(of, on="e_seq").select("_walk", "pfn")
        visits = (
            visits.join(of, on="e_seq", how="left")
            .join(restored, on="_walk", how="left", suffix="_old")
            .select(
                "pid",
                "mm",
                "addr",
                "e_seq",
                "e_ts",
                pl.concat_list("pfn", pl.col("pfn_old").fill_null(pl.col("pfn"))).alias("pfn"),
            )
            .explode("pfn")
            .unique()
        )
    o = open_.select("seq", "pid", pl.col("mm").cast(pl.UInt64), "addr", "pfn").join(
        bounds.select("seq", "_end"), on="seq"
    )
    hits = [_first_visit(o, visits, ["pid", "mm", "addr", "pfn"])]
    if of.height and "r_visit" in paired.columns:
        hits.append(_quiet_folio_visits(paired, open_, bounds, v, of))
    return pl.concat(hits)


def walk_of(visits: pl.DataFrame, walks: pl.DataFrame) -> pl.DataFrame:
    """``seq``, ``_walk``: for each probe visit (``pid``, ``seq``), the ``seq`` of the
    ``rmap_walk_anon`` line that started its walk (the task's last one before it)."""
    return (
        visits.select(pl.col("pid").cast(pl.Int32), "seq")
        .sort("seq")
        .join_asof(
            walks.select(pl.col("pid").cast(pl.Int32), pl.col("seq").alias("_walk")).sort("_walk"),
            left_on="seq",
            right_on="_walk",
            by="pid",
            strategy="backward",
            check_sortedness=False,
        )
        .select("seq", "_walk")
    )


def _first_visit(o: pl.DataFrame, visits: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """``seq``, ``e_seq``, ``e_ts``: the first of ``visits`` after each open entry of ``o``
    with the same ``by`` keys, before its batch's end (``_end``)."""
    return (
        o.sort("seq")
        .join_asof(
            visits.sort("e_seq"),
            left_on="seq",
            right_on="e_seq",
            by=by,
            strategy="forward",
            check_sortedness=False,
        )
        .filter(
            pl.col("e_seq").is_not_null()
            & (pl.col("_end").is_null() | (pl.col("e_seq") < pl.col("_end")))
        )
        .select("seq", "e_seq", "e_ts")
    )


def _quiet_folio_visits(
    paired: pl.DataFrame,
    open_: pl.DataFrame,
    bounds: pl.DataFrame,
    v: pl.DataFrame,
    of: pl.DataFrame,
) -> pl.DataFrame:
    """The folio-level silent visit: a remove walk over a large folio (the removes it
    printed carry the folio's order) that visited an owner's vma and printed nothing there
    at all shows every entry of that folio in the vma gone: a PTE-mapped THP in an exiting
    child, whose zap drops its (up to 512) entries without a line. (Each visit of a large
    folio's walk is at the folio's first address in the vma, not at every entry's.)"""
    size = _pow2(pl.col("order"))
    done = paired.filter(pl.col("r_visit").is_not_null())
    heads = (
        done.filter(pl.col("r_order") > 0)
        .select(
            pl.col("r_visit").alias("e_seq"),
            (pl.col("pfn") // size * size).cast(pl.UInt64).alias("head"),
        )
        .join(of, on="e_seq")
        .select("_walk", "head")
        .unique()
    )
    quiet = (
        v.join(done.select(pl.col("r_visit").alias("seq")), on="seq", how="anti")
        .select(
            pl.col("pid").cast(pl.Int32),
            pl.col("mm").cast(pl.UInt64),
            pl.col("pgoff").cast(pl.UInt64),
            pl.col("seq").alias("e_seq"),
            pl.col("ts").alias("e_ts"),
        )
        .join(of, on="e_seq")
        .join(heads, on="_walk")
    )
    o = (
        open_.filter(pl.col("order") > 0)
        .select(
            "seq",
            "pid",
            pl.col("mm").cast(pl.UInt64),
            pl.col("pgoff").cast(pl.UInt64),
            (pl.col("pfn") // size * size).cast(pl.UInt64).alias("head"),
        )
        .join(bounds.select("seq", "_end"), on="seq")
    )
    return _first_visit(o, quiet, ["pid", "mm", "pgoff", "head"])


def vmemmap_base(paired: pl.DataFrame, tables: dict[str, pl.DataFrame]) -> int:
    """Where the kernel's struct page array starts (randomised with
    ``CONFIG_RANDOMIZE_MEMORY``): the most common ``folio - 64 * pfn`` of the visits that
    printed one small page's set or remove; else the unrandomised x86_64 base."""
    parts = []
    for probe, seq, pfn, order in (
        ("try_to_migrate_one", "visit_seq", "pfn", "order"),
        ("remove_migration_pte", "r_visit", "r_pfn", "r_order"),
    ):
        v = tables.get(PROBE_PREFIX + probe)
        if v is None or v.is_empty() or seq not in paired.columns:
            continue
        small = paired.filter((pl.col(order) == 0) & pl.col(seq).is_not_null())
        parts.append(
            small.select(pl.col(seq).alias("seq"), pl.col(pfn).cast(pl.UInt64).alias("_pfn"))
            .join(v.select("seq", pl.col("folio").cast(pl.UInt64)), on="seq")
            .filter(pl.col("folio") >= pl.col("_pfn") * 64)
            .select((pl.col("folio") - pl.col("_pfn") * 64).alias("base"))
        )
    if not parts:
        return VMEMMAP_BASE
    bases = pl.concat(parts)
    if bases.is_empty():
        return VMEMMAP_BASE
    return int(bases.group_by("base").len().sort("len", "base", descending=True)["base"][0])


def zap_evidence(tables: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.Series | None]:
    """Lines that end an mm's entries (``mm``, ``e_pgoff`` (null: every vma), ``e_seq``,
    ``e_ts``): ``unlink_anon_vmas`` of a vma, and the exit (``sched_process_exit``,
    ``exit_mmap``) of a task that owns the mm, owners known from the probes (the task that
    unlinks an mm's vmas, the child of the fork that copied into it). Also the mms whose
    end would show: None (every mm) when the unlink probe was traced."""
    schema = pl.Schema({"mm": pl.UInt64, "e_pgoff": pl.UInt64, "e_seq": pl.Int64, "e_ts": pl.Int64})
    parts = []
    unlink = tables.get(PROBE_PREFIX + "unlink_anon_vmas")
    owner = []
    if unlink is not None and unlink.height:
        parts.append(
            unlink.select(
                "mm",
                pl.col("pgoff").alias("e_pgoff"),
                pl.col("seq").alias("e_seq"),
                pl.col("ts").alias("e_ts"),
            )
        )
        owner.append(unlink.select(pl.col("pid").cast(pl.Int32), "mm"))
    copy = tables.get(PROBE_PREFIX + "copy_page_range")
    fork = tables.get("sched_process_fork")
    if copy is not None and copy.height and fork is not None and fork.height:
        f = fork.select(
            pl.col("parent_pid").cast(pl.Int32).alias("pid"),
            pl.col("seq").alias("_fseq"),
            pl.col("child_pid").cast(pl.Int32).alias("_child"),
        ).sort("_fseq")
        c = copy.select(pl.col("pid").cast(pl.Int32), "seq", pl.col("dst_mm").alias("mm"))
        c = c.sort("seq").join_asof(
            f,
            left_on="seq",
            right_on="_fseq",
            by="pid",
            strategy="forward",
            check_sortedness=False,
        )
        owner.append(
            c.filter(pl.col("_child").is_not_null()).select(pl.col("_child").alias("pid"), "mm")
        )
    exits = []
    for name, pid in (("sched_process_exit", "field_pid"), ("exit_mmap", "pid")):
        df = tables.get(name)
        if df is not None and df.height:
            who = pl.coalesce(pid, "pid") if pid in df.columns else pl.col("pid")
            exits.append(df.select(who.cast(pl.Int32).alias("pid"), "seq", "ts"))
    if owner and exits:
        owners_ = pl.concat(owner).unique()
        parts.append(
            pl.concat(exits)
            .join(owners_, on="pid")
            .select(
                "mm",
                pl.lit(None, pl.UInt64).alias("e_pgoff"),
                pl.col("seq").alias("e_seq"),
                pl.col("ts").alias("e_ts"),
            )
        )
    watched = (
        None if parts and unlink is not None and unlink.height else pl.Series("mm", [], pl.UInt64)
    )
    if owner and watched is not None:
        watched = pl.concat(owner)["mm"].cast(pl.UInt64).unique()
    if not parts:
        return pl.DataFrame(schema=schema), watched
    return pl.concat([p.cast(schema) for p in parts]), watched


def _segmented_cumsum(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cumulative sum that restarts where ``start`` is true."""
    cs = np.cumsum(values)
    before = cs - values  # the running sum just before each row
    first = np.maximum.accumulate(np.where(start, np.arange(len(values)), 0))
    return cs - before[first]


def unmap_groups(
    sets: pl.DataFrame,
    removes: pl.DataFrame | None = None,
    tables: dict[str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """Add ``group``: consecutive sets of one folio (pfn >> order) by one task in one rmap
    walk. A remove by the task (``removes``) or the start of another walk (the
    ``rmap_walk_anon`` probe of ``tables``) between two sets of the same folio separates
    them: migrate_pages retrying a folio in one batch unmaps it again after restoring it."""
    if sets.is_empty():
        return sets.with_columns(
            pl.lit(None, pl.Int64).alias("group"), pl.lit(None, pl.Int64).alias("_walk")
        )
    folio = (pl.col("pfn") // _pow2(pl.col("order"))).alias("_folio")
    s = sets.sort("seq").with_columns(folio)
    marks = [
        df.select(pl.col("pid").cast(pl.Int32), pl.col("seq").alias("_mark"))
        for df in (
            removes,
            (tables or {}).get(PROBE_PREFIX + "rmap_walk_anon"),
        )
        if df is not None and df.height
    ]
    if marks:
        s = s.join_asof(
            pl.concat(marks).sort("_mark"),
            left_on="seq",
            right_on="_mark",
            by="pid",
            strategy="backward",
            check_sortedness=False,
        )
    else:
        s = s.with_columns(pl.lit(None, pl.Int64).alias("_mark"))
    new = (
        (pl.col("_folio") != pl.col("_folio").shift(1).over("pid"))
        | (pl.col("_mark").fill_null(-1) != pl.col("_mark").shift(1).over("pid").fill_null(-1))
        | (pl.col("kind") != pl.col("kind").shift(1).over("pid"))
        | (
            pl.col("batch_id").fill_null(-1)
            != pl.col("batch_id").shift(1).over("pid").fill_null(-1)
        )
    ).fill_null(True)
    s = s.with_columns(new.alias("_new"))
    # global ids in order of each group's first set
    s = s.with_columns(pl.col("_new").cast(pl.Int64).cum_sum().over("pid").alias("_local"))
    firsts = (
        s.filter(pl.col("_new")).select("pid", "_local", "seq").sort("seq").with_row_index("group")
    )
    return (
        s.join(
            firsts.select("pid", "_local", pl.col("group").cast(pl.Int64)),
            on=["pid", "_local"],
            how="left",
        )
        .drop("_new", "_local")
        .rename({"_mark": "_walk"})
        .sort("seq")
    )


def migrations(paired: pl.DataFrame, windows: GapIndex, batch: pl.DataFrame) -> pl.DataFrame:
    """One row per folio migration attempt (unmap group) with its outcome."""
    size = _pow2(pl.col("order").first())
    g = paired.group_by("group").agg(
        pl.col("pid").first(),
        pl.col("comm").first(),
        pl.col("cpu").first(),
        pl.col("batch_id").first(),
        pl.col("kind").first(),
        pl.col("order").first(),
        (pl.col("pfn").min() // size * size).alias("old_pfn"),
        (pl.col("r_pfn").min() // size * size).alias("new_pfn"),
        pl.col("ts").min().alias("t_first_set"),
        pl.col("r_ts").max().alias("t_last_remove"),
        pl.len().alias("n_set"),
        pl.col("r_seq").count().alias("n_remove"),
        (pl.col("zap_seq").count() if "zap_seq" in paired.columns else pl.lit(0, pl.UInt32)).alias(
            "n_zapped"
        ),
        # every entry left without a remove has its owner (the walk probes): a process's
        # exit or a fork elsewhere does not explain it, the owner's own lines do
        (pl.col("owned") if "owned" in paired.columns else pl.col("mm").is_not_null())
        .or_(pl.col("r_seq").is_not_null())
        .all()
        .alias("_owned"),
        pl.col("seq").min().alias("seq_first_set"),
        (pl.col("_walk") if "_walk" in paired.columns else pl.lit(None, pl.Int64))
        .first()
        .alias("_walk"),
        pl.col("ambiguous").any().alias("_ambiguous"),
        pl.col("r_seq").max().alias("seq_last_remove"),
        pl.col("migration_kind").drop_nulls().unique().sort().str.join(",").alias("entry_kinds"),
        pl.col("young").sum().alias("n_young"),
        pl.col("dirty").sum().alias("n_dirty"),
        pl.col("addr").n_unique().alias("n_addrs"),
        pl.col("seq").alias("evidence_sets"),
    )
    g = g.join(
        batch.select("batch_id", "ts_end", "seq_end", "reason", "mode"), on="batch_id", how="left"
    ).sort("seq_first_set")
    # why an entry may lack its remove without being leaked: the window was cut (no
    # closing mm_migrate_pages), events were lost (or a CPU is missing), a process exited
    # meanwhile (exit zaps migration entries without a tracepoint), a fork was copying
    # page tables meanwhile (a walk that met the child before its parent set an entry the
    # copy then replaced: only the probe events can tell that from a leak), or the pairing
    # had to guess which page's entry lacks its remove (see pair)
    end_ts = pl.coalesce("ts_end", pl.lit(windows.ts_last))
    lo, hi = g["t_first_set"], g.select(end_ts).to_series()
    reasons = [
        "missing_cpu"
        if windows.missing_cpus and lost
        else "lost"
        if lost
        else "exit"
        if exited
        else "fork"
        if forked
        else "ambiguous"
        if guessed
        else None
        for lost, exited, forked, guessed in zip(
            windows.overlaps(lo, hi),
            [e and not o for e, o in zip(windows.exited_in(lo, hi), g["_owned"], strict=True)],
            [f and not o for f, o in zip(windows.forked_in(lo, hi), g["_owned"], strict=True)],
            g["_ambiguous"],
            strict=True,
        )
    ]
    g = g.with_columns(pl.Series("why", reasons, dtype=pl.String))
    g = g.with_columns(
        pl.when(pl.col("why").is_null() & pl.col("seq_end").is_null())
        .then(pl.lit("cut"))
        .otherwise(pl.col("why"))
        .alias("why")
    )
    # entries their owner's exit zapped need no remove (but a folio with none left tells
    # nothing of where it went, unless the same walk moved its mappings of the other kind
    # (one walk prints a group per run of pmd or pte sets): a THP PMD-mapped in some
    # processes and PTE-mapped in others, the owners of one kind exiting)
    other_kind = (
        pl.col("new_pfn")
        .drop_nulls()
        .unique()
        .over(["batch_id", "_walk", "old_pfn", "order"], mapping_strategy="join")
    )
    g = g.with_columns(
        pl.when(
            pl.col("new_pfn").is_null()
            & (pl.col("n_remove") == 0)
            & (pl.col("order") > 0)
            & (other_kind.list.len() == 1)
        )
        .then(other_kind.list.first())
        .otherwise(pl.col("new_pfn"))
        .alias("new_pfn")
    )
    zapped_all = (pl.col("n_remove") == 0) & (pl.col("n_zapped") > 0) & pl.col("new_pfn").is_null()
    g = g.with_columns(
        pl.when(zapped_all & pl.col("why").is_null())
        .then(pl.lit("exit"))
        .otherwise(pl.col("why"))
        .alias("why")
    )
    all_removed = (pl.col("n_remove") + pl.col("n_zapped") == pl.col("n_set")) & ~zapped_all
    outcome = (
        pl.when(all_removed & (pl.col("new_pfn") == pl.col("old_pfn")))
        .then(pl.lit("restored"))
        .when(all_removed)
        .then(pl.lit("migrated"))
        .when(pl.col("why").is_not_null())
        .then(pl.lit("inconclusive"))
        .otherwise(pl.lit("leaked"))
    )
    g = g.with_columns(
        outcome.alias("outcome"),
        pl.when(all_removed).then(None).otherwise(pl.col("why")).alias("why"),
    )
    return (
        g.with_row_index("migration_id")
        .with_columns(pl.col("migration_id").cast(pl.Int64))
        .drop("seq_end", "_ambiguous", "_owned", "_walk")
    )


class GapIndex:
    """Where the trace cannot be trusted: lost events per CPU, missing CPUs, the edges."""

    def __init__(
        self,
        gaps: pl.DataFrame,
        ts_first: int | None,
        ts_last: int | None,
        cpus_seen: set[int],
        cpus: int | None,
        cpu_filtered: bool = True,
    ) -> None:
        self.ts_first = ts_first if ts_first is not None else 0
        self.ts_last = ts_last if ts_last is not None else 0
        spans: list[tuple[int, int, int | None]] = []  # (start, end, cpu or None = any)
        for r in gaps.iter_rows(named=True) if gaps.height else []:
            lo = r["ts_start"] if r["ts_start"] is not None else self.ts_first
            hi = r["ts_end"] if r["ts_end"] is not None else self.ts_last
            spans.append((lo, hi, r.get("cpu")))
        # a CPU the header counts but that has no event at all was not captured (e.g.
        # `trace-cmd report --cpu N`): nothing in the trace can be trusted to be complete.
        # Only where a report can be cut by CPU: on a big idle box a CPU without events in a
        # short tracefs trace is normal.
        self.missing_cpus = sorted(set(range(cpus or 0)) - cpus_seen) if cpu_filtered else []
        if self.missing_cpus:
            spans.append((self.ts_first, self.ts_last, None))
        self.spans = sorted(spans, key=lambda s: (s[0], s[1]))
        # (start, end) of the spans in which an exit may zap entries silently, sorted by
        # start (set by the caller: engine._exits)
        self.exits: list[tuple[int, int]] = []
        # (start, end) of forks copying page tables (set by the caller)
        self.forks: list[tuple[int, int]] = []

    def exited_in(self, lo: pl.Series, hi: pl.Series) -> list[bool]:
        """For each window [lo, hi], whether an exit's zap span overlapped it."""
        return self._meets(self.exits, lo, hi)

    def forked_in(self, lo: pl.Series, hi: pl.Series) -> list[bool]:
        """For each window [lo, hi], whether a fork copying page tables overlapped it."""
        return self._meets(self.forks, lo, hi)

    def _meets(self, spans: list[tuple[int, int]], lo: pl.Series, hi: pl.Series) -> list[bool]:
        """For each window [lo, hi] (nulls: the trace's edges), whether one of ``spans``
        ((start, end), sorted by start) intersects it."""
        if not spans:
            return [False] * len(lo)
        starts = np.array([s for s, _ in spans])
        ends = np.maximum.accumulate(np.array([e for _, e in spans]))
        a = lo.fill_null(self.ts_first).to_numpy()
        b = hi.fill_null(self.ts_last).to_numpy()
        # the spans starting at or before b; the latest end among them reaches a?
        n = np.searchsorted(starts, b, side="right")
        return [bool(k and ends[k - 1] >= x) for k, x in zip(n, a, strict=True)]

    def overlaps(self, lo: pl.Series, hi: pl.Series) -> list[bool]:
        """For each window [lo, hi] (hi null: until the trace ends), whether an untrusted
        span on any CPU intersects it."""
        a = lo.fill_null(self.ts_first).to_numpy()
        b = hi.fill_null(self.ts_last).to_numpy()
        hit = np.zeros(len(a), dtype=bool)
        for s, e, _ in self.spans:
            hit |= (a <= e) & (b >= s)
        return hit.tolist()

    def overlaps_on(self, lo: int, hi: int, cpus: set[int]) -> bool:
        """Whether an untrusted span on one of ``cpus`` (or on every CPU) meets [lo, hi]."""
        # inclusive: a line right at a span's edge is the first one after the loss, whose
        # missing predecessors may be its own evidence (a fork's link before its copy)
        return any((c is None or c in cpus) and s <= hi and lo <= e for s, e, c in self.spans)


def page_states(
    paired: pl.DataFrame, migs: pl.DataFrame, surplus: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Intervals of ``migration-entry`` (old pfn) and ``present`` (new pfn) per mapping;
    ``surplus`` removes (of entries made without a tracepoint, e.g. a fork's copy in the
    child) start ``present`` intervals too, of no migration."""
    if paired.is_empty():
        return pl.DataFrame(
            schema={
                "pfn": pl.UInt64,
                "addr": pl.UInt64,
                "mm": pl.UInt64,
                "state": pl.String,
                "ts_start": pl.Int64,
                "ts_end": pl.Int64,
                "seq_start": pl.Int64,
                "seq_end": pl.Int64,
                "migration_id": pl.Int64,
            }
        )
    ids = migs.select("group", "migration_id")
    p = paired.join(ids, on="group", how="left")
    if "zap_seq" not in p.columns:
        p = p.with_columns(pl.lit(None, pl.Int64).alias(c) for c in ("zap_seq", "zap_ts"))
    for c in ("mm", "r_mm"):
        if c not in p.columns:
            p = p.with_columns(pl.lit(None, pl.UInt64).alias(c))
    entry = p.select(
        "pfn",
        "addr",
        pl.col("mm").cast(pl.UInt64),
        pl.lit("migration-entry").alias("state"),
        pl.col("ts").alias("ts_start"),
        # removed, or zapped by the owner's exit (the line that shows it)
        pl.coalesce("r_ts", "zap_ts").alias("ts_end"),
        pl.col("seq").alias("seq_start"),
        pl.coalesce("r_seq", "zap_seq").alias("seq_end"),
        "migration_id",
    )
    present = p.filter(pl.col("r_seq").is_not_null()).select(
        pl.col("r_pfn").alias("pfn"),
        "addr",
        pl.col("r_mm").cast(pl.UInt64).alias("mm"),
        pl.lit("present").alias("state"),
        pl.col("r_ts").alias("ts_start"),
        pl.lit(None, pl.Int64).alias("ts_end"),
        pl.col("r_seq").alias("seq_start"),
        pl.lit(None, pl.Int64).alias("seq_end"),
        "migration_id",
    )
    if surplus is not None and surplus.height:
        mm = pl.col("mm") if "mm" in surplus.columns else pl.lit(None)
        present = pl.concat(
            [
                present,
                surplus.select(
                    "pfn",
                    "addr",
                    mm.cast(pl.UInt64).alias("mm"),
                    pl.lit("present").alias("state"),
                    pl.col("ts").alias("ts_start"),
                    pl.lit(None, pl.Int64).alias("ts_end"),
                    pl.col("seq").alias("seq_start"),
                    pl.lit(None, pl.Int64).alias("seq_end"),
                    pl.lit(None, pl.Int64).alias("migration_id"),
                ),
            ],
            how="vertical_relaxed",
        )
    # a present mapping ends when the same page at the same address gets an entry again
    # (of the same mm when the probes name it)
    mm_key = pl.col("mm").fill_null(0).alias("_mm")
    nxt = entry.select(
        "pfn",
        "addr",
        mm_key,
        pl.col("ts_start").alias("_next_ts"),
        pl.col("seq_start").alias("_ns"),
    ).sort("_ns")
    present = (
        present.with_columns(mm_key)
        .sort("seq_start")
        .join_asof(
            nxt,
            left_on="seq_start",
            right_on="_ns",
            by=["pfn", "addr", "_mm"],
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .with_columns(pl.col("_next_ts").alias("ts_end"), pl.col("_ns").alias("seq_end"))
    )
    present = present.drop("_next_ts", "_ns", "_mm")
    return pl.concat([entry, present], how="vertical_relaxed").sort("ts_start", "seq_start")


def all_events(tables: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    """``pid``, ``seq`` and ``ts`` of every event of ``tables`` (None when there are none)
    but those printed in interrupt context (:func:`in_interrupt`): the actors' own events,
    where fork windows start."""
    common = [
        df.filter(~in_interrupt(df.columns)).select("pid", "seq", "ts")
        for df in tables.values()
        if df.height and {"pid", "seq", "ts"} <= set(df.columns)
    ]
    return pl.concat(common) if common else None


def in_interrupt(columns: Collection[str]) -> pl.Expr:
    """Whether a row was printed in interrupt context (hardirq, softirq or NMI: the third
    latency-flags character is ``h``, ``s``, ``H``, ``z`` or ``Z``), where the task in the
    header is whoever the interrupt hit, not an actor. False where no flags were printed
    (perf script, bpftrace)."""
    if "flags" not in columns:
        return pl.lit(False)
    ctx = pl.col("flags").cast(pl.String).str.slice(2, 1)
    return ctx.is_in(["h", "s", "H", "z", "Z"]).fill_null(False)


def fork_windows(
    tables: dict[str, pl.DataFrame], migs: pl.DataFrame, all_events_last: pl.DataFrame | None
) -> pl.DataFrame:
    """Every fork/clone with its flags and the migrations whose windows it overlapped."""
    return fork_overlaps(fork_spans(tables, all_events_last), migs)


def fork_overlaps(spans: pl.DataFrame, migs: pl.DataFrame) -> pl.DataFrame:
    """:func:`fork_spans` with the migrations whose windows each fork overlapped."""
    return _overlaps(spans, migs) if "ts_start" in spans.columns else spans


def fork_spans(
    tables: dict[str, pl.DataFrame], all_events_last: pl.DataFrame | None
) -> pl.DataFrame:
    """Every fork/clone with its flags and window (``ts_start``, ``ts_end``).

    The window ends at ``sched_process_fork`` (after dup_mmap). Its start is the parent's
    last traced event before ``task_newtask``, a lower bound of when copying could begin
    (the clone syscall entry is not among the upstream tracepoints recorded).
    """
    newtask = tables.get("task_newtask")
    fork = tables.get("sched_process_fork")
    if fork is None or fork.is_empty():
        return pl.DataFrame(schema={"parent_pid": pl.Int32, "child_pid": pl.Int32})
    f = fork.select(
        pl.col("seq").alias("seq_fork"),
        pl.col("ts").alias("ts_end"),
        pl.col("cpu"),
        pl.col("parent_pid"),
        pl.col("child_pid"),
        pl.col("parent_comm"),
    )
    if newtask is not None and newtask.height:
        # task_newtask comes just before the fork event of the same child (pids are reused:
        # match the nearest earlier one, not every one)
        n = newtask.select(
            pl.col("field_pid").alias("child_pid"),
            pl.col("clone_flags"),
            pl.col("seq").alias("seq_newtask"),
            pl.col("ts").alias("ts_newtask"),
        ).sort("seq_newtask")
        f = f.sort("seq_fork").join_asof(
            n,
            left_on="seq_fork",
            right_on="seq_newtask",
            by="child_pid",
            strategy="backward",
            check_sortedness=False,
        )
    else:
        f = f.with_columns(
            pl.lit(None, pl.UInt64).alias("clone_flags"),
            pl.lit(None, pl.Int64).alias("seq_newtask"),
            pl.lit(None, pl.Int64).alias("ts_newtask"),
        )
    f = f.with_columns(
        ((pl.col("clone_flags") & 0x100) != 0).alias("shares_vm"),
    )
    anchor = pl.coalesce("seq_newtask", "seq_fork")
    f = f.with_columns(anchor.alias("_anchor")).sort("_anchor")
    if all_events_last is not None and all_events_last.height:
        prev = all_events_last.sort("seq").select(
            pl.col("pid").alias("parent_pid"),
            pl.col("seq").alias("_pseq"),
            pl.col("ts").alias("ts_start"),
        )
        f = f.join_asof(
            prev,
            left_on="_anchor",
            right_on="_pseq",
            by="parent_pid",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        ).drop("_pseq")
    else:
        f = f.with_columns(pl.lit(None, pl.Int64).alias("ts_start"))
    f = f.with_columns(pl.coalesce("ts_start", "ts_newtask", "ts_end").alias("ts_start"))
    f = _copy_windows(tables, f)
    return (
        f.drop("_anchor").with_row_index("fork_id").with_columns(pl.col("fork_id").cast(pl.Int64))
    )


#: A fork's page-table copy window: the ``copy_page_range`` probes' when traced, else the
#: tracepoints' bounds (the parent's last event before it .. ``sched_process_fork``).
FORK_START = pl.coalesce("ts_copy_start", "ts_start").alias("_start")
FORK_END = pl.coalesce("ts_copy_end", "ts_end").alias("_end")


def _copy_windows(tables: dict[str, pl.DataFrame], forks: pl.DataFrame) -> pl.DataFrame:
    """Add ``ts_copy_start``, ``ts_copy_end`` and ``child_mm`` from the fork probes of the
    parent (``anon_vma_fork``, ``copy_page_range`` .. ``copy_page_range_ret``) before each
    ``sched_process_fork`` (the probes of a fork come before its tracepoint, on its task)."""
    parts = []
    for name, mm in (
        ("anon_vma_fork", "mm"),
        ("copy_page_range", "dst_mm"),
        ("copy_page_range_ret", None),
    ):
        df = tables.get(PROBE_PREFIX + name)
        if df is not None and df.height:
            child = pl.col(mm) if mm else pl.lit(None, pl.UInt64)
            parts.append(
                df.select(
                    pl.col("pid").cast(pl.Int32).alias("parent_pid"),
                    pl.col("seq").alias("_pseq"),
                    pl.col("ts").alias("_pts"),
                    child.cast(pl.UInt64).alias("_mm"),
                )
            )
    if not parts:
        return forks.with_columns(
            pl.lit(None, pl.Int64).alias("ts_copy_start"),
            pl.lit(None, pl.Int64).alias("ts_copy_end"),
            pl.lit(None, pl.UInt64).alias("child_mm"),
        )
    probes = pl.concat(parts).sort("_pseq")
    owner = forks.select(pl.col("parent_pid").cast(pl.Int32), "seq_fork").sort("seq_fork")
    spans = (
        probes.join_asof(
            owner,
            left_on="_pseq",
            right_on="seq_fork",
            by="parent_pid",
            strategy="forward",
            check_sortedness=False,
        )
        .filter(pl.col("seq_fork").is_not_null())
        .group_by("seq_fork")
        .agg(
            pl.col("_pts").min().alias("ts_copy_start"),
            pl.col("_pts").max().alias("ts_copy_end"),
            pl.col("_mm").drop_nulls().first().alias("child_mm"),
        )
    )
    return forks.join(spans, on="seq_fork", how="left")


MAX_LISTED_OVERLAPS = 100


def _overlaps(forks: pl.DataFrame, migs: pl.DataFrame) -> pl.DataFrame:
    """Per fork (not sharing the mm), how many migration windows it overlapped, and the ids
    of the first ``MAX_LISTED_OVERLAPS`` of them.

    Counting uses two sorted searches (overlap = started before the fork ended minus ended
    before it started), so a long trace with many forks and migrations never builds the
    cross product.
    """
    empty_ids = pl.lit([], pl.List(pl.Int64))
    if migs.is_empty() or "t_first_set" not in migs.columns:
        return forks.with_columns(
            pl.lit(0, pl.Int64).alias("n_overlapping"), empty_ids.alias("overlapping_migrations")
        )
    m = migs.select(
        "migration_id",
        "t_first_set",
        pl.coalesce("t_last_remove", "ts_end", "t_first_set").alias("t_end"),
    ).sort("t_first_set")
    starts = m["t_first_set"].to_numpy()
    ends = np.sort(m["t_end"].to_numpy())
    ids = m["migration_id"].to_numpy()
    t_end_by_start = m["t_end"].to_numpy()
    longest = int((t_end_by_start - starts).max())  # no overlap starts before f_start - longest
    counts: list[int] = []
    listed: list[list[int]] = []
    for f_start, f_end, shares in forks.select(FORK_START, FORK_END, "shares_vm").iter_rows():
        if shares or f_start is None or f_end is None:
            counts.append(0)
            listed.append([])
            continue
        n_started = int(np.searchsorted(starts, f_end, side="right"))
        n = n_started - int(np.searchsorted(ends, f_start, side="left"))
        counts.append(max(n, 0))
        hits = []
        if n > 0:
            first = int(np.searchsorted(starts, f_start - longest, side="left"))
            window = slice(first, n_started)
            ok = t_end_by_start[window] >= f_start
            hits = ids[window][ok][:MAX_LISTED_OVERLAPS].tolist()
        listed.append(hits)
    return forks.with_columns(
        pl.Series("n_overlapping", counts, dtype=pl.Int64),
        pl.Series("overlapping_migrations", listed, dtype=pl.List(pl.Int64)),
    ).sort("fork_id")
