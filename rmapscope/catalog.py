"""The catalogue of the dataset: every table, its directory, its columns and who writes it.

One home for what a dataset holds. Ingest writes one typed table per event
(``event=<name>``, columns from the event's format: see :mod:`rmapscope.schema`), the
probe tables ``probe_<name>`` (``event=probe_<name>``), ``other_events`` for every other
event, and the side tables ``traces``, ``gaps``, ``ingest_errors``; replay writes its five
tables next to them. Every table is Hive-partitioned by ``host`` and ``trace`` (the
partition path is made by :class:`rmapscope.dataset.Dataset` alone).

The ``reason`` values of ``ingest_errors`` and the ``kind`` values of ``gaps`` are
catalogued here too, each with a severity and a description (the model is Perfetto's
``src/trace_processor/storage/stats.h``).

>>> TABLES["gaps"].directory, TABLES["gaps"].stage, TABLES["gaps"].names()[:3]
('gaps', 'ingest', ['kind', 'cpu', 'ts_start'])
>>> directory("set_migration_pte"), table_of("event=set_migration_pte")
('event=set_migration_pte', 'set_migration_pte')
>>> REASONS[reason_name(unparsed_fields("task_newtask"))].severity
'error'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Protocol

import polars as pl
import pyarrow as pa

INGEST = "ingest"
REPLAY = "replay"

#: Prefix of an event table's directory.
EVENT_PREFIX = "event="


@dataclass(frozen=True)
class Column:
    """One column of a table: name, Arrow type as written, one-line description."""

    name: str
    type: pa.DataType
    doc: str


@dataclass(frozen=True)
class Table:
    """One table of a dataset."""

    name: str  # the SQL view's name (an event table: the event's name)
    directory: str  # under the dataset root, holding ``host=<h>/trace=<id>/`` partitions
    stage: str  # INGEST or REPLAY
    doc: str
    columns: tuple[Column, ...]

    def names(self) -> list[str]:
        """The column names, in file order."""
        return [c.name for c in self.columns]

    def pairs(self) -> list[tuple[str, pa.DataType]]:
        """``(name, type)`` of every column, in file order."""
        return [(c.name, c.type) for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        """The table's Arrow schema."""
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    @cached_property
    def polars_schema(self) -> pl.Schema:
        """The table's schema as polars types (the replay tables are built in polars)."""
        frame = pl.from_arrow(self.arrow_schema().empty_table())
        assert isinstance(frame, pl.DataFrame)
        return frame.schema


def _cols(*specs: tuple[str, pa.DataType, str]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


_str, _i16, _i32, _i64 = pa.string(), pa.int16(), pa.int32(), pa.int64()
_u32, _u64, _bool = pa.uint32(), pa.uint64(), pa.bool_()
#: polars writes its strings and lists large.
_lstr, _lids = pa.large_string(), pa.large_list(pa.int64())

# -- event tables -----------------------------------------------------------------------------

#: Columns every event table starts with.
COMMON = _cols(
    ("seq", _i64, "the event's ordinal in its trace (the event id findings cite)"),
    ("ts", _i64, "timestamp, int64 nanoseconds exactly as the trace printed them"),
    ("cpu", _i32, "CPU that recorded the event"),
    ("pid", _i32, "task (thread) id"),
    ("tgid", _i32, "thread group id, when the trace says (record-tgid, perf pid/tid)"),
    ("comm", _str, "task command name"),
    ("flags", _str, "irq/preempt flags column as printed"),
    ("event", _str, "event name"),
    ("instance", _str, "trace-cmd buffer/instance name, when the trace has several"),
)
COMMON_NAMES = [c.name for c in COMMON]

#: The events that set and remove migration entries (tier 1 pairs them).
MIGRATION_SETS = ("set_migration_pte", "set_migration_pmd")
MIGRATION_REMOVES = ("remove_migration_pte", "remove_migration_pmd")
MIGRATION_EVENTS = (*MIGRATION_SETS, *MIGRATION_REMOVES)

#: Columns decoded from the raw pte/pmd of the migration events (see ingest.pte).
SET_DECODED = _cols(
    ("pfn", _u64, "the old page's frame number, from the migration entry"),
    ("swp_type", _i16, "the entry's swap type"),
    ("migration_kind", _str, "read | read_exclusive | write (calibrated per trace)"),
    ("young", _bool, "the entry keeps the pte's accessed bit"),
    ("dirty", _bool, "the entry keeps the pte's dirty bit"),
    ("soft_dirty", _bool, "soft-dirty bit of the entry"),
    ("uffd_wp", _bool, "userfaultfd write-protect bit of the entry"),
)
REMOVE_DECODED = _cols(
    ("pfn", _u64, "the new page's frame number (the old one when migration failed)"),
    ("present", _bool, "the restored pte is present"),
    ("writable", _bool, "the restored pte is writable"),
    ("young", _bool, "accessed bit of the restored pte"),
    ("dirty", _bool, "dirty bit of the restored pte"),
    ("nx", _bool, "no-execute bit of the restored pte"),
    ("soft_dirty", _bool, "soft-dirty bit of the restored pte"),
    ("uffd_wp", _bool, "userfaultfd write-protect bit of the restored pte"),
)
DECODED: dict[str, tuple[Column, ...]] = {
    **dict.fromkeys(MIGRATION_SETS, SET_DECODED),
    **dict.fromkeys(MIGRATION_REMOVES, REMOVE_DECODED),
}

#: The table of every event without a typed schema (its directory too).
GENERIC_DIR = "other_events"
#: The ``event`` of a frame row of other_events (a text stack's ``=> func`` line, a perf
#: callchain's ``\t<ip> <sym>`` line): part of the event above it, not an event itself.
STACK_FRAME = "stack_frame"


def directory(table: str) -> str:
    """The directory of a table under the dataset root: its own name for the tables of
    :data:`TABLES`, ``event=<name>`` for an event (or probe) table."""
    return table if table in TABLES else EVENT_PREFIX + table


def table_of(dirname: str) -> str:
    """The table a dataset directory holds (the inverse of :func:`directory`)."""
    return dirname.removeprefix(EVENT_PREFIX)


def event_table(name: str, columns: Iterable[tuple[str, pa.DataType]]) -> Table:
    """The catalogue entry of event ``name`` whose own columns (after :data:`COMMON`) are
    ``columns``, as :meth:`rmapscope.schema.EventSchema.columns` lists them."""
    decoded = {c.name: c for c in DECODED.get(name, ())}
    own = tuple(
        decoded[n] if n in decoded else Column(n, t, f"field `{n}` of the event's format")
        for n, t in columns
    )
    doc = f"one row per {name} event"
    return Table(name, directory(name), INGEST, doc, (*COMMON, *own))


# -- probe tables -----------------------------------------------------------------------------

#: The probes of the contract (``data/probes/README.md``) and their keys (all numbers).
PROBES: dict[str, tuple[str, ...]] = {
    "rmap_walk_anon": ("folio", "anon_vma", "op"),
    "rmap_walk_anon_ret": (),
    "try_to_migrate_one": ("folio", "mm", "pgoff", "anon_vma", "addr"),
    "remove_migration_pte": ("folio", "mm", "pgoff", "anon_vma", "addr"),
    "anon_vma_fork": ("mm", "pmm", "pgoff", "anon_vma"),
    "copy_page_range": ("dst_mm", "src_mm", "start", "end", "pgoff"),
    "copy_page_range_ret": ("ret",),
    "unlink_anon_vmas": ("mm", "pgoff"),
}
PROBE_PREFIX = "probe_"
#: The struct page array of x86_64 (4-level, vmemmap not randomised): a ``folio`` pointer
#: is ``VMEMMAP_BASE + 64 * pfn``.
VMEMMAP_BASE = 0xFFFFEA0000000000
_PROBE_KEYS = {
    "folio": "struct folio * of the walk (VMEMMAP_BASE + 64 * pfn)",
    "anon_vma": "struct anon_vma * walked or linked",
    "op": "address of the walk's rmap_one callback",
    "mm": "struct mm_struct * of the vma (names a process)",
    "pmm": "struct mm_struct * of the fork's parent",
    "pgoff": "the vma's page offset",
    "addr": "user address the vma maps the folio at",
    "dst_mm": "struct mm_struct * copied into (the child)",
    "src_mm": "struct mm_struct * copied from (the parent)",
    "start": "first address of the copied range",
    "end": "end of the copied range",
    "ret": "return value of copy_page_range",
}


@cache
def probe_table(event: str) -> Table:
    """The table of probe ``event``: common columns, ``func``, ``caller``, then its keys."""
    name = PROBE_PREFIX + event
    columns = (
        *COMMON,
        Column("func", _str, "the probed function"),
        Column("caller", _str, "the caller a return probe returned to (null: entry probe)"),
        *(Column(k, _u64, _PROBE_KEYS[k]) for k in PROBES[event]),
    )
    return Table(name, directory(name), INGEST, f"one row per {event} probe line", columns)


PROBE_TABLES = tuple(PROBE_PREFIX + p for p in PROBES)

# -- ingest's side tables ---------------------------------------------------------------------

OTHER_EVENTS = Table(
    GENERIC_DIR,
    GENERIC_DIR,
    INGEST,
    "every event without a typed table (and rows whose fields did not parse), raw field text",
    (*COMMON, Column("fields", _str, "the event's payload text as printed")),
)
TRACES = Table(
    "traces",
    "traces",
    INGEST,
    "the manifest: one row per ingested trace",
    _cols(
        ("trace_id", _str, "first 16 hex digits of the sha256 of the decompressed content"),
        ("host", _str, "host the trace was recorded on (its partition)"),
        ("source", _str, "the file ingested"),
        ("format", _str, "input format (see --format)"),
        ("kernel", _str, "kernel release, when the trace says"),
        (
            "arch",
            _str,
            "traced machine (uname; aarch64 is arm64, `32-bit`: a long=4 trace.dat naming none);"
            " ptes decoded for x86_64, x86_64-la57, arm64 only",
        ),
        ("arch_from", _str, "trace | sidecar (its .meta.json) | option (--arch) | default"),
        ("clock", _str, "trace clock"),
        ("cpus", _i32, "CPUs of the traced machine, when the trace says"),
        (
            "empty_cpus",
            pa.list_(_i32),
            "CPUs trace-cmd says recorded nothing (`CPU N is empty`); null: not a trace-cmd report",
        ),
        ("ts_first", _i64, "first timestamp"),
        ("ts_last", _i64, "last timestamp"),
        (
            "events",
            _i64,
            "events ingested, as the source counts them: a stack or callchain with its frames is"
            " one event (its `stack_frame` rows are counted in stack_frames, not here)",
        ),
        (
            "stack_frames",
            _i64,
            "`stack_frame` rows of other_events (frames of text stacks and perf callchains; a"
            " trace.dat's kernel_stack keeps its frames in `caller`)",
        ),
        ("lines", _i64, "lines (records) read"),
        ("gaps", _i64, "rows in gaps"),
        ("lost_events", _i64, "events the gaps say were lost"),
        ("errors", _i64, "lines counted in ingest_errors"),
        ("event_counts", pa.map_(_str, _i64), "events per event name"),
        ("bytes", _i64, "bytes of the file read"),
        ("sha256", _str, "sha256 of the decompressed content"),
        ("migration_types", _str, "JSON: swap type -> migration kind, and how it was calibrated"),
        ("ingested_at", pa.timestamp("us", tz="UTC"), "when it was ingested"),
        ("tool_version", _str, "rmapscope version that ingested it"),
    ),
)
GAPS = Table(
    "gaps",
    "gaps",
    INGEST,
    "where events were lost: one row per lost-event marker (kinds: see the reasons)",
    _cols(
        ("kind", _str, "lost | dropped | buffer_started | overwritten"),
        ("cpu", _i32, "CPU that lost the events (null: unknown or every CPU)"),
        ("ts_start", _i64, "last event on that CPU before the gap (null: unknown)"),
        ("ts_end", _i64, "first event on that CPU after the gap (null: none)"),
        ("count", _i64, "events lost, when the trace says"),
        ("line", _i64, "line (record) of the marker"),
        ("text", _str, "the marker as printed"),
    ),
)
INGEST_ERRORS = Table(
    "ingest_errors",
    "ingest_errors",
    INGEST,
    "input the readers rejected: one row per reason",
    _cols(
        ("reason", _str, "why (see the reasons)"),
        ("count", _i64, "complete count of lines with this reason"),
        ("first_line", _i64, "first line (record) with it"),
        ("sample_lines", pa.list_(_i64), "line numbers of up to 10 samples"),
        ("samples", pa.list_(_str), "up to 10 sample lines (cut at 500 characters)"),
    ),
)

# -- replay's tables --------------------------------------------------------------------------

MIGRATIONS = Table(
    "migrations",
    "migrations",
    REPLAY,
    "one row per mapped folio migration attempt (consecutive sets of one folio by one task)",
    _cols(
        ("migration_id", _i64, "the attempt's id in its trace"),
        ("pid", _i32, "task that set the entries"),
        ("comm", _lstr, "its command"),
        ("cpu", _i32, "CPU of its first set"),
        ("batch_id", _i64, "its migration batch (null: none traced)"),
        ("kind", _lstr, "pte | pmd"),
        ("order", _i32, "folio order"),
        ("old_pfn", _u64, "the folio's old page"),
        ("new_pfn", _u64, "the folio's new page (null: no remove)"),
        ("t_first_set", _i64, "timestamp of the first set"),
        ("t_last_remove", _i64, "timestamp of the last remove"),
        ("n_set", _u32, "set events"),
        ("n_remove", _u32, "remove events paired with them"),
        ("n_zapped", _u32, "entries gone without a remove: zapped, or a split's zero page"),
        ("seq_first_set", _i64, "seq of the first set"),
        ("seq_last_remove", _i64, "seq of the last remove"),
        ("entry_kinds", _lstr, "migration kinds of its entries, comma-separated"),
        ("n_young", _u32, "entries that kept the accessed bit"),
        ("n_dirty", _u32, "entries that kept the dirty bit"),
        ("n_addrs", _u32, "distinct addresses"),
        ("evidence_sets", _lids, "seq of its sets"),
        ("ts_end", _i64, "end of its batch"),
        ("reason", _lstr, "its batch's migrate reason"),
        ("mode", _lstr, "its batch's migrate mode"),
        ("why", _lstr, "why inconclusive: cut | lost | missing_cpu | exit | fork | ambiguous"),
        ("outcome", _lstr, "migrated | restored | leaked | inconclusive"),
    ),
)
MIGRATION_BATCHES = Table(
    "migration_batches",
    "migration_batches",
    REPLAY,
    "one row per mm_migrate_pages_start .. mm_migrate_pages of a task",
    _cols(
        ("batch_id", _i64, "the batch's id in its trace"),
        ("pid", _i32, "migrating task"),
        ("cpu", _i32, "CPU of its start"),
        ("ts_start", _i64, "timestamp of mm_migrate_pages_start (null: not traced)"),
        ("ts_end", _i64, "timestamp of mm_migrate_pages (null: not traced)"),
        ("seq_start", _i64, "seq of mm_migrate_pages_start"),
        ("seq_end", _i64, "seq of mm_migrate_pages"),
        ("mode", _lstr, "migrate mode"),
        ("reason", _lstr, "migrate reason"),
        ("cpu_end", _i32, "CPU of its end"),
        ("succeeded", _u64, "the kernel's count (mm_migrate_pages)"),
        ("failed", _u64, "the kernel's count"),
        ("thp_succeeded", _u64, "the kernel's count"),
        ("thp_failed", _u64, "the kernel's count"),
        ("thp_split", _u64, "the kernel's count"),
        ("large_folio_split", _u64, "the kernel's count"),
        ("paired_migrated", _i64, "attempts replay paired that migrated"),
        ("paired_migrated_pages", _i64, "pages of those"),
        ("paired_restored", _i64, "attempts restored to their old page"),
        ("leaked", _i64, "attempts with a leaked entry"),
        ("inconclusive", _i64, "attempts replay cannot decide"),
        ("n_set", _i64, "set events in the batch"),
        ("n_remove", _i64, "remove events paired in the batch"),
        ("n_surplus_remove", _i64, "removes with no set to pair"),
    ),
)
PAGE_STATES = Table(
    "page_states",
    "page_states",
    REPLAY,
    "migration-entry and present intervals per (pfn, addr, mm)",
    _cols(
        ("pfn", _u64, "the page"),
        ("addr", _u64, "user address"),
        ("mm", _u64, "owner mm (null: unknown without probes)"),
        ("state", _lstr, "migration-entry | present"),
        ("ts_start", _i64, "start of the interval"),
        ("ts_end", _i64, "end of the interval (null: open)"),
        ("seq_start", _i64, "seq of the event that started it"),
        ("seq_end", _i64, "seq of the event that ended it (a zapped entry: the exit line)"),
        ("migration_id", _i64, "the migration attempt"),
    ),
)
FORK_WINDOWS = Table(
    "fork_windows",
    "fork_windows",
    REPLAY,
    "every fork/clone, its window and the migrations it overlapped",
    _cols(
        ("fork_id", _i64, "the fork's id in its trace"),
        ("seq_fork", _i64, "seq of sched_process_fork"),
        ("ts_end", _i64, "timestamp of sched_process_fork (page tables copied)"),
        ("cpu", _i32, "CPU of sched_process_fork"),
        ("parent_pid", _i32, "parent task"),
        ("child_pid", _i32, "child task"),
        ("parent_comm", _lstr, "parent's command"),
        ("clone_flags", _u64, "clone flags (task_newtask)"),
        ("seq_newtask", _i64, "seq of task_newtask"),
        ("ts_newtask", _i64, "timestamp of task_newtask"),
        ("shares_vm", _bool, "CLONE_VM: the child shares the mm (no copy)"),
        ("ts_start", _i64, "the parent's last event of any table before it (a lower bound)"),
        ("ts_copy_start", _i64, "first fork probe (anon_vma_fork, copy_page_range) of it"),
        ("ts_copy_end", _i64, "last fork probe of it (copy_page_range_ret)"),
        ("child_mm", _u64, "the child's mm (copy_page_range dst_mm)"),
        ("n_overlapping", _i64, "migration windows it overlapped"),
        ("overlapping_migrations", _lids, "migration_id of the first 100 of them"),
    ),
)
VIOLATIONS = Table(
    "violations",
    "violations",
    REPLAY,
    "findings of the rules (data/probes/README.md), one row each",
    _cols(
        ("rule", _lstr, "rule id"),
        ("verdict", _lstr, "violation | inconclusive | hazard (rmapscope explain RULE)"),
        ("ts", _i64, "timestamp of the detecting event"),
        ("pfn", _u64, "the page"),
        ("addr", _u64, "user address"),
        ("pid", _i32, "owner task, when known"),
        ("mm", _u64, "owner mm, when known (probes)"),
        ("explanation", _lstr, "what happened, in words"),
        ("evidence", _lids, "seq of the events that show it"),
    ),
)

#: Every table with a fixed name (the event and probe tables aside), by name.
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        OTHER_EVENTS,
        TRACES,
        GAPS,
        INGEST_ERRORS,
        MIGRATIONS,
        MIGRATION_BATCHES,
        PAGE_STATES,
        FORK_WINDOWS,
        VIOLATIONS,
    )
}
#: Tables written by replay, partitioned like the event tables.
REPLAY_TABLES = tuple(n for n, t in TABLES.items() if t.stage == REPLAY)


class _Event(Protocol):
    def columns(self) -> list[tuple[str, pa.DataType]]: ...


class EventRegistry(Protocol):
    """What :func:`tables` needs of :class:`rmapscope.schema.Registry`."""

    def names(self) -> list[str]: ...

    def get(self, name: str) -> _Event | None: ...


def tables(registry: EventRegistry) -> list[Table]:
    """Every table a dataset can hold: one per event of ``registry``, the probe tables,
    then the tables of :data:`TABLES`."""
    events = [event_table(n, ev.columns()) for n in registry.names() if (ev := registry.get(n))]
    return [*events, *(probe_table(p) for p in PROBES), *TABLES.values()]


# -- reasons ----------------------------------------------------------------------------------

INFO = "info"  # expected: not events, nothing lost
DATA_LOSS = "data_loss"  # events the kernel or a tool lost before the trace was written
ERROR = "error"  # input a reader could not read: what it held is dropped or kept raw


@dataclass(frozen=True)
class Reason:
    """A ``reason`` of ``ingest_errors`` or a ``kind`` of ``gaps``."""

    name: str
    table: str  # "ingest_errors" or "gaps"
    severity: str  # INFO, DATA_LOSS or ERROR
    doc: str


#: Every reason and gap kind, by name.
REASONS: dict[str, Reason] = {}


def _reason(name: str, table: Table, severity: str, doc: str) -> str:
    REASONS[name] = Reason(name, table.name, severity, doc)
    return name


GAP_LOST = _reason(
    "lost",
    GAPS,
    DATA_LOSS,
    "CPU:N [LOST N EVENTS], bpftrace's Lost N events, a trace.dat page's missed events",
)
GAP_DROPPED = _reason(
    "dropped", GAPS, DATA_LOSS, "CPU:N [N EVENTS DROPPED] (trace-cmd report: missed events)"
)
GAP_BUFFER_STARTED = _reason(
    "buffer_started",
    GAPS,
    DATA_LOSS,
    "##### CPU N buffer started ####: that CPU's buffer overran, its older events are gone",
)
GAP_OVERWRITTEN = _reason(
    "overwritten",
    GAPS,
    DATA_LOSS,
    "entries-written exceeds entries-in-buffer: a full buffer overwrote its oldest events",
)
UNPARSED_LINE = _reason("unparsed_line", INGEST_ERRORS, ERROR, "a line no reader understood")
BAD_TIMESTAMP = _reason(
    "bad_timestamp", INGEST_ERRORS, ERROR, "an event line whose timestamp does not fit in int64 ns"
)
UNPARSED_FIELDS = _reason(
    "unparsed_fields",
    INGEST_ERRORS,
    ERROR,
    "written as unparsed_fields:<event>: rows whose fields did not parse (kept in other_events)",
)
BPFTRACE_MAP = _reason("bpftrace_map", INGEST_ERRORS, INFO, "a map bpftrace printed at exit")
TOOL_MESSAGE = _reason(
    "tool_message", INGEST_ERRORS, INFO, "the tool's own ERROR:/WARNING: line, not an event"
)
SHORT_RECORD = _reason(
    "short_record", INGEST_ERRORS, ERROR, "a trace.dat record too short for its header"
)
UNKNOWN_EVENT_ID = _reason(
    "unknown_event_id", INGEST_ERRORS, ERROR, "a trace.dat record of an event with no format"
)
RECORD_SHORTER_THAN_FORMAT = _reason(
    "record_shorter_than_format",
    INGEST_ERRORS,
    ERROR,
    "a trace.dat record shorter than its event's format",
)


def unparsed_fields(event: str) -> str:
    """The reason written for rows of ``event`` whose fields did not parse."""
    return f"{UNPARSED_FIELDS}:{event}"


def reason_name(value: str) -> str:
    """The catalogued reason of a written ``reason`` value (``unparsed_fields:x`` ->
    ``unparsed_fields``)."""
    return value.split(":", 1)[0]
