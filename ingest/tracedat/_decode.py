"""Decode trace.dat event records into typed columns, one event type at a time.

All records of one type in a batch are decoded together: the number fields are read by the
compiled core in one pass over the records (``rmapscope._native.record_fields``, GIL
released), strings are cut out of the buffer with vectorised index arithmetic, and
print-fmt conversions are applied in Python per distinct value (symbolic and flags labels:
a few per column, so compiling them would gain nothing) or as vector expressions (computed
arguments such as ``1UL << REC->defer_shift``).
No Python object is made per event except for rare field kinds (non-char arrays).

The columns are exactly those of the event's :class:`~rmapscope.schema.EventSchema` (built
from the file's own format), valued as the text a tracer prints would parse:

* ``symbolic`` conversions give the label of the value (unknown values ``0x<hex>``, as the
  kernel and libtraceevent print them);
* ``flags`` conversions give the ``__print_flags`` rendering (``GFP_KERNEL|__GFP_ZERO``,
  leftover bits as ``0x<hex>``, ``cond ? __print_flags(...) : "none"`` honoured);
* ``bool`` conversions give ``value != 0``;
* derived columns (computed arguments) are evaluated when the expression only needs the
  record's fields and integer arithmetic, else null (``page=%p`` from ``vmemmap_base``);
* fields the print fmt does not show (``exit_mmap.mm``) keep their raw value.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from rmapscope._native import distinct
from rmapscope._printfmt import Conversion, _split_fmt, call_args, split_args
from rmapscope.schema import DECODED, EventSchema, FieldDef, column_for, raw_column

from .._bytes import escape
from . import _expr as expr
from ._bprint import format_bprint

_U64 = np.uint64

_FIELD_LINE = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);")


# -- batch buffer access -----------------------------------------------------------------


class Buffer:
    """The bytes of a batch of records, with typed views for aligned gathers."""

    def __init__(self, parts: list[np.ndarray], big_endian: bool, pad: bool = True) -> None:
        """The concatenation of ``parts``, zero-padded so that reads may run a little past
        the last record (``pad=False``: a single part already padded, used as is)."""
        if not pad and len(parts) == 1 and len(parts[0]) % 8 == 0:
            self._views(parts[0], big_endian)
            return
        total = sum(len(p) for p in parts)
        data = np.empty(total + (-total) % 8 + 16, dtype=np.uint8)
        at = 0
        for p in parts:
            data[at : at + len(p)] = p
            at += len(p)
        data[at:] = 0
        self._views(data, big_endian)

    def _views(self, data: np.ndarray, big_endian: bool) -> None:
        self.u8 = data
        self.e = ">" if big_endian else "<"
        self.big = big_endian
        self.u16 = data.view(self.e + "u2")
        self.u32 = data.view(self.e + "u4")
        self._any: dict[int, np.ndarray] = {}

    def _at_any(self, size: int) -> np.ndarray:
        """A view of ``size``-byte integers starting at every byte (stride 1): one gather
        reads a field at any address (x86 and arm64 load unaligned words at full speed)."""
        v = self._any.get(size)
        if v is None:
            data = self.u8
            v = self._any[size] = np.ndarray(
                shape=(len(data) - size + 1,),
                dtype=f"{self.e}u{size}",
                buffer=data,
                strides=(1,),
            )
        return v

    def uint(self, addr: np.ndarray, size: int, aligned: bool | None = None) -> np.ndarray:
        """Unsigned values of ``size`` bytes at byte addresses ``addr``.

        ``aligned``: whether every address is a multiple of ``min(size, 4)`` (records are
        4-byte aligned, so callers know it from the field offset); None: check.
        """
        if size == 1:
            return self.u8[addr]
        if size in (2, 4, 8):
            if aligned is None:
                aligned = not (addr & (min(size, 4) - 1)).any()
            if aligned and size == 2:
                return self.u16[addr >> 1]
            if aligned and size == 4:
                return self.u32[addr >> 2]
            return self._at_any(size)[addr]
        # an odd size: byte by byte (the first 8 bytes of a bigger field)
        size = min(size, 8)
        out = np.zeros(len(addr), dtype=_U64)
        for k in range(size):
            byte = self.u8[addr + k].astype(_U64)
            shift = (size - 1 - k) if self.big else k
            out |= byte << _U64(8 * shift)
        if size in (1, 2, 4):
            return out.astype(f"u{size}")
        return out

    def value(self, addr: np.ndarray, size: int, signed: bool, aligned: bool | None = None):
        """Field values as numpy integers of the field's width and signedness."""
        v = self.uint(addr, size, aligned)
        if signed:
            v = v.view(v.dtype.str.replace("u", "i"))  # keeps the byte order
        return v.astype(v.dtype.newbyteorder("="), copy=False)


# -- common columns ------------------------------------------------------------------------


def flag_tables(lazy_resched: bool) -> tuple[np.ndarray, ...]:
    """Lookup tables for the 5-character latency flags, as the kernel's
    ``trace_print_lat_fmt`` prints them in tracefs text (and trace-cmd >= 3.3).

    ``common_flags`` bits: 0x01 IRQS_OFF, 0x02 NEED_RESCHED_LAZY (Linux >= 6.13; before,
    IRQS_NOSUPPORT), 0x04 NEED_RESCHED, 0x08 HARDIRQ, 0x10 SOFTIRQ, 0x20 PREEMPT_RESCHED,
    0x40 NMI, 0x80 BH_OFF. The characters:

    1. irqs-off: ``D`` irqs and BH off, ``d`` irqs off, ``b`` BH off, ``X`` no irq-flags
       support (old kernels), else ``.``;
    2. need-resched: ``B`` need+lazy+preempt, ``N`` need+preempt, ``L`` lazy+preempt,
       ``b`` need+lazy, ``n`` need, ``p`` preempt, ``l`` lazy, else ``.``;
    3. hard/softirq: ``Z`` NMI in hardirq, ``z`` NMI, ``H`` hardirq in softirq, ``h``,
       ``s``, else ``.``;
    4. preempt depth: ``common_preempt_count & 0xf`` in hex, ``.`` for 0;
    5. migrate-disable depth: ``common_preempt_count >> 4`` in hex, ``.`` for 0.

    >>> t = flag_tables(True)
    >>> "".join(chr(t[i][x]) for i, x in enumerate((0x01, 0x01, 0x08, 0x12, 0x12)))
    'd.h21'
    """
    f = np.arange(256)
    irqs_off, lazy, resched, hard, soft, preempt, nmi, bh = ((f >> b & 1) == 1 for b in range(8))
    if not lazy_resched:
        nosupport, lazy = lazy, np.zeros(256, dtype=bool)
    else:
        nosupport = np.zeros(256, dtype=bool)
    c = np.frombuffer
    a = np.select(
        [irqs_off & bh, irqs_off, bh, nosupport], [ord("D"), ord("d"), ord("b"), ord("X")], ord(".")
    )
    nr = np.select(
        [
            resched & lazy & preempt,
            resched & preempt,
            lazy & preempt,
            resched & lazy,
            resched,
            preempt,
            lazy,
        ],
        [ord(x) for x in "BNLbnpl"],
        ord("."),
    )
    hs = np.select([nmi & hard, nmi, hard & soft, hard, soft], [ord(x) for x in "ZzHhs"], ord("."))
    hexd = c(b".123456789abcdef", dtype=np.uint8)
    pc = np.arange(256)
    return (
        a.astype(np.uint8),
        nr.astype(np.uint8),
        hs.astype(np.uint8),
        hexd[pc & 15],
        hexd[pc >> 4],
    )


class EnumLabels:
    """Labels as the categories of a polars ``Enum``: columns of them are built from
    integer codes, with no string per row.

    ``remap[i]`` is the category of ``labels[i]`` (distinct labels become one category).
    """

    def __init__(self, labels: list[str]) -> None:
        cats = list(dict.fromkeys(labels))
        at = {c: i for i, c in enumerate(cats)}
        self.dtype = pl.Enum(cats)
        self.cats = pl.Series(cats, dtype=self.dtype)
        self.code = self.cats.to_physical().to_numpy().dtype  # uint8, uint16 or uint32
        self.remap = np.array([at[x] for x in labels], dtype=self.code)

    def column(self, name: str, codes: np.ndarray) -> pl.Series:
        """The column of the categories ``codes`` (not label indices: see ``remap``)."""
        if _FROM_CODES and len(codes) >= _FROM_CODES_ROWS and len(self.remap) <= 256:
            # casting to the Enum costs O(categories) per call, gathering O(rows)
            return pl.Series(name, codes.astype(self.code, copy=False)).cat.to(self.dtype)
        return self.cats.gather(codes).alias(name)


#: polars >= 1.32 builds Enum columns straight from their codes; older ones gather labels
_FROM_CODES = hasattr(pl.Series(dtype=pl.Enum([])).cat, "to")
_FROM_CODES_ROWS = 4096  # fewer rows: gathering is as cheap


def enum_column(name: str, labels: list, codes: np.ndarray) -> pl.Series:
    """``labels[codes]`` as a polars ``Enum`` column (the distinct labels as categories, no
    string per row). ``None`` labels give nulls."""
    if None in labels:
        cats = list(dict.fromkeys(x for x in labels if x is not None))
        return pl.Series(name, labels, dtype=pl.Enum(cats)).gather(codes)
    enum = EnumLabels(labels)
    return enum.column(name, np.take(enum.remap, codes))


def flag_codes(key: np.ndarray, tables) -> tuple[EnumLabels, np.ndarray]:
    """The ``flags`` strings (``d..1.``) of ``key = common_flags << 8 | preempt_count``:
    their Enum, and each key's category (``enum.column("flags", codes)`` is the column)."""
    present = np.flatnonzero(np.bincount(key, minlength=1 << 16))
    f, p = present >> 8, present & 0xFF
    chars = np.stack([tables[0][f], tables[1][f], tables[2][f], tables[3][p], tables[4][p]], axis=1)
    enum = EnumLabels([bytes(row).decode("ascii") for row in chars.tolist()])
    code = np.zeros(1 << 16, dtype=enum.code)
    code[present] = enum.remap
    return enum, np.take(code, key)


class CommMap:
    """pid -> comm from the file's saved cmdlines, as trace-cmd prints it: ``<idle>`` for
    pid 0, ``<...>`` for a pid the file does not name."""

    def __init__(self, cmdlines: dict[int, str]) -> None:
        items = sorted((p, c) for p, c in cmdlines.items() if 0 < p < (1 << 23))
        self.enum = EnumLabels([c for _, c in items] + ["<...>", "<idle>"])
        remap = self.enum.remap
        unknown = len(items)
        top = (items[-1][0] + 1) if items else 1
        # a dense table (pid_max is at most 4M) of categories; its last slot answers every
        # other pid
        self.table = np.full(top + 1, remap[unknown], dtype=remap.dtype)
        self.table[[p for p, _ in items]] = remap[:unknown]
        self.table[0] = remap[unknown + 1]
        self.top = top

    def __call__(self, pid: np.ndarray) -> pl.Series:
        idx = np.minimum(pid.view(np.uint32), np.uint32(self.top))  # negative pids: unknown
        return self.enum.column("comm", np.take(self.table, idx))


# -- per-event decoders ----------------------------------------------------------------------


@dataclass
class _Column:
    name: str
    type: pa.DataType
    source: str  # "field", "derived", "decoded", "null"
    fdef: FieldDef | None = None
    kind: str = ""  # conversion kind for "field" / "derived"
    node: expr.Node | None = None  # expression to evaluate (None: the raw field)
    table: tuple = ()  # symbolic: ((value, label), ...); flags: (delim, entries, else)
    suffix: tuple | None = None  # (mask, text): the label ends with text where field & mask


@dataclass
class EventDecoder:
    """How to decode one event type of one file."""

    schema: EventSchema
    min_size: int
    columns: list[_Column] = field(default_factory=list)
    flexible: set[str] = field(default_factory=set)  # ``char buf[]`` inline tail arrays
    bprint: bool = False  # ftrace's bprint: ``buf`` is formatted with the printk formats
    common: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (off, size)
    # what the core decodes: (field, string?) and the specs ``decode_batch`` takes
    core_fields: list[tuple[FieldDef, bool]] = field(default_factory=list)
    core_specs: list[tuple[int, int, int, bool]] = field(default_factory=list)

    @property
    def sized(self) -> bool:
        """Whether a column needs the records' lengths (string and array fields)."""
        return any(
            c.fdef is not None and not _is_number(c.fdef, self)
            for c in self.columns
            if c.source == "field"
        )


def _flexible_fields(text: str) -> set[str]:
    """Names of ``type name[]`` fields declared without ``__data_loc``: inline arrays that
    run to the end of the record (ftrace's ``print.buf``)."""
    out = set()
    for m in _FIELD_LINE.finditer(text):
        decl = m.group("decl").strip()
        if decl.startswith(("__data_loc", "__rel_loc")):
            continue
        mm = re.match(r".*?(\w+)\s*\[\s*\]$", decl)
        if mm:
            out.add(mm.group(1))
    return out


_OLD_FLEXIBLE = re.compile(r"(field:[^;\[\]]*?\w)(;\s*offset:\d+;\s*size:0;)")


def modern_spelling(text: str) -> str:
    """A format with old kernels' flexible arrays (``field:char buf; offset:16; size:0;``,
    the tail of ``print`` and ``bprint``) spelled as newer ones do (``char buf[]``), so
    that they are read as the bytes to the record's end, not as an integer."""
    return _OLD_FLEXIBLE.sub(r"\1[]\2", text)


def _print_args(text: str) -> list[str] | None:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("print fmt:"):
            try:
                return _split_fmt(s[len("print fmt:") :])[1]
            except (ValueError, IndexError):
                return None
    return None


def _entries(args: list[str]) -> list[tuple[int, str]]:
    """``{value, "label"}`` table entries; those whose value cannot be evaluated are skipped."""
    out = []
    for a in args:
        a = a.strip()
        if not (a.startswith("{") and a.endswith("}")):
            continue
        parts = split_args(a[1:-1])
        if len(parts) != 2 or not parts[1].strip().startswith('"'):
            continue
        try:
            value = expr.evaluate(expr.parse(parts[0]), {})
        except expr.Unsupported:
            continue
        out.append((int(value), _unquote(parts[1])))
    return out


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1]
    return s.replace('\\"', '"').replace("\\\\", "\\")


def _ternary_else(arg: str) -> tuple[str | None, str | None]:
    """For ``cond ? X : "text"``: (cond, text); else (None, None)."""
    depth, quote, q = 0, False, -1
    for j, ch in enumerate(arg):
        if quote:
            if ch == '"' and arg[j - 1] != "\\":
                quote = False
            continue
        if ch == '"':
            quote = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch == "?" and q < 0:
            q = j
        elif depth == 0 and ch == ":" and q >= 0:
            tail = arg[j + 1 :].strip()
            if tail.startswith('"') and tail.endswith('"'):
                return arg[:q].strip(), _unquote(tail)
            return None, None
    return None, None


def build_decoder(schema: EventSchema, text: str) -> EventDecoder:
    """Plan the columns of one event from its parsed schema and its format text."""
    flexible = _flexible_fields(text)
    if schema.is_stack:  # ``caller[8]``, but the record holds as many frames as it has
        flexible |= {f.name for f in schema.fields if f.name == "caller"}
    fields = {f.name: f for f in schema.fields}
    fixed_end = [f.offset + (0 if f.name in flexible else f.size) for f in schema.fields]
    dec = EventDecoder(schema=schema, min_size=max(fixed_end, default=8), flexible=flexible)
    dec.bprint = (
        schema.name == "bprint"
        and schema.system in ("ftrace", "")
        and {"fmt", "buf"} <= set(fields)
        and "buf" in flexible
    )
    for name in ("common_type", "common_flags", "common_preempt_count", "common_pid"):
        f = fields.get(name)
        if f is not None:
            dec.common[name] = (f.offset, f.size)
    args = _print_args(text) or []
    convs = schema.print_fmt.conversions if schema.print_fmt else []
    by_field: dict[str, tuple[Conversion, str]] = {}
    derived: dict[str, tuple[Conversion, str]] = {}
    for i, conv in enumerate(convs):
        arg = args[i] if i < len(args) else ""
        if conv.derived:
            derived[column_for(conv.column)] = (conv, arg)
        else:
            by_field.setdefault(conv.column, (conv, arg))
    col_of_field = {
        column_for(f.name): f for f in schema.fields if not f.name.startswith("common_")
    }
    raw_of = {raw_column(f.name): f for f in schema.fields if not f.name.startswith("common_")}
    decoded = dict(DECODED.get(schema.name, []))
    for name, typ in schema.columns():
        f = col_of_field.get(name)
        if f is not None:
            col = _Column(name, typ, "field", fdef=f)
            conv_arg = by_field.get(f.name)
            if conv_arg is not None:
                conv, arg = conv_arg
                col.kind = conv.kind
                col.suffix = conv.suffix
                _plan_conversion(col, conv, arg, fields)
            dec.columns.append(col)
        elif name in raw_of:  # the number behind a label: the field itself
            dec.columns.append(_Column(name, typ, "raw", fdef=raw_of[name]))
        elif name in derived:
            conv, arg = derived[name]
            col = _Column(name, typ, "derived", kind=conv.kind)
            _plan_conversion(col, conv, arg, fields)
            dec.columns.append(col)
        elif name in decoded:
            dec.columns.append(_Column(name, typ, "decoded"))
        else:
            dec.columns.append(_Column(name, typ, "null"))
    _plan_core(dec)
    return dec


def _plan_core(dec: EventDecoder) -> None:
    """The fields the core decodes for ``dec``: every number field (read in one pass) and
    the string fields of its columns, as ``decode_batch`` specs ``(kind, offset, size,
    signed)``: kind 0 a number, 1 a char array, 2 ``__data_loc``, 3 ``__rel_loc``, 4 an
    inline tail array."""
    strings = {c.fdef.name for c in dec.columns if c.source == "field" and c.fdef is not None}
    for f in dec.schema.fields:
        if _is_number(f, dec):
            dec.core_fields.append((f, False))
            dec.core_specs.append((0, f.offset, f.size, f.signed))
        elif f.is_string and f.name in strings:
            if f.name in dec.flexible:
                kind = 4
            elif f.dynamic is not None:
                kind = 3 if f.dynamic == "rel_loc" else 2
            else:
                kind = 1
            dec.core_fields.append((f, True))
            dec.core_specs.append((kind, f.offset, f.size, False))


def _parse_or_none(text: str, fields: dict[str, FieldDef]) -> expr.Node | None:
    try:
        node = expr.parse(text)
    except expr.Unsupported:
        return None
    if not expr.fields_of(node) <= set(fields):
        return None
    return node


def _plan_conversion(col: _Column, conv, arg: str, fields: dict[str, FieldDef]) -> None:
    if conv.kind == "symbolic":
        inner = call_args(arg, "__print_symbolic")
        if inner:
            col.node = _parse_or_none(inner[0], fields)
            col.table = tuple(_entries(inner[1:]))
        return
    if conv.kind == "flags":
        inner = call_args(arg, "__print_flags")
        if inner and len(inner) >= 2:
            col.node = _parse_or_none(inner[0], fields)
            cond, other = _ternary_else(arg)
            cond_node = _parse_or_none(cond, fields) if cond else None
            col.table = (_unquote(inner[1]), tuple(_entries(inner[2:])), cond_node, other)
        return
    if conv.kind == "bool":
        cond = arg.split("?", 1)[0] if "?" in arg else arg
        col.node = _parse_or_none(cond, fields)
        return
    if conv.kind == "str":
        return
    node = _parse_or_none(arg, fields) if arg else None
    if node is not None and node.op == "field" and col.source == "field":
        node = None  # the raw field itself
    col.node = node


def render_flags(value: int, delim: str, entries: tuple[tuple[int, str], ...]) -> str:
    """``__print_flags``: names of the table entries whose bits are all set, in table order,
    then any leftover bits in hex (``0x...``), joined by ``delim``.

    >>> render_flags(0x5, "|", ((1, "A"), (4, "C")))
    'A|C'
    >>> render_flags(0x9, "|", ((1, "A"),))
    'A|0x8'
    """
    parts = []
    for mask, name in entries:
        if mask and (value & mask) == mask:
            parts.append(name)
            value &= ~mask
    if value:
        parts.append(f"0x{value:x}")
    return delim.join(parts)


def _is_number(f: FieldDef, dec: EventDecoder) -> bool:
    return not (f.is_string or f.array_len is not None or f.dynamic or f.name in dec.flexible)


class _Records:
    """The records of one event type in a batch, with the fields the core decoded
    (``rmapscope._native.decode_batch``: every number field in one pass over the records,
    the strings cut and escaped): a field may feed several columns and conditions."""

    def __init__(self, buf: Buffer, rec: np.ndarray, dec: EventDecoder, decoded: list) -> None:
        self.buf, self.rec, self.dec = buf, rec, dec
        self._values: dict[str, np.ndarray] = {}
        self.strings: dict[str, pa.Array] = {}
        n = len(rec)
        for (f, is_string), col in zip(dec.core_fields, decoded, strict=True):
            if is_string:
                offsets, data, validity, nulls = col
                self.strings[f.name] = pa.Array.from_buffers(
                    pa.large_string(),
                    n,
                    [None if validity is None else pa.py_buffer(validity),
                     pa.py_buffer(offsets), pa.py_buffer(data)],
                    null_count=nulls,
                )  # fmt: skip
                continue
            width = f.size if f.size in (1, 2, 4, 8) else (4 if not f.size else 8)
            self._values[f.name] = np.frombuffer(
                memoryview(col), dtype=f"<{'i' if f.signed else 'u'}{width}"
            )
        self._u64: dict[str, np.ndarray] = {}

    def number(self, f: FieldDef) -> np.ndarray:
        """The field's values as numpy integers of its width and signedness."""
        v = self._values.get(f.name)
        if v is None:  # not a number field of the event's format: read as one
            v = self._values[f.name] = self._read(f)
        return v

    def u64(self, f: FieldDef) -> np.ndarray:
        """The field's values as uint64 (signed fields sign-extended), for expressions."""
        v = self._u64.get(f.name)
        if v is None:
            v = self.number(f)
            if f.signed:
                v = v.astype(np.int64, copy=False)
            v = self._u64[f.name] = v.astype(_U64, copy=False)
        return v

    def _read(self, f: FieldDef) -> np.ndarray:
        size = f.size if f.size else 4
        aligned = f.offset % min(size, 4) == 0  # records start 4-byte aligned
        return self.buf.value(self.rec + f.offset, size, f.signed, aligned)


class Decoder:
    """Decodes the records of each event type of one file into typed columns."""

    def __init__(self, big_endian: bool, printk: dict[int, str] | None = None) -> None:
        self.big = big_endian
        self.printk = printk or {}  # bprint format strings by address

    @staticmethod
    def _u64_values(recs: _Records, dec: EventDecoder, node: expr.Node) -> dict:
        fields = {f.name: f for f in dec.schema.fields}
        out = {}
        for name in expr.fields_of(node):
            f = fields[name]
            if not _is_number(f, dec):
                raise expr.Unsupported(f"{name} is not a number")
            out[name] = recs.u64(f)
        return out

    def columns(
        self,
        buf: Buffer,
        rec: np.ndarray,
        rec_len: np.ndarray | None,
        dec: EventDecoder,
        decoded: list,
    ) -> dict[str, pl.Series]:
        """The event's own columns for records at ``rec`` (byte offsets into ``buf``), from
        the fields the core decoded (``decoded``, in ``dec.core_fields`` order).

        ``rec_len`` (the records' lengths) may be None when ``dec`` has no sized fields.
        """
        out: dict[str, pl.Series] = {}
        n = len(rec)
        recs = _Records(buf, rec, dec, decoded)
        for col in dec.columns:
            if col.source == "decoded":
                continue
            try:
                value = self._column(recs, rec_len, dec, col)
            except expr.Unsupported:
                value = None
            out[col.name] = to_series(col.name, value, col.type, n)
        return out

    def _column(self, recs: _Records, rec_len, dec, col: _Column):
        """A numpy array, a pyarrow array, a polars Series, or None (all null)."""
        buf, rec = recs.buf, recs.rec
        n = len(rec)
        f = col.fdef
        if col.source == "null" or (col.kind == "flags" and not col.table):
            return None
        if col.source == "raw":
            assert f is not None  # a raw column has its field
            return recs.u64(f).view(np.int64) if _is_number(f, dec) else None
        if col.kind in ("symbolic", "flags", "bool") or (col.source == "derived" and col.node):
            if col.node is None:
                if f is None or f.is_string or f.array_len is not None or f.dynamic:
                    return None
                values = recs.u64(f)
            else:
                values = expr.evaluate(col.node, self._u64_values(recs, dec, col.node))
                values = np.broadcast_to(np.asarray(values, dtype=_U64), (n,))
            if col.kind in ("symbolic", "flags") and col.suffix is not None and f is not None:
                return self._with_suffix(recs, col, f, values, dec)
            if col.kind == "symbolic":
                return _symbolic(values, col.table)
            if col.kind == "flags":
                cond = col.table[2]
                cond_values = self._u64_values(recs, dec, cond) if cond else None
                # ``(REC->x) ? __print_flags(REC->x, ...)``: the condition is the value
                same = (
                    cond is not None
                    and cond.op == "field"
                    and (
                        cond == col.node
                        or (col.node is None and f is not None and cond.name == f.name)
                    )
                )
                return _flags(values, col.table, cond_values, same)
            if col.kind == "bool":
                return values != 0
            return values
        if col.source == "derived":
            return None
        assert f is not None  # what is left is a "field" column, which has its FieldDef
        # a field: strings, arrays, or numbers (possibly through a print-fmt expression)
        if f.is_string:
            return recs.strings[f.name]
        if pa.types.is_list(col.type):
            return self._frames(buf, rec, rec_len, f, user=dec.schema.name == "user_stack")
        if dec.bprint and f.name == "buf":
            return self._bprint(recs, rec_len, dec, f)
        if f.array_len is not None or f.dynamic is not None or f.name in dec.flexible:
            return self._array_text(buf, rec, rec_len, dec, f)
        if col.node is not None:
            values = expr.evaluate(col.node, self._u64_values(recs, dec, col.node))
            return np.broadcast_to(np.asarray(values, dtype=_U64), (n,))
        return recs.number(f)

    def _bounds(self, buf, rec, rec_len, dec, f) -> tuple[np.ndarray, np.ndarray]:
        """(start address, length) of an array field; length -1 where it is out of bounds."""
        if f.name in dec.flexible:
            start = rec + f.offset
            length = rec_len.astype(np.int64) - f.offset
        elif f.dynamic is not None:
            loc = buf.uint(rec + f.offset, 4, f.offset % 4 == 0).astype(np.int64)
            off = loc & 0xFFFF
            length = loc >> 16
            if f.dynamic == "rel_loc":
                off = off + f.offset + f.size
            start = rec + off
            length = np.where(off + length <= rec_len, length, -1)
        else:
            start = rec + f.offset
            length = np.full(len(rec), f.size, dtype=np.int64)
            length = np.where(f.offset + f.size <= rec_len, length, -1)
        return start, np.where(length < 0, -1, length)

    def _with_suffix(self, recs: _Records, col: _Column, f: FieldDef, values, dec) -> pl.Series:
        """A label with its ``%s%s`` suffix (``R`` + ``+`` where ``prev_state & MASK``)."""
        mask, text = col.suffix or (None, "")
        plain = _Column(col.name, col.type, col.source, f, col.kind, col.node, col.table)
        label = self._column(recs, None, dec, plain)
        label = pl.Series(col.name, label).cast(pl.String)
        if mask is None:
            return label
        on = pl.Series((recs.u64(f) & _U64(mask)) != 0)
        return pl.select(pl.when(on).then(label + text).otherwise(label)).to_series()

    def _bprint(self, recs: _Records, rec_len: np.ndarray, dec: EventDecoder, f) -> pa.Array:
        """``trace_printk``'s text: the record's format (its ``fmt`` address looked up in the
        printk formats) applied to the packed arguments in ``buf``, as trace-cmd prints it."""
        fmt_field = next(x for x in dec.schema.fields if x.name == "fmt")
        addrs = recs.number(fmt_field).astype(_U64).tolist()
        long_size = fmt_field.size if fmt_field.size in (4, 8) else 8
        out = []
        for r, ln, addr in zip(recs.rec.tolist(), rec_len.tolist(), addrs, strict=True):
            args = recs.buf.u8[r + f.offset : r + max(ln, f.offset)].tobytes()
            text = format_bprint(self.printk.get(addr), addr, args, long_size, self.big)
            out.append(escape(text.encode("utf-8", "surrogateescape")))
        return pa.array(out, pa.string())

    @staticmethod
    def _frames(
        buf: Buffer, rec: np.ndarray, rec_len: np.ndarray, f: FieldDef, user: bool
    ) -> pa.Array:
        """A stack's ``caller``: every word from the field to the record's end, up to a
        ``ULONG_MAX`` terminator (old kernels), as trace-cmd prints them; for a ``user``
        stack (eight words, zero-filled) also up to the first 0, as the kernel's text stops
        there. ``list<uint64>``."""
        elem = f.size // f.array_len if f.array_len else f.size or 8
        elem = elem if elem in (4, 8) else 8
        count = np.maximum(rec_len.astype(np.int64) - f.offset, 0) // elem
        offsets = np.zeros(len(rec) + 1, dtype=np.int64)
        np.cumsum(count, out=offsets[1:])
        total = int(offsets[-1])
        row = np.repeat(np.arange(len(rec)), count)
        pos = np.arange(total, dtype=np.int64) - offsets[:-1][row]
        values = buf.uint(np.take(rec, row) + f.offset + pos * elem, elem).astype(_U64)
        end = np.array(count)
        end_mark = values == _U64((1 << (8 * elem)) - 1)
        stop = np.flatnonzero(end_mark | (values == 0) if user else end_mark)
        np.minimum.at(end, row[stop], pos[stop])
        if (end != count).any():
            keep = pos < end[row]
            values = values[keep]
            offsets[1:] = np.cumsum(end)
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))

    def _array_text(self, buf, rec, rec_len, dec, f) -> pa.Array:
        """Non-char arrays, as libtraceevent's raw dump prints them: ``ARRAY[01, 02, ...]``."""
        start, length = self._bounds(buf, rec, rec_len, dec, f)
        out: list[str | None] = []
        for s, ln in zip(start.tolist(), length.tolist(), strict=True):
            if ln < 0:
                out.append(None)
                continue
            data = buf.u8[s : s + ln].tobytes()
            out.append("ARRAY[" + ", ".join(f"{b:02x}" for b in data) + "]")
        return pa.array(out, pa.string())


_PL_TYPES: dict[pa.DataType, pl.DataType] = {}


def pl_type(typ: pa.DataType) -> pl.DataType:
    """The polars dtype of an arrow type (through ``pa.nulls``: ``pa.array`` imports
    pandas, a third of a second)."""
    t = _PL_TYPES.get(typ)
    if t is None:
        empty = pl.from_arrow(pa.nulls(0, type=typ))
        assert isinstance(empty, pl.Series)  # an arrow array becomes a Series
        t = _PL_TYPES[typ] = empty.dtype
    return t


def to_series(name: str, value, typ: pa.DataType, n: int) -> pl.Series:
    """A polars Series of ``typ`` from what a decoder produced."""
    dtype = pl_type(typ)
    if value is None:
        return pl.Series(name, [None], dtype=dtype).new_from_index(0, n)
    if isinstance(value, pl.Series):
        s = value.alias(name)
        if isinstance(s.dtype, pl.Enum) and dtype == pl.String:
            return s  # labels stay dictionary-encoded (the writer stores them as strings)
    elif isinstance(value, pa.Array):
        s = pl.Series(name, value)
    else:
        arr = np.asarray(value)
        if pa.types.is_boolean(typ):
            return pl.Series(name, arr.astype(bool))
        if pa.types.is_integer(typ):
            kind = "i" if pa.types.is_signed_integer(typ) else "u"
            return pl.Series(name, arr.astype(f"{kind}{typ.bit_width // 8}", copy=False))
        if pa.types.is_string(typ):
            return pl.Series(name, [str(int(v)) for v in arr.tolist()], dtype=pl.String)
        s = pl.Series(name, arr)
    return s if s.dtype == dtype else s.cast(dtype, strict=False)


def _labels(values: np.ndarray, label) -> pl.Series:
    """``label(value)`` for every element, computed once per distinct value (an ``Enum``
    of the labels)."""
    uniq, codes = _distinct(values)
    return enum_column("", [label(v) for v in uniq], codes)


def _distinct(values: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The distinct values (as Python ints) and each element's index among them."""
    uniq, codes = distinct(np.ascontiguousarray(values, dtype=_U64))
    return np.frombuffer(memoryview(uniq), dtype="<u8").tolist(), np.frombuffer(
        memoryview(codes), dtype="<u4"
    )


def _symbolic(values: np.ndarray, table: tuple) -> pl.Series:
    lookup: dict[int, str] = {}
    for v, label in table:
        lookup.setdefault(v & expr.MASK, label)
    return _labels(values, lambda v: lookup.get(v, f"0x{v:x}"))


def _flags(values: np.ndarray, table: tuple, cond_values, same: bool = False) -> pl.Series:
    """``__print_flags`` labels; ``same``: the ternary's condition is known to be the value
    itself (no need to compare them)."""
    delim, entries, cond_node, other = table
    if cond_node is None or other is None:
        return _labels(values, lambda v: render_flags(v, delim, entries))
    cond = expr.evaluate(cond_node, cond_values)
    if isinstance(cond, int):
        if not cond:
            return repeat_string(other, len(values))
        return _labels(values, lambda v: render_flags(v, delim, entries))
    cond = np.asarray(cond, dtype=_U64)
    if same or (cond_node.op == "field" and np.array_equal(cond, values)):
        # ``(REC->x) ? __print_flags(REC->x, ...) : "none"``: a zero value shows the else text
        return _labels(values, lambda v: render_flags(v, delim, entries) if v else other)
    on = cond != 0
    uniq, codes = _distinct(np.where(on, values, _U64(0)))
    labels = [render_flags(v, delim, entries) for v in uniq] + [other]
    return enum_column("", labels, np.where(on, codes, len(uniq)))


def repeat_string(text: str, n: int, name: str = "") -> pl.Series:
    """``n`` copies of ``text`` (an ``Enum`` of that one value)."""
    return _one(text).new_from_index(0, n).alias(name)


@functools.lru_cache(maxsize=1024)
def _one(text: str) -> pl.Series:
    return pl.Series("", [text], dtype=pl.Enum([text]))
