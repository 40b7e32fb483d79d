"""The event schema: typed fields per event, from the events' format descriptions.

Every typed table has the :data:`COMMON` columns followed by the event's own fields, named
after the fields of its tracefs ``format`` description (``mm_migrate_pages.succeeded``, which
the text prints as ``nr_succeeded=``). The known events' formats ship in ``data/formats``
(read from a Linux 6.18 tracefs); a format description found at run time (a tracefs
``events/*/format`` file, or the formats inside a trace.dat) adds or overrides an event with
:meth:`Registry.add_format`.

>>> reg = default_registry()
>>> reg.get("mm_migrate_pages").arrow_schema().field("succeeded").type
DataType(uint64)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import pyarrow as pa

from rmapscope import catalog
from rmapscope._printfmt import PrintFormat, parse_print_fmt
from rmapscope.catalog import COMMON_NAMES
from rmapscope.kernels import SAME_TYPE_COLUMNS

#: Columns every event table starts with (see :data:`rmapscope.catalog.COMMON`), and the
#: columns decoded from the raw pte/pmd of the migration events (see ingest.pte), as
#: ``(name, type)`` pairs.
COMMON: list[tuple[str, pa.DataType]] = [(c.name, c.type) for c in catalog.COMMON]
DECODED = {ev: [(c.name, c.type) for c in cols] for ev, cols in catalog.DECODED.items()}

#: ``(name, type)`` pairs of the other tables ingest stages per batch or per trace.
GENERIC_COLUMNS = catalog.OTHER_EVENTS.pairs()
GAPS_COLUMNS = catalog.GAPS.pairs()
ERRORS_COLUMNS = catalog.INGEST_ERRORS.pairs()


#: Column names of the ingest pipeline itself, kept free for it in every table.
RESERVED_NAMES = {*COMMON_NAMES, "rel", "lineno", "host", "trace"}


def column_for(field_name: str) -> str:
    """The column of an event field: its own name, or ``field_<name>`` if that name is a
    common column (or one the pipeline or the partitions use).

    >>> column_for("child_pid"), column_for("pid"), column_for("rel")
    ('child_pid', 'field_pid', 'field_rel')
    """
    return f"field_{field_name}" if field_name in RESERVED_NAMES else field_name


def raw_column(field_name: str) -> str:
    """The column that keeps the integer of a field printed as a label (``__print_symbolic``,
    ``__print_flags``, ``cond ? "a" : "b"``), next to the label's column.

    >>> raw_column("prev_state"), raw_column("pid")
    ('prev_state_raw', 'field_pid_raw')
    """
    return column_for(field_name) + "_raw"


def arrow_schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """A pyarrow schema from ``(name, type)`` pairs."""
    return pa.schema([pa.field(n, t) for n, t in columns])


@dataclass(frozen=True)
class FieldDef:
    """One ``field:`` line of an event format description."""

    ctype: str
    name: str
    offset: int
    size: int
    signed: bool
    array_len: int | None = None  # fixed-size array ``char comm[16]``
    dynamic: str | None = None  # "data_loc" or "rel_loc"

    @property
    def is_string(self) -> bool:
        return "char" in self.ctype and (self.array_len is not None or self.dynamic is not None)

    def arrow_type(self) -> pa.DataType:
        """The column type for this field's value."""
        if self.is_string:
            return pa.string()
        if self.array_len is not None or self.dynamic is not None:
            return pa.string()  # other arrays: kept as printed text
        if "*" in self.ctype:
            return pa.uint64()
        if self.ctype.split()[-1] == "bool" or self.ctype == "bool":
            return pa.bool_()
        bits = {1: 8, 2: 16, 4: 32, 8: 64}.get(self.size, 64)
        return (
            pa.int64()
            if bits == 64 and self.signed
            else (getattr(pa, f"{'int' if self.signed else 'uint'}{bits}")())
        )


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);(?:\s*signed:(?P<signed>\d+);)?"
)


def _parse_field(decl: str, offset: int, size: int, signed: bool) -> FieldDef:
    decl = decl.strip()
    dynamic = None
    for tag in ("__data_loc", "__rel_loc"):
        if decl.startswith(tag):
            dynamic = tag.strip("_")
            decl = decl[len(tag) :].strip()
    array_len = None
    m = re.match(r"(?P<type>.*?)(?P<name>\w+)\s*\[(?P<len>[^\]]*)\]$", decl)
    if m:
        ctype, name = m.group("type").strip(), m.group("name")
        if dynamic is None:
            try:
                array_len = int(m.group("len"), 0)
            except ValueError:
                dynamic = "data_loc"  # ``char buf[]``: variable length payload
    else:
        m = re.match(r"(?P<type>.*?)(?P<name>\w+)$", decl)
        if not m:
            raise ValueError(f"cannot parse field declaration {decl!r}")
        ctype, name = m.group("type").strip(), m.group("name")
    return FieldDef(ctype, name, offset, size, signed, array_len, dynamic)


@dataclass
class EventSchema:
    """The schema of one event: its format fields, print fmt and table columns."""

    name: str
    system: str = ""
    id: int | None = None
    fields: list[FieldDef] = field(default_factory=list)
    print_fmt: PrintFormat | None = None

    @property
    def is_syscall(self) -> bool:
        """A syscall tracepoint (``sys_enter_<name>`` / ``sys_exit_<name>``)."""
        return is_syscall_event(self.name)

    @property
    def is_stack(self) -> bool:
        """ftrace's ``kernel_stack`` / ``user_stack``: ``caller`` holds as many frames as the
        record does (the format's ``caller[8]`` notwithstanding), see :data:`STACK_EVENTS`."""
        return self.name in STACK_EVENTS and self.system in ("ftrace", "")

    def columns(self) -> list[tuple[str, pa.DataType]]:
        """The event's own columns (after the common ones), in format order.

        A syscall event's columns are its format fields only: its print fmt's arguments
        (``((unsigned long)(REC->start))``) name no field, and would add ``argN`` copies.
        A stack event's too, its ``caller`` a ``list<uint64>`` of every frame.
        """
        cols: dict[str, pa.DataType] = {}
        pf = None if self.is_syscall or self.is_stack else self.print_fmt
        convs = {c.column: c for c in pf.conversions} if pf else {}
        for f in self.fields:
            if f.name.startswith("common_"):
                continue
            conv = convs.get(f.name)
            if self.is_stack and f.name == "caller":
                cols["caller"] = pa.list_(pa.uint64())
            elif conv is not None and conv.kind in ("symbolic", "flags"):
                cols[column_for(f.name)] = pa.string()
                cols.setdefault(raw_column(f.name), pa.int64())  # the number behind the label
            elif conv is not None and conv.kind == "bool":
                cols[column_for(f.name)] = pa.bool_()
                if f.arrow_type() != pa.bool_():  # ``ret ? "handled" : "unhandled"`` of an int
                    cols.setdefault(raw_column(f.name), pa.int64())
            else:
                cols[column_for(f.name)] = f.arrow_type()
        for conv in convs.values():
            name = column_for(conv.column)
            if name not in cols:
                cols[name] = {
                    "ptr": pa.uint64(),
                    "hex": pa.uint64(),
                    "int": pa.int64(),
                    "bool": pa.bool_(),
                }.get(conv.kind, pa.string())
        for name, typ in DECODED.get(self.name, []):
            cols.setdefault(name, typ)
        for name, type_name in SAME_TYPE_COLUMNS.get(self.name, {}).items():
            if name in cols:  # one type on every kernel (see rmapscope.kernels)
                cols[name] = getattr(pa, type_name)()
        return list(cols.items())

    def arrow_schema(self) -> pa.Schema:
        """The full table schema: common columns, then the event's columns."""
        return arrow_schema([*COMMON, *self.columns()])


#: ftrace's stack events: the kernel writes ``size`` frames (Linux 5.x+; a terminating
#: ``ULONG_MAX`` on older kernels), however many the format's ``caller[8]`` declares.
STACK_EVENTS = ("kernel_stack", "user_stack")

_SYSCALL_EVENT = re.compile(r"sys_(?:enter|exit)_\w+")


def is_syscall_event(name: str) -> bool:
    """Whether ``name`` is a syscall tracepoint's (``sys_enter_mbind``, ``sys_exit_mbind``).

    >>> is_syscall_event("sys_enter_mbind"), is_syscall_event("sys_mbind")
    (True, False)
    """
    return _SYSCALL_EVENT.fullmatch(name) is not None


def syscall_schema(name: str, args: list[str]) -> EventSchema:
    """The schema of a syscall event whose format is not known, from the argument names its
    text prints: every argument ``unsigned long`` (as the kernel prints them), an exit's
    ``ret`` a signed ``long``; ``__syscall_nr`` as in every syscall format.

    >>> syscall_schema("sys_exit_foo", []).columns()
    [('__syscall_nr', DataType(int32)), ('ret', DataType(int64))]
    """
    fields = [FieldDef("int", "__syscall_nr", 8, 4, True)]
    if name.startswith("sys_exit_"):
        fields.append(FieldDef("long", "ret", 16, 8, True))
    else:
        fields += [FieldDef("unsigned long", a, 16 + 8 * i, 8, False) for i, a in enumerate(args)]
    return EventSchema(name=name, system="syscalls", fields=fields)


def parse_format(text: str) -> EventSchema:
    """Parse a tracefs/trace.dat event ``format`` description.

    >>> s = parse_format('name: foo\\nID: 7\\nformat:\\n'
    ...                  '\\tfield:int x;\\toffset:8;\\tsize:4;\\tsigned:1;\\n'
    ...                  '\\nprint fmt: "x=%d", REC->x\\n')
    >>> s.name, s.id, s.columns()
    ('foo', 7, [('x', DataType(int32))])
    """
    name = system = ""
    ev_id = None
    fields: list[FieldDef] = []
    pf = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("name:"):
            name = s[5:].strip()
        elif s.startswith("ID:"):
            ev_id = int(s[3:].strip())
        elif s.startswith("system:"):
            system = s[7:].strip()
        elif s.startswith("field:"):
            m = _FIELD_RE.match(s)
            if not m:
                raise ValueError(f"cannot parse {s!r}")
            fields.append(
                _parse_field(
                    m.group("decl"),
                    int(m.group("offset")),
                    int(m.group("size")),
                    m.group("signed") == "1",
                )
            )
        elif s.startswith("print fmt:"):
            pf = parse_print_fmt(s[len("print fmt:") :])
    if not name:
        raise ValueError("format description has no name")
    return EventSchema(name=name, system=system, id=ev_id, fields=fields, print_fmt=pf)


class Registry:
    """Event schemas by name; starts from the shipped formats, extended at run time."""

    def __init__(self, schemas: dict[str, EventSchema] | None = None) -> None:
        self._schemas: dict[str, EventSchema] = dict(schemas or {})

    def copy(self) -> Registry:
        """An independent registry (add formats to it without touching the default)."""
        return Registry(self._schemas)

    def add_format(self, text: str, system: str = "") -> EventSchema:
        """Add or replace the schema of the event described by ``text``."""
        schema = parse_format(text)
        if system and not schema.system:
            schema.system = system
        self._schemas[schema.name] = schema
        return schema

    def add(self, schema: EventSchema, replace: bool = False) -> EventSchema:
        """Add ``schema`` unless its event has one (or ``replace``); the schema now held."""
        if replace:
            self._schemas[schema.name] = schema
            return schema
        return self._schemas.setdefault(schema.name, schema)

    def get(self, name: str) -> EventSchema | None:
        """The schema of ``name``, or None when the event has no typed table."""
        return self._schemas.get(name)

    def names(self) -> list[str]:
        """Names of all events with a typed table, sorted."""
        return sorted(self._schemas)


@cache
def _shipped() -> dict[str, EventSchema]:
    reg = Registry()
    root = resources.files("rmapscope.data") / "formats"
    for system_dir in root.iterdir():
        if not system_dir.is_dir():
            continue
        for event_dir in system_dir.iterdir():
            fmt = event_dir / "format"
            if fmt.is_file():
                reg.add_format(fmt.read_text(), system=system_dir.name)
    return reg._schemas


def default_registry() -> Registry:
    """A fresh registry holding the known events (formats shipped in ``data/formats``)."""
    return Registry(_shipped())
