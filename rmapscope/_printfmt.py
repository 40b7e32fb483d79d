"""Parse an event's ``print fmt`` line into conversions bound to its fields.

The kernel prints every tracepoint with ``TP_printk(fmt, args...)``; the ``format`` file
in tracefs (and in trace.dat) carries that string and the argument expressions. From it we
learn which text key prints which field (``nr_succeeded=%lu`` prints ``REC->succeeded``),
how (decimal, hex, symbolic table, flags, ``cond ? "a" : "b"``), and we derive a regex
that splits the printed text back into fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_CONV_RE = re.compile(
    r"%([-+ #0]*)(\d+|\*)?(?:\.(\d+))?(hh|h|ll|l|z|L)?(?:([diuxXcso%])|(p)[SsFfBbKkMmRrUuhdIi]*)"
)
_REC_RE = re.compile(r"REC->(\w+)")
_KEY_RE = re.compile(r"(?<!\w)([A-Za-z_]\w*)(?:=|\s)(?:0x)?$")
_SYMBOL_RE = re.compile(r"\{\s*([^{},]+?)\s*,\s*\"((?:[^\"\\]|\\.)*)\"\s*\}")


@dataclass(frozen=True)
class Conversion:
    """One ``%`` conversion of the print fmt and what it prints.

    ``column`` is the field it prints (or a derived name for a computed value such as
    ``page=%p``); ``kind`` is one of ``int``, ``hex``, ``str``, ``ptr``, ``symbolic``,
    ``flags``, ``bool``. ``choices`` maps printed text to a value for ``bool`` conversions,
    ``table`` maps numbers to labels for ``symbolic`` ones.
    """

    column: str
    kind: str
    spec: str
    derived: bool = False
    choices: tuple[tuple[str, bool], ...] = ()
    table: tuple[tuple[int, str], ...] = ()


@dataclass
class PrintFormat:
    """A parsed print fmt: literal pieces interleaved with conversions."""

    fmt: str
    literals: list[str] = field(default_factory=list)  # len(conversions) + 1 pieces
    conversions: list[Conversion] = field(default_factory=list)

    def regex(self, rename: Callable[[str], str] = str) -> str:
        """A regex whose named groups (``rename(column)``) capture each conversion."""
        parts: list[str] = ["^"]
        n = len(self.conversions)
        for i, conv in enumerate(self.conversions):
            parts.append(_literal_regex(self.literals[i]))
            last = i == n - 1 and not self.literals[n].strip()
            parts.append(f"(?P<{rename(conv.column)}>{_value_regex(conv, last)})")
        parts.append(_literal_regex(self.literals[n]).rstrip())
        parts.append(r"\s*$")
        return "".join(parts)

    def keys(self, rename: Callable[[str], str] = str) -> dict[str, str]:
        """Map each printed key (``nr_succeeded``) to the column it fills (``succeeded``)."""
        out: dict[str, str] = {}
        for i, conv in enumerate(self.conversions):
            m = _KEY_RE.search(self.literals[i])
            if m:
                out[m.group(1)] = rename(conv.column)
        return out


def _literal_regex(text: str) -> str:
    out = []
    for ch in text:
        if ch == " ":
            out.append(r"\s*")
        else:
            out.append(re.escape(ch))
    s = "".join(out)
    while r"\s*\s*" in s:
        s = s.replace(r"\s*\s*", r"\s*")
    return s


def _value_regex(conv: Conversion, last: bool) -> str:
    if conv.kind == "bool":
        return "|".join(re.escape(text) for text, _ in conv.choices)
    if conv.kind == "int":
        return r"-?\d+"
    if conv.kind == "hex":
        return r"(?:0x)?[0-9a-fA-F]+"
    if conv.kind == "ptr":
        return r"[^\s,)]+"
    return ".*" if last else ".*?"


def split_args(text: str) -> list[str]:
    """Split a C argument list at top-level commas (parens, braces and strings respected)."""
    args, depth, cur, quote, esc = [], 0, [], False, False
    for ch in text:
        if quote:
            cur.append(ch)
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                quote = False
            continue
        if ch == '"':
            quote = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return args


def _split_fmt(line: str) -> tuple[str, list[str]]:
    """Split ``"fmt", arg, arg`` into the unescaped fmt string and the args."""
    line = line.strip()
    if not line.startswith('"'):
        raise ValueError("print fmt does not start with a string")
    i, out = 1, []
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == '"':
            break
        out.append(ch)
        i += 1
    rest = line[i + 1 :].strip()
    if rest.startswith(","):
        rest = rest[1:]
    return "".join(out), split_args(rest)


def _strip_parens(expr: str) -> str:
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, ch in enumerate(expr):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr
        expr = expr[1:-1].strip()
    return expr


# A C cast that keeps every bit of a field: to a pointer, or to a long or 64-bit type
# (``(unsigned long)``, ``(void *)``, ``(const char *)``, ``(u64)``). A narrowing cast
# (``(uint)(REC->lsn)`` of a 64-bit field) prints another value: not seen through.
_CAST_RE = re.compile(
    r"\(\s*(?:(?:const|volatile|struct|enum)\s+)*(?:\w+\s*)+\*+\s*\)"
    r"|\(\s*(?:(?:unsigned|signed)\s+)?long(?:\s+long)?(?:\s+int)?\s*\)"
    r"|\(\s*(?:__)?[us]64\s*\)|\(\s*(?:size_t|uintptr_t|unsigned\s+long\s+long)\s*\)"
)


def _strip_casts(expr: str) -> str:
    """``expr`` without its outer parentheses and the widening casts in front of a single
    operand: ``((unsigned long)(REC->x))`` and ``(void *)REC->ip`` are ``REC->x`` and
    ``REC->ip``, printed as the field itself. ``(int)REC->a + REC->b`` (not one operand)
    and ``((uint)(REC->x))`` (narrowing) keep their casts.

    >>> _strip_casts("((unsigned long)(REC->start))"), _strip_casts("(void *)REC->ip")
    ('REC->start', 'REC->ip')
    >>> _strip_casts("((uint)(REC->head_lsn))")
    '(uint)(REC->head_lsn)'
    """
    e = _strip_parens(expr)
    while m := _CAST_RE.match(e):
        operand = e[m.end() :].strip()
        inner = _strip_parens(operand)
        if not (re.fullmatch(r"REC->\w+", inner) or _CAST_RE.match(inner)):
            break
        e = inner
    return e


def _int_literal(text: str) -> int | None:
    text = re.sub(r"\(\s*(?:unsigned\s+)?\w+\s*\)", "", text).strip().rstrip("UuLl")
    try:
        return int(text, 0)
    except ValueError:
        return None


def _classify(expr: str, spec: str) -> tuple[str, str | None, dict]:
    """Return (kind, field or None, extras) for one argument expression."""
    e = _strip_casts(expr)
    conv = spec[-1]
    if "__print_symbolic" in e:
        m = re.search(r"__print_symbolic\(\s*(?:\(\s*\w[^)]*\))?\s*REC->(\w+)", e)
        table = tuple(
            (v, label) for k, label in _SYMBOL_RE.findall(e) if (v := _int_literal(k)) is not None
        )
        return "symbolic", m.group(1) if m else None, {"table": table}
    if "__print_flags" in e:
        m = re.search(r"__print_flags\(\s*(?:\(\s*\w[^)]*\))?\s*REC->(\w+)", e)
        return "flags", m.group(1) if m else None, {}
    m = re.fullmatch(r"REC->(\w+)\s*\?\s*\"([^\"]*)\"\s*:\s*\"([^\"]*)\"", e)
    if m:
        return (
            "bool",
            m.group(1),
            {"choices": ((m.group(2), True), (m.group(3), False)), "direct": True},
        )
    m = re.fullmatch(r"__get_(?:rel_)?str\(\s*(\w+)\s*\)", e)
    if m:
        return "str", m.group(1), {}
    if conv == "s":
        refs = set(_REC_RE.findall(e))
        return "str", refs.pop() if len(refs) == 1 else None, {}
    kind = {"x": "hex", "X": "hex", "p": "ptr", "c": "str", "o": "int"}.get(conv, "int")
    # ``REC->x`` or ``REC->x != -1UL ? REC->x : 0``: prints the field itself. Anything else
    # (``1UL << REC->defer_shift``, ``vmemmap_base + REC->pfn``) is a derived value.
    m = re.fullmatch(r"REC->(\w+)", e) or re.fullmatch(
        r"[^?]*\?\s*\(?\s*REC->(\w+)\s*\)?\s*:\s*[\w()*\s]+", e
    )
    if m:
        return kind, m.group(1), {"direct": True}
    return kind, None, {}


def parse_print_fmt(line: str) -> PrintFormat:
    """Parse the text after ``print fmt:`` into a :class:`PrintFormat`.

    >>> pf = parse_print_fmt('"addr=%lx, pte=%lx order=%d", REC->addr, REC->pte, REC->order')
    >>> [c.column for c in pf.conversions], pf.keys()["order"]
    (['addr', 'pte', 'order'], 'order')
    """
    fmt, args = _split_fmt(line)
    literals: list[str] = []
    specs: list[str] = []
    pos = 0
    for m in _CONV_RE.finditer(fmt):
        if m.group(5) == "%":
            continue
        literals.append(fmt[pos : m.start()].replace("%%", "%"))
        specs.append(m.group(0) if m.group(5) else m.group(0)[: m.group(0).index("p") + 1])
        pos = m.end()
    literals.append(fmt[pos:].replace("%%", "%"))
    if len(args) < len(specs):
        raise ValueError(f"print fmt has {len(specs)} conversions but {len(args)} arguments")
    # A conversion that prints a field itself is bound to it (the first one wins); a computed
    # value (page=%p from REC->pfn) gets a derived column named after its printed key.
    classified = [_classify(args[i], specs[i]) for i in range(len(specs))]
    bound: set[str] = set()
    columns: list[str | None] = [None] * len(specs)
    for i in range(len(specs)):
        fld = classified[i][1]
        if fld and fld not in bound:
            columns[i] = fld
            bound.add(fld)
    convs: list[Conversion] = []
    used: set[str] = set(bound)
    for i, spec in enumerate(specs):
        kind, _, extra = classified[i]
        col = columns[i]
        derived = col is None
        if col is None:
            key = _KEY_RE.search(literals[i])
            base = key.group(1) if key else f"arg{i}"
            col = base
            n = 2
            while col in used:
                col = f"{base}_{n}"
                n += 1
            used.add(col)
        convs.append(
            Conversion(
                column=col,
                kind=kind,
                spec=spec,
                derived=derived,
                choices=extra.get("choices", ()),
                table=extra.get("table", ()),
            )
        )
    return PrintFormat(fmt=fmt, literals=literals, conversions=convs)
