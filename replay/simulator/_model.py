"""The scenario simulator's kernel model (private; the API is :mod:`.simulate`).

What is modelled, after Linux 6.18 (mm/rmap.c, mm/migrate.c, mm/memory.c, mm/mmap.c,
mm/huge_memory.c):

* processes (:class:`Task`) and their address spaces (:class:`Mm`): anonymous vmas with
  ``vm_pgoff`` and one page table (pte- and pmd-level entries keyed by address);
* anon_vmas with the interval tree of their anon_vma_chains: a walk visits the vmas whose
  pgoff range covers the folio in ``vm_pgoff`` order, ties in insertion order (equal keys
  go right in ``interval_tree_generic.h``); the ``child-first`` bug inserts a forked
  child's avc *before* its parent's instead;
* ``dup_mmap``: per vma ``anon_vma_fork`` (links the child vma into every anon_vma of the
  parent's chain, plus a new anon_vma of its own) then ``copy_page_range``: present ptes
  are shared copy-on-write (both write-protected, child's old, PageAnonExclusive cleared),
  migration entries are copied as migration entries; a WRITE or READ_EXCLUSIVE entry is
  downgraded to READ in parent and child (``copy_nonpresent_pte``; no tracepoint);
* ``migrate_pages`` (since 6.3 batched): per folio ``try_to_migrate`` (a set walk,
  ``try_to_migrate_one`` per vma, stopping once the folio is no longer mapped:
  ``rwc->done = folio_not_mapped``), a folio still mapped after it is restored
  (``remove_migration_ptes(src, src)``) and retried, up to 10 passes; then per unmapped
  folio ``remove_migration_ptes(src, dst)`` (a remove walk visiting every vma) and the
  source folio is freed;
* folio split (``__folio_split`` of a pte-mapped large folio, under the anon_vma write lock
  for its whole duration): one set walk, then one remove walk per new order-0 folio
  (``remap_page``), or one remove walk over the unsplit folio when it stayed mapped;
* exit (6.16+ order): ``sched_process_exit``, zap (migration entries dropped silently, pages
  whose last mapping goes are freed), ``unlink_anon_vmas`` per vma, ``exit_mmap``, later
  ``sched_process_free``;
* page alloc/free, write faults (copy-on-write, reuse, waiting on a migration entry).

Locking that shapes the possible interleavings: an rmap walk holds the (root) anon_vma
lock for reading for its whole duration, linking (``anon_vma_fork``) and unlinking need it
for writing, a split holds it for writing from unmap to remap. Page-table copies and walk
visits are atomic against each other (the page table lock), nothing else is: each vma
visit of a walk, the fork's link step, each pte copy and the end of a vma's copy are
separate schedulable steps.

Agents are generators: the code between two ``yield``s is one atomic step; a step may
yield a guard (a callable) that must be true before the next step can run.

The model also derives the ground truth (rule ids of ``data/probes/README.md``) from its
own state, at the moment a rule's condition becomes true, with the indices of the events
that show it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import cast

from rmapscope.catalog import VMEMMAP_BASE  # a folio pointer is VMEMMAP_BASE + 64 * pfn
from rmapscope.errors import SimError
from rmapscope.ingest.pte import calibrate_kinds
from rmapscope.replay.engine import INPUT_EVENTS, bounds_fork_window

PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
PMD_ORDER = 9

# x86_64, 4-level paging, Linux 6.18 without DEVICE_PRIVATE (docs/formats.md section 4)
SWP_PFN_BITS = 34
SWP_TYPE = {"read": 28, "read_exclusive": 29, "write": 30}
_P, _RW, _US, _A, _D, _PSE = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80
_SAVED_DIRTY = 1 << 58  # a dirty read-only pte keeps D here (x86 shadow-stack layout, 6.6+)
_NX = 1 << 63
_UFFD_WP_BIT = 10

PAGE_MAPPING_ANON = 0x1  # low bit of folio->mapping (printed by the rmap_walk_anon probe)
MAX_PASSES = 10  # NR_MAX_MIGRATE_PAGES_RETRY

# Symbols of the probe lines: function sizes and the return sites of the kretprobes.
FUNC_SIZE = {
    "rmap_walk_anon": 0x1A0,
    "try_to_migrate_one": 0x5D0,
    "remove_migration_pte": 0x3F0,
    "anon_vma_fork": 0x1C0,
    "copy_page_range": 0x1B80,
    "unlink_anon_vmas": 0x1F0,
}
#: Addresses of the rmap_one callbacks printed as ``op=`` by ``rmap_walk_anon``.
OP_ADDR = {"set": 0xFFFFFFFF8131F2A0, "remove": 0xFFFFFFFF8137C1E0}
RET_SITE = {
    "rmap_walk": "rmap_walk+0x5b/0x70",
    "rmap_walk_locked": "rmap_walk_locked+0x1e/0x30",
    "dup_mmap": "dup_mmap+0x5c4/0x9b0",
}
GFP_ANON = "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP"
GFP_COW = "GFP_HIGHUSER_MOVABLE|__GFP_COMP"
GFP_THP = "GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE"
GFP_MTHP = "GFP_TRANSHUGE"
GFP_TARGET = {0: "GFP_HIGHUSER_MOVABLE|__GFP_COMP", PMD_ORDER: "GFP_TRANSHUGE|__GFP_RETRY_MAYFAIL"}
MODES = ("MIGRATE_ASYNC", "MIGRATE_SYNC_LIGHT", "MIGRATE_SYNC")


# --------------------------------------------------------------------------------------
# encodings


def swap_entry(pfn: int, kind: str, young: bool, dirty: bool, uffd_wp: bool = False) -> int:
    """x86_64 migration entry: ``TYPE(59-63) | ~OFFSET(9-58)``, offset = pfn | A/D bits;
    bit 2 is ``_PAGE_SWP_UFFD_WP``."""
    off = pfn | (int(young) << SWP_PFN_BITS) | (int(dirty) << (SWP_PFN_BITS + 1))
    return (((~off) << 9) & ((1 << 59) - 1)) | (SWP_TYPE[kind] << 59) | (int(uffd_wp) << 2)


def present_entry(
    pfn: int, writable: bool, young: bool, dirty: bool, huge: bool, uffd_wp: bool = False
) -> int:
    """x86_64 present pte/pmd as ``remove_migration_pte/pmd`` print it (NX data mapping;
    bit 10 is ``_PAGE_UFFD_WP``)."""
    v = (pfn << PAGE_SHIFT) | _P | _US | _NX | (int(uffd_wp) << _UFFD_WP_BIT)
    if huge:
        v |= _PSE
    if writable:
        v |= _RW
    if young:
        v |= _A
    if dirty:
        v |= _D if writable else _SAVED_DIRTY
    return v


def hashed_ptr(value: int) -> str:
    """``%p`` in tracefs text: a 32-bit hash of the pointer, stable within a boot."""
    h = hashlib.blake2b(value.to_bytes(8, "little"), digest_size=4, key=b"rmapscope-sim")
    return f"{int.from_bytes(h.digest(), 'little'):016x}"


def folio_ptr(pfn: int) -> int:
    return VMEMMAP_BASE + 64 * pfn


# --------------------------------------------------------------------------------------
# state


@dataclass(eq=False)
class Entry:
    """What one page-table slot holds: a present mapping or a migration entry."""

    migration: bool
    pfn: int  # the page's pfn (the head pfn for a pmd)
    huge: bool
    writable: bool  # present: RW; migration: a WRITE entry
    exclusive: bool  # migration: a READ_EXCLUSIVE entry (when not writable)
    young: bool
    dirty: bool
    origin: str  # fault | cow | fork | restore | set | copy
    set_ev: int | None = None  # origin set: the set_migration_* event that made it
    copied_from: Entry | None = None  # origin copy: the parent's entry
    copy_vma: Vma | None = None  # origin copy: the child vma it was copied into
    gone: bool = False  # replaced by a restore, or zapped
    reported: bool = False  # already in the ground truth as stale
    set_kind: str | None = None  # origin set: the entry type the set line printed
    gone_ev: int | None = None  # the remove tracepoint that restored it
    uffd_wp: bool = False  # userfaultfd write-protected (pte bit, or the entry's swp bit)
    set_uffd_wp: bool = False  # origin set: the set line printed the uffd-wp bit
    restored_rw: bool | None = None  # origin set: its remove line printed a writable pte
    key: tuple | None = None  # origin set: (migrator pid, addr, huge, batch) of its set line
    overwritten: bool = False  # foreign-pmd-entry: another folio's set replaced it

    @property
    def kind(self) -> str:
        if self.writable:
            return "write"
        return "read_exclusive" if self.exclusive else "read"

    def root_set(self) -> Entry:
        e = self
        while e.copied_from is not None:
            e = e.copied_from
        return e


@dataclass(eq=False)
class AnonVma:
    ptr: int
    root: AnonVma | None = None
    # the interval tree, flattened to its in-order sequence of (vm_pgoff, vma)
    tree: list[tuple[int, Vma]] = field(default_factory=list)
    readers: int = 0  # on the root: walks holding the lock for reading
    writer: object | None = None  # on the root: the agent holding it for writing

    @property
    def top(self) -> AnonVma:
        return self.root or self


@dataclass(eq=False)
class Vma:
    mm: Mm
    start: int
    end: int
    pgoff: int
    anon_vma: AnonVma | None = None
    chain: list[AnonVma] = field(default_factory=list)
    fork_src: Vma | None = None  # the parent vma this one is a fork copy of
    copying: bool = False  # linked by anon_vma_fork, copy_page_range not returned yet
    link_ev: int | None = None  # anon_vma_fork event
    ret_ev: int | None = None  # copy_page_range_ret event
    pending: list[Finding] = field(default_factory=list)  # findings detected at the ret

    @property
    def av(self) -> AnonVma:
        """The vma's own anon_vma (``new_vma`` and fork give every vma one)."""
        if self.anon_vma is None:
            raise SimError(f"vma {self.start:#x} has no anon_vma")
        return self.anon_vma

    @property
    def npages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    def covers(self, index: int, nr: int) -> bool:
        return self.pgoff <= index + nr - 1 and index <= self.pgoff + self.npages - 1

    def addr_of(self, index: int) -> int:
        return self.start + ((index - self.pgoff) << PAGE_SHIFT)


@dataclass(eq=False)
class Mm:
    ptr: int
    task: Task
    vmas: list[Vma] = field(default_factory=list)
    pt: dict[int, Entry] = field(default_factory=dict)  # addr -> entry (pmds at 2M addrs)
    exited: bool = False
    uffd_wp: bool = False  # registered for uffd-wp (no EVENT_FORK): faults map pages protected

    def vma_at(self, addr: int) -> Vma | None:
        for v in self.vmas:
            if v.start <= addr < v.end:
                return v
        return None


@dataclass(eq=False)
class Task:
    pid: int
    comm: str
    cpu: int
    mm: Mm | None = None
    parent: Task | None = None
    prio: int = 120
    exit_printed: bool = False  # sched_process_exit printed: its zaps follow, without lines

    @property
    def user_mm(self) -> Mm:
        """The task's mm (``new_mm`` gives one to every task that touches memory)."""
        if self.mm is None:
            raise SimError(f"task {self.pid} ({self.comm}) has no mm")
        return self.mm


@dataclass(eq=False)
class Folio:
    pfn: int
    order: int
    anon_vma: AnonVma
    index: int  # page offset (pgoff) of the head page
    exclusive: bool = True  # PageAnonExclusive
    mapcount: int = 0  # present ptes/pmds mapping any of its pages
    isolated: bool = False
    freed: bool = False
    op: Op | None = None
    huge: bool = False  # pmd-mapped THP (or, with ``hugetlb``, a 2M hugetlb page)
    set_walks_done: int = 0
    hugetlb: bool = False  # from the hugetlb pool: pte tracepoints, no page allocator lines
    pinned: bool = False  # an extra reference (a GUP pin): every move fails with -EAGAIN

    @property
    def nr(self) -> int:
        return 1 << self.order


@dataclass(eq=False)
class Walk:
    kind: str  # set | remove
    folio: Folio  # the folio walked (the destination for a remove walk)
    src: Folio  # remove: the folio whose entries are restored (== folio when failing)
    task: Task
    op: Op
    start_ev: int
    order: list[Vma]
    visited: list[Vma] = field(default_factory=list)
    visit_ev: dict[int, int] = field(default_factory=dict)  # id(vma) -> visit event
    end_ev: int | None = None
    pending: list[Finding] = field(default_factory=list)  # evidence to end with end_ev
    waiting: dict[int, list[Finding]] = field(default_factory=dict)  # id(parent vma) -> ...
    #: remove walk: (pfn, batch) of the entries it restored that their own set line made
    removed: set[tuple] = field(default_factory=set)


@dataclass(eq=False)
class Op:
    """One migration attempt (in a batch) or one split of a folio."""

    kind: str  # migrate | split
    folio: Folio
    task: Task
    batch: Batch | None = None
    set_walk: Walk | None = None
    phase: str = "set"  # set | remove | done


@dataclass(eq=False)
class Batch:
    task: Task
    start_ev: int
    sets: list[tuple[int, Entry, Mm, int, Op]] = field(default_factory=list)


@dataclass(eq=False)
class Finding:
    rule: str
    mm: Mm | None
    addr: int | None  # (None: a finding of a whole batch)
    pfn: int | None
    old_pfn: int | None
    new_pfn: int | None
    explanation: str
    evidence: list[int]  # event indices (the detecting one included)
    detect_ev: int | None = None
    parent_mm: Mm | None = None
    verdict: str = "violation"
    decidable: bool = True  # do the printed lines alone determine this finding?
    #: and do they without the probe lines (upstream tracepoints alone: tier 1)?
    decidable_tier1: bool = False
    #: leaked-entry: the first set line of the walk that made the entry (tier 1's unmap group)
    group_ev: int | None = None
    copied: Entry | None = None  # stale-child-entry: the parent entry fork copied
    entry: Entry | None = None  # read-entry-restored-writable, uffd-wp-lost: the entry
    child_vma: Vma | None = None


@dataclass(slots=True)
class Ev:
    ts: int
    cpu: int
    comm: str
    pid: int
    flags: str
    name: str
    payload: str
    dropped: bool = False
    pfn: int | None = None  # set/remove tracepoints: the pfn their pte encodes
    sep: str = ": "  # between the event name and its payload (syscall lines differ)


class Agent:
    """A task's program: a generator whose code between two yields is one atomic step."""

    __slots__ = ("done", "gen", "guard", "name", "task")

    def __init__(self, task: Task, gen: Generator, name: str = "") -> None:
        self.task, self.gen, self.name = task, gen, name or f"{task.comm}-{task.pid}"
        self.done = False
        self.guard: Callable[[], bool] | None = None
        self._advance()

    def _advance(self) -> None:
        try:
            self.guard = next(self.gen)
        except StopIteration:
            self.done, self.guard = True, None

    def ready(self) -> bool:
        return not self.done and (self.guard is None or self.guard())

    def step(self) -> None:
        self._advance()


Program = Generator[Callable[[], bool] | None, None, None]


# --------------------------------------------------------------------------------------
# the model


class Model:
    """Kernel state, the emitted events and the ground truth of one simulation run."""

    def __init__(
        self,
        *,
        bugs: frozenset[str] = frozenset(),
        seed: int = 0,
        cpus: int = 2,
        t0: int = 4000 * 10**9,
        jitter: bool = True,
        drop_prob: float = 0.5,
    ) -> None:
        self.bugs = bugs
        self.cpus = cpus
        self.now = t0
        self.jitter = jitter
        self.drop_prob = drop_prob
        self.rng_time = random.Random(seed * 1_000_003 + 1)
        self.rng_bug = random.Random(seed * 1_000_003 + 2)
        self.events: list[Ev] = []
        self.findings: list[Finding] = []
        self.info: list[Finding] = []
        self.agents: list[Agent] = []
        self.mms: list[Mm] = []
        self.fork_vmas: list[Vma] = []  # every vma fork created, in link order
        self.folios: dict[int, Folio] = {}  # pfn of every page -> its folio
        self._mm_next = 0xFFFF888104A8E000
        self._av_next = 0xFFFF888103C1D000
        self._free: list[int] = []  # freed order-0 pfns, reused LIFO
        self._pfn_next = 0x10A000 + (seed % 97) * 0x40
        self._huge_next = 0x1C0000 + (seed % 13) * 0x400
        self._target_next = 0x1F9000 + (seed % 89) * 0x40
        self.stats = {"walks": 0, "steps": 0}
        self.set_entries: list[Entry] = []  # every entry a set line made (kind calibration)
        self.remove_lines: dict[tuple, int] = {}  # (migrator pid, addr, huge, batch) -> lines
        self.wp_ioctls: list[int] = []  # UFFDIO_WRITEPROTECT syscall entry events
        self.copy_removes: set[tuple] = set()  # keys (see remove_lines) of a fork copy's remove
        self._adjusted = False  # vma-adjust-skip: the one vma_adjust race has happened
        self.ended_removes: list[Walk] = []  # remove walks, in the order they ended
        #: findings that only the whole trace decides (a fork window may explain them; see
        #: :meth:`_downgrades`, :meth:`_surplus`): into ``findings`` at :meth:`finish`
        self.provisional: list[Finding] = []

    # -- events ---------------------------------------------------------------------
    def emit(
        self,
        task: Task,
        name: str,
        payload: str,
        flags: str = ".....",
        *,
        comm: str | None = None,
        pid: int | None = None,
        sep: str = ": ",
    ) -> int:
        self.now += 1000 * (self.rng_time.randint(1, 9) if self.jitter else 1)
        self.events.append(
            Ev(
                self.now,
                task.cpu,
                task.comm if comm is None else comm,
                task.pid if pid is None else pid,
                flags,
                name,
                payload,
                sep=sep,
            )
        )
        return len(self.events) - 1

    def probe(self, task: Task, func: str, **keys: int) -> int:
        args = "".join(f" {k}=0x{v:x}" for k, v in keys.items())
        return self.emit(task, func, f"({func}+0x0/0x{FUNC_SIZE[func]:x}){args}")

    def retprobe(self, task: Task, name: str, func: str, site: str, **keys: int) -> int:
        args = "".join(f" {k}=0x{v:x}" for k, v in keys.items())
        return self.emit(task, name, f"({RET_SITE[site]} <- {func}){args}")

    # -- objects ----------------------------------------------------------------------
    def new_task(self, pid: int, comm: str, cpu: int) -> Task:
        return Task(pid, comm, cpu % self.cpus)

    def new_mm(self, task: Task) -> Mm:
        mm = Mm(self._mm_next, task)
        # uffd-wp-lost-on-fork: the first process write-protects its memory with userfaultfd
        mm.uffd_wp = "uffd-wp-lost-on-fork" in self.bugs and not self.mms
        if "write-restored-readonly" in self.bugs and not self.mms:
            self._relro_mprotect(task)
        self._mm_next += 0x640
        task.mm = mm
        self.mms.append(mm)
        return mm

    def new_anon_vma(self, root: AnonVma | None = None) -> AnonVma:
        av = AnonVma(self._av_next, root)
        self._av_next += 0x68
        return av

    def new_vma(self, mm: Mm, start: int, npages: int) -> Vma:
        """An anonymous private vma (``vm_pgoff = start >> PAGE_SHIFT``) with an anon_vma."""
        v = Vma(mm, start, start + (npages << PAGE_SHIFT), start >> PAGE_SHIFT)
        av = self.new_anon_vma()
        v.anon_vma, v.chain = av, [av]
        self._tree_insert(av, v, None)
        mm.vmas.append(v)
        mm.vmas.sort(key=lambda x: x.start)
        return v

    def spawn(self, task: Task, program: Program, name: str = "") -> Agent:
        a = Agent(task, program, name)
        self.agents.append(a)
        return a

    # -- pfns -------------------------------------------------------------------------
    def alloc_pfn(self, order: int, target: bool = False) -> int:
        if order == 0 and self._free and not target:
            # LIFO like the per-cpu free lists, but never a pfn a (stale) entry names
            used = {e.pfn for mm in self.mms for e in mm.pt.values() if e.migration}
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i] not in used:
                    return self._free.pop(i)
        nr = 1 << order
        if target:
            pfn = (self._target_next + nr - 1) // nr * nr
            self._target_next = pfn + nr
        elif order:
            pfn = (self._huge_next + nr - 1) // nr * nr
            self._huge_next = pfn + nr
        else:
            pfn = self._pfn_next
            self._pfn_next += 1
        return pfn

    def new_folio(self, pfn: int, order: int, av: AnonVma, index: int, huge: bool) -> Folio:
        f = Folio(pfn, order, av, index, huge=huge)
        for i in range(f.nr):
            self.folios[pfn + i] = f
        return f

    def page_alloc(self, task: Task, pfn: int, order: int, gfp: str) -> int:
        return self.emit(
            task,
            "mm_page_alloc",
            f"page={hashed_ptr(folio_ptr(pfn))} pfn=0x{pfn:x} order={order} "
            f"migratetype=1 gfp_flags={gfp}",
        )

    def page_free(self, task: Task, folio: Folio, batched: bool = False, flags: str = "....."):
        folio.freed = True
        for i in range(folio.nr):
            if self.folios.get(folio.pfn + i) is folio:
                del self.folios[folio.pfn + i]
        if folio.order == 0 and folio.pfn < 0x1F0000:
            self._free.append(folio.pfn)
        if folio.hugetlb:
            return None  # free_huge_folio: back to the pool, no page allocator line
        if batched:  # tlb batching (zap at exit): free_unref_folios
            return self.emit(
                task,
                "mm_page_free_batched",
                f"page={hashed_ptr(folio_ptr(folio.pfn))} pfn=0x{folio.pfn:x} order=0",
                flags,
            )
        return self.emit(
            task,
            "mm_page_free",
            f"page={hashed_ptr(folio_ptr(folio.pfn))} pfn=0x{folio.pfn:x} order={folio.order}",
            flags,
        )

    # -- page table ---------------------------------------------------------------------
    def put(self, mm: Mm, addr: int, new: Entry | None) -> Entry | None:
        """Replace the entry at ``addr``, keeping folio mapcounts right."""
        old = mm.pt.get(addr)
        if old is not None:
            old.gone = True
            if not old.migration:
                self.folios[old.pfn].mapcount -= 1
            del mm.pt[addr]
        if new is not None:
            mm.pt[addr] = new
            if not new.migration:
                self.folios[new.pfn].mapcount += 1
        return old

    def fault_in(
        self,
        task: Task,
        vma: Vma,
        addr: int,
        order: int = 0,
        huge: bool = False,
        hugetlb: bool = False,
    ):
        """A first-touch write fault: a fresh exclusive folio, mapped writable and dirty
        (``hugetlb``: a huge page of the pool, which the page allocator does not print)."""
        pfn = self.alloc_pfn(order)
        gfp = GFP_THP if huge else (GFP_MTHP if order else GFP_ANON)
        if not hugetlb:
            self.page_alloc(task, pfn, order, gfp)
        index = vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)
        f = self.new_folio(pfn, order, vma.av, index, huge)
        f.hugetlb = hugetlb
        wp = vma.mm.uffd_wp  # UFFDIO_WRITEPROTECT right after the fault: read-only, uffd-wp
        if wp:
            self._uffd_ioctl(task)
        if huge:
            e = Entry(False, pfn, True, not wp, False, True, True, "fault", uffd_wp=wp)
            self.put(vma.mm, addr, e)
        else:
            for i in range(f.nr):
                e = Entry(False, pfn + i, False, not wp, False, True, True, "fault", uffd_wp=wp)
                self.put(vma.mm, addr + (i << PAGE_SHIFT), e)
        return f

    def pages_in(self, vma: Vma, folio: Folio) -> Iterator[tuple[int, int]]:
        """(addr, pfn) of every slot of ``vma`` where ``folio`` would be mapped."""
        if folio.huge:
            yield vma.addr_of(folio.index), folio.pfn
            return
        for i in range(folio.nr):
            idx = folio.index + i
            if vma.pgoff <= idx < vma.pgoff + vma.npages:
                yield vma.addr_of(idx), folio.pfn + i

    # -- anon_vma interval tree -----------------------------------------------------------
    def _tree_insert(self, av: AnonVma, vma: Vma, parent: Vma | None) -> None:
        if parent is not None and "child-first" in self.bugs:
            pos = next(i for i, (_, v) in enumerate(av.tree) if v is parent)
        else:  # equal keys go right: after every avc with pgoff <= ours
            pos = len(av.tree)
            while pos and av.tree[pos - 1][0] > vma.pgoff:
                pos -= 1
        av.tree.insert(pos, (vma.pgoff, vma))

    def walk_order(self, folio: Folio) -> list[Vma]:
        return [v for _, v in folio.anon_vma.tree if v.covers(folio.index, folio.nr)]

    @staticmethod
    def lock_free(av: AnonVma) -> bool:
        root = av.top
        return root.readers == 0 and root.writer is None

    # -- ground truth -----------------------------------------------------------------------
    def find(self, f: Finding, info: bool = False) -> Finding:
        (self.info if info else self.findings).append(f)
        return f

    # ======================================================================================
    # programs (generators; see Agent)

    # -- fork -----------------------------------------------------------------------------
    def fork(self, parent: Task, child: Task, then: Callable[[Task], Program] | None = None):
        """``fork()`` in ``parent``: dup_mmap per vma, then task_newtask/sched_process_fork."""
        pmm = parent.user_mm
        cmm = None
        for pvma in list(pmm.vmas):
            yield lambda pvma=pvma: self.lock_free(pvma.anon_vma)
            if cmm is None:
                cmm = self.new_mm(child)
                child.parent = parent
            cvma = self._link(parent, pvma, cmm)
            done: set[int] = set()
            for addr in sorted(a for a in pmm.pt if pvma.start <= a < pvma.end):
                if addr in done:
                    continue
                yield None
                done.update(self._copy(pvma, cvma, addr))
            yield None
            self._copy_ret(parent, cvma)
        yield None
        if cmm is None:
            self.new_mm(child)
            child.parent = parent
        self.emit(
            parent,
            "task_newtask",
            f"pid={child.pid} comm={child.comm} clone_flags=1200011 oom_score_adj=0",
        )
        self.emit(
            parent,
            "sched_process_fork",
            f"comm={parent.comm} pid={parent.pid} child_comm={child.comm} child_pid={child.pid}",
        )
        if then is not None:
            self.spawn(child, then(child))

    def _link(self, task: Task, pvma: Vma, cmm: Mm) -> Vma:
        """anon_vma_fork (the child vma becomes visible to walks) + copy_page_range entry."""
        cvma = Vma(cmm, pvma.start, pvma.end, pvma.pgoff, fork_src=pvma, copying=True)
        self.fork_vmas.append(cvma)
        cmm.vmas.append(cvma)
        cvma.link_ev = self.probe(
            task,
            "anon_vma_fork",
            mm=cmm.ptr,
            pmm=pvma.mm.ptr,
            pgoff=pvma.pgoff,
            anon_vma=pvma.av.ptr,
        )
        for av in pvma.chain:  # anon_vma_clone
            self._tree_insert(av, cvma, pvma)
            cvma.chain.append(av)
        own = self.new_anon_vma(pvma.av.top)
        cvma.anon_vma = own
        cvma.chain.append(own)
        self._tree_insert(own, cvma, None)
        self.probe(
            task,
            "copy_page_range",
            dst_mm=cmm.ptr,
            src_mm=pvma.mm.ptr,
            start=pvma.start,
            end=pvma.end,
            pgoff=pvma.pgoff,
        )
        return cvma

    def _copy(self, pvma: Vma, cvma: Vma, addr: int) -> list[int]:
        """Copy the entry at ``addr`` (a batch of ptes of one large folio when present)."""
        pmm, cmm = pvma.mm, cvma.mm
        e = pmm.pt.get(addr)
        if e is None:
            return [addr]
        if e.migration:  # copy_nonpresent_pte / copy_huge_pmd
            # hugetlb-fork-copy: copy_hugetlb_page_range() before 4a705fef9862 took the entry
            # for a present pte: huge_ptep_set_wrprotect() cleared bit 1 (on a swap entry the
            # soft-dirty bit; the type is untouched) and the child got the entry as it was:
            # WRITE in both (the bogus refcount on pte_page(entry) is not modelled)
            verbatim = self._hugetlb_copy_bug(e)
            if (e.writable or e.exclusive) and not verbatim:
                # is_cow_mapping: downgrade in both, no tracepoint
                e.writable = e.exclusive = False
                if "uffd-wp-lost-on-fork" in self.bugs:
                    # the parent's entry is rewritten READ without its uffd-wp bit (before
                    # 8f34f1eac382 for pmds, 5a2f8d22ace4 for hugetlb)
                    e.uffd_wp = False
            ce = Entry(True, e.pfn, e.huge, e.writable, e.exclusive, e.young, e.dirty, "copy")
            ce.copied_from, ce.copy_vma = e, cvma
            self.put(cmm, addr, ce)
            root = e.root_set()
            f = Finding(
                "fork-copied-entry",
                cmm,
                addr,
                e.pfn,
                e.pfn,
                None,
                f"fork copied the parent's migration entry for pfn {e.pfn:#x} at {addr:#x} "
                f"into child mm {cmm.ptr:#x} (no tracepoint; the remove walk restores both)",
                [i for i in (root.set_ev, cvma.link_ev) if i is not None],
                parent_mm=pmm,
                verdict="ok",
            )
            cvma.pending.append(self.find(f, info=True))
            self._late_copy(e, ce, cvma, addr)
            return [addr]
        folio = self.folios[e.pfn]
        addrs = [addr]
        if not e.huge and folio.nr > 1:  # copy_present_ptes batches a large folio's ptes
            addrs = [
                a
                for a, pfn in self.pages_in(pvma, folio)
                if a >= addr
                and (x := pmm.pt.get(a)) is not None
                and not x.migration
                and x.pfn == pfn
            ]
        for a in addrs:
            pe = pmm.pt[a]
            pe.writable = False  # ptep_set_wrprotect
            ce = Entry(False, pe.pfn, pe.huge, False, False, False, pe.dirty, "fork")
            self.put(cmm, a, ce)
        folio.exclusive = False  # folio_try_dup_anon_rmap_*
        op = folio.op
        if op is not None and op.phase == "set" and op.set_walk is not None:
            w = op.set_walk
            if cvma in w.visited:
                f = Finding(
                    "present-copied-after-set",
                    cmm,
                    addrs[0],
                    folio.pfn,
                    folio.pfn,
                    None,
                    f"fork copied a present pte for pfn {folio.pfn:#x} at {addrs[0]:#x} into "
                    f"child mm {cmm.ptr:#x} after the set walk had visited the child: the "
                    "child still maps the old page, so this migration attempt must fail",
                    [i for i in (w.visit_ev[id(cvma)], cvma.link_ev) if i is not None],
                    parent_mm=pmm,
                )
                cvma.pending.append(self.find(f))
        return addrs

    @staticmethod
    def _ties(w: Walk, pe: Entry | None) -> bool:
        """Whether remove walk ``w``'s lines tie it to the parent's entry ``pe``: it printed
        the remove of an entry its own set line made, of the same page and batch."""
        return (
            pe is not None
            and pe.origin == "set"
            and pe.key is not None
            and (pe.pfn, pe.key[3]) in w.removed
        )

    def _late_copy(self, e: Entry, ce: Entry, cvma: Vma, addr: int) -> None:
        """stale-child-entry of a copy made after the remove walk of its page ended: the walk
        linked the child (forked before the walk ended) and passed it, but left the parent's
        entry ``e`` (a missed remove), which fork then copied into the child."""
        root = e.root_set()
        for w in reversed(self.ended_removes):
            lo, hi = w.src.pfn, w.src.pfn + w.src.nr
            if not lo <= e.pfn < hi or w.end_ev is None:
                continue
            if root.set_ev is None or root.set_ev > w.start_ev:
                return  # an entry of a later life of the page
            if cvma.link_ev is None or cvma.link_ev > w.end_ev:
                return  # forked after the walk: it copies a leftover, it is not left over
            ce.reported = True
            f = Finding(
                "stale-child-entry",
                cvma.mm,
                addr,
                e.pfn,
                e.pfn,
                w.folio.pfn + (e.pfn - lo),
                f"child mm {cvma.mm.ptr:#x} still holds a migration entry for pfn {e.pfn:#x} "
                f"at {addr:#x} after the remove walk of that page ended: fork copied the "
                "parent's entry the walk had missed",
                [
                    i
                    for i in (root.set_ev, cvma.link_ev, w.start_ev, w.visit_ev.get(id(cvma)))
                    if i is not None
                ]
                + [w.end_ev],
                parent_mm=cvma.fork_src.mm if cvma.fork_src else None,
                copied=e,
                child_vma=cvma,
                decidable=self._ties(w, e),
            )
            cvma.pending.append(self.find(f))
            return

    def _hugetlb_copy_bug(self, e: Entry) -> bool:
        """Whether fork copies the migration entry ``e`` of a hugetlb page verbatim."""
        f = self.folios.get(e.pfn)
        return "hugetlb-fork-copy" in self.bugs and f is not None and f.hugetlb

    def _copy_ret(self, task: Task, cvma: Vma) -> None:
        ev = self.retprobe(task, "copy_page_range_ret", "copy_page_range", "dup_mmap", ret=0)
        cvma.ret_ev = ev
        cvma.copying = False
        for f in cvma.pending:
            f.evidence.append(ev)
            f.detect_ev = ev if f.detect_ev is None else max(f.detect_ev, ev)
        cvma.pending.clear()

    # -- rmap walks -----------------------------------------------------------------------
    def _visit(self, w: Walk, vma: Vma, probe: str) -> None:
        """The walk reaches ``vma``: its rmap_one probe line, the ordering check, and the
        bookkeeping later visits and fork copies look at."""
        ev = self.probe(
            w.task,
            probe,
            folio=folio_ptr(w.folio.pfn),
            mm=vma.mm.ptr,
            pgoff=vma.pgoff,
            anon_vma=vma.av.ptr,
            addr=vma.addr_of(w.folio.index),
        )
        self._visit_check(w, vma, ev)
        w.visited.append(vma)
        w.visit_ev[id(vma)] = ev
        if w.kind == "remove" and vma.copying:
            # the walk finds the child empty while fork is still copying it: whether fork
            # copied the present pte before the set or after this restore, no line tells
            lo, hi = w.src.pfn, w.src.pfn + w.src.nr
            for f in vma.pending:
                if f.rule == "present-copied-after-set" and f.pfn is not None and lo <= f.pfn < hi:
                    f.decidable = False
                    f.evidence.append(ev)

    def _visit_check(self, w: Walk, vma: Vma, ev: int) -> None:
        """child-before-parent-{set,remove}: the walk visits a fork child while its copy is
        in progress, and visits the child's parent (the copy source) only later."""
        for f in w.waiting.pop(id(vma), []):  # ``vma`` is the parent of an earlier visit
            f.evidence.append(ev)
            w.pending.append(self.find(f))
        p = vma.fork_src
        if p is None or not vma.copying or p in w.visited or p not in w.order:
            return
        rule = f"child-before-parent-{w.kind}"
        addr = vma.addr_of(w.folio.index)
        what = (
            "fork may copy a present pte into the child after the walk passed it"
            if w.kind == "set"
            else "fork may copy the parent's migration entry into the child after the walk "
            "passed it, leaving a stale entry"
        )
        f = Finding(
            rule,
            vma.mm,
            addr,
            w.folio.pfn,
            w.src.pfn,
            w.folio.pfn if w.kind == "remove" else None,
            f"the {w.kind} walk of pfn {w.folio.pfn:#x} visited child mm {vma.mm.ptr:#x} "
            f"before its parent mm {p.mm.ptr:#x} while the child's page tables were being "
            f"copied: {what}",
            [i for i in (vma.link_ev, w.start_ev, ev) if i is not None],
            detect_ev=ev,
            parent_mm=p.mm,
        )
        w.waiting.setdefault(id(p), []).append(f)

    def _walk_begin(self, task: Task, folio: Folio, op_name: str, locked: bool):
        """Enter rmap_walk on ``folio``: take its anon_vma lock for reading unless the caller
        holds it, then the entry probe. A generator step; returns the probe's event."""
        if not locked:
            yield lambda: folio.anon_vma.top.writer is None
            folio.anon_vma.top.readers += 1
        else:
            yield None
        return self.probe(
            task,
            "rmap_walk_anon",
            folio=folio_ptr(folio.pfn),
            anon_vma=folio.anon_vma.ptr | PAGE_MAPPING_ANON,
            op=OP_ADDR[op_name],
        )

    def _walk_end(self, w: Walk, locked: bool) -> None:
        """Leave the walk: the return probe, the lock, and the end event as evidence."""
        w.end_ev = self.retprobe(
            w.task,
            "rmap_walk_anon_ret",
            "rmap_walk_anon",
            "rmap_walk_locked" if locked else "rmap_walk",
        )
        if not locked:
            w.folio.anon_vma.top.readers -= 1
        for f in w.pending:
            f.evidence.append(w.end_ev)

    def set_walk(self, task: Task, op: Op, locked: bool = False):
        """try_to_migrate: install migration entries in every vma mapping the folio."""
        folio = op.folio
        start = yield from self._walk_begin(task, folio, "set", locked)
        w = Walk("set", folio, folio, task, op, start, self.walk_order(folio))
        op.set_walk, op.phase = w, "set"
        self.stats["walks"] += 1
        for vma in w.order:
            yield None
            self._visit(w, vma, "try_to_migrate_one")
            for addr, pfn in self.pages_in(vma, folio):
                e = vma.mm.pt.get(addr)
                foreign = e if e is not None and self._foreign_bug(e, pfn, folio) else None
                if foreign is None and (
                    e is None or e.migration or e.pfn != pfn or e.huge != folio.huge
                ):
                    continue
                assert e is not None
                kind = "write" if e.writable else ("read_exclusive" if folio.exclusive else "read")
                me = Entry(
                    True,
                    pfn,
                    e.huge,
                    kind == "write",
                    kind == "read_exclusive",
                    e.young,
                    e.dirty,
                    "set",
                    uffd_wp=e.uffd_wp,
                )
                self.put(vma.mm, addr, me)
                pte = swap_entry(pfn, kind, e.young, e.dirty, e.uffd_wp)
                if folio.huge and not folio.hugetlb:
                    sev = self.emit(
                        task, "set_migration_pmd", f"addr={addr:x}, pmd={pte:x}", "...1."
                    )
                else:
                    sev = self.emit(
                        task,
                        "set_migration_pte",
                        f"addr={addr:x}, pte={pte:x} order={folio.order}",
                        "...1.",
                    )
                me.set_ev, me.set_kind, me.set_uffd_wp = sev, kind, e.uffd_wp
                if foreign is not None:
                    self._foreign_finding(vma.mm, addr, pfn, foreign, sev)
                me.key = (task.pid, addr, folio.huge, id(op.batch) if op.batch else None)
                self.set_entries.append(me)
                self.events[sev].pfn = pfn
                if op.batch is not None:
                    op.batch.sets.append((sev, me, vma.mm, addr, op))
            if folio.mapcount == 0:  # rwc->done = folio_not_mapped
                break
        folio.exclusive = False  # folio_try_share_anon_rmap_*; restored by the remove walk
        yield None
        folio.set_walks_done += 1
        self._walk_end(w, locked)

    def _foreign_bug(self, e: Entry, pfn: int, folio: Folio) -> bool:
        """foreign-pmd-entry: whether the set walk of ``folio`` acts on ``e``, another
        folio's migration entry where ``pfn`` would be mapped. Before Gavin Guo's fix
        (6.15, Fixes 84c3fc4e9c56) split_huge_pmd_locked() took pmd_folio() of a pmd
        migration entry, a pointer computed from the swap entry's bits, for the folio it
        compares with; the kernel usually faults there, and when the comparison passes the
        split and try_to_migrate_one() go on with the foreign entry. The model takes the
        second branch: the walk installs its own entry over the foreign one."""
        return (
            "foreign-pmd-entry" in self.bugs
            and e.migration
            and e.pfn != pfn
            and e.huge == folio.huge
            and not e.gone
        )

    def _foreign_finding(self, mm: Mm, addr: int, pfn: int, y: Entry, sev: int) -> None:
        """foreign-entry: the set line ``sev`` (for ``pfn``) replaced ``y``, a migration
        entry of another folio; decidable when ``y``'s own set line was printed and the
        owner's exit was not (its zap, which prints nothing, could have dropped ``y``)."""
        y.overwritten = True
        own = y.origin == "set" and y.set_ev is not None and not mm.task.exit_printed
        self.find(
            Finding(
                "foreign-entry",
                mm,
                addr,
                pfn,
                pfn,
                None,
                f"the set walk of pfn {pfn:#x} installed its migration entry at {addr:#x} in "
                f"mm {mm.ptr:#x} over the migration entry of pfn {y.pfn:#x} (another folio)",
                [i for i in (y.set_ev, sev) if i is not None],
                detect_ev=sev,
                decidable=own,
            )
        )

    def remove_walk(
        self,
        task: Task,
        op: Op,
        dst: Folio,
        src: Folio,
        locked: bool = False,
        droppable: bool = False,
        last: bool = False,
    ):
        """remove_migration_ptes(src, dst): restore every migration entry for ``src``."""
        start = yield from self._walk_begin(task, dst, "remove", locked)
        w = Walk("remove", dst, src, task, op, start, self.walk_order(dst))
        op.phase = "remove"
        self.stats["walks"] += 1
        skip = None
        if droppable and "drop-remove" in self.bugs and self.rng_bug.random() < self.drop_prob:
            holders = [v for v in w.order if self._entries_for(v, src)]
            if holders:
                skip = holders[self.rng_bug.randrange(len(holders))]
        adjust = "vma-adjust-skip" in self.bugs or ("vma-adjust-undo" in self.bugs and last)
        if droppable and adjust and not self._adjusted:
            holders = [v for v in w.order if self._entries_for(v, src) and self._can_grow(v)]
            if holders:
                skip = holders[0]
                self._vma_adjust(skip)
        exclusive = False
        restored = 0  # remove lines the walk printed
        writable: list[tuple[Mm, int, Entry, int, int]] = []  # (mm, addr, entry, npfn, rev)
        for vma in w.order:
            if vma is skip:
                continue
            yield None
            self._visit(w, vma, "remove_migration_pte")
            for addr, spfn in self._entries_for(vma, src):
                e = vma.mm.pt[addr]
                i = spfn - src.pfn
                npfn = dst.pfn + i
                # read-restored-writable: a non-WRITE entry comes back writable unless uffd-wp
                # write-protects it (remove_migration_pte before the 6.1 fix)
                rw = e.writable or (
                    "read-restored-writable" in self.bugs and not e.uffd_wp and not e.huge
                )
                # write-restored-readonly: a WRITE entry comes back without pte_mkwrite()
                # (synthetic: the inverse of Peter Xu's 2022 fix; since Naoya Horiguchi's
                # 4a705fef9862 (2014) only fork, mprotect and uffd-wp make an entry READ)
                rw = rw and not (e.writable and "write-restored-readonly" in self.bugs)
                ne = Entry(
                    False, npfn, e.huge, rw, False, e.young, e.dirty, "restore", uffd_wp=e.uffd_wp
                )
                self.put(vma.mm, addr, ne)
                exclusive |= e.writable or e.exclusive
                pte = present_entry(npfn, rw, e.young, e.dirty, e.huge, e.uffd_wp)
                if e.huge and not dst.hugetlb:
                    rev = self.emit(
                        task, "remove_migration_pmd", f"addr={addr:x}, pmd={pte:x}", "...1."
                    )
                else:
                    order = dst.order if npfn == dst.pfn else 0  # compound_order(subpage)
                    rev = self.emit(
                        task,
                        "remove_migration_pte",
                        f"addr={addr:x}, pte={pte:x} order={order}",
                        "...1.",
                    )
                self.events[rev].pfn = npfn
                e.gone_ev = rev
                e.restored_rw = rw
                restored += 1
                if e.origin == "set" and e.key is not None:
                    w.removed.add((e.pfn, e.key[3]))
                key = (task.pid, addr, e.huge, id(op.batch) if op.batch else None)
                self.remove_lines[key] = self.remove_lines.get(key, 0) + 1
                if e.origin == "copy":
                    self.copy_removes.add(key)
                if e.origin == "set" and e.key is not None and e.key[3] != key[3]:
                    self._leftover_finding(vma.mm, addr, e, npfn, rev, op)
                self._restore_findings(vma.mm, addr, e, rw, npfn, rev)
                if rw:
                    writable.append((vma.mm, addr, e, npfn, rev))
        self._cow_findings(writable)
        dst.exclusive = exclusive
        yield None
        self._walk_end(w, locked)
        self.ended_removes.append(w)
        self._stale_check(w, restored)

    def _leftover_finding(self, mm: Mm, addr: int, e: Entry, npfn: int, rev: int, op: Op) -> None:
        """unexplained-surplus-remove (vma-adjust-undo): the remove line ``rev`` restores an
        entry that a set line of an earlier batch made (left by an undo walk the vma_adjust
        race misled: Mel Gorman, 'mm,migration: Prevent rmap_walk_[anon|ksm] seeing the
        wrong VMA information', 2010), so no set of this batch explains it; decided at
        :meth:`finish`, where a fork window over the batch explains it instead (fork copies
        entries silently)."""
        b = op.batch
        self.provisional.append(
            Finding(
                "unexplained-surplus-remove",
                mm,
                addr,
                npfn,
                e.pfn,
                npfn,
                f"the remove walk restored the migration entry for pfn {e.pfn:#x} at {addr:#x} "
                f"in mm {mm.ptr:#x} onto pfn {npfn:#x}: an entry an earlier batch set and left",
                [i for i in (b.start_ev if b else None, rev) if i is not None],
                detect_ev=rev,
                entry=e,
            )
        )

    GROW = 16  # pages a vma_adjust of the vma-adjust-skip bug moves a vma's start down

    def _can_grow(self, vma: Vma) -> bool:
        """Whether ``vma`` can grow down by :data:`GROW` pages without meeting another."""
        lo = vma.start - (self.GROW << PAGE_SHIFT)
        return vma.pgoff >= self.GROW and not any(
            v is not vma and v.start < vma.start and v.end > lo for v in vma.mm.vmas
        )

    def _vma_adjust(self, vma: Vma) -> None:
        """vma-adjust-skip (before 2.6.34): vma_adjust() moves ``vma``'s start down (an
        expansion, e.g. a merge with a new mapping below it) without the anon_vma lock while
        the remove walk is at it; the walk computes the address from the new vm_start and
        the old vm_pgoff, finds nothing there and skips the vma, leaving its migration
        entry (Mel Gorman, 'mm,migration: Prevent rmap_walk_[anon|ksm] seeing the wrong VMA
        information', 2010). No tracepoint shows the adjustment."""
        self._adjusted = True
        vma.start -= self.GROW << PAGE_SHIFT
        vma.pgoff -= self.GROW
        vma.mm.vmas.sort(key=lambda x: x.start)
        for av in vma.chain:  # anon_vma_interval_tree_pre/post_update_vma: re-keyed
            av.tree[:] = [(k, v) for k, v in av.tree if v is not vma]
            self._tree_insert(av, vma, None)

    def _restore_findings(self, mm: Mm, addr: int, e: Entry, rw: bool, npfn: int, rev: int) -> None:
        """read-entry-restored-writable and uffd-wp-lost, as the remove line ``rev`` shows
        them. Decidable only for an entry its own set line made and printed as it is
        restored (a fork copy's remove has no set line; a fork downgrade prints nothing)."""
        own = e.origin == "set" and e.set_ev is not None
        if rw and not e.writable:
            self.find(
                Finding(
                    "read-entry-restored-writable",
                    mm,
                    addr,
                    e.pfn,
                    e.pfn,
                    npfn,
                    f"{e.kind} migration entry for pfn {e.pfn:#x} at {addr:#x} was restored "
                    f"writable onto pfn {npfn:#x}",
                    [i for i in (e.set_ev, rev) if i is not None],
                    detect_ev=rev,
                    decidable=own and e.set_kind in ("read", "read_exclusive"),
                    entry=e,
                )
            )
        if own and e.set_kind == "write" and not rw:
            assert e.set_ev is not None
            self.provisional.append(
                Finding(
                    "unexplained-downgrade",
                    mm,
                    addr,
                    e.pfn,
                    e.pfn,
                    npfn,
                    f"write migration entry for pfn {e.pfn:#x} at {addr:#x} was restored "
                    f"read-only onto pfn {npfn:#x}",
                    [e.set_ev, rev],
                    detect_ev=rev,
                    entry=e,
                )
            )
        if own and e.set_uffd_wp and not e.uffd_wp:
            assert e.set_ev is not None
            self.find(
                Finding(
                    "uffd-wp-lost",
                    mm,
                    addr,
                    e.pfn,
                    e.pfn,
                    npfn,
                    f"migration entry for pfn {e.pfn:#x} at {addr:#x} was set with uffd-wp and "
                    f"restored onto pfn {npfn:#x} without it (fork rewrote it READ)",
                    [e.set_ev, rev],
                    detect_ev=rev,
                    entry=e,
                )
            )

    def _cow_findings(self, writable: list[tuple[Mm, int, Entry, int, int]]) -> None:
        """shared-page-writable (hugetlb-fork-copy): fork's copy of an entry, which
        copy-on-write makes READ, restored writable while another mm got the same new page
        writable in this walk; the walk probes (an anon rmap walk) tell the mapping is
        private, which tier 1 cannot tell from a MAP_SHARED one."""
        for mm, addr, e, npfn, rev in writable:
            other = [r for m, _, _, p, r in writable if p == npfn and m is not mm]
            if e.origin != "copy" or not other:
                continue
            self.find(
                Finding(
                    "shared-page-writable",
                    mm,
                    addr,
                    e.pfn,
                    e.pfn,
                    npfn,
                    f"fork's copy of the migration entry for pfn {e.pfn:#x} at {addr:#x} in mm "
                    f"{mm.ptr:#x} was restored writable onto pfn {npfn:#x}, which another mm "
                    "maps writable too: fork did not make the entry READ",
                    [other[0], rev],
                    detect_ev=rev,
                )
            )

    def _entries_present(self, vma: Vma, folio: Folio) -> bool:
        """Whether ``vma`` maps a page of ``folio`` with a present entry."""
        for addr, pfn in self.pages_in(vma, folio):
            e = vma.mm.pt.get(addr)
            if e is not None and not e.migration and e.pfn == pfn:
                return True
        return False

    def _entries_for(self, vma: Vma, src: Folio) -> list[tuple[int, int]]:
        out = []
        for addr, pfn in self.pages_in(vma, src):
            e = vma.mm.pt.get(addr)
            if e is not None and e.migration and e.pfn == pfn and e.huge == src.huge:
                out.append((addr, pfn))
        return out

    def _stale_check(self, w: Walk, restored: int) -> None:
        """stale-child-entry: a fork-copied entry for the folio outlived its remove walk.

        Undecidable when the walk printed no remove of an entry of that page and batch that
        a set line made (it skipped every such holder): no line then ties the walk to the
        parent's entry (see :meth:`_ties`)."""
        lo, hi = w.src.pfn, w.src.pfn + w.src.nr
        for mm in self.mms:
            for addr, e in mm.pt.items():
                if not e.migration or not lo <= e.pfn < hi or e.origin != "copy" or e.reported:
                    continue
                e.reported = True
                cvma = e.copy_vma
                assert cvma is not None and w.end_ev is not None  # a copy; an ended walk
                root = e.root_set()
                f = Finding(
                    "stale-child-entry",
                    mm,
                    addr,
                    e.pfn,
                    e.pfn,
                    w.folio.pfn + (e.pfn - lo),
                    f"child mm {mm.ptr:#x} still holds a migration entry for pfn {e.pfn:#x} at "
                    f"{addr:#x} after the remove walk of that page ended: a stale entry "
                    "pointing at a page that is being freed",
                    [
                        i
                        for i in (root.set_ev, cvma.link_ev, w.start_ev, w.visit_ev.get(id(cvma)))
                        if i is not None
                    ],
                    parent_mm=cvma.fork_src.mm if cvma.fork_src else None,
                    copied=e.copied_from,
                    child_vma=cvma,
                    # (once the child's exit is printed, its zap, which prints nothing,
                    # may have dropped the entry before the walk ended)
                    decidable=self._ties(w, e.copied_from) and not mm.task.exit_printed,
                )
                f.evidence.append(w.end_ev)
                if cvma.copying:  # proven only once that copy is over
                    cvma.pending.append(f)
                else:
                    if cvma.ret_ev is not None:
                        f.evidence.append(cvma.ret_ev)
                    f.detect_ev = w.end_ev
                self.find(f)

    # -- migrate_pages ------------------------------------------------------------------------
    def migrate_pages(
        self,
        task: Task,
        folios: list[Folio] | Callable[[], list[Folio]],
        reason: str = "compaction",
        mode: int = 2,
        alloc_targets: bool = False,
    ):
        """One ``migrate_pages()`` call: batched unmap, then move, then the counters.

        ``folios`` may be a callable that isolates them in the call's first step.
        """
        yield None
        if callable(folios):
            folios = folios()
            if not folios:
                return
        for f in folios:
            f.isolated = True
        start = self.emit(task, "mm_migrate_pages_start", f"mode={MODES[mode]} reason={reason}")
        batch = Batch(task, start)
        succeeded = failed = thp_succeeded = thp_failed = 0
        unmapped: list[tuple[Folio, int, Op]] = []  # (folio, target pfn, op)
        retry = list(folios)
        for npass in range(MAX_PASSES):
            if not retry:
                break
            again = []
            for f in retry:
                # (runs in the step that ended the previous walk: no lock is held here)
                if f.mapcount == 0 and not self._has_entries(f):
                    # freed from under us: only the isolation reference is left
                    self.page_free(task, f)
                    succeeded += f.nr
                    continue
                op = Op("migrate", f, task, batch)
                f.op = op
                tpfn = self.alloc_pfn(f.order, target=True)
                if alloc_targets and not f.hugetlb:  # (hugetlb targets come from the pool)
                    self.page_alloc(task, tpfn, f.order, GFP_TARGET.get(f.order, GFP_MTHP))
                if f.mapcount:
                    yield from self.set_walk(task, op)
                if f.mapcount == 0 and not f.pinned:
                    unmapped.append((f, tpfn, op))
                    continue
                # still mapped (a present pte appeared behind the walk), or pinned (the move
                # fails with -EAGAIN: migrate_folio_undo_src): undo and retry
                last = npass == MAX_PASSES - 1
                yield from self.remove_walk(task, op, f, f, droppable=True, last=last)
                f.op = None
                if alloc_targets and not f.hugetlb:  # migrate_folio_undo_dst: target back
                    self.emit(
                        task,
                        "mm_page_free",
                        f"page={hashed_ptr(folio_ptr(tpfn))} pfn=0x{tpfn:x} order={f.order}",
                    )
                again.append(f)
            retry = again
        for f in retry:
            failed += f.nr
            thp_failed += f.huge
            f.isolated = False
        freed = succeeded  # pages freed from under the batch: succeeded without a line
        miscount = "moved-as-failed" in self.bugs
        for f, tpfn, op in unmapped:
            dst = self.new_folio(tpfn, f.order, f.anon_vma, f.index, f.huge)
            dst.hugetlb = f.hugetlb
            dst.isolated = True
            yield from self.remove_walk(task, op, dst, f, droppable=True)
            op.phase = "done"
            yield None
            self.page_free(task, f)
            f.op = None
            dst.isolated = False
            if dst.mapcount == 0 and not self._has_entries(dst):
                self.page_free(task, dst)  # every mapper went away meanwhile
            if miscount:  # moved-as-failed: the moved folio is counted failed
                failed += f.nr
                thp_failed += f.huge
                continue
            succeeded += f.nr
            thp_succeeded += f.huge
        yield None
        end = self.emit(
            task,
            "mm_migrate_pages",
            f"nr_succeeded={succeeded} nr_failed={failed} nr_thp_succeeded={thp_succeeded} "
            f"nr_thp_failed={thp_failed} nr_thp_split=0 nr_split=0 mode={MODES[mode]} "
            f"reason={reason}",
        )
        if miscount:
            self._count_finding(batch, [(f, op) for f, _, op in unmapped], freed, start, end)
        for sev, e, mm, addr, op in batch.sets:  # leaked-entry
            if e.gone and not e.overwritten:  # (one a foreign set replaced was never removed)
                continue
            old = op.folio
            e.reported = True
            # once the owner's exit is printed, the lines cannot tell whether its zap (which
            # prints nothing) came before this batch ended
            exiting = mm.task.exit_printed
            self.find(
                Finding(
                    "leaked-entry",
                    mm,
                    addr,
                    e.pfn,
                    e.pfn,
                    None,
                    f"migration entry for pfn {e.pfn:#x} at {addr:#x} in mm {mm.ptr:#x} was set "
                    f"and never removed before its batch ended (folio {old.pfn:#x})",
                    [sev, end],
                    detect_ev=end,
                    decidable=not exiting,
                    group_ev=min(i for i, _, _, _, o in batch.sets if o is op),
                )
            )

    def _count_finding(
        self, batch: Batch, moved: list[tuple[Folio, Op]], freed: int, start: int, end: int
    ) -> None:
        """count-mismatch (moved-as-failed): the batch restored folios onto new pages that
        ``mm_migrate_pages`` counts failed; pages freed from under the batch are its only
        successes, and the rule compares folios when a large one moved. The tracepoints
        show a folio moved when every entry its set walk printed came back by a remove line;
        with the walk probes also when the others were zapped by their owner's exit (which
        prints nothing, but the probes name the owner)."""

        def seen(fs: list[Folio]) -> int:
            return len(fs) if any(f.order for f in fs) else sum(f.nr for f in fs)

        lines: list[Folio] = []  # moved, as the tracepoints alone show
        owned: list[Folio] = []  # moved, as the walk probes show
        for f, op in moved:
            es = [e for _, e, _, _, o in batch.sets if o is op]
            removed = [e.gone_ev is not None for e in es]
            zapped = [e.gone and e.gone_ev is None and not e.overwritten for e in es]
            if es and all(removed):
                lines.append(f)
            if any(removed) and all(r or z for r, z in zip(removed, zapped, strict=True)):
                owned.append(f)
        if seen(owned) <= freed:
            return
        self.find(
            Finding(
                "count-mismatch",
                None,
                None,
                None,
                None,
                None,
                f"the batch restored {len(owned)} folios onto new pages but mm_migrate_pages "
                f"reports nr_succeeded={freed}",
                [start, end],
                detect_ev=end,
                decidable_tier1=seen(lines) > freed,
            )
        )

    def _has_entries(self, f: Folio) -> bool:
        lo, hi = f.pfn, f.pfn + f.nr
        return any(e.migration and lo <= e.pfn < hi for mm in self.mms for e in mm.pt.values())

    # -- folio split ------------------------------------------------------------------------
    def split_folio(self, task: Task, folio: Folio):
        """__folio_split of a pte-mapped large anon folio (anon_vma write-locked throughout)."""
        root = folio.anon_vma.top
        yield lambda: root.readers == 0 and root.writer is None
        root.writer = task
        folio.isolated = True
        op = Op("split", folio, task)
        folio.op = op
        if folio.mapcount:
            yield from self.set_walk(task, op, locked=True)
        if folio.mapcount:  # still mapped: remap the unsplit folio, split fails
            yield from self.remove_walk(task, op, folio, folio, locked=True)
            folio.op = None
            folio.isolated = False
            root.writer = None
            return
        news = []
        for i in range(folio.nr):
            del self.folios[folio.pfn + i]
        for i in range(folio.nr):
            nf = self.new_folio(folio.pfn + i, 0, folio.anon_vma, folio.index + i, False)
            nf.exclusive = folio.exclusive
            news.append(nf)
        for nf in news:
            sub = Op("split", nf, task)
            nf.op = sub
            yield from self.remove_walk(task, sub, nf, nf, locked=True)
            nf.op = None
        folio.op = None
        root.writer = None

    # -- exit -----------------------------------------------------------------------------
    def exit(self, task: Task):
        """do_exit (6.16+ order) and, later, the task struct's release."""
        mm = task.user_mm
        yield None
        self.emit(
            task,
            "sched_process_exit",
            f"comm={task.comm} pid={task.pid} prio={task.prio} group_dead=true",
        )
        task.exit_printed = True
        for vma in list(mm.vmas):  # unmap_vmas
            yield None
            for addr in sorted(a for a in mm.pt if vma.start <= a < vma.end):
                e = mm.pt[addr]
                self.put(mm, addr, None)
                if e.migration:
                    continue  # zap_nonpresent_ptes: dropped, no tracepoint
                f = self.folios[e.pfn]
                if f.mapcount == 0 and not f.isolated and not f.freed:
                    self.page_free(task, f, batched=True)
        for vma in list(mm.vmas):  # free_pgtables -> unlink_anon_vmas
            yield lambda vma=vma: self.lock_free(vma.anon_vma)
            self.probe(task, "unlink_anon_vmas", mm=mm.ptr, pgoff=vma.pgoff)
            for av in vma.chain:
                av.tree[:] = [(k, v) for k, v in av.tree if v is not vma]
        yield None
        self.emit(task, "exit_mmap", f"mt_mod {hashed_ptr(mm.ptr + 0x40)}, DESTROY")
        mm.exited = True
        mm.vmas.clear()
        yield None
        idle = Task(0, "<idle>", task.cpu)
        self.emit(
            idle, "sched_process_free", f"comm={task.comm} pid={task.pid} prio={task.prio}", "..s1."
        )

    # -- faults ---------------------------------------------------------------------------
    UFFDIO_WRITEPROTECT = 0xC018AA06

    def _uffd_ioctl(self, task: Task) -> None:
        """The uffd-wp-lost-on-fork scenario's process (its own monitor) calls
        UFFDIO_WRITEPROTECT: its syscall lines (the recording has syscalls enabled)."""
        ev = self.emit(
            task,
            "sys_ioctl",
            f"(fd: 5, cmd: 0x{self.UFFDIO_WRITEPROTECT:x}, arg: 0x7ffd5e1c2a40)",
            sep="",
        )
        self.wp_ioctls.append(ev)
        self.emit(task, "sys_ioctl", "0x0", sep=" -> ")

    def _relro_mprotect(self, task: Task) -> None:
        """write-restored-readonly: the recording has syscalls enabled, and the first
        process's loader write-protected its RELRO segment at exec time (an mprotect of
        memory no migration touches; the unexplained-downgrade rule is conclusive only
        where the trace shows syscalls)."""
        self.emit(
            task,
            "sys_mprotect",
            "(start: 0x55d0c8a3d000, len: 0x2000, prot: 0x1)",
            sep="",
        )
        self.emit(task, "sys_mprotect", "0x0", sep=" -> ")

    def _waits(self, mm: Mm, addr: int) -> bool:
        e = mm.pt.get(addr)
        if e is None or not e.migration:
            return False
        f = self.folios.get(e.pfn)
        return f is not None and f.op is not None  # migration_entry_wait until removed

    def write(self, task: Task, addr: int):
        """A write to ``addr`` (do_wp_page): reuse, copy-on-write or first fault."""
        mm = task.user_mm
        yield lambda: not self._waits(mm, addr)
        vma = mm.vma_at(addr)
        e = mm.pt.get(addr)
        if vma is None:
            return
        if e is None:
            self.fault_in(task, vma, addr)
            return
        if e.migration or e.huge:
            return  # a stale entry (the kernel would spin here) or a THP: not modelled
        if e.writable:
            e.dirty = e.young = True
            return
        if e.uffd_wp:  # a uffd-wp fault: the monitor un-protects the page, then the write
            self._uffd_ioctl(task)
        f = self.folios[e.pfn]
        if f.mapcount == 1 and f.op is None and not f.isolated and f.nr == 1:
            e.writable = e.dirty = e.young = True  # wp_can_reuse_anon_folio
            e.uffd_wp = False
            f.exclusive = True
            f.anon_vma = vma.av  # folio_move_anon_rmap
            return
        pfn = self.alloc_pfn(0)
        self.page_alloc(task, pfn, 0, GFP_COW)
        index = vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT)
        self.new_folio(pfn, 0, vma.av, index, False)
        self.put(mm, addr, Entry(False, pfn, False, True, False, True, True, "cow"))
        if f.mapcount == 0 and not f.isolated and not f.freed:
            self.page_free(task, f)

    # -- end of run ---------------------------------------------------------------------
    def finish(self) -> None:
        """Decide, once every line is known, which findings the lines alone determine.

        ``stale-child-entry`` can be undecidable: the pte copy itself prints nothing,
        so the lines prove that fork copied the parent's migration entry (and not the pte
        the walk restored) only when the child's whole copy window lies inside the life of
        the parent's entry (its set line .. its restore line), or when the parent's WRITE
        entry was restored read-only (fork's downgrade) and no other child's copy window
        meets that entry's life (its copy could explain the downgrade as well).
        ``present-copied-after-set`` is marked undecidable as it happens (in ``_visit``),
        when the remove walk finds the child empty while its copy still runs.
        """
        ts = [e.ts for e in self.events]
        calibrated = self._kinds_calibrate()
        ioctls = [ts[i] for i in self.wp_ioctls]
        for f in self.findings:
            if f.rule not in ("read-entry-restored-writable", "uffd-wp-lost"):
                continue
            if f.rule == "uffd-wp-lost" and f.entry is not None and f.entry.set_ev is not None:
                # an UFFDIO_WRITEPROTECT meanwhile may have cleared the bit as well
                lo, hi = ts[f.entry.set_ev], ts[f.detect_ev or 0]
                if any(lo <= t <= hi for t in ioctls):
                    f.decidable = False
            if f.rule == "read-entry-restored-writable" and not calibrated:
                f.decidable = False
        for f in self.findings:
            if f.rule != "stale-child-entry" or f.copied is None or f.child_vma is None:
                continue
            pe, cv = f.copied, f.child_vma
            inside = (
                pe.origin == "set"
                and pe.set_ev is not None
                and cv.link_ev is not None
                and cv.ret_ev is not None
                and ts[pe.set_ev] < ts[cv.link_ev]
                and (pe.gone_ev is None or ts[cv.ret_ev] < ts[pe.gone_ev])
            )
            downgraded = pe.set_kind == "write" and pe.gone_ev is not None and not pe.writable
            f.decidable = f.decidable and (
                inside or (downgraded and not self._downgrade_shared(f, ts))
            )
        self._downgrades(ts, calibrated)
        self._surplus(ts)
        self._tier1_decidable(ts)

    def _surplus(self, ts: list[int]) -> None:
        """``unexplained-surplus-remove``: a fork whose window (the printed lines') meets
        the batch up to the remove explains it (fork's copy of an entry is removed without
        a set line): no finding then."""
        forks = self._fork_windows(printed=True)
        for f in self.provisional:
            if f.rule == "unexplained-surplus-remove":
                lo, hi = ts[f.evidence[0]], ts[cast(int, f.detect_ev)]
                if not any(a <= hi and lo <= b for a, b in forks):
                    self.findings.append(f)

    #: The syscall tables replay reads: a trace with none of them may lack syscalls.
    SYSCALL_TABLES = tuple(t for t in INPUT_EVENTS if t.startswith("sys_"))
    PROTECTING = ("sys_mprotect", "sys_pkey_mprotect", "sys_ioctl")

    def _downgrades(self, ts: list[int], calibrated: bool) -> None:
        """``unexplained-downgrade``: a WRITE entry its own set line made, restored read-only
        by a remove line. A fork whose window (as the printed tracepoints bound it, the
        rule's windows: :meth:`_fork_windows`) meets the entry's life explains it (fork's
        copy_nonpresent_pte makes the entry READ): no finding. Decidable when the printed
        lines show syscalls, none that may write-protect an entry (mprotect, an ioctl such
        as UFFDIO_WRITEPROTECT) printed its entry line meanwhile, and ingest maps the swap
        types to the right kinds. Run once events are lost (``lose-events``): the rule sees
        only the printed lines."""
        forks = self._fork_windows(printed=True)
        printed = [(i, e) for i, e in enumerate(self.events) if not e.dropped]
        protecting = [ts[i] for i, e in printed if e.sep == "" and e.name in self.PROTECTING]
        syscalls = any(self._table(e) in self.SYSCALL_TABLES for _, e in printed)
        for f in self.provisional:
            if f.rule == "unexplained-downgrade" and f.entry is not None:
                lo, hi = ts[cast(int, f.entry.set_ev)], ts[cast(int, f.detect_ev)]
                if any(a <= hi and lo <= b for a, b in forks):
                    continue  # fork's downgrade: the informational signature
                quiet = not any(lo <= t <= hi for t in protecting)
                f.decidable = calibrated and syscalls and quiet
                self.findings.append(f)

    def _tier1_decidable(self, ts: list[int]) -> None:
        """``decidable_tier1``: whether the upstream tracepoints alone (no probe lines, so no
        owner mm of a set or remove) determine a tier-1 finding. Without the owner, the
        lines tie a remove to a set by (migrator, address, size, batch) only, and a process
        exit (which zaps entries silently) or a fork (which copies entries silently) while
        such entries were open leaves which entry went where a guess: for
        ``read-entry-restored-writable`` and ``uffd-wp-lost`` when the entries there differ
        (page, kind, uffd-wp) and the lines there do not balance or an exit or fork falls
        between their first set and last remove, or when both an exit and a fork do; for
        ``leaked-entry`` when an exit or fork falls between the first set of the entry's
        walk and its batch's end. A fork's window is replay's (:meth:`_fork_windows`)."""
        # an exit's zap runs from its sched_process_exit (6.16+ order) to its exit_mmap,
        # as replay bounds it (engine._exits)
        exits: list[tuple[int, int]] = []
        started: dict[int, int] = {}  # pid -> its sched_process_exit's ts
        for i, e in enumerate(self.events):
            if e.name == "sched_process_exit":
                started[e.pid] = ts[i]
            elif e.name == "exit_mmap":
                exits.append((started.pop(e.pid, ts[i]), ts[i]))
        exits += [(t, ts[-1]) for t in started.values()]
        t1_forks, rule_forks = self._fork_windows(everything=True), self._fork_windows()

        def exited(lo: int, hi: int) -> bool:
            return any(a <= hi and lo <= b for a, b in exits)

        def forked(lo: int, hi: int, forks: list[tuple[int, int]]) -> bool:
            return any(a <= hi and lo <= b for a, b in forks)

        guessed = self._guessed_keys()
        sets: dict[tuple, list[Entry]] = {}
        for x in self.set_entries:
            sets.setdefault(cast(tuple, x.key), []).append(x)
        for f in self.findings:
            if not f.decidable:
                continue
            if f.entry is not None and f.rule in (
                "read-entry-restored-writable",
                "uffd-wp-lost",
                "unexplained-downgrade",
            ):
                es = sets[cast(tuple, f.entry.key)]
                lo = min(ts[cast(int, x.set_ev)] for x in es)
                hi = max(ts[i] for x in es for i in (x.set_ev, x.gone_ev) if i is not None)
                differ = len({(x.pfn, x.set_kind, x.set_uffd_wp) for x in es}) > 1
                ex, fo = exited(lo, hi), forked(lo, hi, rule_forks)
                f.decidable_tier1 = f.entry.key not in guessed and not (
                    (differ and (ex or fo)) or (ex and fo)
                )
            elif f.rule == "unexplained-surplus-remove" and f.detect_ev is not None:
                # (an exit's silent zap of a set's entry would hand the set this remove)
                f.decidable_tier1 = not exited(ts[f.evidence[0]], ts[f.detect_ev])
            elif f.rule == "leaked-entry" and f.group_ev is not None and f.detect_ev is not None:
                lo, hi = ts[f.group_ev], ts[f.detect_ev]
                f.decidable_tier1 = not exited(lo, hi) and not forked(lo, hi, t1_forks)

    @staticmethod
    def _table(e: Ev) -> str | None:
        """The table ingest puts line ``e`` in (None: a probe line, absent at tier 1)."""
        if e.sep == "":
            return f"sys_enter_{e.name.removeprefix('sys_')}"
        if e.sep == " -> ":
            return f"sys_exit_{e.name.removeprefix('sys_')}"
        return None if e.payload.startswith("(") else e.name

    def _fork_windows(
        self, everything: bool = False, printed: bool = False
    ) -> list[tuple[int, int]]:
        """(start, end) of every fork as the tracepoints bound it (no probe lines): from the
        parent's previous line before ``task_newtask`` that may bound it
        (:func:`rmapscope.replay.engine.bounds_fork_window`: tier 1's windows with
        ``everything``, else the rules'), not one printed in interrupt context, to its
        ``sched_process_fork`` (the trace's start without such a line). ``printed``: from
        the lines printed only (not those ``lose-events`` dropped)."""
        last: dict[int, int] = {}  # pid -> ts of its latest bounding line
        anchor: dict[int, int] = {}  # parent pid -> its window's start, at task_newtask
        forks: list[tuple[int, int]] = []
        for e in self.events:
            if printed and e.dropped:
                continue
            if e.name == "task_newtask":
                anchor[e.pid] = last.get(e.pid, -(1 << 62))
            elif e.name == "sched_process_fork":
                forks.append((anchor.pop(e.pid, last.get(e.pid, -(1 << 62))), e.ts))
            table = self._table(e)
            if table is None or e.flags[2] in "hsHzZ":
                continue
            if bounds_fork_window(table, everything):
                last[e.pid] = e.ts
        return forks

    def _guessed_keys(self) -> set[tuple]:
        """The (migrator pid, addr, huge, batch) whose set and remove lines do not pair up
        for sure: their entries differ (page, kind or uffd-wp bit), and the lines do not
        balance, or an entry there went without a remove line (an exit's zap) or a fork's
        copy was removed there without a set line; then which remove restored which entry
        is a guess from the lines alone."""
        sets: dict[tuple, list[Entry]] = {}
        for e in self.set_entries:  # (a set entry's key is its own set line's)
            sets.setdefault(cast(tuple, e.key), []).append(e)
        return {
            k
            for k, es in sets.items()
            if len({(e.pfn, e.set_kind, e.set_uffd_wp) for e in es}) > 1
            and (
                len(es) != self.remove_lines.get(k, 0)
                or any(e.gone_ev is None for e in es)
                or k in self.copy_removes
            )
        }

    def _kinds_calibrate(self) -> bool:
        """Whether ingest, from the printed lines alone, maps the swap types to the right
        entry kinds (:func:`rmapscope.ingest.pte.calibrate_kinds`, with ingest's pairing: a
        remove takes the latest earlier set of the same task, address and size): a bug that
        restores read entries writable can make the read type look like the write type."""
        seen: dict[int, int] = {}
        restores: dict[int, tuple[int, int]] = {}
        last: dict[tuple, int] = {}  # (size, pid, addr) -> swap type of the latest set
        for e in self.events:
            if not e.name.startswith(("set_migration_", "remove_migration_")):
                continue
            if e.payload.startswith("("):  # the remove_migration_pte probe, not the tracepoint
                continue
            addr, pte = (int(x.split("=")[1].rstrip(","), 16) for x in e.payload.split()[:2])
            key = (e.name[-3:], e.pid, addr)
            if e.name.startswith("set"):
                t = pte >> 59
                seen[t] = seen.get(t, 0) + 1
                last[key] = t
            elif key in last:
                w, n = restores.get(last[key], (0, 0))
                restores[last[key]] = (w + (pte >> 1 & 1), n + 1)
        kinds, _ = calibrate_kinds(seen, restores)
        return all(kinds.get(t) == k for k, t in SWP_TYPE.items() if t in seen)

    def _downgrade_shared(self, f: Finding, ts: list[int]) -> bool:
        """Whether, in the lines, another fork child of the same parent may have copied the
        entry behind ``f`` too (its copy window meets the entry's life), so the parent's
        downgrade does not point at ``f``'s child."""
        pe, cv = f.copied, f.child_vma
        assert pe is not None and cv is not None and cv.fork_src is not None
        assert pe.set_ev is not None  # a copy of an entry that a set walk made
        gone = ts[pe.gone_ev] if pe.gone_ev is not None else None
        for v in self.fork_vmas:
            if v is cv or v.fork_src is None or v.fork_src.mm is not cv.fork_src.mm:
                continue
            if f.addr is None or not v.start <= f.addr < v.end:
                continue
            if v.link_ev is None or v.ret_ev is None:
                continue
            if (gone is None or ts[v.link_ev] < gone) and ts[pe.set_ev] < ts[v.ret_ev]:
                return True
        return False


# --------------------------------------------------------------------------------------
# scheduling


def run(model: Model, choose: Callable[[int], int]) -> None:
    """Run every agent to completion; ``choose(n)`` picks one of ``n`` ready agents."""
    while True:
        ready = [a for a in model.agents if a.ready()]
        if not ready:
            stuck = [a.name for a in model.agents if not a.done]
            if stuck:
                raise SimError(f"deadlock: {', '.join(stuck)} cannot proceed")
            return
        a = ready[choose(len(ready))] if len(ready) > 1 else ready[0]
        model.stats["steps"] += 1
        a.step()


def run_now(gen: Program) -> None:
    """Run a program to completion at once (scenario setup, before the concurrent part)."""
    for guard in gen:
        if guard is not None and not guard():
            raise SimError("setup step blocked")
