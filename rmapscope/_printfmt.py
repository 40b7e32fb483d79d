"""Parse an event's ``print fmt`` line into conversions bound to its fields.

The kernel prints every tracepoint with ``TP_printk(fmt, args...)``; the ``format`` file
in tracefs (and in trace.dat) carries that string and the argument expressions. From it we
learn which text key prints which field (``nr_succeeded=%lu`` prints ``REC->succeeded``),
how (decimal, hex, symbolic table, flags, ``cond ? "a" : "b"``), and we derive a regex
that splits the printed text back into fields.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

_CONV_RE = re.compile(
    r"%([-+ #0]*)(\d+|\*)?(?:\.(\d+))?(hh|h|ll|l|z|L)?(?:([diuxXcso%])|(p)[SsFfBbKkMmRrUuhdIi]*)"
)
_REC_RE = re.compile(r"REC->(\w+)")
_KEY_RE = re.compile(r"(?<!\w)([A-Za-z_]\w*)(?:=|\s)(?:0x)?$")
_SUFFIX_RE = re.compile(r'(.+?)\?\s*"((?:[^"\\]|\\.)+)"\s*:\s*""\s*', re.S)
_SYMBOL_RE = re.compile(r"\{\s*([^{},]+?)\s*,\s*\"((?:[^\"\\]|\\.)*)\"\s*\}")


@dataclass(frozen=True)
class Conversion:
    """One ``%`` conversion of the print fmt and what it prints.

    ``column`` is the field it prints (or a derived name for a computed value such as
    ``page=%p``); ``kind`` is one of ``int``, ``hex``, ``str``, ``ptr``, ``symbolic``,
    ``flags``, ``bool``. ``choices`` maps printed text to a value for ``bool`` conversions,
    ``table`` maps numbers to labels for ``symbolic`` and ``flags`` ones (entries whose
    value is no constant expression left out).
    """

    column: str
    kind: str
    spec: str
    derived: bool = False
    choices: tuple[tuple[str, bool], ...] = ()
    table: tuple[tuple[int, str], ...] = ()
    #: ``flags``: the separator of the names
    delim: str = ""
    #: ``cond ? __print_flags(...) : "R"``: the text printed when ``cond`` is 0
    other: str | None = None
    #: ``%s%s`` of ``__print_flags(REC->x ...), REC->x & MASK ? "+" : ""``: the second
    #: ``%s`` belongs to the label, ``(MASK, "+")`` (MASK None when it cannot be evaluated)
    suffix: tuple[int | None, str] | None = None


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


_MASK = (1 << 64) - 1
_NAMED_CAST = re.compile(
    r"\(\s*(?:(?:const|unsigned|signed|struct|enum)\s+)*[A-Za-z_]\w*(?:\s+[A-Za-z_]\w*)*\s*\**\s*\)"
)
_OPS = {
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def const_value(text: str) -> int | None:
    """The value of a C constant expression of a format's table (``0x40``,
    ``((gfp_t)(0x400u|0x800u))``, ``1UL << 3``) as an unsigned 64-bit int; None when it is
    not one (it names a field, a function, an enum the kernel did not substitute).

    >>> const_value("(unsigned long)(((gfp_t)(0x400u|0x800u)) | ((gfp_t)0x40u))")
    3136
    >>> const_value("REC->x") is None
    True
    """
    t = _NAMED_CAST.sub("", text)
    t = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", t).strip()
    try:
        node = ast.parse(t, mode="eval").body
    except (SyntaxError, ValueError):
        return None

    def ev(n: ast.AST) -> int:
        if isinstance(n, ast.Constant) and type(n.value) is int:
            return n.value
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Invert | ast.USub | ast.UAdd):
            v = ev(n.operand)
            return ~v if isinstance(n.op, ast.Invert) else -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            right = ev(n.right)
            if isinstance(n.op, ast.LShift | ast.RShift) and not 0 <= right <= 64:
                raise ValueError("shift")
            return _OPS[type(n.op)](ev(n.left), right) & _MASK
        raise ValueError("not a constant")

    try:
        return ev(node) & _MASK
    except (ValueError, RecursionError):
        return None


def call_args(expr: str, name: str) -> list[str] | None:
    """The arguments of the first ``name(...)`` call in ``expr``."""
    i = expr.find(name + "(")
    if i < 0:
        return None
    depth, quote = 0, False
    start = i + len(name)
    for j in range(start, len(expr)):
        ch = expr[j]
        if quote:
            if ch == '"' and expr[j - 1] != "\\":
                quote = False
            continue
        if ch == '"':
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return split_args(expr[start + 1 : j])
    return None


def _table(args: list[str]) -> tuple[tuple[int, str], ...]:
    """``{value, "label"}`` entries whose value is a constant expression."""
    out = []
    for a in args:
        m = re.fullmatch(r"\{\s*(.+?)\s*,\s*\"((?:[^\"\\]|\\.)*)\"\s*\}", a.strip(), re.S)
        if m and (v := const_value(m.group(1))) is not None:
            out.append((v, m.group(2).replace('\\"', '"')))
    return tuple(out)


def _else_text(expr: str) -> str | None:
    """``cond ? X : "text"``: the text (quotes removed); None otherwise."""
    m = re.search(r':\s*"((?:[^"\\]|\\.)*)"\s*$', expr)
    return m.group(1) if m and "?" in expr else None


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
            (v, label)
            for k, label in _SYMBOL_RE.findall(e)
            if (v := _int_literal(k)) is not None or (v := const_value(k)) is not None
        )
        return "symbolic", m.group(1) if m else None, {"table": table, "other": _else_text(e)}
    if "__print_flags" in e:
        m = re.search(r"__print_flags\(\s*(?:\(\s*\w[^)]*\))?\s*REC->(\w+)", e)
        inner = call_args(e, "__print_flags") or []
        extra = {
            "table": _table(inner[2:]),
            "delim": inner[1].strip().strip('"') if len(inner) > 1 else "",
            "other": _else_text(e),
        }
        return "flags", m.group(1) if m else None, extra
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
    classified = [_classify(args[i], specs[i]) for i in range(len(specs))]
    # ``prev_state=%s%s``: a label, then ``REC->prev_state & MASK ? "+" : ""`` (preempted,
    # 4.14+): the second %s is the end of the label, not a value of its own
    suffixes: dict[int, tuple[int | None, str]] = {}
    i = 1
    while i < len(specs):
        kind, fld, _ = classified[i - 1]
        sm = _SUFFIX_RE.fullmatch(_strip_parens(args[i]))
        if (
            sm
            and specs[i].endswith("s")
            and not literals[i]
            and kind in ("flags", "symbolic")
            and fld
            and set(_REC_RE.findall(sm.group(1))) == {fld}
        ):
            mask = re.fullmatch(r"\(?\s*REC->\w+\s*\)?\s*&\s*(.+)", sm.group(1).strip())
            suffixes[i - 1] = (const_value(mask.group(1)) if mask else None, sm.group(2))
            del specs[i], classified[i], args[i], literals[i]
            continue
        i += 1
    # A conversion that prints a field itself is bound to it (the first one wins); a computed
    # value (page=%p from REC->pfn) gets a derived column named after its printed key.
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
                delim=extra.get("delim", ""),
                other=extra.get("other"),
                suffix=suffixes.get(i),
            )
        )
    return PrintFormat(fmt=fmt, literals=literals, conversions=convs)
