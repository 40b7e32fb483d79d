"""A tiny, safe evaluator for the C expressions of an event's ``print fmt`` arguments.

trace.dat stores each event's ``TP_printk`` arguments as C text, with enum and macro values
already substituted: ``__print_flags`` tables hold constant expressions such as
``(( gfp_t)((((1UL))) << (10)))``, and computed arguments read fields (``1UL << REC->shift``,
``REC->pfn != -1UL ? REC->pfn : 0``). This module parses such an expression into a small AST
and evaluates it either to a Python int (constants) or over numpy arrays of field values
(one element per event), with 64-bit unsigned wrap-around like the kernel's ``u64`` math.

Only literals, ``REC->field``, casts (dropped), unary ``- ~ !``, binary arithmetic, shifts,
bit operations, comparisons, ``&& ||`` and ``?:`` are understood. Anything else (function
calls, identifiers such as ``vmemmap_base``, strings, ``sizeof``) makes :func:`parse` raise
:class:`Unsupported`, and the caller treats the value as unknown.

>>> evaluate(parse("(( gfp_t)((((1UL))) << (10)))|((((1UL))) << (11))"), {})
3072
>>> evaluate(parse("~0x3"), {}) == (1 << 64) - 4
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rmapscope.errors import UnsupportedExpression as Unsupported

MASK = (1 << 64) - 1
_U64 = np.uint64


_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9a-fA-F]+|\d+)(?P<suffix>[uUlL]*)"
    r"|(?P<rec>REC\s*->\s*(?P<field>\w+))"
    r"|(?P<ident>[A-Za-z_]\w*)"
    r"|(?P<op><<|>>|<=|>=|==|!=|&&|\|\||->|[-+*/%&|^~!()?:<>,\[\]\.\"']))"
)


@dataclass(frozen=True)
class Node:
    """One AST node: ``op`` is ``num``, ``field``, a unary op (``neg``, ``~``, ``!``), a
    binary op, or ``?:``."""

    op: str
    args: tuple = ()
    value: int = 0
    name: str = ""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot read {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup  # the outermost group that matched last ("suffix" for numbers)
        if kind == "suffix":
            out.append(("num", m.group("num")))
        elif kind == "rec":
            out.append(("field", m.group("field")))
        elif kind is not None:
            out.append((kind, m.group(kind)))  # ident, op
    return out


_BINARY = {
    "||": 1,
    "&&": 2,
    "|": 3,
    "^": 4,
    "&": 5,
    "==": 6,
    "!=": 6,
    "<": 7,
    ">": 7,
    "<=": 7,
    ">=": 7,
    "<<": 8,
    ">>": 8,
    "+": 9,
    "-": 9,
    "*": 10,
    "/": 10,
    "%": 10,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0
        if len(self.toks) > 4000:
            raise Unsupported("expression too long")

    def peek(self, k: int = 0) -> tuple[str, str] | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise Unsupported("unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.take()
        if tok != ("op", op):
            raise Unsupported(f"expected {op!r}, got {tok[1]!r}")

    def parse(self) -> Node:
        node = self.ternary(0)
        tok = self.peek()
        if tok is not None:
            raise Unsupported(f"unexpected {tok[1]!r}")
        return node

    def ternary(self, depth: int) -> Node:
        if depth > 200:
            raise Unsupported("expression nested too deeply")
        cond = self.binary(0, depth)
        if self.peek() == ("op", "?"):
            self.take()
            then = self.ternary(depth + 1)
            self.expect(":")
            other = self.ternary(depth + 1)
            return Node("?:", (cond, then, other))
        return cond

    def binary(self, min_prec: int, depth: int) -> Node:
        left = self.unary(depth)
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _BINARY:
                return left
            prec = _BINARY[tok[1]]
            if prec < min_prec:
                return left
            self.take()
            right = self.binary(prec + 1, depth)
            left = Node(tok[1], (left, right))

    def _cast_length(self) -> int:
        """Tokens in a cast ``( type words [*...] )`` starting at the current ``(``, or 0."""
        j = self.i + 1
        idents: list[str] = []
        while j < len(self.toks):
            kind, text = self.toks[j]
            if kind == "ident":
                idents.append(text)
            elif (kind, text) == ("op", "*") and idents:
                pass
            elif (kind, text) == ("op", ")"):
                break
            else:
                return 0
            j += 1
        else:
            return 0
        if not idents:
            return 0
        nxt = self.toks[j + 1] if j + 1 < len(self.toks) else None
        if nxt is None or not (
            nxt[0] in ("num", "field", "ident") or nxt[1] in ("(", "-", "~", "!", "+")
        ):
            return 0
        # ``(words) operand`` can only be a cast here: plain identifiers cannot be evaluated.
        return j - self.i + 1

    def unary(self, depth: int) -> Node:
        if depth > 200:
            raise Unsupported("expression nested too deeply")
        if self.peek() == ("op", "("):
            n = self._cast_length()
            if n:
                self.i += n
                return self.unary(depth + 1)
        kind, text = self.take()
        if kind == "num":
            try:
                if text[:2] in ("0x", "0X"):
                    value = int(text, 16)
                elif len(text) > 1 and text.startswith("0"):
                    value = int(text, 8)
                else:
                    value = int(text)
            except ValueError:
                raise Unsupported(f"bad number {text!r}") from None
            return Node("num", value=value & MASK)
        if kind == "field":
            return Node("field", name=text)
        if kind == "op":
            if text == "(":
                inner = self.ternary(depth + 1)
                self.expect(")")
                return inner
            if text == "-":
                return Node("neg", (self.unary(depth + 1),))
            if text == "+":
                return self.unary(depth + 1)
            if text in ("~", "!"):
                return Node(text, (self.unary(depth + 1),))
        raise Unsupported(f"cannot evaluate {text!r}")


def parse(text: str) -> Node:
    """Parse a C expression; raises :class:`Unsupported` for anything not understood."""
    return _Parser(text).parse()


def fields_of(node: Node) -> set[str]:
    """The ``REC->`` fields an expression reads."""
    if node.op == "field":
        return {node.name}
    out: set[str] = set()
    for a in node.args:
        out |= fields_of(a)
    return out


def evaluate(node: Node, values: dict[str, np.ndarray]):
    """Evaluate ``node``: a Python int if it reads no fields, else a uint64 array.

    ``values`` maps field names to uint64 arrays (signed fields sign-extended first).
    Division by zero yields 0 (the kernel never prints such values).
    """
    v = _eval(node, values)
    if isinstance(v, np.ndarray) and v.dtype == np.bool_:
        return v.astype(_U64)
    return v


def _eval(node: Node, values: dict[str, np.ndarray]):
    """:func:`evaluate`, except that comparisons and logic give bool arrays (conditions
    need no uint64 copy)."""
    op = node.op
    if op == "num":
        return node.value
    if op == "field":
        try:
            return values[node.name]
        except KeyError:
            raise Unsupported(f"no field {node.name!r}") from None
    if op == "?:":
        cond, a, b = (_eval(x, values) for x in node.args)
        if not any(isinstance(x, np.ndarray) for x in (cond, a, b)):
            return a if cond else b
        if not (isinstance(cond, np.ndarray) and cond.dtype == np.bool_):
            cond = np.asarray(cond) != 0
        return np.where(cond, _arr(a), _arr(b))
    args = [_eval(x, values) for x in node.args]
    if not any(isinstance(x, np.ndarray) for x in args):
        return _scalar(op, args)
    return _vector(op, [_arr(a) for a in args])


def _arr(v) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v.astype(_U64, copy=False)
    return np.asarray(v & MASK, dtype=_U64)


def _scalar(op: str, a: list[int]) -> int:
    if op == "neg":
        return -a[0] & MASK
    if op == "~":
        return ~a[0] & MASK
    if op == "!":
        return int(not a[0])
    x, y = a
    if op in ("/", "%"):
        if y == 0:
            return 0
        return (x // y if op == "/" else x % y) & MASK
    if op in ("<<", ">>"):
        if y >= 64:
            return 0
        return (x << y if op == "<<" else x >> y) & MASK
    return {
        "+": lambda: (x + y) & MASK,
        "-": lambda: (x - y) & MASK,
        "*": lambda: (x * y) & MASK,
        "&": lambda: x & y,
        "|": lambda: x | y,
        "^": lambda: x ^ y,
        "==": lambda: int(x == y),
        "!=": lambda: int(x != y),
        "<": lambda: int(x < y),
        ">": lambda: int(x > y),
        "<=": lambda: int(x <= y),
        ">=": lambda: int(x >= y),
        "&&": lambda: int(bool(x) and bool(y)),
        "||": lambda: int(bool(x) or bool(y)),
    }[op]()


def _vector(op: str, a: list[np.ndarray]) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "neg":
            return (~a[0]) + _U64(1)
        if op == "~":
            return ~a[0]
        if op == "!":
            return a[0] == 0
        x, y = np.broadcast_arrays(*a)
        if op in ("/", "%"):
            safe = np.where(y == 0, _U64(1), y)
            r = x // safe if op == "/" else x % safe
            return np.where(y == 0, _U64(0), r)
        if op in ("<<", ">>"):
            big = y >= 64
            s = np.where(big, _U64(0), y)
            r = x << s if op == "<<" else x >> s
            return np.where(big, _U64(0), r)
        fn = {
            "+": np.add,
            "-": np.subtract,
            "*": np.multiply,
            "&": np.bitwise_and,
            "|": np.bitwise_or,
            "^": np.bitwise_xor,
        }.get(op)
        if fn is not None:
            return fn(x, y)
        cmp = {
            "==": np.equal,
            "!=": np.not_equal,
            "<": np.less,
            ">": np.greater,
            "<=": np.less_equal,
            ">=": np.greater_equal,
        }.get(op)
        if cmp is not None:
            return cmp(x, y)
        if op == "&&":
            return (x != 0) & (y != 0)
        if op == "||":
            return (x != 0) | (y != 0)
    raise Unsupported(f"operator {op!r}")
