"""The one registry of replay's rules: id, tier, meaning, precedent, fix, kernels affected.

``rmapscope explain``, the README's rules and bug-zoo tables (``tests/replay/test_rulebook.py``
checks the README against :func:`rules_table` and :func:`zoo_table`) and the rule modules'
docstrings all name the rules of :data:`RULES`; no other copy of this text exists.

>>> RULES["count-mismatch"].tier
1
>>> sorted(VERDICTS)
['hazard', 'inconclusive', 'ok', 'violation']
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BUG_ZOO", "RULES", "VERDICTS", "Bug", "Rule", "rules_table", "zoo_table"]

#: Verdicts of the violations table: ``hazard`` marks a window in which a known race that
#: no tracepoint can show was possible; it is never counted as a violation.
VERDICTS = ("violation", "inconclusive", "hazard", "ok")


@dataclass(frozen=True)
class Rule:
    """One check of replay (its id is the ``rule`` column of ``violations``)."""

    id: str
    tier: int  # 1: upstream tracepoints alone; 2: needs the probe events
    meaning: str
    precedent: str = ""
    fix: str = ""  # the fix commit (mainline id and title), when one exists
    kernels: str = ""  # the kernels the precedent affected
    verdict: str = "violation"  # what a proven finding says (hazard rules: hazard)
    checked: bool = True  # False: described, not checked by replay yet


_2010 = (
    "the 2010 fork-vs-migration race (lkml thread 'mm,migration: ...', Apr-May 2010): a "
    "remove walk that visits a fork child before its parent leaves the child a migration "
    "entry of a freed page; 2.6.34 appended avcs at the tail of the anon_vma list (parent "
    "first), the 3.7 interval tree keeps that order by inserting equal keys to the right"
)

RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "leaked-entry",
            1,
            "a migration entry set and never removed before its batch ended",
            _2010,
            kernels="2.6.34-rc (before the anon_vma_chain ordering), any kernel with a "
            "remove walk that misses a vma",
        ),
        Rule(
            "fork-copied-entry",
            1,
            "a fork overlapped a migration window and an extra remove appeared at the same "
            "addr (informational: fork copied a migration entry)",
            "copy_nonpresent_pte() copies migration entries into the child and makes a "
            "WRITE entry READ in both (no tracepoint)",
            verdict="ok",
        ),
        Rule(
            "child-before-parent-set",
            2,
            "a set walk visited a fork child's vma before its parent's (signature A)",
            _2010,
        ),
        Rule(
            "child-before-parent-remove",
            2,
            "a remove walk visited a fork child's vma before its parent's while the child's "
            "copy window was open (signature B, the 2010 bug)",
            _2010,
            kernels="2.6.34-rc",
        ),
        Rule(
            "stale-child-entry",
            2,
            "a child kept a migration entry after the remove walk of its folio ended "
            "(consequence of B)",
            _2010,
            kernels="2.6.34-rc",
        ),
        Rule(
            "present-copied-after-set",
            2,
            "fork copied a present pte into a child after the set walk had passed the child",
            _2010,
        ),
        Rule(
            "read-entry-restored-writable",
            1,
            "a read or read_exclusive migration entry whose remove restored a writable pte",
            "Peter Xu, 'mm/migrate: Fix read-only page got writable when recover pte' (Nov "
            "2022, Fixes b1f9e876862d 'mm/uffd: enable write protection for shmem & "
            "hugetlbfs', reported by Ives van Hoorne): remove_migration_pte() built the pte "
            "from vm_page_prot, which is writable on a shared shmem mapping, and only "
            "write-protected it for uffd-wp; the fix write-protects every non-WRITE entry",
            fix="'mm/migrate: fix read-only page got writable when recover pte' (6.1-rc, "
            "stable 6.0.y)",
            kernels="5.19 - 6.1-rc (shmem and hugetlbfs mappings)",
        ),
        Rule(
            "uffd-wp-lost",
            1,
            "a migration entry set with the uffd-wp (or soft-dirty) bit whose restored pte "
            "lacks it",
            "Peter Xu, 'mm/userfaultfd: fix uffd-wp special cases for fork()' (5.14, "
            "8f34f1eac382): copy_huge_pmd() rewrote the parent's WRITE pmd migration entry "
            "READ without carrying its uffd-wp bit over; 'mm/hugetlb: fix uffd-wp during "
            "fork()' (Peter Xu, Apr 2023, 5a2f8d22ace4) fixed the same for hugetlb's "
            "copy_hugetlb_page_range()",
            fix="8f34f1eac382 (5.14); 5a2f8d22ace4 (6.4, hugetlb)",
            kernels="5.7 - 5.13 (anon, shmem); 5.19 - 6.3 (hugetlb)",
        ),
        Rule(
            "unexplained-downgrade",
            1,
            "a WRITE migration entry restored read-only with no fork window, mprotect or "
            "userfaultfd syscall to explain it (with a fork window it is fork-copied-entry's "
            "downgrade; inconclusive where the trace shows NUMA balancing, whose "
            "change_prot_numa also downgrades)",
            "Naoya Horiguchi, 'hugetlb: fix copy_hugetlb_page_range() to handle "
            "migration/hwpoisoned entry' (2014, 4a705fef9862): fork treated a hugetlb "
            "migration entry as a present pte; since then fork makes a WRITE entry READ, "
            "and only fork, mprotect and uffd-wp may do so",
            fix="4a705fef9862 (3.16)",
            kernels="up to 3.15 (hugetlb migration)",
        ),
        Rule(
            "unexplained-surplus-remove",
            1,
            "a remove inside a migration batch with no set of that address in the batch and "
            "no fork window or THP split to explain it (an entry made without a tracepoint)",
            "entries made without a tracepoint are fork copies (copy_nonpresent_pte) and "
            "PMD split freezes (__split_huge_pmd_locked with freeze); anything else is a "
            "migration entry of unknown origin, as in 'mm/huge_memory: fix dereferencing "
            "invalid pmd migration entry' (Gavin Guo, 6.15, Fixes 84c3fc4e9c56)",
        ),
        Rule(
            "count-mismatch",
            1,
            "per batch, more pages restored onto a new pfn than mm_migrate_pages reports succeeded",
            "migrate_pages() counts a folio succeeded only after remove_migration_ptes(src, "
            "dst); a restore onto a new page it counts failed means the kernel and the page "
            "tables disagree about where the data is",
        ),
        Rule(
            "stale-old-pfn",
            1,
            "after a successful migration the old pfn is set or restored again before any "
            "mm_page_alloc of it (or its reuse as a migration target, or as a hugetlb page: "
            "the pool prints no allocation): an entry still pointing at the freed page "
            "(checked only when the trace has kmem:mm_page_alloc events)",
            _2010 + "; the visible consequence of it",
            kernels="2.6.34-rc",
        ),
        Rule(
            "mremap-overlaps-migration",
            1,
            "an mremap (sys_enter_mremap .. sys_exit_mremap) overlapped a migration batch: "
            "move_ptes may race the rmap walk, which no tracepoint shows",
            "'mm/mremap: hold the rmap lock in write mode when moving page table entries' "
            "(2021); 'mm/mremap: fix move_normal_pmd/retract_page_tables "
            "race' (Jann Horn, 2024)",
            kernels="5.9 - 5.13 (move_normal_pmd with the rmap lock for reading); up to "
            "6.12 (retract_page_tables)",
            verdict="hazard",
        ),
        Rule(
            "collapse-overlaps-migration",
            1,
            "a khugepaged / MADV_COLLAPSE collapse (mm_khugepaged_scan_pmd or "
            "mm_collapse_huge_page_isolate .. mm_collapse_huge_page) overlapped a migration "
            "batch: the collapse replaces page tables under the rmap walk, which no "
            "tracepoint shows",
            "'mm/mremap: fix move_normal_pmd/retract_page_tables race' (Jann Horn, 2024) "
            "and the khugepaged collapse locking fixes",
            verdict="hazard",
        ),
        Rule(
            "foreign-entry",
            2,
            "a set walk for folio X installs its migration entry at an address whose replayed "
            "state is a migration entry of another folio Y: the walk acted on Y's entry (a "
            "walk that only meets it, as after copy-on-write, prints nothing there)",
            "Gavin Guo, 'mm/huge_memory: fix dereferencing invalid pmd migration entry' "
            "(6.15, Fixes 84c3fc4e9c56 'mm: thp: check pmd migration entry in common path', "
            "found by syzkaller): split_huge_pmd_locked(), called for one folio, took "
            "pmd_folio() of another folio's pmd migration entry (a pointer made of the swap "
            "entry's bits) to compare with; the fix skips a pmd migration entry whenever a "
            "folio is given",
            fix="'mm/huge_memory: fix dereferencing invalid pmd migration entry' (6.15)",
            kernels="4.14 - 6.15-rc (THP migration with a folio-targeted pmd split)",
        ),
        Rule(
            "shared-page-writable",
            2,
            "one remove walk of an anonymous folio restored the same new page writable in two "
            "mms, one of them holding fork's copy of the entry (fork makes a copied entry "
            "READ in parent and child)",
            "Naoya Horiguchi, 'hugetlb: fix copy_hugetlb_page_range() to handle "
            "migration/hwpoisoned entry' (2014, 4a705fef9862): fork took a hugetlb migration "
            "entry for a present pte and copied it as it was; tier 1 cannot tell such a "
            "copy from a MAP_SHARED one, which stays WRITE rightly",
            fix="4a705fef9862 (3.16)",
            kernels="up to 3.15 (hugetlb migration)",
        ),
    )
}


@dataclass(frozen=True)
class Bug:
    """One row of the bug zoo: a kernel bug, the simulator switch that models it, the rule."""

    name: str
    switch: str  # the simulator's bug switch ("" when not modelled)
    kernels: str
    fix: str
    rule: str  # "" when no rule catches it yet
    tier: int  # the tier the rule needs
    tier1_suffices: bool


BUG_ZOO: tuple[Bug, ...] = (
    Bug(
        "2010 fork-vs-migration race (walk visits the child first)",
        "child-first",
        "2.6.34-rc",
        "anon_vma_chain ordering (2.6.34)",
        "child-before-parent-remove",
        2,
        False,
    ),
    Bug(
        "a remove walk that misses an entry",
        "drop-remove",
        "any (synthetic)",
        "-",
        "leaked-entry",
        1,
        True,
    ),
    Bug(
        "read entry restored writable (shmem vm_page_prot)",
        "read-restored-writable",
        RULES["read-entry-restored-writable"].kernels,
        RULES["read-entry-restored-writable"].fix,
        "read-entry-restored-writable",
        1,
        True,
    ),
    Bug(
        "fork drops the parent's uffd-wp bit on a migration entry",
        "uffd-wp-lost-on-fork",
        RULES["uffd-wp-lost"].kernels,
        RULES["uffd-wp-lost"].fix,
        "uffd-wp-lost",
        1,
        True,
    ),
    Bug(
        "2010 vma_adjust race: the remove walk misses a vma whose start moved (Mel Gorman, "
        "'mm,migration: Prevent rmap_walk_[anon|ksm] seeing the wrong VMA information')",
        "vma-adjust-skip",
        "2.6.34-rc",
        "'mm,migration: Prevent rmap_walk_[anon|ksm] seeing the wrong VMA information' (2.6.34)",
        "leaked-entry",
        1,
        True,
    ),
    Bug(
        "hugetlb fork copies a migration entry as a present pte (Naoya Horiguchi, 2014: the "
        "child's copy stays WRITE, both restored writable; tier 1 cannot tell it from a "
        "MAP_SHARED copy, which stays WRITE rightly)",
        "hugetlb-fork-copy",
        RULES["shared-page-writable"].kernels,
        RULES["shared-page-writable"].fix,
        "shared-page-writable",
        2,
        False,
    ),
    Bug(
        "walk acts on another folio's pmd migration entry (the simulator's scenarios meet "
        "one at pte level, after copy-on-write)",
        "foreign-pmd-entry",
        RULES["foreign-entry"].kernels,
        RULES["foreign-entry"].fix,
        "foreign-entry",
        2,
        False,
    ),
    Bug(
        "mm_migrate_pages counts moved folios failed (the counters and the page tables "
        "disagree; no upstream precedent found for order-0 folios: the nearest, Baolin "
        "Wang's 'mm: migrate: correct the hugetlb migration stats' (a hugetlb page counted "
        "by thp_nr_pages()), is a large-folio miscount the rule's per-folio comparison "
        "cannot see)",
        "moved-as-failed",
        "any (synthetic)",
        "5d39a7ebc8be (5.17, the hugetlb stats)",
        "count-mismatch",
        1,
        True,
    ),
    Bug(
        "remove_migration_pte restores a WRITE entry read-only with no fork, mprotect or "
        "uffd-wp to explain it (synthetic: no upstream kernel is known to have done so; the "
        "rule's precedent, Naoya Horiguchi's 2014 hugetlb fork fix, made fork the one "
        "page-table copy that downgrades an entry, and its window explains that downgrade)",
        "write-restored-readonly",
        "any (synthetic)",
        "-",
        "unexplained-downgrade",
        1,
        True,
    ),
    Bug(
        "2010 vma_adjust race in the undo walk of a migration that fails (a pinned page: "
        "every move returns -EAGAIN): the entry of the vma whose start moved outlives its "
        "batch (leaked-entry), and a later batch's remove walk restores it with no set of "
        "its own (the set walk passes over a migration entry silently)",
        "vma-adjust-undo",
        "2.6.34-rc",
        "'mm,migration: Prevent rmap_walk_[anon|ksm] seeing the wrong VMA information' (2.6.34)",
        "unexplained-surplus-remove",
        1,
        True,
    ),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rules_table() -> str:
    """The README's rules table (markdown)."""
    rows = ["| rule | tier | verdict | meaning |", "|---|---|---|---|"]
    rows += [
        f"| `{r.id}` | {r.tier} | {r.verdict} | {_cell(r.meaning)}"
        + ("" if r.checked else " (not checked yet)")
        + " |"
        for r in RULES.values()
    ]
    return "\n".join(rows) + "\n"


def zoo_table() -> str:
    """The README's bug-zoo table (markdown)."""
    rows = [
        "| bug | simulator switch | kernels affected | fix | rule | tier needed "
        "| tier 1 alone suffices |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in BUG_ZOO:
        switch = f"`{b.switch}`" if b.switch else "not modelled yet"
        rows.append(
            f"| {_cell(b.name)} | {switch} | {_cell(b.kernels)} | {_cell(b.fix)} "
            f"| {f'`{b.rule}`' if b.rule else 'none yet'} | {b.tier} "
            f"| {'yes' if b.tier1_suffices else 'no'} |"
        )
    return "\n".join(rows) + "\n"
