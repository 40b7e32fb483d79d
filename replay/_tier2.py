"""Tier-2 replay: exact per-(mm, address) state from probe events.

The probes of ``data/probes/README.md`` name the mm of every vma an rmap walk visits and
the fork steps that link (``anon_vma_fork``) and copy (``copy_page_range`` ..
``copy_page_range_ret``) a child's vma. A migration tracepoint that follows a visit on the
same task belongs to the visited mm, so every migration entry gets its owner. One pass in
trace order then checks the rules:

* ``child-before-parent-set`` / ``-remove``: a walk visits a fork child's vma while its copy
  is in progress and visits the child's parent (the copy source) only later;
* ``present-copied-after-set``: fork copied a present pte into a child the set walk had
  already passed (the child keeps mapping the old page);
* ``stale-child-entry``: a child holds a migration entry fork copied from its parent after
  the remove walk of that page ended;
* ``leaked-entry``: an entry set in a batch is neither removed nor zapped by its owner's exit
  when the batch ends.
* ``foreign-entry``: a set walk installs its entry where another page's migration entry is;
* ``shared-page-writable``: a remove walk restores one page writable in two mms.

Sequential by nature (walks, copies and exits interleave), but only over probe and migration
rows, a small part of a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from rmapscope.catalog import MIGRATION_EVENTS, PROBE_PREFIX, VIOLATIONS, VMEMMAP_BASE

from ._tier1 import mm_births

#: The violations table's columns as polars types (the findings are built with it).
SCHEMA = VIOLATIONS.polars_schema


@dataclass
class _Line:
    seq: int
    ts: int
    cpu: int


@dataclass
class _Vma:
    """A child vma made by fork: its link and copy window, and its copy source."""

    link: _Line
    src_mm: int | None
    ret: _Line | None = None
    start: int | None = None  # the copied address range (copy_page_range)
    end: int | None = None

    def covers(self, addr: int) -> bool:
        """Whether the copy covered ``addr`` (True when the range is not known)."""
        return self.start is None or self.end is None or self.start <= addr < self.end


@dataclass
class _Visit:
    line: _Line
    mm: int
    pgoff: int
    addr: int
    tps: list[dict] = field(default_factory=list)  # migration lines it emitted


@dataclass
class _Walk:
    start: _Line
    folio: int
    kind: str | None = None
    visits: list[_Visit] = field(default_factory=list)
    end: _Line | None = None  # set when the walk ends (every walk in _State.done has it)
    no: int = 0  # the walk's number, in the order walks start


@dataclass
class _Entry:
    """A migration entry at (mm, addr) that a set line installed."""

    line: _Line
    pfn: int
    kind: str | None
    batch: int | None
    removed: _Line | None = None
    restored_writable: bool | None = None
    superseded: bool = False  # a later set at the same pte: its remove went unseen
    foreign: _Line | None = None  # that later set was of another page (foreign-entry)
    order: int = 0  # the folio's order (the set line's)
    pgoff: int | None = None  # the vma the set walk was visiting


class _State:
    def __init__(self) -> None:
        self.owner: dict[int, int] = {}  # mm -> pid
        self.vmas: dict[tuple[int, int], _Vma] = {}  # (child mm, pgoff) -> fork info
        self.copying: dict[int, list[tuple[int, int]]] = {}  # task -> (dst mm, pgoff) stack
        self.unforked: dict[int, list[int]] = {}  # task -> child mms copied, fork not yet seen
        self.walks: dict[int, _Walk] = {}
        self.done: list[_Walk] = []
        self.entries: dict[tuple[int, int], list[_Entry]] = {}
        self.batch: dict[int, int] = {}  # task -> open batch id
        self.batch_sets: dict[int, list[tuple[int, int, _Entry]]] = {}
        self.batch_end: dict[int, _Line] = {}
        self.exited: dict[int, _Line] = {}  # pid -> sched_process_exit line
        self.unlinked: dict[tuple[int, int], _Line] = {}  # (mm, pgoff) -> unlink line
        # mm -> seqs of the forks that created it (mm_births): an mm_struct freed by its
        # owner's exit is allocated again by a later fork (the same pointer, a new mm)
        self.births: dict[int, list[int]] = {}
        self.next_batch = 0
        self.unlink_traced = False  # whether the trace has unlink_anon_vmas probe lines
        self.present_copies: set[tuple[int, int, int | None]] = set()  # (child mm, pgoff, pfn)
        # children that may hold a present copy (the lines cannot tell): same key
        self.maybe_present: set[tuple[int, int, int | None]] = set()
        # every migration line of a probed walk: (walk no., task, seq, ts, cpu, set?, pmd?, mm,
        # addr, pfn, writable, pfn of the entry a remove restored) -- the table of
        # _foreign_entries and _shared_writable
        self.lines: list[list] = []
        self.nwalks = 0
        self.walk_start: dict[int, _Line] = {}  # walk no. -> its rmap_walk_anon line


def violations(tables: dict[str, pl.DataFrame], windows) -> pl.DataFrame:
    """Tier-2 findings (all rules above, including leaks) from a trace with probe tables."""
    rows = _merged(tables)
    st = _State()
    unlinks = tables.get(PROBE_PREFIX + "unlink_anon_vmas")
    st.unlink_traced = unlinks is not None and unlinks.height > 0
    for mm, seq in mm_births(tables).iter_rows():
        st.births.setdefault(mm, []).append(seq)
    vma_pgoff: dict[tuple[int, int], int] = {}  # (mm, addr page) -> pgoff, from visits
    for r in rows.iter_rows(named=True):
        _step(st, r, vma_pgoff)
    findings = _walk_findings(st) + _leak_findings(st, vma_pgoff)
    lines = pl.DataFrame(st.lines, schema=_LINES, orient="row")
    findings += _foreign_entries(st, lines, vma_pgoff) + _shared_writable(st, lines)
    if not findings:
        return pl.DataFrame(schema=SCHEMA)
    out = []
    every_cpu = {ln.cpu for f in findings for ln in f["lines"]}
    for f in findings:
        lines = f.pop("lines")
        # the remove a leak misses could have been lost on any CPU; the other rules' evidence
        # is the lines they name
        cpus = every_cpu if f["rule"] in _ANY_CPU else {ln.cpu for ln in lines}
        lo, hi = min(ln.ts for ln in lines), max(ln.ts for ln in lines)
        if f["verdict"] == "violation" and windows.overlaps_on(lo, hi, cpus):
            f["verdict"] = "inconclusive"
        f["evidence"] = sorted({ln.seq for ln in lines})
        f["pid"] = st.owner.get(f["mm"]) if f["mm"] is not None else None
        out.append(f)
    return pl.DataFrame(out, schema=SCHEMA)


#: Rules whose evidence is a line that is missing (lost on any CPU would explain it).
_ANY_CPU = ("leaked-entry", "foreign-entry", "shared-page-writable")


def has_probes(tables: dict[str, pl.DataFrame]) -> bool:
    """Whether the trace carries the walk probes tier 2 needs."""
    return any(
        tables.get(t) is not None and tables[t].height
        for t in (PROBE_PREFIX + "try_to_migrate_one", PROBE_PREFIX + "remove_migration_pte")
    )


def _merged(tables: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Probe and migration rows (and the fork/exit/batch events) in trace order."""
    parts = []
    keys = [
        "folio",
        "mm",
        "pmm",
        "pgoff",
        "addr",
        "dst_mm",
        "src_mm",
        "start",
        "end",
        "pfn",
        "child_pid",
        "field_pid",
        "order",
    ]
    for name, df in tables.items():
        if df is None or df.is_empty():
            continue
        if name.startswith(PROBE_PREFIX):
            event = name[len(PROBE_PREFIX) :]
        elif name in (
            *MIGRATION_EVENTS,
            "sched_process_fork",
            "sched_process_exit",
            "mm_migrate_pages_start",
            "mm_migrate_pages",
        ):
            event = name
        else:
            continue
        cols = [
            pl.col("seq"),
            pl.col("ts"),
            pl.col("cpu"),
            pl.col("pid"),
            pl.lit(event).alias("ev"),
        ]
        for k in keys:
            if k in df.columns:
                cols.append(
                    pl.col(k)
                    .cast(pl.UInt64 if k not in ("child_pid", "field_pid", "order") else pl.Int64)
                    .alias(k)
                )
        if name in MIGRATION_EVENTS:
            if "migration_kind" in df.columns:
                cols.append(pl.col("migration_kind").alias("mkind"))
            if "writable" in df.columns:
                cols.append(pl.col("writable").alias("writable"))
        parts.append(df.select(cols))
    return pl.concat(parts, how="diagonal_relaxed").sort("seq")


def _step(st: _State, r: dict, vma_pgoff: dict) -> None:
    ev, task = r["ev"], r["pid"]
    line = _Line(r["seq"], r["ts"], r["cpu"])
    if ev == "anon_vma_fork":
        st.owner.setdefault(r["pmm"], task)
        st.vmas[(r["mm"], r["pgoff"])] = _Vma(line, r["pmm"])
    elif ev == "copy_page_range":
        st.owner.setdefault(r["src_mm"], task)
        key = (r["dst_mm"], r["pgoff"])
        vma = st.vmas.setdefault(key, _Vma(line, r["src_mm"]))
        vma.start, vma.end = r.get("start"), r.get("end")
        st.copying.setdefault(task, []).append(key)
        st.unforked.setdefault(task, []).append(r["dst_mm"])
    elif ev == "copy_page_range_ret":
        if st.copying.get(task):
            key = st.copying[task].pop()
            st.vmas[key].ret = line
    elif ev == "sched_process_fork":
        for mm in st.unforked.pop(task, []):
            st.owner.setdefault(mm, r["child_pid"])
    elif ev == "sched_process_exit":
        st.exited[r.get("field_pid") or task] = line
    elif ev == "unlink_anon_vmas":
        st.owner.setdefault(r["mm"], task)
        st.unlinked.setdefault((r["mm"], r["pgoff"]), line)
    elif ev == "rmap_walk_anon":
        st.nwalks += 1
        st.walks[task] = _Walk(line, r["folio"], no=st.nwalks)
        st.walk_start[st.nwalks] = line
    elif ev in ("try_to_migrate_one", "remove_migration_pte") and r.get("mm") is not None:
        w = st.walks.get(task)
        kind = "set" if ev == "try_to_migrate_one" else "remove"
        if w is not None and (
            (w.kind is not None and w.kind != kind)
            or (r.get("folio") is not None and w.folio is not None and r["folio"] != w.folio)
        ):
            # a visit of another kind or folio: this walk's end and the next one's start
            # were lost; neither walk can be told apart from the other
            del st.walks[task]
            w = None
        if w is not None:
            w.kind = kind
            w.visits.append(_Visit(line, r["mm"], r["pgoff"], r["addr"]))
            vma_pgoff[(r["mm"], r["addr"] >> 12)] = r["pgoff"]
    elif ev == "rmap_walk_anon_ret":
        w = st.walks.pop(task, None)
        if w is not None:
            w.end = line
            st.done.append(w)
    elif ev == "mm_migrate_pages_start":
        st.batch[task] = st.next_batch
        st.batch_sets[st.next_batch] = []
        st.next_batch += 1
    elif ev == "mm_migrate_pages":
        b = st.batch.pop(task, None)
        if b is not None:
            st.batch_end[b] = line
    elif ev in MIGRATION_EVENTS:
        w = st.walks.get(task)
        if w is None or not w.visits:
            return  # a migration line outside a probed walk: tier 1 handles it
        v = w.visits[-1]
        v.tps.append(r)
        key = (v.mm, r["addr"])
        is_set = ev.startswith("set")
        row = [w.no, task, r["seq"], r["ts"], r["cpu"], is_set, ev.endswith("pmd"), v.mm]
        row += [r["addr"], r["pfn"], r.get("writable"), None]
        st.lines.append(row)
        if is_set:
            # one pte holds one entry: a new set means the earlier one was removed, even if
            # that remove was not seen (lost, or made without a tracepoint)
            for old in st.entries.get(key, []):
                if old.removed is None and not old.superseded and old.pfn != r["pfn"]:
                    old.foreign = line
                old.superseded = old.superseded or old.removed is None
            e = _Entry(line, r["pfn"], r.get("mkind"), st.batch.get(task))
            e.order = int(r["order"]) if r.get("order") is not None else 9
            e.pgoff = v.pgoff
            st.entries.setdefault(key, []).append(e)
            if e.batch is not None:
                st.batch_sets[e.batch].append((v.mm, r["addr"], e))
        else:
            open_ = [e for e in st.entries.get(key, []) if e.removed is None and not e.superseded]
            if open_:
                open_[0].removed = line
                open_[0].restored_writable = r.get("writable")
                row[-1] = open_[0].pfn


def _born_between(st: _State, mm: int, lo: int, hi: int) -> bool:
    """Whether ``mm`` was created by a fork between seqs ``lo`` and ``hi``."""
    return any(lo < b < hi for b in st.births.get(mm, ()))


def _folio_pfn(w: _Walk, base: int = VMEMMAP_BASE) -> int | None:
    """The pfn of a walk's folio: from the migration lines it printed, else (no line at all)
    from the folio pointer and the vmemmap ``base`` (see :func:`_vmemmap_base`)."""
    pfns = [tp["pfn"] for v in w.visits for tp in v.tps if tp.get("pfn") is not None]
    if pfns:
        return min(pfns)
    if w.folio is not None and w.folio >= base:
        return (w.folio - base) // 64
    return None


def _vmemmap_base(walks: list[_Walk]) -> int:
    """Where this kernel's struct page array starts (randomised with
    ``CONFIG_RANDOMIZE_MEMORY``): ``folio - 64 * pfn`` of the walks over a single page
    that printed its pfn (the most common value), else the default x86_64 base."""
    seen: dict[int, int] = {}
    for w in walks:
        tps = [tp for v in w.visits for tp in v.tps if tp.get("pfn") is not None]
        if w.folio is None or not tps or any(tp.get("order") for tp in tps):
            continue
        if len({tp["pfn"] for tp in tps}) == 1:
            b = w.folio - 64 * tps[0]["pfn"]
            seen[b] = seen.get(b, 0) + 1
    return max(seen, key=lambda b: seen[b]) if seen else VMEMMAP_BASE


def _walk_findings(st: _State) -> list[dict]:
    out: list[dict] = []
    by_folio_remove: dict[int, list[_Walk]] = {}
    for w in st.done:
        if w.kind == "remove":
            by_folio_remove.setdefault(w.folio, []).append(w)
    base = _vmemmap_base(st.done)
    for w in st.done:
        if w.kind is None:
            continue
        assert w.end is not None
        pfn = _folio_pfn(w, base)
        seen: dict[int, int] = {}
        for i, v in enumerate(w.visits):
            seen.setdefault(v.mm, i)
        for i, v in enumerate(w.visits):
            vma = st.vmas.get((v.mm, v.pgoff))
            if vma is None or vma.src_mm is None:
                continue
            copying = vma.link.seq < v.line.seq and (vma.ret is None or vma.ret.seq > v.line.seq)
            j = next((k for k in range(i + 1, len(w.visits)) if w.visits[k].mm == vma.src_mm), None)
            if not copying or j is None or seen.get(vma.src_mm, i) < i:
                continue
            parent = w.visits[j]
            out.append(
                _finding(
                    f"child-before-parent-{w.kind}",
                    v.line.ts,
                    pfn,
                    v.addr,
                    v.mm,
                    [vma.link, w.start, v.line, parent.line, w.end],
                    f"the {w.kind} walk of pfn {_hex(pfn)} visited child mm {v.mm:#x} before its "
                    f"parent mm {vma.src_mm:#x} while the child's page tables were being copied: "
                    + (
                        "fork may copy a present pte into the child after the walk passed it"
                        if w.kind == "set"
                        else "fork may copy the parent's migration entry into "
                        "the child after the walk passed it, leaving a stale entry"
                    ),
                )
            )
            if w.kind == "set" and not v.tps and parent.tps and vma.ret is not None:
                out.extend(_present_copied(st, w, v, parent, vma, by_folio_remove, pfn))
    for w in st.done:
        if w.kind == "remove":
            out.extend(_stale(st, w))
    return out


def _present_copied(st, w, v, parent, vma, removes, pfn) -> list[dict]:
    """The set walk passed child ``v`` (empty) before its parent; did fork then copy the
    parent's still-present pte into it?"""
    set_ts = parent.tps[0]["ts"] if parent.tps else parent.line.ts
    present = vma.ret.ts < set_ts  # copied before the parent's pte became an entry
    if not present:
        # otherwise the attempt tells: a present pte left in the child keeps the old page
        # mapped, so the migration fails and the same folio is restored (a remove walk over
        # the source folio) without restoring the child, which never held an entry
        later = [rw for rw in removes.get(w.folio, []) if rw.start.seq > w.end.seq]
        if later:
            cv = next((x for x in later[0].visits if x.mm == v.mm), None)
            if cv is not None and vma.ret.seq > cv.line.seq:
                # the remove walk passed the child while fork was still copying it: an
                # empty child then says nothing about what fork copied, nor when
                st.maybe_present.add((v.mm, v.pgoff, pfn))
                return []
            present = cv is None or not cv.tps
    if not present:
        return []
    st.present_copies.add((v.mm, v.pgoff, pfn))
    return [
        _finding(
            "present-copied-after-set",
            vma.ret.ts,
            pfn,
            v.addr,
            v.mm,
            [v.line, vma.link, vma.ret],
            f"fork copied a present pte for pfn {_hex(pfn)} at {v.addr:#x} into child mm "
            f"{v.mm:#x} after the set walk had visited the child: the child still maps the old "
            "page, so this migration attempt must fail",
        )
    ]


def _stale(st: _State, w: _Walk) -> list[dict]:
    """Children that hold a copy of a parent's entry after this remove walk ended.

    The walk restores the pages whose entries it removed (their old pfns). A fork child
    whose copy ran while a parent's entry for one of them lived holds a copy of it, unless
    this walk restored the child too, or the child's exit zapped it.
    """
    assert w.end is not None
    removed = [
        (v, e)
        for v in w.visits
        for tp in v.tps
        if (e := _entry_removed_by(st, v.mm, tp["addr"], tp["seq"])) is not None
    ]
    if not removed:
        return []
    # the (pfn, migration batch) of each removed entry: one life of the page; an entry set
    # on the same pfn in another batch belongs to an earlier life (the pfn was reused)
    lives = {(e.pfn, e.batch) for _, e in removed}
    restored = {v.mm for v in w.visits if v.tps}
    visits = {v.mm: v for v in w.visits}
    out = []
    for (cmm, pgoff), vma in st.vmas.items():
        if vma.ret is None or vma.src_mm is None or cmm in restored:
            continue
        if vma.link.seq > w.end.seq:
            continue  # forked after the walk: it copies a leftover, it is not left over
        unlink = st.unlinked.get((cmm, pgoff))
        if unlink is not None and unlink.seq < w.end.seq:
            continue  # the child's vma went (its entries were zapped) before the walk ended
        owner = st.owner.get(cmm)
        exit_line = st.exited.get(owner) if owner is not None else None
        if exit_line is not None and exit_line.seq < w.end.seq:
            continue  # the child was exiting: its zap drops entries silently
        cv = visits.get(cmm)
        for (mm, addr), entries in st.entries.items():
            if mm != vma.src_mm or not vma.covers(addr):
                continue
            for e in entries:
                if (e.pfn, e.batch) not in lives or e.line.seq > w.start.seq:
                    continue
                if e.removed is not None and e.removed.seq < w.start.seq:
                    continue  # an earlier walk restored it: that walk answers for its copies
                if (cmm, pgoff, e.pfn) in st.present_copies:
                    continue  # fork copied the pte while it was still present, not the entry
                f = _copied_entry(
                    st,
                    w,
                    e,
                    vma,
                    cv,
                    cmm,
                    addr,
                    _downgrade_explained(st, e, vma.src_mm, addr, (cmm, pgoff)),
                    (cmm, pgoff, e.pfn) in st.maybe_present,
                )
                if f is not None:
                    out.append(f)
    return out


def _downgrade_explained(st: _State, e: _Entry, src_mm: int, addr: int, child: tuple) -> bool:
    """Whether another fork child of the parent (not ``child``) may have copied ``e`` too:
    its copy window meets the entry's life, so the parent's downgrade may be its doing."""
    for key, vma in st.vmas.items():
        if key == child or vma.src_mm != src_mm or vma.ret is None:
            continue
        if not vma.covers(addr):
            continue
        gone = e.removed.ts if e.removed is not None else None
        if (gone is None or vma.link.ts < gone) and e.line.ts < vma.ret.ts:
            return True
    return False


def _copied_entry(
    st, w, e: _Entry, vma: _Vma, cv, cmm: int, addr: int, explained: bool, maybe_present: bool
) -> dict | None:
    """Whether fork's copy of ``vma`` caught the parent's entry ``e`` (and kept it).

    ``maybe_present``: the child may already hold a present copy of the page, so finding it
    empty of entries proves nothing about the copy's time; only the downgrade can tell."""
    # the child's pte copy ran some time in the copy window, and after this walk found the
    # child empty; it caught the entry if that time lies in the entry's life. Certain when
    # every such time does; likely enough when they meet and the parent's WRITE entry came
    # back read-only (fork's downgrade of an entry it copied).
    assert w.end is not None and vma.ret is not None  # a finished walk, a returned fork
    lo = max(vma.link.ts, cv.line.ts) if cv is not None else vma.link.ts
    hi = vma.ret.ts
    if lo >= hi:
        return None  # copied before the walk found the child empty: nothing was copied
    gone = e.removed.ts if e.removed is not None else None
    inside = e.line.ts < lo and (gone is None or hi < gone) and not maybe_present
    meets = (gone is None or lo < gone) and e.line.ts < hi
    downgraded = e.kind == "write" and e.restored_writable is False and not explained
    if not (inside or (meets and downgraded)):
        return None
    lines = [e.line, vma.link, w.start, w.end, vma.ret] + ([cv.line] if cv is not None else [])
    return _finding(
        "stale-child-entry",
        max(w.end.ts, vma.ret.ts),
        e.pfn,
        addr,
        cmm,
        lines,
        f"child mm {cmm:#x} still holds a migration entry for pfn {e.pfn:#x} at {addr:#x} "
        "after the remove walk of that page ended: a stale entry pointing at a page that is "
        "being freed",
    )


def _entry_removed_by(st: _State, mm: int, addr: int, seq: int) -> _Entry | None:
    for e in st.entries.get((mm, addr), []):
        if e.removed is not None and e.removed.seq == seq:
            return e
    return None


def _silent_visits(st: _State) -> tuple[dict, dict]:
    """Remove-walk visits that printed no remove: (mm, address, pfn of a page the walk
    restores) -> seqs of visits printing none at that address; and, for walks over a large
    folio (removes of a non-zero order, or of a pmd), (mm, vma pgoff, the folio's first old
    pfn) -> seqs of visits printing nothing at all. A remove walk runs over the destination
    folio (a split's remap over each new small folio, its own source): the pages it restores
    are its folio's and the old pfns of the entries whose removes it printed."""
    base = _vmemmap_base(st.done)
    at: dict[tuple[int, int, int | None], list[int]] = {}
    quiet: dict[tuple[int, int, int], list[int]] = {}
    for w in st.done:
        if w.kind != "remove":
            continue
        pages: set[int | None] = {
            (w.folio - base) // 64 if w.folio is not None and w.folio >= base else None
        }
        heads: set[int] = set()
        for v in w.visits:
            for tp in v.tps:
                e = _entry_removed_by(st, v.mm, tp["addr"], tp["seq"])
                if e is None:
                    continue
                pages.add(e.pfn)
                if tp["ev"] == "remove_migration_pmd" or (tp.get("order") or 0) > 0:
                    heads.add(e.pfn >> e.order << e.order)
        for v in w.visits:
            if all(tp["addr"] != v.addr for tp in v.tps):
                for pfn in pages:
                    at.setdefault((v.mm, v.addr, pfn), []).append(v.line.seq)
            if not v.tps:
                for head in heads:
                    quiet.setdefault((v.mm, v.pgoff, head), []).append(v.line.seq)
    return at, quiet


def _gone_at_visit(
    e: _Entry, mm: int, addr: int, pgoff: int | None, end: _Line, silent: tuple[dict, dict]
) -> bool:
    """Whether a remove walk over ``e``'s own page visited its owner at its address (or,
    for a large folio, its vma, printing nothing) after the set and before ``end`` without
    restoring it: it was gone (an exiting owner's zap, whose exit and unlink lines come
    later) or a split mapped the zero page there (Linux 6.12+, no tracepoint). (A walk over
    another folio of the anon_vma visits the vma too, for nothing.)"""
    at, quiet = silent
    seqs = list(at.get((mm, addr, e.pfn), []))
    if e.order and pgoff is not None:
        seqs += quiet.get((mm, pgoff, e.pfn >> e.order << e.order), [])
    return any(e.line.seq < seq < end.seq for seq in seqs)


def _leak_findings(st: _State, vma_pgoff: dict) -> list[dict]:
    out = []
    silent = _silent_visits(st)
    for b, sets in st.batch_sets.items():
        end = st.batch_end.get(b)
        if end is None:
            continue  # the trace ends first: tier 1 says inconclusive
        for mm, addr, e in sets:
            # (an entry a foreign set replaced was never removed: it leaked)
            if (e.superseded and e.foreign is None) or (
                e.removed is not None and e.removed.seq < end.seq
            ):
                continue
            pgoff = e.pgoff if e.pgoff is not None else vma_pgoff.get((mm, addr >> 12))
            unlink = st.unlinked.get((mm, pgoff)) if pgoff is not None else None
            if unlink is not None and unlink.seq < end.seq:
                continue  # zapped by the owner's exit before the batch ended
            if _gone_at_visit(e, mm, addr, pgoff, e.foreign or end, silent):
                continue
            owner = st.owner.get(mm)
            exited = st.exited.get(owner) if owner is not None else None
            if exited is not None and exited.seq < end.seq:
                # the owner was exiting before the batch ended: its zap drops the entry
                # without a tracepoint (before the remove walk came, or it would have
                # restored it)
                continue
            f = _finding(
                "leaked-entry",
                end.ts,
                e.pfn,
                addr,
                mm,
                [e.line, end],
                f"migration entry for pfn {e.pfn:#x} at {addr:#x} in mm {mm:#x} was set and "
                "never removed before its batch ended",
            )
            if owner is None and not st.unlink_traced and _exit_between(st, e.line, end):
                # nothing shows this mm's end: the process that exited may be its owner
                f["verdict"] = "inconclusive"
                f["explanation"] += (
                    " (its owner is unknown without the unlink_anon_vmas probe, and a "
                    "process exited meanwhile: that exit's zap may have dropped it)"
                )
            out.append(f)
    return out


#: st.lines as a table.
_LINES = pl.Schema(
    {
        "walk": pl.Int64(),
        "task": pl.Int64(),
        "seq": pl.Int64(),
        "ts": pl.Int64(),
        "cpu": pl.Int64(),
        "is_set": pl.Boolean(),
        "pmd": pl.Boolean(),
        "mm": pl.UInt64(),
        "addr": pl.UInt64(),
        "pfn": pl.UInt64(),
        "writable": pl.Boolean(),
        "entry_pfn": pl.UInt64(),
    }
)


def _foreign_entries(st: _State, lines: pl.DataFrame, vma_pgoff: dict) -> list[dict]:
    """``foreign-entry``: a set walk installs its migration entry at an (mm, address) whose
    replayed state is a migration entry of another page: the walk acted on it. (A walk that
    merely meets another folio's entry, as after copy-on-write, prints nothing there.)

    Precedent: Gavin Guo, "mm/huge_memory: fix dereferencing invalid pmd migration entry"
    (6.15, Fixes 84c3fc4e9c56, found by syzkaller): split_huge_pmd_locked(), called for one
    folio, took pmd_folio() of another folio's pmd migration entry. Inconclusive when the
    other entry may have gone untraced first: its owner exited, its vma was unlinked, or a
    remove walk of its page visited there silently (and, in :func:`violations`, events
    lost on any CPU meanwhile)."""
    keys = ["mm", "addr", "pmd"]
    sets = lines.filter("is_set").sort("seq")
    if sets.height < 2:
        return []
    prev = sets.select(
        *keys,
        pl.col("seq").alias("p_seq"),
        pl.col("ts").alias("p_ts"),
        pl.col("cpu").alias("p_cpu"),
        pl.col("pfn").alias("p_pfn"),
    )
    last_remove = lines.filter(~pl.col("is_set")).select(*keys, pl.col("seq").alias("r_seq"))
    cand = (
        sets.join_asof(
            prev,
            left_on="seq",
            right_on="p_seq",
            by=keys,
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .join_asof(
            last_remove.sort("r_seq"),
            left_on="seq",
            right_on="r_seq",
            by=keys,
            strategy="backward",
            check_sortedness=False,
        )
        .filter(
            pl.col("p_seq").is_not_null()
            & (pl.col("p_pfn") != pl.col("pfn"))
            & (pl.col("r_seq").is_null() | (pl.col("r_seq") < pl.col("p_seq")))
        )
    )
    silent, _ = _silent_visits(st)  # per-pte visits (a foreign entry is one pte's)
    out = []
    for c in cand.iter_rows(named=True):
        y = _Line(c["p_seq"], c["p_ts"], c["p_cpu"])
        x = _Line(c["seq"], c["ts"], c["cpu"])
        mm, addr = c["mm"], c["addr"]
        owner = st.owner.get(mm)
        exited = st.exited.get(owner) if owner is not None else None
        pgoff = vma_pgoff.get((mm, addr >> 12))
        unlink = st.unlinked.get((mm, pgoff)) if pgoff is not None else None
        if _born_between(st, mm, y.seq, x.seq):
            continue  # the mm of y died with its entries; x is in a new mm at that pointer
        gone = any(y.seq < q < x.seq for q in silent.get((mm, addr, c["p_pfn"]), []))
        f = _finding(
            "foreign-entry",
            x.ts,
            c["pfn"],
            addr,
            mm,
            [y, x],
            f"the set walk of pfn {c['pfn']:#x} installed a migration entry at {addr:#x} in mm "
            f"{mm:#x}, which held the migration entry of pfn {c['p_pfn']:#x} (another folio, "
            f"set by event {y.seq}): the walk acted on a foreign entry",
        )
        if any(z is not None and z.seq < x.seq for z in (exited, unlink)) or gone:
            f["verdict"] = "inconclusive"
            f["explanation"] += (
                " (but that entry may have gone without a tracepoint first: its owner exited, "
                "its vma was unmapped, or a remove walk of its page passed there)"
            )
        out.append(f)
    return out


def _shared_writable(st: _State, lines: pl.DataFrame) -> list[dict]:
    """``shared-page-writable``: one remove walk restores the same new page writable in two
    mms. An anonymous page (the walk is rmap_walk_anon) is writable in one mm at most:
    fork makes a copied migration entry READ in parent and child (copy_nonpresent_pte).
    Reported for each mm whose restore had no set line of its own (fork's copy).

    Precedent: Naoya Horiguchi, "hugetlb: fix copy_hugetlb_page_range() to handle
    migration/hwpoisoned entry" (2014, 4a705fef9862): fork took a hugetlb migration entry
    for a present pte and copied it as it was. Tier 1 cannot tell it from a MAP_SHARED
    mapping, whose copies stay WRITE rightly."""
    w = lines.filter(~pl.col("is_set") & pl.col("writable").fill_null(False))
    if w.height < 2:
        return []
    # the old page: the entry one of them restored; when every one was a copy, the latest
    # set line of the migrating task at that address (the set walk of the same page)
    sets = lines.filter("is_set").select(
        "task",
        "addr",
        pl.col("seq").alias("_sseq"),
        pl.col("walk").alias("_swalk"),
        pl.col("pfn").alias("_set_pfn"),
    )
    w = (
        w.sort("seq")
        .join_asof(
            sets.sort("_sseq"),
            left_on="seq",
            right_on="_sseq",
            by=["task", "addr"],
            strategy="backward",
            check_sortedness=False,
        )
        .with_columns(
            pl.col("mm").n_unique().over("walk", "pfn").alias("_mms"),
            pl.coalesce(
                pl.col("entry_pfn").drop_nulls().first().over("walk", "pfn"), "_set_pfn"
            ).alias("_old"),
        )
        .filter(pl.col("_mms") > 1)
    )
    out = []
    rows = w.to_dicts()
    for c in rows:
        if c["entry_pfn"] is not None:
            continue
        other = next(
            o
            for o in rows
            if o["walk"] == c["walk"] and o["pfn"] == c["pfn"] and o["mm"] != c["mm"]
        )
        old = c["_old"]
        f = _finding(
            "shared-page-writable",
            c["ts"],
            old,
            c["addr"],
            c["mm"],
            # (from the start of the page's set walk: a line of this mm's visit lost
            # meanwhile would make its entry its own, not a copy)
            ([st.walk_start[c["_swalk"]]] if c["_swalk"] is not None else [])
            + [
                _Line(other["seq"], other["ts"], other["cpu"]),
                _Line(c["seq"], c["ts"], c["cpu"]),
            ],
            f"the remove walk restored pfn {c['pfn']:#x} writable at {c['addr']:#x} in mm "
            f"{c['mm']:#x} (fork's copy of the migration entry for pfn {_hex(old)}) and in mm "
            f"{other['mm']:#x}: an anonymous page writable in two processes, fork did not "
            "make the copied entry READ",
        )
        if old is None:  # no set line of the page at all: lost, and with it the proof
            f["verdict"] = "inconclusive"
            f["explanation"] += " (but no set line of the old page was seen)"
        out.append(f)
    return out


def _exit_between(st: _State, lo: _Line, hi: _Line) -> bool:
    return any(lo.seq < x.seq < hi.seq for x in st.exited.values())


def _finding(rule: str, ts: int, pfn, addr, mm, lines: list[_Line], text: str) -> dict:
    return {
        "rule": rule,
        "verdict": "violation",
        "ts": ts,
        "pfn": pfn,
        "addr": addr,
        "mm": mm,
        "explanation": text,
        "lines": lines,
    }


def _hex(v: int | None) -> str:
    return "?" if v is None else f"{v:#x}"
