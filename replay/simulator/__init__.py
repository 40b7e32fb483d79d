"""Scenario simulator: kernel-faithful traces of fork, migration and rmap walks, with truth.

A scenario sets up processes, vmas and pages, then lets several tasks (a migrator, a
forking parent, exiting children, a splitter) run concurrently on simulated CPUs; a seeded
scheduler interleaves their atomic steps (see :mod:`._model` for what is modelled and
where the kernel allows interleaving). The run yields

* ``text``: what ``cat /sys/kernel/tracing/trace`` would print on Linux 6.18 x86_64 with the
  upstream tracepoints and the probe events of ``data/probes/README.md`` enabled (real pte
  encodings; ``rmapscope ingest`` reads it as format ``tracefs``);
* ``truth``: the findings (rule ids of ``data/probes/README.md``) the run really contains,
  derived from the simulated state, with verdict ``violation`` or, when the lines that show
  them overlap lost events, ``inconclusive``;
* ``info``: informational findings (verdict ``ok``): ``fork-copied-entry``.

>>> r = simulate("fork-vs-migrate", seed=1)
>>> r.text.splitlines()[0], r.truth
('# tracer: nop', [])
>>> simulate("fork-vs-remove", seed=3, bug="child-first").counts["anon_vma_fork"]
1

:func:`explore` runs a small scenario under every possible interleaving:

>>> e = explore("fork-vs-remove")
>>> e.violating, e.interleavings > 0
(0, True)
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rmapscope.errors import UsageError

from . import _model as sm

__all__ = [
    "BUGS",
    "SCENARIOS",
    "ExploreResult",
    "Scenario",
    "SimResult",
    "explore",
    "simulate",
    "write_result",
]

#: Switchable bugs (several may be combined).
BUGS = (
    "child-first",
    "drop-remove",
    "lose-events",
    "read-restored-writable",
    "uffd-wp-lost-on-fork",
    "vma-adjust-skip",
    "hugetlb-fork-copy",
    "foreign-pmd-entry",
    "moved-as-failed",
    "write-restored-readonly",
    "vma-adjust-undo",
)

HEADER = (
    "# tracer: nop\n"
    "#\n"
    "# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}\n"
    "#\n"
    "#                                _-----=> irqs-off/BH-disabled\n"
    "#                               / _----=> need-resched\n"
    "#                              | / _---=> hardirq/softirq\n"
    "#                              || / _--=> preempt-depth\n"
    "#                              ||| / _-=> migrate-disable\n"
    "#                              |||| /     delay\n"
    "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
    "#              | |         |   |||||     |         |\n"
)
HEADER_LINES = HEADER.count("\n")

#: Events lost spans are anchored on (bursts of rmap activity are where buffers overflow).
_BURSTY = {
    "rmap_walk_anon",
    "rmap_walk_anon_ret",
    "try_to_migrate_one",
    "remove_migration_pte",
    "set_migration_pte",
    "set_migration_pmd",
    "remove_migration_pmd",
    "anon_vma_fork",
    "copy_page_range",
    "copy_page_range_ret",
}


# --------------------------------------------------------------------------------------
# results


@dataclass
class SimResult:
    """One simulated run."""

    scenario: str
    seed: int
    cpus: int
    bugs: tuple[str, ...]
    text: str
    truth: list[dict]  # verdict violation | inconclusive
    info: list[dict]  # verdict ok (fork-copied-entry)
    counts: dict[str, int]  # printed event lines per event name
    events: int  # printed event lines
    lost: list[dict]  # one per LOST marker: cpu, count, ts_start, ts_end, line
    schedule: list[int]  # the scheduler's choices (replay them with simulate(schedule=))
    #: per migration tracepoint (set/remove_migration_pte/pmd): the pfn each printed line
    #: encodes, in file order
    pfns: dict[str, list[int]] = field(default_factory=dict)

    @property
    def violations(self) -> list[dict]:
        return [f for f in self.truth if f["verdict"] == "violation"]


@dataclass
class ExploreResult:
    """Every interleaving of a small scenario, and how many of them violate a rule."""

    scenario: str
    bugs: tuple[str, ...]
    interleavings: int
    violating: int
    by_rule: dict[str, int]  # rule -> interleavings with at least one such violation
    example: list[int] | None  # schedule of the first violating interleaving (see trace())
    seconds: float
    examples: dict[str, list[int]] = field(default_factory=dict)  # rule -> first schedule

    def trace(self, rule: str | None = None) -> SimResult:
        """The first interleaving that violates (``rule``), as a simulated run."""
        sched = self.examples[rule] if rule else self.example
        if sched is None:
            raise UsageError(f"no violating interleaving of {self.scenario}")
        return simulate(self.scenario, 0, 2, self.bugs, schedule=sched, explored=True)

    def line(self) -> str:
        bug = ",".join(self.bugs) or "no bug"
        rules = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_rule.items()))
        return (
            f"{self.scenario} ({bug}): {self.interleavings} interleavings, "
            f"{self.violating} violating" + (f" ({rules})" if rules else "")
        )


# --------------------------------------------------------------------------------------
# scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    build: Callable[[sm.Model, random.Random], None]
    explorable: bool = False


def _gated(cond: Callable[[], bool], prog: sm.Program) -> sm.Program:
    """``prog`` whose first step also waits for ``cond`` (no extra step)."""
    first = next(prog, None)
    yield lambda: cond() and (first is None or first())
    yield from prog


def _one_page(m: sm.Model) -> tuple[sm.Task, sm.Task, sm.Task, sm.Folio]:
    mig = m.new_task(47, "kcompactd0", 0)
    par = m.new_task(1201, "forker", 1)
    child = m.new_task(1202, "forker", 1)
    pmm = m.new_mm(par)
    vma = m.new_vma(pmm, 0x7F5E8C000000, 4)
    folio = m.fault_in(par, vma, vma.start + sm.PAGE)
    return mig, par, child, folio


def _fork_vs_migrate(m: sm.Model, rng: random.Random) -> None:
    mig, par, child, folio = _one_page(m)
    m.spawn(par, m.fork(par, child))
    m.spawn(mig, m.migrate_pages(mig, [folio], "compaction", mode=1))


def _fork_vs_remove(m: sm.Model, rng: random.Random) -> None:
    mig, par, child, folio = _one_page(m)

    m.spawn(mig, m.migrate_pages(mig, [folio], "compaction", mode=1))
    m.spawn(par, _gated(lambda: folio.set_walks_done > 0, m.fork(par, child)))


def _exit_during_migration(m: sm.Model, rng: random.Random) -> None:
    mig = m.new_task(47, "kcompactd0", 0)
    par = m.new_task(2101, "server", 1)
    pmm = m.new_mm(par)
    vma = m.new_vma(pmm, 0x7F3D40000000, 8)
    folios = [m.fault_in(par, vma, vma.start + i * sm.PAGE) for i in range(4)]
    kids = [m.new_task(2102 + i, "server", 2 + i) for i in range(2)]
    for k in kids:
        sm.run_now(m.fork(par, k))
    m.spawn(mig, m.migrate_pages(mig, folios, "compaction", mode=1))
    # the first child exits once the batch has unmapped the first page (its migration
    # entries are zapped without a tracepoint); the second writes a page whose entry is
    # set (waits in migration_entry_wait until the entry is removed), then exits
    m.spawn(kids[0], _gated(lambda: folios[0].set_walks_done > 0, m.exit(kids[0])))

    def writer_then_exit(t: sm.Task) -> sm.Program:
        yield from m.write(t, vma.start + sm.PAGE)
        yield from m.exit(t)

    m.spawn(kids[1], _gated(lambda: folios[1].set_walks_done > 0, writer_then_exit(kids[1])))
    m.spawn(par, m.write(par, vma.start + 2 * sm.PAGE))


def _thp_split_vs_fork(m: sm.Model, rng: random.Random) -> None:
    mig = m.new_task(2310, "migratepages", 0)
    spl = m.new_task(72, "kswapd0", 3)
    par = m.new_task(2301, "thp_app", 1)
    child = m.new_task(2302, "thp_app", 2)
    pmm = m.new_mm(par)
    thp_vma = m.new_vma(pmm, 0x7F2A00000000, 512)
    # (hugetlb-fork-copy: the huge page is a hugetlb page, MAP_PRIVATE|MAP_HUGETLB)
    hugetlb = "hugetlb-fork-copy" in m.bugs
    thp = m.fault_in(par, thp_vma, thp_vma.start, sm.PMD_ORDER, huge=True, hugetlb=hugetlb)
    mvma = m.new_vma(pmm, 0x7F2A00400000, 32)
    mthp = m.fault_in(par, mvma, mvma.start, order=4)
    m.fault_in(par, mvma, mvma.start + 20 * sm.PAGE)
    m.spawn(par, m.fork(par, child))
    m.spawn(mig, m.migrate_pages(mig, [thp], "syscall_or_cpuset", 2, alloc_targets=True))
    m.spawn(spl, m.split_folio(spl, mthp))


def _compaction_storm(m: sm.Model, rng: random.Random) -> None:
    worker = m.new_task(3101, "worker", 1)
    db = m.new_task(3201, "postgres", 2)
    kc = m.new_task(47, "kcompactd0", 0)
    sh = m.new_task(3301, "sh", 3)
    pages: dict[sm.Mm, list[int]] = {}
    for t, layout in (
        (worker, [(0x55D0C8A00000, 24, 20), (0x7F61B0000000, 16, 12)]),
        (db, [(0x7F0A2C000000, 20, 16)]),
    ):
        mm = m.new_mm(t)
        for start, npages, touched in layout:
            vma = m.new_vma(mm, start, npages)
            for i in sorted(rng.sample(range(npages), touched)):
                m.fault_in(t, vma, start + i * sm.PAGE)
                pages.setdefault(mm, []).append(start + i * sm.PAGE)
    next_pid = [3400]

    def new_child(parent: sm.Task) -> sm.Task:
        next_pid[0] += 1
        return m.new_task(next_pid[0], parent.comm, rng.randrange(m.cpus))

    def child_prog(depth: int) -> Callable[[sm.Task], sm.Program]:
        def prog(c: sm.Task) -> sm.Program:
            assert c.parent is not None  # fork() set it
            addrs = pages[c.parent.user_mm]
            pages[c.user_mm] = addrs
            for a in rng.sample(addrs, 3):
                yield from m.write(c, a)
            if depth == 0 and rng.random() < 0.7:
                yield from m.fork(c, new_child(c), then=child_prog(1))
            yield from m.write(c, rng.choice(addrs))
            yield from m.exit(c)

        return prog

    def parent_prog(t: sm.Task, forks: int) -> sm.Program:
        for _ in range(forks):
            for a in rng.sample(pages[t.user_mm], 2):
                yield from m.write(t, a)
            yield from m.fork(t, new_child(t), then=child_prog(0))

    def pick(k: int) -> Callable[[], list[sm.Folio]]:
        def choose() -> list[sm.Folio]:
            live = {id(f): f for f in m.folios.values()}
            cands = sorted(
                (
                    f
                    for f in live.values()
                    if f.mapcount and not f.isolated and f.op is None and f.nr == 1
                ),
                key=lambda f: f.pfn,
            )
            return rng.sample(cands, min(k, len(cands)))

        return choose

    def compactor(t: sm.Task, rounds: int, k: int, mode: int) -> sm.Program:
        for _ in range(rounds):
            yield from m.migrate_pages(t, pick(k), "compaction", mode)

    m.spawn(worker, parent_prog(worker, 3))
    m.spawn(db, parent_prog(db, 1))
    m.spawn(kc, compactor(kc, 4, 12, 1))
    m.spawn(sh, compactor(sh, 2, 10, 2))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "fork-vs-migrate",
            "one page of a parent is migrated (kcompactd0) while the parent forks: the seed's "
            "CPU A / CPU B table (set walk vs copy_page_range)",
            _fork_vs_migrate,
            explorable=True,
        ),
        Scenario(
            "fork-vs-remove",
            "the parent forks after the page's migration entry is set, racing the remove "
            "walk: the 2010 stale-entry pattern",
            _fork_vs_remove,
            explorable=True,
        ),
        Scenario(
            "thp-split-vs-fork",
            "a parent forks while its PMD-mapped THP is migrated (set/remove_migration_pmd) "
            "and its 64K mTHP is split by kswapd0 (anon_vma write-locked)",
            _thp_split_vs_fork,
        ),
        Scenario(
            "exit-during-migration",
            "two forked children exit (one after a copy-on-write fault) while their "
            "parent's four shared pages are migrated in one batch",
            _exit_during_migration,
        ),
        Scenario(
            "compaction-storm",
            "two processes with ~50 pages fork children and grandchildren that write and "
            "exit, while two compactors migrate random batches; healthy",
            _compaction_storm,
        ),
    )
}


# --------------------------------------------------------------------------------------
# running


def _bugs(bug: str | Iterable[str] | None) -> tuple[str, ...]:
    if bug is None or bug == "" or bug == "none":
        return ()
    items = bug.split(",") if isinstance(bug, str) else list(bug)
    out = []
    for b in items:
        b = b.strip()
        if not b or b == "none":
            continue
        if b not in BUGS:
            raise UsageError(f"unknown bug {b!r}; known: {', '.join(BUGS)}")
        if b not in out:
            out.append(b)
    return tuple(sorted(out, key=BUGS.index))


def _scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UsageError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def _build_model(
    sc: Scenario, seed: int, cpus: int, bugs: tuple[str, ...], explore: bool
) -> sm.Model:
    m = sm.Model(
        bugs=frozenset(bugs),
        seed=seed,
        cpus=cpus,
        t0=(4000 + seed % 1000) * 10**9,
        jitter=not explore,
        drop_prob=1.0 if explore else 0.5,
    )
    sc.build(m, random.Random(seed))
    if {"write-restored-readonly", "vma-adjust-undo"} & set(bugs):
        _late_compaction(m)
    return m


def _late_compaction(m: sm.Model) -> None:
    """Once every other task is done (every fork and exit over), kcompactd0 migrates again:

    * write-restored-readonly: each live process first writes its first two pages again
      (reusing or copying them: writable ptes), then one batch moves the order-0 pages still
      mapped, so WRITE entries come back read-only with no fork window to explain them;
    * vma-adjust-undo: a batch of one page that a GUP pin holds (every move fails with
      -EAGAIN: each pass undoes its unmap), the vma_adjust race misleading the last pass's
      undo walk (the entry of a vma whose start moved stays, a leaked-entry), then, unpinned,
      a second batch whose remove walk restores that entry with no set of its own (the set
      walk passes over a migration entry silently): an unexplained-surplus-remove.

    On every scenario."""
    kc = m.new_task(47, "kcompactd0", 0)
    late: list[sm.Agent] = []
    held: list[sm.Folio] = []

    def mapped() -> list[sm.Folio]:
        live = {id(f): f for f in m.folios.values()}
        rw = {e.pfn for mm in m.mms for e in mm.pt.values() if e.writable and not e.migration}
        return sorted(
            (f for f in live.values() if f.mapcount and not f.isolated and f.nr == 1),
            key=lambda f: (f.pfn not in rw, f.pfn),
        )[:8]

    def pin() -> list[sm.Folio]:
        live = sorted({id(f): f for f in m.folios.values()}.values(), key=lambda f: f.pfn)
        for f in live:
            if not f.mapcount or f.isolated or f.nr > 1 or f.huge:
                continue
            if any(m._entries_present(v, f) and m._can_grow(v) for v in m.walk_order(f)):
                f.pinned = True
                held.append(f)
                return [f]
        return []

    def unpin() -> list[sm.Folio]:
        for f in held:
            f.pinned = False
        return [f for f in held if f.pfn in m.folios and not f.freed]

    def program() -> sm.Program:
        yield lambda: all(a.done for a in m.agents if a not in late)
        if "vma-adjust-undo" in m.bugs:
            yield from m.migrate_pages(kc, pin, "compaction", 1)
            yield from m.migrate_pages(kc, unpin, "compaction", 1)
        if "write-restored-readonly" in m.bugs:
            for mm in [x for x in m.mms if not x.exited]:
                for addr in sorted(a for a, e in mm.pt.items() if not e.huge)[:2]:
                    yield from m.write(mm.task, addr)
            yield from m.migrate_pages(kc, mapped, "compaction", 1)

    late.append(m.spawn(kc, program()))


def simulate(
    scenario: str,
    seed: int = 0,
    cpus: int = 2,
    bug: str | Iterable[str] | None = None,
    *,
    schedule: list[int] | None = None,
    explored: bool = False,
) -> SimResult:
    """Run ``scenario`` once. ``bug``: one of :data:`BUGS`, or several (comma-separated).

    ``schedule`` forces the scheduler's choices (``SimResult.schedule`` replays a run
    exactly) instead of drawing them from ``seed``; ``explored``: use the settings of
    :func:`explore` (1 µs steps, drop-remove always drops), to replay one of its
    interleavings (see :meth:`ExploreResult.trace`).
    """
    sc = _scenario(scenario)
    bugs = _bugs(bug)
    if cpus < 1:
        raise UsageError("`cpus` must be at least 1", params=("cpus",))
    m = _build_model(sc, seed, cpus, bugs, explore=explored)
    rng = random.Random(seed * 1_000_003 + 3)
    made: list[int] = []

    def choose(n: int) -> int:
        if schedule is not None:
            c = schedule[len(made)] if len(made) < len(schedule) else 0
            if not 0 <= c < n:
                raise UsageError(f"schedule choice {c} out of range at step {len(made)}")
        else:
            c = rng.randrange(n)
        made.append(c)
        return c

    sm.run(m, choose)
    if "lose-events" in bugs:  # (before finish: some of the truth follows the printed lines)
        _lose_events(m.events, random.Random(seed * 1_000_003 + 4))
    m.finish()
    return _render(m, sc.name, seed, cpus, bugs, made)


def _lose_events(events: list[sm.Ev], rng: random.Random) -> None:
    """Drop 1-3 runs of consecutive events of one CPU (each followed by a kept event)."""
    by_cpu: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(events):
        by_cpu[e.cpu].append(i)
    anchors = [i for i, e in enumerate(events) if e.name in _BURSTY and len(by_cpu[e.cpu]) > 2]
    if not anchors:
        return
    for _ in range(rng.randint(1, 3)):
        a = rng.choice(anchors)
        idx = by_cpu[events[a].cpu]
        pos = idx.index(a)
        k = rng.randint(1, 6)
        lo = max(0, pos - rng.randrange(k))
        hi = min(lo + k, len(idx) - 1)  # the last event of a CPU is always kept
        for j in idx[lo:hi]:
            events[j].dropped = True


def _render(
    m: sm.Model, name: str, seed: int, cpus: int, bugs: tuple[str, ...], made: list[int]
) -> SimResult:
    evs = m.events
    seq: list[int | None] = [None] * len(evs)
    line: list[int | None] = [None] * len(evs)
    out: list[str] = []
    lost: list[dict] = []
    pending: dict[int, int] = defaultdict(int)  # cpu -> events dropped since its last line
    last_ts: dict[int, int] = {}
    counts: Counter[str] = Counter()
    pfns: dict[str, list[int]] = {}
    n = 0
    for i, e in enumerate(evs):
        if e.dropped:
            pending[e.cpu] += 1
            continue
        if pending[e.cpu]:
            out.append(f"CPU:{e.cpu} [LOST {pending[e.cpu]} EVENTS]\n")
            lost.append(
                {
                    "cpu": e.cpu,
                    "count": pending[e.cpu],
                    "ts_start": last_ts.get(e.cpu),
                    "ts_end": e.ts,
                    "line": HEADER_LINES + len(out),
                }
            )
            pending[e.cpu] = 0
        secs, usecs = divmod(e.ts // 1000, 1_000_000)
        out.append(
            f"{e.comm:>16}-{e.pid:<7} [{e.cpu:03d}] {e.flags} {secs:5d}.{usecs:06d}: "
            f"{e.name}{e.sep}{e.payload}\n"
        )
        seq[i], line[i] = n, HEADER_LINES + len(out)
        n += 1
        last_ts[e.cpu] = e.ts
        counts[e.name] += 1
        if e.pfn is not None:
            pfns.setdefault(e.name, []).append(e.pfn)
    text = HEADER.format(n=n, cpus=cpus) + "".join(out)

    def finding(f: sm.Finding) -> dict:
        if f.detect_ev is None:
            raise sm.SimError(f"finding {f.rule} was never completed")
        ids = sorted({*f.evidence, f.detect_ev})
        t0, t1 = min(evs[i].ts for i in ids), max(evs[i].ts for i in ids)
        cpus_ev = {evs[i].cpu for i in ids}
        overlap = [
            g
            for g in lost
            if g["cpu"] in cpus_ev
            and (g["ts_start"] is None or g["ts_start"] < t1)
            and g["ts_end"] > t0
        ]
        verdict = f.verdict
        if verdict == "violation" and overlap:
            verdict = "inconclusive"
        d = evs[f.detect_ev]
        owner = f.mm.task if f.mm is not None else None
        return {
            "rule": f.rule,
            "verdict": verdict,
            "pfn": f.pfn,
            "addr": f.addr,
            "mm": f"{f.mm.ptr:#x}" if f.mm is not None else None,
            "pid": owner.pid if owner else None,
            "ts": d.ts,
            "seq": seq[f.detect_ev],
            "line": line[f.detect_ev],
            "cpu": d.cpu,
            "task_pid": d.pid,
            "event": d.name,
            "old_pfn": f.old_pfn,
            "new_pfn": f.new_pfn,
            "parent_mm": f"{f.parent_mm.ptr:#x}" if f.parent_mm is not None else None,
            "parent_pid": f.parent_mm.task.pid if f.parent_mm is not None else None,
            "window": [t0, t1],
            "evidence": [
                {"seq": seq[i], "ts": evs[i].ts, "cpu": evs[i].cpu, "event": evs[i].name}
                for i in ids
            ],
            "lost_overlap": [g["line"] for g in overlap],
            "decidable": f.decidable,
            "decidable_tier1": f.decidable_tier1,
            "explanation": f.explanation,
        }

    def key(d: dict) -> tuple:
        return (d["ts"], d["rule"], d["addr"], d["mm"] or "")

    truth = sorted((finding(f) for f in m.findings), key=key)
    info = sorted((finding(f) for f in m.info), key=key)
    return SimResult(
        scenario=name,
        seed=seed,
        cpus=cpus,
        bugs=bugs,
        text=text,
        truth=truth,
        info=info,
        counts=dict(sorted(counts.items())),
        events=n,
        lost=lost,
        schedule=made,
        pfns=pfns,
    )


def write_result(result: SimResult, path: str | Path) -> tuple[Path, Path, Path]:
    """Write the trace to ``path``, the truth to ``path.truth.json``, info to ``.info.json``."""
    p = Path(path)
    p.write_text(result.text)
    truth, info = Path(f"{p}.truth.json"), Path(f"{p}.info.json")
    truth.write_text(json.dumps(result.truth, indent=1) + "\n")
    info.write_text(json.dumps(result.info, indent=1) + "\n")
    return p, truth, info


# --------------------------------------------------------------------------------------
# exhaustive exploration

MAX_INTERLEAVINGS = 500_000


def explore(scenario: str, bug: str | Iterable[str] | None = None) -> ExploreResult:
    """Run a small scenario under every interleaving of its agents' steps (DFS over the
    scheduler's choices) and count the interleavings whose ground truth has a violation
    (the findings known as the run goes: not those only the whole trace decides,
    ``unexplained-downgrade`` and ``unexplained-surplus-remove``)."""
    sc = _scenario(scenario)
    bugs = _bugs(bug)
    if not sc.explorable:
        small = ", ".join(s.name for s in SCENARIOS.values() if s.explorable)
        raise UsageError(f"scenario {scenario!r} is too large to explore; small ones: {small}")
    if "lose-events" in bugs:
        raise UsageError(
            "`explore` enumerates schedules; it cannot be combined with lose-events",
            params=("explore",),
        )
    t = time.perf_counter()
    prefix: list[int] = []
    total = bad = 0
    by_rule: Counter[str] = Counter()
    example = None
    examples: dict[str, list[int]] = {}
    while True:
        trail: list[tuple[int, int]] = []

        def choose(n: int, trail=trail, prefix=prefix) -> int:
            i = len(trail)
            c = prefix[i] if i < len(prefix) else 0
            trail.append((c, n))
            return c

        m = _build_model(sc, 0, 2, bugs, explore=True)
        sm.run(m, choose)
        total += 1
        rules = {f.rule for f in m.findings if f.verdict == "violation"}
        if rules:
            bad += 1
            by_rule.update(rules)
            sched = [c for c, _ in trail]
            if example is None:
                example = sched
            for r in rules:
                examples.setdefault(r, sched)
        if total > MAX_INTERLEAVINGS:
            raise UsageError(f"more than {MAX_INTERLEAVINGS} interleavings; scenario too large")
        while trail and trail[-1][0] + 1 >= trail[-1][1]:
            trail.pop()
        if not trail:
            break
        c, _ = trail.pop()
        prefix = [x for x, _ in trail] + [c + 1]
    return ExploreResult(
        scenario=sc.name,
        bugs=bugs,
        interleavings=total,
        violating=bad,
        by_rule=dict(sorted(by_rule.items())),
        example=example,
        seconds=time.perf_counter() - t,
        examples=examples,
    )
