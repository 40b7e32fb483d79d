"""The replay core: a pure function from one trace's events to its replay tables.

No global state and no I/O, so the local engine and a distributed one (Spark's
``applyInArrow`` per trace) call the same code. :mod:`rmapscope.replay.store` loads a
trace from a dataset and writes the tables back.

>>> import polars as pl
>>> out = replay_trace({}, gaps=pl.DataFrame(), trace={"ts_first": 0, "ts_last": 0, "cpus": 1})
>>> sorted(out)
['fork_windows', 'migration_batches', 'migrations', 'page_states', 'violations']
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from rmapscope.catalog import MIGRATION_EVENTS, PROBE_TABLES

from . import _rules as rules
from . import _tier1 as t1
from . import _tier2 as t2

#: Event tables replay reads (other tables are not needed; the probe tables too, for tier 2).
INPUT_EVENTS = (
    *MIGRATION_EVENTS,
    "mm_migrate_pages_start",
    "mm_migrate_pages",
    "task_newtask",
    "sched_process_fork",
    "sched_process_exit",
    "sched_process_free",
    "exit_mmap",
    *rules.RULE_EVENTS,
)
#: Key of ``tables`` holding ``seq``, ``ts``, ``cpu``, ``pid`` of the forking parents' events
#: in every table replay does not otherwise read (typed tables and ``other_events``): a fork
#: window starts at the parent's last event of any table (see :func:`parent_events`).
PARENT_EVENTS = "parent_events"
PARENT_COLS = ("seq", "ts", "cpu", "pid")
#: Formats whose readers give rows out of time order (``Reader.time_ordered`` is False):
#: replay orders their events by time (:func:`time_order`).
UNORDERED_FORMATS = ("bpftrace",)
#: Replay columns holding seqs, and those holding lists of seqs.
SEQ_COLS = ("seq_first_set", "seq_last_remove", "seq_start", "seq_end", "seq_fork", "seq_newtask")
SEQ_LIST_COLS = ("evidence_sets", "evidence")

#: What replay counts per migration batch (summed when a trace is replayed in partitions).
BATCH_COUNTS = (
    "paired_migrated",
    "paired_migrated_pages",
    "paired_restored",
    "leaked",
    "inconclusive",
    "n_set",
    "n_remove",
    "n_surplus_remove",
)

#: Formats whose files can hold a subset of the CPUs (`trace-cmd report --cpu N`).
CPU_FILTERABLE = ("tcreport", "tcreport_latency", "trace_dat")

#: Columns and types of the violations table (tier 2 builds its findings with it).
VIOLATION_SCHEMA = pl.Schema(t2.SCHEMA)


def replay_trace(
    tables: dict[str, pl.DataFrame], gaps: pl.DataFrame, trace: dict
) -> dict[str, pl.DataFrame]:
    """Replay one trace.

    ``tables`` maps event names (and ``other_events`` for probe lines) to their rows;
    ``gaps`` is the trace's gaps table; ``trace`` its manifest row (``ts_first``,
    ``ts_last``, ``cpus``, ``format``). Returns the replay tables ``migrations``,
    ``migration_batches``, ``page_states``, ``fork_windows`` and ``violations``.

    Events are walked in ``seq`` order; for a format whose file order is not time order
    they are walked in time order instead, and the seqs in the result are still the trace's.
    """
    if trace.get("format") in UNORDERED_FORMATS:
        ordered, back = time_order(tables)
        return restore_seqs(_replay(ordered, gaps, trace), back)
    return _replay(tables, gaps, trace)


def _replay(
    tables: dict[str, pl.DataFrame], gaps: pl.DataFrame, trace: dict
) -> dict[str, pl.DataFrame]:
    seen_cpus: set[int] = set()
    for name, df in tables.items():
        if name != PARENT_EVENTS and df.height and "cpu" in df.columns:
            seen_cpus.update(c for c in df["cpu"].unique().to_list() if c is not None)
    windows = t1.GapIndex(
        gaps,
        trace.get("ts_first"),
        trace.get("ts_last"),
        seen_cpus or set(range(trace.get("cpus") or 0)),
        trace.get("cpus"),
        cpu_filtered=trace.get("format") in CPU_FILTERABLE,
    )
    windows.exits = _exits(tables, windows.ts_last)
    spans = t1.fork_spans(tables, t1.all_events(tables))
    if "ts_start" in spans.columns:  # (a clone sharing the mm copies no page tables)
        copying = spans.filter(~pl.col("shares_vm").fill_null(False)).with_columns(
            t1.FORK_START,
            t1.FORK_END,  # the copy_page_range probes' window, when traced
        )
        windows.forks = list(copying.sort("_start").select("_start", "_end").iter_rows())
    batch = t1.batches(tables)
    sets, removes = t1.migration_events(tables)
    sets = t1.assign_batches(sets, batch)
    removes = t1.assign_batches(removes, batch)
    paired, surplus = t1.pair(sets, removes, t1.mm_births(tables))
    paired = t1.zaps(paired, tables, batch)
    paired = t1.unmap_groups(paired, removes, tables)
    migs = t1.migrations(paired, windows, batch)
    states = t1.page_states(paired, migs, surplus)
    forks = t1.fork_overlaps(spans, migs)
    batch = _batch_counts(batch, migs, surplus)
    # with probes every entry has its owner: tier 2's leaks replace tier 1's
    found = [t2.violations(tables, windows) if t2.has_probes(tables) else _leaks(paired, migs)]
    found.append(rules.check(tables, paired, surplus, migs, batch, windows))  # issue 13
    violations = (
        pl.concat([f for f in found if f.height], how="vertical_relaxed")
        if any(f.height for f in found)
        else pl.DataFrame(schema=VIOLATION_SCHEMA)
    )
    violations = violations.select(list(VIOLATION_SCHEMA)).cast(VIOLATION_SCHEMA).sort("ts")
    if "group" in migs.columns:
        migs = migs.drop("group")
    return {
        "migrations": migs,
        "migration_batches": batch,
        "page_states": states,
        "fork_windows": forks,
        "violations": violations,
    }


def bounds_fork_window(table: str, everything: bool = False) -> bool:
    """Whether a forking parent's line of ``table`` (not printed in interrupt context) may
    start the fork's window: for tier 1's windows (``everything``: the parent's previous
    line of any table, :func:`~._tier1.fork_spans` over :func:`~._tier1.all_events`),
    or for the rules of :mod:`._rules` (their own tracepoints and the tables replay does
    not otherwise read: :data:`PARENT_EVENTS`; not the probes, the page allocator, the
    syscalls and the other events the rules read). One definition for replay and for the
    simulator's ground truth (``decidable_tier1``)."""
    if everything:
        return True
    return table in rules.OWN_TABLES or table not in {*INPUT_EVENTS, *PROBE_TABLES}


def parent_events(frames: Iterable[pl.LazyFrame], fork: pl.DataFrame | None) -> pl.DataFrame:
    """The :data:`PARENT_COLS` of the events in ``frames`` (tables replay does not otherwise
    read) whose pid forked (a ``parent_pid`` of ``fork``, the ``sched_process_fork`` rows),
    but those printed in interrupt context (:func:`in_interrupt`): an interrupt during the
    fork's copy prints under the parent's pid and must not bound the copy's start."""
    schema = pl.Schema({"seq": pl.Int64, "ts": pl.Int64, "cpu": pl.Int32, "pid": pl.Int32})
    if fork is None or fork.is_empty():
        return pl.DataFrame(schema=schema)
    parents = fork["parent_pid"].unique().implode()
    parts = [
        f.filter(pl.col("pid").is_in(parents) & ~t1.in_interrupt(f.collect_schema().names()))
        .select(PARENT_COLS)
        .cast(schema)
        for f in frames
        if set(PARENT_COLS) <= set(f.collect_schema().names())
    ]
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(pl.collect_all(parts)).sort("seq")


def time_order(
    tables: dict[str, pl.DataFrame],
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """``tables`` with ``seq`` renumbered in time order: by ``ts``, then by CPU and file
    order (a CPU's own events are in order; equal timestamps on different CPUs go by CPU
    number, so the order is deterministic). Also returns the map ``new`` -> ``old`` seq."""
    keys = [
        df.select(pl.col("seq").cast(pl.Int64), pl.col("ts").cast(pl.Int64), _cpu(df))
        for df in tables.values()
        if df.height and {"seq", "ts"} <= set(df.columns)
    ]
    if not keys:
        return tables, pl.DataFrame(schema={"new": pl.Int64, "old": pl.Int64})
    order = (
        pl.concat(keys)
        .unique("seq", keep="first")
        .sort("ts", "cpu", "seq", nulls_last=True)
        .select(pl.int_range(pl.len(), dtype=pl.Int64).alias("new"), pl.col("seq").alias("old"))
    )
    renumber = pl.col("seq").replace_strict(order["old"], order["new"], return_dtype=pl.Int64)
    out = {
        name: df.with_columns(renumber) if "seq" in df.columns else df
        for name, df in tables.items()
    }
    return out, order


def _cpu(df: pl.DataFrame) -> pl.Expr:
    return (pl.col("cpu") if "cpu" in df.columns else pl.lit(None)).cast(pl.Int32).alias("cpu")


def restore_seqs(out: dict[str, pl.DataFrame], back: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The replay tables of :func:`time_order`'s events with the trace's own seqs again."""
    if back.is_empty():
        return out
    new, old = back["new"], back["old"]

    def orig(e: pl.Expr) -> pl.Expr:
        return e.replace_strict(new, old, default=None, return_dtype=pl.Int64)

    result = {}
    for name, df in out.items():
        df = df.with_columns(orig(pl.col(c)) for c in SEQ_COLS if c in df.columns)
        df = df.with_columns(
            pl.col(c).list.eval(orig(pl.element())) for c in SEQ_LIST_COLS if c in df.columns
        )
        result[name] = df
    return result


def _batch_counts(batch: pl.DataFrame, migs: pl.DataFrame, surplus: pl.DataFrame) -> pl.DataFrame:
    """Add how many mapped folios replay paired in each batch, and surplus removes."""
    if batch.is_empty():
        return batch
    if migs.height and "batch_id" in migs.columns:
        pages = pl.lit(2, pl.Int64).pow(pl.col("order").cast(pl.Int64))
        # a THP mapped by a pmd in some processes and by ptes in others has a row per kind:
        # one folio migrated, counted once
        first = pl.int_range(pl.len()).over("batch_id", "old_pfn", "order", "outcome") == 0
        migrated = (pl.col("outcome") == "migrated") & pl.col("_first")
        c = (
            migs.with_columns(first.alias("_first"))
            .group_by("batch_id")
            .agg(
                migrated.sum().alias("paired_migrated"),
                (pages * migrated).sum().alias("paired_migrated_pages"),
                (pl.col("outcome") == "restored").sum().alias("paired_restored"),
                (pl.col("outcome") == "leaked").sum().alias("leaked"),
                (pl.col("outcome") == "inconclusive").sum().alias("inconclusive"),
                pl.col("n_set").sum().alias("n_set"),
                pl.col("n_remove").sum().alias("n_remove"),
            )
        )
        batch = batch.join(c, on="batch_id", how="left")
    else:
        batch = batch.with_columns(
            pl.lit(0).alias(c) for c in BATCH_COUNTS if c != "n_surplus_remove"
        )
    if surplus.height and "batch_id" in surplus.columns:
        s = surplus.group_by("batch_id").agg(pl.len().alias("n_surplus_remove"))
        batch = batch.join(s, on="batch_id", how="left")
    else:
        batch = batch.with_columns(pl.lit(0).alias("n_surplus_remove"))
    batch = batch.with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in BATCH_COUNTS)
    leading = [
        "batch_id",
        "pid",
        "cpu",
        "ts_start",
        "ts_end",
        "seq_start",
        "seq_end",
        "mode",
        "reason",
    ]
    return batch.select(*leading, *[c for c in batch.columns if c not in leading])


def _exits(tables: dict[str, pl.DataFrame], ts_last: int) -> list[tuple[int, int]]:
    """The spans, sorted by start, in which a process exit may drop migration entries
    without a tracepoint (its zap, in ``exit_mmap``).

    Before Linux 6.16 ``sched_process_exit`` is printed after ``exit_mm``, so the zap is
    over when the line shows: the line is the span. Since 6.16 (the line carries
    ``group_dead``) it is printed before ``exit_mm``: the zap follows, until the exiting
    task's ``exit_mmap`` line (printed once its page tables are gone), else its
    ``sched_process_free`` (printed once it is reaped), else the trace's end (``ts_last``).
    An ``exit_mmap`` line alone is the span of its own zap."""
    spans: list[pl.DataFrame] = []
    ends: list[pl.DataFrame] = []
    for name, who in (("exit_mmap", "pid"), ("sched_process_free", "field_pid")):
        df = tables.get(name)
        if df is not None and df.height and who in df.columns:
            ends.append(df.select(pl.col(who).cast(pl.Int32).alias("pid"), pl.col("ts").alias("e")))
    mmap = tables.get("exit_mmap")
    if mmap is not None and mmap.height:
        spans.append(mmap.select(pl.col("ts").alias("s"), pl.col("ts").alias("e")))
    exit_ = tables.get("sched_process_exit")
    if exit_ is not None and exit_.height:
        who = "field_pid" if "field_pid" in exit_.columns else "pid"
        x = exit_.select(pl.col(who).cast(pl.Int32).alias("pid"), pl.col("ts").alias("s"))
        if "group_dead" not in exit_.columns or exit_["group_dead"].is_null().all():
            spans.append(x.select("s", pl.col("s").alias("e")))  # (Linux < 6.16)
        else:
            end = pl.concat(ends) if ends else pl.DataFrame(schema={"pid": pl.Int32, "e": pl.Int64})
            x = x.sort("s").join_asof(
                end.sort("e"),
                left_on="s",
                right_on="e",
                by="pid",
                strategy="forward",
                check_sortedness=False,
            )
            spans.append(x.select("s", pl.col("e").fill_null(ts_last)))
    if not spans:
        return []
    return sorted(pl.concat(spans).cast(pl.Int64).iter_rows())


def _leaks(paired: pl.DataFrame, migs: pl.DataFrame) -> pl.DataFrame:
    """``leaked-entry``: a migration entry set and never removed before its batch ended.

    Found at the batch's end (``mm_migrate_pages``). Without probes the owner of an entry is
    unknown; when the window was cut, lost events or a CPU is missing, or a process exited
    meanwhile (exit zaps entries without a tracepoint), the finding is inconclusive.
    """
    if migs.is_empty() or "outcome" not in migs.columns:
        return pl.DataFrame(schema=VIOLATION_SCHEMA)
    bad = migs.filter(pl.col("outcome").is_in(["leaked", "inconclusive"]))
    if bad.is_empty():
        return pl.DataFrame(schema=VIOLATION_SCHEMA)
    unremoved = paired.filter(pl.col("r_seq").is_null())
    rows = unremoved.join(
        bad.select(
            "group", "outcome", "why", pl.col("ts_end").alias("batch_end_ts"), "seq_last_remove"
        ),
        on="group",
    )
    reason = {
        "cut": "the trace ends before its batch does",
        "lost": "events were lost while it was open",
        "missing_cpu": "a CPU is missing from this trace (a per-CPU report?), where the "
        "remove may be",
        "exit": "a process exited meanwhile, and exit drops migration entries without a tracepoint",
        "fork": "a fork was copying page tables meanwhile, and a walk that met the child "
        "before its parent leaves an entry the copy replaces (the probe events would tell)",
        "ambiguous": "entries of other pages at the same address took removes in the same "
        "attempt, and the trace cannot tell which page's entry lacks one (one of them does)",
    }
    hexed = [pl.col(c).map_elements(hex, return_dtype=pl.String) for c in ("pfn", "addr")]
    return rows.select(
        pl.lit("leaked-entry").alias("rule"),
        pl.when(pl.col("outcome") == "leaked")
        .then(pl.lit("violation"))
        .otherwise(pl.lit("inconclusive"))
        .alias("verdict"),
        pl.coalesce("batch_end_ts", "ts").alias("ts"),
        "pfn",
        "addr",
        pl.lit(None, pl.Int32).alias("pid"),
        pl.lit(None, pl.UInt64).alias("mm"),
        pl.when(pl.col("outcome") == "leaked")
        .then(
            pl.format(
                "migration entry for pfn {} at {} set by {} (pid {}) was never removed before its "
                "batch ended: a leaked migration entry (a later fault there waits forever)",
                *hexed,
                "comm",
                pl.col("pid").cast(pl.String),
            )
        )
        .otherwise(
            pl.format(
                "migration entry for pfn {} at {} has no remove, but {}",
                *hexed,
                pl.col("why").replace_strict(reason, default="the trace cannot tell"),
            )
        )
        .alias("explanation"),
        pl.concat_list(pl.col("seq")).alias("evidence"),
    )
