"""The tier-1 rules of issue 13 and the hazard verdict on small hand-made traces: each rule
fires on its bug's lines, stays silent on the healthy ones next to them, and says
inconclusive where the trace cannot prove it (lost events, missing explainers)."""

from __future__ import annotations

import polars as pl
import pytest

from rmapscope.replay.findings import summarize
from rmapscope.replay.simulator import _model as sm
from tests.replay.test_replay_sim import replayed

HEADER = "# tracer: nop\n#\n"
A, A2 = 0x7F5E8C001000, 0x7F5E8C002000
P, Q, R = 0x10A000, 0x1F9000, 0x10A001  # old page, new page, another page


class Trace:
    """A tracefs text built line by line (1 us apart)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.t = 4000_000_000

    def add(self, name: str, payload: str, comm="kcompactd0", pid=47, cpu=0, sep=": ") -> Trace:
        self.t += 1000
        secs, usecs = divmod(self.t // 1000, 1_000_000)
        self.lines.append(
            f"{comm:>16}-{pid:<7} [{cpu:03d}] ..... {secs:5d}.{usecs:06d}: {name}{sep}{payload}\n"
        )
        return self

    def raw(self, line: str) -> Trace:
        self.lines.append(line)
        return self

    def syscall(self, name: str, args: str | None = None, ret: str | None = None) -> Trace:
        """tracefs's syscall lines: ``sys_X(args)`` on entry, ``sys_X -> ret`` on exit."""
        if ret is not None:
            return self.add(f"sys_{name}", ret, "app", 900, 1, sep=" -> ")
        return self.add(f"sys_{name}", f"({args})", "app", 900, 1, sep="")

    def start(self) -> Trace:
        return self.add("mm_migrate_pages_start", "mode=MIGRATE_SYNC_LIGHT reason=compaction")

    def end(self, ok: int = 1, failed: int = 0) -> Trace:
        return self.add(
            "mm_migrate_pages",
            f"nr_succeeded={ok} nr_failed={failed} nr_thp_succeeded=0 nr_thp_failed=0 "
            "nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC_LIGHT reason=compaction",
        )

    def set(self, addr=A, pfn=P, kind="read", uffd=False) -> Trace:
        pte = sm.swap_entry(pfn, kind, True, True, uffd)
        return self.add("set_migration_pte", f"addr={addr:x}, pte={pte:x} order=0")

    def remove(self, addr=A, pfn=Q, writable=False, uffd=False) -> Trace:
        pte = sm.present_entry(pfn, writable, True, True, False, uffd)
        return self.add("remove_migration_pte", f"addr={addr:x}, pte={pte:x} order=0")

    def page(self, what: str, pfn: int) -> Trace:
        extra = " migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE" if what == "alloc" else ""
        return self.add(f"mm_page_{what}", f"page=0000000012345678 pfn=0x{pfn:x} order=0{extra}")

    def fork(self) -> Trace:
        self.add(
            "task_newtask",
            "pid=1202 comm=forker clone_flags=1200011 oom_score_adj=0",
            "forker",
            1201,
            1,
        )
        return self.add(
            "sched_process_fork",
            "comm=forker pid=1201 child_comm=forker child_pid=1202",
            "forker",
            1201,
            1,
        )

    def text(self) -> str:
        return HEADER + "".join(self.lines)


def migrate(t: Trace, kind="read", writable=False, uffd=(False, False), ok=1) -> Trace:
    """One batch migrating P (three read entries need no calibration) onto Q."""
    t.start().set(A2, R, "write").set(kind=kind, uffd=uffd[0]).set(A2 + 0x1000, R + 1)
    t.remove(A2, Q + 1, True).remove(writable=writable, uffd=uffd[1])
    t.remove(A2 + 0x1000, Q + 2)
    return t.page("free", P).end(ok)


def findings(tmp_path, t: Trace) -> pl.DataFrame:
    return replayed(tmp_path, t.text())


def rules(df: pl.DataFrame, verdict: str = "violation") -> set[tuple]:
    rows = df.filter(pl.col("verdict") == verdict)
    return {(r["rule"], r["pfn"], r["addr"]) for r in rows.iter_rows(named=True)}


def test_a_healthy_batch_finds_nothing(tmp_path):
    assert findings(tmp_path, migrate(Trace(), ok=3)).is_empty()


def test_a_read_entry_restored_writable(tmp_path):
    v = findings(tmp_path, migrate(Trace(), writable=True, ok=3))
    assert rules(v) == {("read-entry-restored-writable", P, A)}


def wp_ioctl(t: Trace) -> Trace:
    """UFFDIO_WRITEPROTECT, as tracefs prints the syscall."""
    t.syscall("ioctl", "fd: 5, cmd: 0xc018aa06, arg: 0x7ffd5e1c2a40")
    return t.syscall("ioctl", ret="0x0")


def test_a_lost_uffd_wp_bit(tmp_path):
    v = findings(tmp_path / "a", migrate(wp_ioctl(Trace()), uffd=(True, False), ok=3))
    assert rules(v) == {("uffd-wp-lost", P, A)}
    kept = migrate(wp_ioctl(Trace()), uffd=(True, True), ok=3)
    assert findings(tmp_path / "b", kept).is_empty()
    # no syscall events recorded, or an ioctl meanwhile: UFFDIO_WRITEPROTECT may have
    # cleared the bit
    v = findings(tmp_path / "c", migrate(Trace(), uffd=(True, False), ok=3))
    assert rules(v) == set() and rules(v, "inconclusive") == {("uffd-wp-lost", P, A)}
    t = Trace().start().set(A2, R, "write").set(uffd=True).set(A2 + 0x1000, R + 1)
    wp_ioctl(t).remove(A2, Q + 1, True).remove().remove(A2 + 0x1000, Q + 2).end(3)
    v = findings(tmp_path / "d", t)
    assert rules(v) == set() and rules(v, "inconclusive") == {("uffd-wp-lost", P, A)}


def test_lost_events_make_it_inconclusive(tmp_path):
    t = Trace().start().set(A2, R, "write").set().set(A2 + 0x1000, R + 1)
    t.raw("CPU:0 [LOST 3 EVENTS]\n")
    t.remove(A2, Q + 1, True).remove(writable=True).remove(A2 + 0x1000, Q + 2).end(3)
    v = findings(tmp_path, t)
    assert rules(v) == set()
    assert ("read-entry-restored-writable", P, A) in rules(v, "inconclusive")


def mprotect(t: Trace) -> Trace:
    return t.syscall("mprotect", "start: 0x7f5e8c000000, len: 0x1000, prot: 0x1")


def test_an_unexplained_downgrade_needs_recorded_syscalls(tmp_path):
    # no syscall events at all: an mprotect may have gone unseen
    v = findings(tmp_path / "a", migrate(Trace(), kind="write", ok=3))
    assert rules(v) == set()
    assert rules(v, "inconclusive") == {("unexplained-downgrade", P, A)}
    # syscalls recorded (an mprotect before the batch): nothing explains the downgrade
    v = findings(tmp_path / "b", migrate(mprotect(Trace()), kind="write", ok=3))
    assert rules(v) == {("unexplained-downgrade", P, A)}
    # NUMA balancing at work in the trace (a NUMA-hinting batch): its change_prot_numa()
    # write-protects migration entries with no syscall
    t = mprotect(Trace())
    t.add("mm_migrate_pages_start", "mode=MIGRATE_ASYNC reason=numa_misplaced")
    t.add("mm_migrate_pages", "nr_succeeded=0 nr_failed=1 nr_thp_succeeded=0 nr_thp_failed=0 "
          "nr_thp_split=0 nr_split=0 mode=MIGRATE_ASYNC reason=numa_misplaced")  # fmt: skip
    v = findings(tmp_path / "n", migrate(t, kind="write", ok=3))
    assert rules(v) == set()
    assert rules(v, "inconclusive") == {("unexplained-downgrade", P, A)}
    assert (
        v.filter(pl.col("rule") == "unexplained-downgrade")["explanation"]
        .str.contains("NUMA balancing")
        .all()
    )
    # a fork copying page tables meanwhile explains it
    t = mprotect(Trace()).start().set(A2, R, "write").set(kind="write").set(A2 + 0x1000, R + 1)
    t.fork().remove(A2, Q + 1, True).remove().remove(A2 + 0x1000, Q + 2).end(3)
    assert rules(findings(tmp_path / "c", t)) == set()


def test_an_unexplained_surplus_remove(tmp_path):
    t = Trace()
    t.start().set(A2, R, "write").set().set(A2 + 0x1000, R + 1)
    t.remove(A2, Q + 1, True).remove().remove(A2 + 0x1000, Q + 2).remove(A2 + 0x5000, Q + 9)
    v = findings(tmp_path / "a", t.end(3))
    assert rules(v) == {("unexplained-surplus-remove", Q + 9, A2 + 0x5000)}
    # the same after a fork (its copy of an entry): the informational signature only
    t = Trace()
    t.start().set(A2, R, "write").set().set(A2 + 0x1000, R + 1).fork()
    t.remove(A2, Q + 1, True).remove().remove(A2 + 0x1000, Q + 2).remove(A2 + 0x1000, Q + 2)
    assert rules(findings(tmp_path / "b", t.end(3))) == set()


def test_a_surplus_remove_during_an_mremap_is_inconclusive(tmp_path):
    """move_ptes moves a migration entry to the new address: its remove has no set there."""
    t = Trace().start().set(A2, R, "write").set().set(A2 + 0x1000, R + 1)
    t.syscall("mremap", "addr: 0x7f5e8c001000, old_len: 0x1000, new_len: 0x1000, flags: 0x3")
    t.syscall("mremap", ret="0x7f5e8c009000")
    t.remove(A2, Q + 1, True).remove(A2 + 0x7000, Q).remove(A2 + 0x1000, Q + 2)
    v = findings(tmp_path, t.end(3))
    assert ("unexplained-surplus-remove", Q, A2 + 0x7000) in rules(v, "inconclusive")
    assert not {r for r in rules(v) if r[0] == "unexplained-surplus-remove"}


def test_a_count_mismatch(tmp_path):
    v = findings(tmp_path, migrate(Trace(), ok=1))
    assert {r for r, _, _ in rules(v)} == {"count-mismatch"}
    assert "nr_succeeded=1" in v["explanation"][0]


def test_a_stale_old_pfn(tmp_path):
    def second(t: Trace) -> Trace:
        t.add(
            "mm_compaction_isolate_freepages",
            "range=(0x300000 ~ 0x300200) nr_scanned=512 nr_taken=1",
            "kcompactd0",
            47,
        )
        return t.start().set(A2 + 0x8000, P, "read").remove(A2 + 0x8000, P).end(0, 1)

    v = findings(tmp_path / "a", second(migrate(Trace().page("alloc", 0x300000), ok=3)))
    assert rules(v) == {("stale-old-pfn", P, A2 + 0x8000)}
    # the page was allocated again first: a new life
    t = migrate(Trace(), ok=3).page("alloc", P)
    assert rules(findings(tmp_path / "b", second(t))) == set()
    # without the allocator's events the rule is not checked (reuse is invisible: every
    # healthy trace that moves pages back and forth would show such references)
    t = Trace()
    migrate(t, ok=3).start().set(A2 + 0x8000, P).remove(A2 + 0x8000, P).end(0, 1)
    v = findings(tmp_path / "c", t)
    assert "stale-old-pfn" not in set(v["rule"])
    # with them but without compaction's free-page scans, a finding is inconclusive
    t = migrate(Trace().page("alloc", 0x300000), ok=3)
    t.start().set(A2 + 0x8000, P).remove(A2 + 0x8000, P).end(0, 1)
    v = findings(tmp_path / "d", t)
    assert rules(v) == set() and "stale-old-pfn" in set(v["rule"])


def test_a_hugetlb_page_reused_from_the_pool_is_no_stale_old_pfn(tmp_path):
    """The hugetlb pool hands pages out without mm_page_alloc: a healthy trace migrates a
    hugetlb page away, the pool gives it to another mapping, which is migrated too."""
    hp, hq, ha = 0x1C0000, 0x1E0000, 0x7F2A00000000  # 2M pages (order 9) at a 2M address

    def huge(t: Trace, addr: int, old: int, new: int) -> Trace:
        pte = sm.swap_entry(old, "write", True, True)
        t.start().add("set_migration_pte", f"addr={addr:x}, pte={pte:x} order=9")
        pte = sm.present_entry(new, True, True, True, True)
        return t.add("remove_migration_pte", f"addr={addr:x}, pte={pte:x} order=9").end(512)

    def trace(order: int) -> Trace:
        t = migrate(Trace().page("alloc", 0x300000), ok=3)
        t.add(
            "mm_compaction_isolate_freepages",
            "range=(0x300000 ~ 0x300200) nr_scanned=512 nr_taken=1",
        )
        huge(t, ha, hp, hq)
        if order:  # the same pfn as an order-0 page: no new life shows, it is stale
            return t.start().set(A2 + 0x8000, hp, "read").remove(A2 + 0x8000, hp).end(0, 1)
        return huge(t, ha + (1 << 21), hp, hq + 0x200)

    assert findings(tmp_path / "a", trace(0)).is_empty()
    v = findings(tmp_path / "b", trace(1))
    assert rules(v) == {("stale-old-pfn", hp, A2 + 0x8000)}


def test_hazards_are_not_violations(tmp_path):
    t = Trace().syscall(
        "mremap",
        "addr: 0x7f5e8c000000, old_len: 0x4000, new_len: 0x8000, flags: 0x1, new_addr: 0x0",
    )
    t.add(
        "mm_khugepaged_scan_pmd",
        "mm=00000000cb4ea86d, scan_pfn=0x10a000, referenced=0, none_or_zero=0, "
        "status=succeeded, unmapped=0",
        "khugepaged",
        38,
        1,
    )
    migrate(t, ok=3)
    t.syscall("mremap", ret="0x7f5e8c000000")
    t.add(
        "mm_collapse_huge_page",
        "mm=00000000cb4ea86d, isolated=1, status=succeeded",
        "khugepaged",
        38,
        1,
    )
    v = findings(tmp_path, t)
    assert rules(v) == set()
    assert {r for r, _, _ in rules(v, "hazard")} == {
        "mremap-overlaps-migration",
        "collapse-overlaps-migration",
    }
    assert set(v.filter(pl.col("verdict") == "hazard")["pid"]) == {900, 38}
    s = summarize(
        {
            "t": {
                "migrations": pl.DataFrame({"outcome": []}, schema={"outcome": pl.String}),
                "migration_batches": pl.DataFrame(),
                "fork_windows": pl.DataFrame(),
                "violations": v,
            }
        }
    )[0]
    assert (s.violations, s.hazards, s.inconclusive) == (0, 2, 0)


@pytest.mark.parametrize("rule", ["read-entry-restored-writable", "uffd-wp-lost"])
def test_the_explanations_say_what_happened(tmp_path, rule):
    t = migrate(
        Trace(), writable=rule.startswith("read"), uffd=(rule == "uffd-wp-lost", False), ok=3
    )
    v = findings(tmp_path, t).filter(pl.col("rule") == rule)
    assert v.height == 1 and "0x10a000" in v["explanation"][0] and "0x1f9000" in v["explanation"][0]
