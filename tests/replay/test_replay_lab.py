"""Replay of probe traces as a real kernel prints them (issue 12): owners, exits, fork windows.

Hand-written probe lines (the contract of ``data/probes/README.md``) pin each defect the lab
recordings showed; the simulator's healthy runs check the same over many interleavings.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.ingest.pte import machine_arch
from rmapscope.replay import load_trace, replay
from rmapscope.replay._tier1 import migration_events
from rmapscope.replay.simulator import HEADER, simulate
from rmapscope.replay.simulator import _model as sm
from rmapscope.replay.truth import compare_pairs
from tests.conftest import LAB_TRACES

M_PARENT, M_CHILD = 0xFFFF888104A8E000, 0xFFFF888104A8E640
AV = 0xFFFF888103C1D000
ADDR = 0x7F2A00010000


class Lines:
    """A tracefs text trace written line by line, 10 µs apart."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.us = 4010_000_000
        self.vmemmap = sm.VMEMMAP_BASE  # where the struct page array starts

    def line(
        self, comm: str, pid: int, cpu: int, name: str, payload: str, flags: str = "....."
    ) -> None:
        self.us += 10
        secs, usecs = divmod(self.us, 1_000_000)
        self.out.append(
            f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags} {secs:5d}.{usecs:06d}: {name}: {payload}\n"
        )

    def fork_begin(self, pid: int, child_mm: int, parent_mm: int = M_PARENT) -> None:
        """``pid`` (comm ``parent``) starts copying its vma at ADDR into ``child_mm``."""
        self.probe(
            "parent",
            pid,
            1,
            "anon_vma_fork",
            mm=child_mm,
            pmm=parent_mm,
            pgoff=ADDR >> 12,
            anon_vma=AV,
        )
        self.probe(
            "parent",
            pid,
            1,
            "copy_page_range",
            dst_mm=child_mm,
            src_mm=parent_mm,
            start=ADDR,
            end=ADDR + 0x1000,
            pgoff=ADDR >> 12,
        )

    def fork_end(self, pid: int, child_pid: int, newtask: bool = True, probes: bool = True) -> None:
        """The copy of :meth:`fork_begin` returns (``probes``) and the fork's tracepoints
        follow."""
        if probes:
            ret = "(dup_mmap+0x5c4/0x9b0 <- copy_page_range) ret=0x0"
            self.line("parent", pid, 1, "copy_page_range_ret", ret)
        if newtask:
            task = f"pid={child_pid} comm=parent clone_flags=1200000 oom_score_adj=0"
            self.line("parent", pid, 1, "task_newtask", task)
        fork = f"comm=parent pid={pid} child_comm=child child_pid={child_pid}"
        self.line("parent", pid, 1, "sched_process_fork", fork)

    def probe(self, comm: str, pid: int, cpu: int, func: str, **keys: int) -> None:
        args = "".join(f" {k}=0x{v:x}" for k, v in keys.items())
        self.line(comm, pid, cpu, func, f"({func}+0x0/0x{sm.FUNC_SIZE[func]:x}){args}")

    def walk(
        self,
        pid: int,
        kind: str,
        folio: int,
        visits: list[tuple[int, int | None]],
        writable: bool = True,
    ) -> None:
        """One rmap walk of ``pid`` over pfn ``folio``: per visit (mm, pfn printed or None);
        ``writable``: write entries set, writable ptes restored (else read, read-only)."""
        c = "migrate"
        self.probe(
            c,
            pid,
            0,
            "rmap_walk_anon",
            folio=self.vmemmap + 64 * folio,
            anon_vma=AV | 1,
            op=sm.OP_ADDR[kind],
        )
        func = "try_to_migrate_one" if kind == "set" else "remove_migration_pte"
        for mm, pfn in visits:
            self.probe(
                c,
                pid,
                0,
                func,
                folio=self.vmemmap + 64 * folio,
                mm=mm,
                pgoff=ADDR >> 12,
                anon_vma=AV,
                addr=ADDR,
            )
            if pfn is None:
                continue
            if kind == "set":
                pte = sm.swap_entry(pfn, "write" if writable else "read", True, True)
                self.line(c, pid, 0, "set_migration_pte", f"addr={ADDR:x}, pte={pte:x} order=0")
            else:
                pte = sm.present_entry(pfn, writable, True, True, False)
                self.line(c, pid, 0, "remove_migration_pte", f"addr={ADDR:x}, pte={pte:x} order=0")
        self.line(c, pid, 0, "rmap_walk_anon_ret", "(rmap_walk+0x5b/0x70 <- rmap_walk_anon)")

    def text(self) -> str:
        n = len(self.out)
        return HEADER.format(n=n, cpus=2) + "".join(self.out)


def _replay(tmp: Path, text: str, arch: str | None = None) -> dict[str, pl.DataFrame]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "trace.txt").write_text(text)
    ds = Dataset(tmp / "ds")
    r = ingest(str(tmp / "trace.txt"), ds, arch=arch)
    assert r.errors.total == 0, r.errors.counts
    # every set and remove (surplus ones too) has the owner mm the walk probes name
    tables, _, _ = load_trace(ds, r.trace_id)
    events = migration_events(tables)
    for df in events:
        assert df["mm"].null_count() == 0
    out = replay(ds)[r.trace_id]
    # and each starts an interval of page_states, with that owner
    assert out["page_states"].height == sum(df.height for df in events)
    return out


START = "mm_migrate_pages_start: mode=MIGRATE_SYNC reason=compaction"
END = (
    "mm_migrate_pages: nr_succeeded=2 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 "
    "nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC reason=compaction"
)


def test_entries_of_two_mms_at_one_address_pair_by_owner(tmp_path):
    """Two pages at one address in two processes (a parent's and its child's copy-on-write
    copy) in one batch; the first one's move is retried (-EAGAIN), so its removes come after
    the second's. First in, first out by address pairs them crosswise; the probes name each
    entry's mm, and replay pairs by it."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000)])
    t.walk(200, "set", 0x2000, [(M_CHILD, 0x2000)])
    t.walk(200, "remove", 0x5002, [(M_CHILD, 0x5002)])
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    m = out["migrations"].sort("old_pfn")
    truth = pl.DataFrame({"old_pfn": [0x1000, 0x2000], "new_pfn": [0x5001, 0x5002]})
    check = compare_pairs(m, truth)
    assert check.ok, check.line()
    assert m.select("old_pfn", "new_pfn", "outcome").rows() == [
        (0x1000, 0x5001, "migrated"),
        (0x2000, 0x5002, "migrated"),
    ]
    s = out["page_states"]
    assert s["mm"].null_count() == 0
    owners = set(s.select("state", "pfn", "mm").rows())
    assert owners == {
        ("migration-entry", 0x1000, M_PARENT),
        ("migration-entry", 0x2000, M_CHILD),
        ("present", 0x5001, M_PARENT),
        ("present", 0x5002, M_CHILD),
    }


def _exit_mid_batch(t: Lines, unlink: bool = True, visit_child: bool = True) -> None:
    """A page shared by a parent and its child; the child exits (6.1 order: the zap and the
    unlinking, then sched_process_exit) between the set walk and the remove walk."""
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    if unlink:
        t.probe("child", 101, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("child", 101, 1, "sched_process_exit", "comm=child pid=101 prio=120 group_dead=true")
    child = [(M_CHILD, None)] if visit_child else []  # its vma may be unlinked already
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), *child])
    t.line("migrate", 200, 0, "mm_migrate_pages", END.split(": ", 1)[1])


def test_a_child_exiting_mid_migration_is_paired_not_inconclusive(tmp_path):
    t = Lines()
    _exit_mid_batch(t, visit_child=False)
    out = _replay(tmp_path, t.text())
    m = out["migrations"].row(0, named=True)
    assert (m["old_pfn"], m["new_pfn"], m["outcome"], m["why"]) == (
        0x1000,
        0x5001,
        "migrated",
        None,
    )
    assert (m["n_set"], m["n_remove"], m["n_zapped"]) == (2, 1, 1)
    assert out["violations"].is_empty()  # the zap dropped the child's entry: no finding
    # the child's entry ends at the unlink (seq 7: start, walk, visit, set, visit, set, ret)
    entry = out["page_states"].filter(pl.col("mm") == M_CHILD)
    assert entry.select("state", "seq_end").rows() == [("migration-entry", 7)]


def test_an_owner_known_only_from_its_fork_exits_mid_migration(tmp_path):
    """No unlink line (the probe was not loaded): the owner of the child's mm is known from
    the fork that copied into it, and its exit zaps the entry."""
    t = Lines()
    t.fork_begin(100, M_CHILD)
    t.fork_end(100, 101, newtask=False)
    _exit_mid_batch(t, unlink=False)
    out = _replay(tmp_path, t.text())
    m = out["migrations"].row(0, named=True)
    assert (m["new_pfn"], m["outcome"], m["n_zapped"]) == (0x5001, "migrated", 1)
    assert out["violations"].is_empty()
    f = out["fork_windows"].row(0, named=True)
    assert f["child_mm"] == M_CHILD
    assert f["ts_copy_start"] < f["ts_copy_end"] < f["ts_end"]


def test_a_child_that_does_not_exit_still_leaks(tmp_path):
    """The owner's exit after the batch explains nothing: a missing remove stays a leak."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END.split(": ", 1)[1])
    t.probe("child", 101, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("child", 101, 1, "sched_process_exit", "comm=child pid=101 prio=120 group_dead=true")
    out = _replay(tmp_path, t.text())
    assert out["migrations"]["outcome"].to_list() == ["leaked"]
    v = out["violations"].row(0, named=True)
    assert (v["rule"], v["verdict"], v["mm"]) == ("leaked-entry", "violation", M_CHILD)


END1 = END.replace("nr_succeeded=2", "nr_succeeded=1")


def _zapped_mid_batch(t: Lines) -> None:
    """A page of a parent and its child moves; the child's exit zapped its entry before the
    remove walk (which visits it and prints nothing); the unlink and exit lines follow the
    batch (before Linux 6.16)."""
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, None)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    t.probe("child", 101, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("child", 101, 1, "sched_process_exit", "comm=child pid=101 prio=120 group_dead=true")


def test_an_entry_gone_before_the_remove_walk_over_the_new_page_is_not_leaked(tmp_path):
    """A child exits while its page migrates; its zap drops the entry without a line, and
    (before Linux 6.16) its unlink and exit lines come only after the batch ended. The
    remove walk runs over the new page (``remove_migration_ptes(src, dst)`` walks ``dst``)
    and visits the child's vma, printing nothing there: the entry was gone. (Seen on 6.12
    compaction: 35 of 768 pages were left "leaked".)"""
    t = Lines()
    _zapped_mid_batch(t)
    out = _replay(tmp_path, t.text())
    m = out["migrations"].row(0, named=True)
    assert (m["old_pfn"], m["new_pfn"], m["outcome"]) == (0x1000, 0x5001, "migrated")
    assert (m["n_set"], m["n_remove"], m["n_zapped"]) == (2, 1, 1)
    assert out["violations"].is_empty()


def test_a_retry_of_a_folio_in_one_batch_is_its_own_attempt(tmp_path):
    """migrate_pages retries a folio in the same batch: its first unmap is restored onto the
    same page (the move failed), the second moves it. Two attempts, one restored and one
    migrated, not one attempt whose lowest new pfn is the old one (seen on 6.1 compaction:
    the page looked restored although it moved)."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    t.walk(200, "remove", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, 0x5001)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    m = out["migrations"].sort("seq_first_set")
    assert m.select("old_pfn", "new_pfn", "outcome", "n_set", "n_remove").rows() == [
        (0x1000, 0x1000, "restored", 2, 2),
        (0x1000, 0x5001, "migrated", 2, 2),
    ]
    check = compare_pairs(m, pl.DataFrame({"old_pfn": [0x1000], "new_pfn": [0x5001]}))
    assert check.ok, check.line()
    assert out["violations"].is_empty()


def test_an_mm_struct_reused_by_a_new_child_does_not_take_an_old_entrys_remove(tmp_path):
    """A child's entry is zapped by its exit in the middle of a batch; its ``mm_struct`` goes
    to a new child at once, and the retry of the folio sets an entry of the same mm and
    address. The old entry must not take the new one's remove (seen on 6.1 fork-vs-migrate:
    one page counted moved twice, a count-mismatch on a healthy kernel)."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])
    t.walk(200, "remove", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, None)])
    t.probe("child", 101, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("child", 101, 1, "sched_process_exit", "comm=child pid=101 prio=120 group_dead=true")
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)])  # the new child
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, 0x5001)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    m = out["migrations"].sort("seq_first_set")
    assert m.select("new_pfn", "outcome", "n_remove", "n_zapped").rows() == [
        (0x1000, "restored", 1, 1),
        (0x5001, "migrated", 2, 0),
    ]
    assert out["violations"].is_empty()  # no leak, no count-mismatch


@pytest.mark.parametrize("reborn", [True, False])
def test_an_entry_of_a_dead_mm_is_not_foreign_to_the_mm_reborn_at_its_pointer(tmp_path, reborn):
    """A child's entry is zapped by its exit (the remove walk finds nothing there); a later
    fork allocates the freed ``mm_struct`` again for a new child, and a set walk of another
    folio installs its entry at the same address in it. Seen on 6.1 fork-vs-migrate and
    exit-during-migration: 31 inconclusive ``foreign-entry`` findings on a healthy kernel.
    Without the fork that shows the new mm, the old entry is where the new one goes:
    foreign-entry."""
    t = Lines()
    _zapped_mid_batch(t)
    if reborn:
        t.fork_begin(100, M_CHILD)
        t.fork_end(100, 102)
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, 0x5001)])
    t.walk(200, "remove", 0x6001, [(M_PARENT, 0x6001), (M_CHILD, 0x6001)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    rules = out["violations"]["rule"].to_list()
    assert rules == ([] if reborn else ["foreign-entry"])


@pytest.mark.parametrize("flags", ["..s1.", "....."])
def test_a_line_an_interrupt_prints_mid_fork_does_not_start_the_fork_window(tmp_path, flags):
    """A fork copies a migration entry while the page migrates; the remove walk restores the
    copy in the child before the fork's own tracepoints. An RCU callback in softirq context
    prints ``sched_process_free`` under the parent's pid in the middle of the copy: it is
    not the parent's action, and must not bound the window that explains the surplus
    remove (seen on 6.1 fork-vs-migrate: an ``unexplained-surplus-remove`` violation on a
    healthy kernel). A line the parent prints itself there would (the control). No fork
    probes: with them, the copy itself is the window."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000)])
    # fork's copy makes the entry read in parent and child (copy_nonpresent_pte)
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, 0x5001)], writable=False)
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    t.line("parent", 100, 1, "softirq_entry", "vec=9 [action=RCU]", flags=flags)
    t.fork_end(100, 101, probes=False)
    out = _replay(tmp_path, t.text())
    rules = out["violations"]["rule"].to_list()
    unexplained = {"unexplained-surplus-remove", "unexplained-downgrade"}  # no fork to explain
    assert set(rules) == (set() if flags[2] == "s" else unexplained)


def test_an_entry_of_a_dead_mm_never_takes_the_remove_of_the_mm_reborn_at_its_pointer(tmp_path):
    """A child's entry is zapped by its exit mid-batch (the failed attempt's remove walk no
    longer finds its vma); a fork then allocates its freed ``mm_struct`` for a new child,
    copying the retried folio's entry, which the remove walk restores onto the new page.
    The dead mm's entry must not take that remove (seen on 7.2 thp-exit: a failed THP
    counted as moved, a ``count-mismatch`` on a healthy kernel)."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000), (M_CHILD, 0x1000)], writable=False)
    t.walk(200, "remove", 0x1000, [(M_PARENT, 0x1000)], writable=False)  # failed: restored
    t.probe("child", 101, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("child", 101, 1, "sched_process_exit", "comm=child pid=101 prio=120 group_dead=true")
    t.fork_begin(100, M_CHILD)
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000)], writable=False)  # the retry
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, 0x5001)], writable=False)
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    t.fork_end(100, 102)
    out = _replay(tmp_path, t.text())
    m = out["migrations"].sort("seq_first_set")
    assert m.select("new_pfn", "outcome", "n_set", "n_remove", "n_zapped").rows() == [
        (0x1000, "restored", 2, 1, 1),
        (0x5001, "migrated", 1, 1, 0),
    ]
    assert out["violations"].is_empty(), out["violations"]["explanation"].to_list()


@pytest.mark.parametrize("copied", [True, False])
def test_a_failed_forks_copy_explains_the_remove_of_its_copied_entry(tmp_path, copied):
    """A fork copies the vma while the page migrates, then fails (its task was killed:
    dup_mmap returned, but no task_newtask nor sched_process_fork follows; the new mm is
    torn down). The remove walk restored the copied entry meanwhile. Seen on 7.2
    compaction: 22 ``unexplained-surplus-remove`` violations on a healthy kernel. Without
    the copy (the control) the remove is unexplained."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x1000, [(M_PARENT, 0x1000)], writable=False)
    if copied:
        t.fork_begin(100, M_CHILD)
    t.walk(200, "remove", 0x5001, [(M_PARENT, 0x5001), (M_CHILD, 0x5001)], writable=False)
    t.line("migrate", 200, 0, "mm_migrate_pages", END1.split(": ", 1)[1])
    if copied:
        t.line(
            "parent",
            100,
            1,
            "copy_page_range_ret",
            "(dup_mmap+0x5c4/0x9b0 <- copy_page_range) ret=0x0",
        )
        t.probe("parent", 100, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("parent", 100, 1, "sched_process_exit", "comm=parent pid=100 prio=120 group_dead=true")
    out = _replay(tmp_path, t.text())
    rules = out["violations"]["rule"].to_list()
    assert ("unexplained-surplus-remove" in rules) is not copied, rules
    if copied:
        assert rules == []


@pytest.mark.parametrize("child_kind", ["pte", "pmd"])
def test_a_thp_of_an_exiting_child_is_paired_not_inconclusive(tmp_path, child_kind):
    """A THP mapped by a pmd in one process and by ptes (its pmd split by mprotect) in the
    other, the child exiting while the folio moves: the zap drops the child's entries of the
    order-9 folio without a line, and its unlink and exit come after the batch (Linux <
    6.16). The remove walk over the new folio restores the parent and visits the child's
    vma printing nothing: all of the child's entries were gone, and the folio moved where
    the parent's mapping says. (The issue's 6.12 run: hundreds of pte sets, no remove,
    nr_thp_succeeded=1, and hundreds of inconclusive findings on a healthy kernel; the lab's
    thp-exit on 6.1 and 7.2: 512 pages paired wrong, 1,536 left "leaked".)"""
    t = Lines()
    old, new, n = 0x40000, 0x80000, 8
    c = "migrate"
    end = END1.split(": ", 1)[1].replace("nr_succeeded=1", "nr_succeeded=512")
    kinds = {M_CHILD: child_kind, M_PARENT: "pmd" if child_kind == "pte" else "pte"}
    t.line(c, 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    for walk, folio in (("set", old), ("remove", new)):
        func = "try_to_migrate_one" if walk == "set" else "remove_migration_pte"
        ptr = t.vmemmap + 64 * folio
        t.probe(c, 200, 0, "rmap_walk_anon", folio=ptr, anon_vma=AV | 1, op=sm.OP_ADDR[walk])
        for mm in (M_PARENT, M_CHILD):
            t.probe(c, 200, 0, func, folio=ptr, mm=mm, pgoff=ADDR >> 12, anon_vma=AV, addr=ADDR)
            if walk == "remove" and mm == M_CHILD:
                continue  # gone: nothing to restore
            ev = f"{walk}_migration_{kinds[mm]}"
            for i in range(1 if kinds[mm] == "pmd" else n):
                if walk == "set":
                    e = sm.swap_entry(old + i, "read", True, False)
                else:
                    e = sm.present_entry(new + i, False, True, False, kinds[mm] == "pmd")
                tail = f"pmd={e:x}" if kinds[mm] == "pmd" else f"pte={e:x} order=9"
                t.line(c, 200, 0, ev, f"addr={ADDR + i * 4096:x}, {tail}")
        t.line(c, 200, 0, "rmap_walk_anon_ret", "(rmap_walk+0x5b/0x70 <- rmap_walk_anon)")
    t.line(c, 200, 0, "mm_migrate_pages", end.replace("nr_thp_succeeded=0", "nr_thp_succeeded=1"))
    t.probe("child", 101, 1, "unlink_anon_vmas", mm=M_CHILD, pgoff=ADDR >> 12)
    t.line("child", 101, 1, "sched_process_exit", "comm=child pid=101 prio=120 group_dead=true")
    out = _replay(tmp_path, t.text())
    m = out["migrations"].sort("kind")
    zapped = 1 if child_kind == "pmd" else n
    assert m.select("kind", "old_pfn", "new_pfn", "outcome", "n_zapped").rows() == sorted(
        [(child_kind, old, new, "migrated", zapped), (kinds[M_PARENT], old, new, "migrated", 0)]
    )
    assert out["violations"].is_empty()  # no leak, not even an inconclusive one
    truth = pl.DataFrame({"old_pfn": range(old, old + 512), "new_pfn": range(new, new + 512)})
    check = compare_pairs(m, truth)
    assert check.ok, check.line()


def test_a_pmd_the_set_walk_freezes_into_ptes_explains_its_pte_removes(tmp_path):
    """The set walk over a THP splits a process's pmd (TTU_SPLIT_HUGE_PMD: split_huge_pmd
    freezes it into pte migration entries, no tracepoint): that visit prints nothing, and
    the remove walk restores ptes no set made. Not unexplained (a 6.12 thp-exit run gave
    2,560 such findings on a healthy kernel)."""
    t = Lines()
    old, new, n = 0x40000, 0x80000, 8
    c = "migrate"
    end = END1.split(": ", 1)[1].replace("nr_succeeded=1", "nr_succeeded=512")
    t.line(c, 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    for walk, folio in (("set", old), ("remove", new)):
        func = "try_to_migrate_one" if walk == "set" else "remove_migration_pte"
        ptr = t.vmemmap + 64 * folio
        t.probe(c, 200, 0, "rmap_walk_anon", folio=ptr, anon_vma=AV | 1, op=sm.OP_ADDR[walk])
        for mm in (M_PARENT, M_CHILD):
            t.probe(c, 200, 0, func, folio=ptr, mm=mm, pgoff=ADDR >> 12, anon_vma=AV, addr=ADDR)
            if walk == "set" and mm == M_PARENT:
                continue  # frozen by split_huge_pmd: no line
            for i in range(n):
                if walk == "set":
                    e = sm.swap_entry(old + i, "read", True, False)
                else:
                    e = sm.present_entry(new + i, False, True, False, False)
                t.line(
                    c,
                    200,
                    0,
                    f"{walk}_migration_pte",
                    f"addr={ADDR + i * 4096:x}, pte={e:x} order=9",
                )
        t.line(c, 200, 0, "rmap_walk_anon_ret", "(rmap_walk+0x5b/0x70 <- rmap_walk_anon)")
    t.line(c, 200, 0, "mm_migrate_pages", end.replace("nr_thp_succeeded=0", "nr_thp_succeeded=1"))
    out = _replay(tmp_path, t.text())
    assert out["migration_batches"]["n_surplus_remove"].to_list() == [n]
    assert out["violations"].is_empty(), out["violations"].select("rule", "explanation").rows()


HEALTHY = (
    [("exit-during-migration", s) for s in range(8)]
    + [("compaction-storm", s) for s in range(4)]
    + [("fork-vs-remove", s) for s in range(4)]
)


@pytest.mark.parametrize(("scenario", "seed"), HEALTHY)
def test_healthy_probe_traces_replay_fully_owned_and_decided(tmp_path, scenario, seed):
    """A healthy run with probes: every entry has its owner, no finding at all (none
    inconclusive), no migration inconclusive but one whose every mapping was zapped."""
    sim = simulate(scenario, seed=seed, cpus=2)
    assert sim.truth == []
    out = _replay(tmp_path, sim.text)
    assert out["page_states"]["mm"].null_count() == 0
    assert out["violations"].is_empty(), out["violations"]["explanation"].to_list()
    m = out["migrations"]
    bad = m.filter((pl.col("outcome") == "inconclusive") & (pl.col("n_remove") > 0))
    assert bad.is_empty(), bad.select("old_pfn", "why", "n_set", "n_remove", "n_zapped")


def test_fork_windows_come_from_the_copy_probes(tmp_path):
    sim = simulate("compaction-storm", seed=2, cpus=2)
    out = _replay(tmp_path, sim.text)
    f = out["fork_windows"]
    assert f.height > 0 and f["ts_copy_start"].null_count() == 0
    ds = Dataset(tmp_path / "ds")
    copies = pl.read_parquet(ds.files("probe_copy_page_range"))
    links = pl.read_parquet(ds.files("probe_anon_vma_fork"))
    rets = pl.read_parquet(ds.files("probe_copy_page_range_ret"))
    for row in f.iter_rows(named=True):
        mine = copies.filter(pl.col("dst_mm") == row["child_mm"])
        assert mine.height > 0 and (mine["pid"] == row["parent_pid"]).all()
        first = links.filter(pl.col("mm") == row["child_mm"])["ts"].min()
        assert row["ts_copy_start"] == first
        after = rets.filter((pl.col("pid") == row["parent_pid"]) & (pl.col("ts") <= row["ts_end"]))[
            "ts"
        ]
        assert row["ts_copy_end"] == after.filter(after >= first).max()
        assert row["ts_copy_start"] <= row["ts_copy_end"] <= row["ts_end"]
    # the tracepoints' lower bound (the parent's last event before task_newtask) is the last
    # copy probe itself: only the probes show when copying began
    assert (f["ts_copy_start"] < f["ts_start"]).all()


def test_compare_pairs_tells_wrong_from_unpaired_and_counts_reused_pfns():
    migs = pl.DataFrame(
        {
            "old_pfn": [0x1000, 0x2000, 0x1000, 0x3000],
            "new_pfn": [0x5002, 0x5001, 0x6000, None],
            "order": [0, 0, 0, 0],
            "outcome": ["migrated", "migrated", "migrated", "inconclusive"],
            "why": [None, None, None, "exit"],
        }
    )
    truth = pl.DataFrame(
        {
            "old_pfn": [0x1000, 0x2000, 0x1000, 0x3000, 0x4000],
            "new_pfn": [0x5001, 0x5002, 0x6000, 0x7000, 0x4000],  # the last one did not move
        }
    )
    c = compare_pairs(migs, truth)
    assert (c.pages, c.matched, c.wrong, c.unpaired, c.extra) == (4, 1, 2, 1, 2)
    assert c.unpaired_why == {"exit": 1} and not c.ok
    assert c.line().startswith("1/4 pages paired as the truth says, 2 wrong, 1 unpaired")


def test_a_randomised_vmemmap_base_is_calibrated_from_the_trace(tmp_path):
    """Debian kernels randomise the struct page array (CONFIG_RANDOMIZE_MEMORY): the pfn of a
    walk that printed no migration line comes from its folio pointer and the base the other
    walks show (folio pointer - 64 * the pfn they printed)."""
    t = Lines()
    t.vmemmap = 0xFFFFD4C000000000
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x3000, [(M_PARENT, 0x3000)])
    t.walk(200, "remove", 0x6000, [(M_PARENT, 0x6000)])
    t.fork_begin(100, M_CHILD)
    # a walk over pfn 0x1000 (mapped nowhere any more) meets the child before its parent
    t.walk(200, "set", 0x1000, [(M_CHILD, None), (M_PARENT, None)])
    t.line(
        "parent", 100, 1, "copy_page_range_ret", "(dup_mmap+0x5c4/0x9b0 <- copy_page_range) ret=0x0"
    )
    t.line("migrate", 200, 0, "mm_migrate_pages", END.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    v = out["violations"].filter(pl.col("rule") == "child-before-parent-set").row(0, named=True)
    assert (v["pfn"], v["mm"]) == (0x1000, M_CHILD)


def test_an_owner_whose_exit_cannot_show_keeps_the_exit_doubt(tmp_path):
    """No unlink probe and no fork of the child's mm in the trace: its owner is unknown, so a
    process exiting meanwhile may be it (the entry zapped): inconclusive, as without probes."""
    t = Lines()
    _exit_mid_batch(t, unlink=False, visit_child=False)
    out = _replay(tmp_path, t.text())
    m = out["migrations"].row(0, named=True)
    assert (m["outcome"], m["why"], m["n_zapped"]) == ("inconclusive", "exit", 0)
    v = out["violations"].row(0, named=True)
    assert (v["rule"], v["verdict"]) == ("leaked-entry", "inconclusive")
    assert "unlink_anon_vmas" in v["explanation"]


def test_a_walk_over_another_page_at_the_same_index_explains_no_missing_remove(tmp_path):
    """After a copy-on-write the parent's new page and the old one (still the child's) sit
    at the same index of one anon_vma: a walk over the old page visits the parent's vma and
    prints nothing there. That says nothing of the parent's own entry: still a leak."""
    t = Lines()
    t.line("migrate", 200, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    t.walk(200, "set", 0x2000, [(M_PARENT, 0x2000)])  # the parent's own page
    t.walk(200, "set", 0x1000, [(M_CHILD, 0x1000)])  # the old page, only the child's now
    t.walk(200, "remove", 0x5001, [(M_PARENT, None), (M_CHILD, 0x5001)])
    t.line("migrate", 200, 0, "mm_migrate_pages", END.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    m = out["migrations"].sort("old_pfn")
    assert m.select("old_pfn", "outcome", "n_zapped").rows() == [
        (0x1000, "migrated", 0),
        (0x2000, "leaked", 0),
    ]
    v = out["violations"].row(0, named=True)
    assert (v["rule"], v["verdict"], v["pfn"], v["mm"]) == (
        "leaked-entry",
        "violation",
        0x2000,
        M_PARENT,
    )


def test_a_split_mapping_zero_subpages_to_the_zero_page_leaks_nothing(tmp_path):
    """Linux 6.12+ splits a pte-mapped THP and remaps each new small folio (one remove walk
    each); a zero-filled subpage gets the shared zero page, with no remove_migration_pte. The
    walk's visit of that address shows the entry went: restored, no leak."""
    t = Lines()
    head = 0x40000
    t.line("kswapd0", 72, 0, "mm_migrate_pages_start", START.split(": ", 1)[1])
    c = "kswapd0"
    t.probe(
        c,
        72,
        0,
        "rmap_walk_anon",
        folio=t.vmemmap + 64 * head,
        anon_vma=AV | 1,
        op=sm.OP_ADDR["set"],
    )
    t.probe(
        c,
        72,
        0,
        "try_to_migrate_one",
        folio=t.vmemmap + 64 * head,
        mm=M_PARENT,
        pgoff=ADDR >> 12,
        anon_vma=AV,
        addr=ADDR,
    )
    for i in range(4):
        pte = sm.swap_entry(head + i, "write", True, True)
        t.line(c, 72, 0, "set_migration_pte", f"addr={ADDR + i * 4096:x}, pte={pte:x} order=9")
    t.line(c, 72, 0, "rmap_walk_anon_ret", "(rmap_walk_locked+0x1e/0x30 <- rmap_walk_anon)")
    for i in range(4):
        t.probe(
            c,
            72,
            0,
            "rmap_walk_anon",
            folio=t.vmemmap + 64 * (head + i),
            anon_vma=AV | 1,
            op=sm.OP_ADDR["remove"],
        )
        t.probe(
            c,
            72,
            0,
            "remove_migration_pte",
            folio=t.vmemmap + 64 * (head + i),
            mm=M_PARENT,
            pgoff=ADDR >> 12,
            anon_vma=AV,
            addr=ADDR + i * 4096,
        )
        if i < 2:  # written subpages come back; the other two are zero-filled
            pte = sm.present_entry(head + i, True, True, True, False)
            t.line(
                c, 72, 0, "remove_migration_pte", f"addr={ADDR + i * 4096:x}, pte={pte:x} order=0"
            )
        t.line(c, 72, 0, "rmap_walk_anon_ret", "(rmap_walk_locked+0x1e/0x30 <- rmap_walk_anon)")
    t.line(c, 72, 0, "mm_migrate_pages", END.split(": ", 1)[1])
    out = _replay(tmp_path, t.text())
    m = out["migrations"].row(0, named=True)
    assert (m["order"], m["n_set"], m["n_remove"], m["n_zapped"]) == (9, 4, 2, 2)
    assert m["outcome"] == "restored"
    assert out["violations"].is_empty(), out["violations"]["explanation"].to_list()


# -- real recordings: `rmapscope lab` guests with the guest's pagemap truth -----------------

LAB = LAB_TRACES or Path("/nonexistent")  # $RMAPSCOPE_LAB_TRACES, where set
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "lab"  # small ones, always


def _recordings() -> list:
    """The shipped recordings, then the lab's others (``slow``: some are 15 MB)."""
    shipped = sorted(p / "trace.txt.gz" for p in SHIPPED.glob("*") if (p / "truth.json").is_file())
    names = {p.parent.name for p in shipped}
    lab = sorted(
        p / "trace.txt"
        for p in (LAB.glob("*") if LAB.is_dir() else [])
        if p.name not in names and (p / "trace.txt.meta.json").is_file()
    )
    return shipped + [pytest.param(p, marks=pytest.mark.slow) for p in lab]


def _truth(trace: Path) -> dict:
    """``moves`` (old/new pfn per page and round) and ``pgmigrate_success`` of a recording."""
    if trace.suffix == ".gz":
        return json.loads((trace.parent / "truth.json").read_text())
    try:
        meta = json.loads(Path(f"{trace}.meta.json").read_text())
    except ValueError:
        pytest.skip(f"{trace}: its sidecar is being written")
    if not meta.get("truth", {}).get("complete"):
        pytest.skip(f"{trace}: the workload's truth is incomplete")
    delta = meta.get("vmstat_delta", {})
    return {
        "moves": meta["truth"]["moves"],
        "pgmigrate_success": delta.get("pgmigrate_success"),
        "arch": machine_arch(meta.get("machine") or "x86_64"),
    }


@pytest.mark.parametrize("trace", _recordings(), ids=lambda p: p.parent.name)
def test_lab_recordings_replay_as_the_pagemap_truth_says(tmp_path, trace):
    """On a real kernel (Debian 6.1, 6.12, 7.2 under qemu) with the probes: every entry has
    its owner, the pairs equal the guest's pagemap, no finding at all on a healthy kernel,
    fork windows from the copy probes, and the kernel's counts equal vmstat's."""
    truth = _truth(trace)
    text = gzip.decompress(trace.read_bytes()).decode() if trace.suffix == ".gz" else None
    out = _replay(tmp_path, text or trace.read_text(), arch=truth.get("arch"))
    check = compare_pairs(out["migrations"], pl.DataFrame(truth["moves"]))
    assert check.ok, check.line()
    assert out["page_states"]["mm"].null_count() == 0
    assert out["violations"].is_empty(), out["violations"]["explanation"].head(3).to_list()
    forks = out["fork_windows"].filter(~pl.col("shares_vm").fill_null(False))
    assert forks["ts_copy_start"].null_count() == 0
    b = out["migration_batches"]
    assert (b["paired_migrated_pages"] <= b["succeeded"]).all()  # a THP counts once
    if truth.get("pgmigrate_success") is not None:
        assert b["succeeded"].sum() == truth["pgmigrate_success"]
