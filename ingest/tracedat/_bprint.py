"""ftrace's ``bprint`` records (``trace_printk`` with arguments), formatted like trace-cmd.

A ``bprint`` record holds the address of its format string (``fmt``) and the arguments as
the kernel's ``vbin_printf`` packed them into ``buf``: integers of their C size, aligned to
it (8-byte values to 4), strings inline with their NUL, ``%p`` values as longs (``%ps``,
``%pS``, ...), other ``%p`` extensions already printed to an inline string. The format
strings are in the file's printk formats section (``0xaddr : "fmt"`` lines).
"""

from __future__ import annotations

import re
from typing import Literal

from rmapscope._printfmt import _split_fmt

_LINE = re.compile(r'^\s*(?:0x)?([0-9a-fA-F]+)\s*:\s*(".*")\s*$')
_SPEC = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d+))?(hh|h|ll|l|z|t|j|L|q)?([diouxXcsp%])")
_SIZES = {"hh": 1, "h": 2, "ll": 8, "L": 8, "q": 8, "j": 8}


def printk_formats(text: bytes) -> dict[int, str]:
    """Address -> format string of a printk formats section (the first entry wins)."""
    out: dict[int, str] = {}
    for line in text.decode("utf-8", "replace").splitlines():
        m = _LINE.match(line)
        if m:
            try:
                out.setdefault(int(m.group(1), 16), _split_fmt(m.group(2))[0])
            except ValueError:
                continue
    return out


def format_bprint(fmt: str | None, addr: int, args: bytes, long_size: int, big: bool) -> str:
    """The text ``trace_printk`` printed: ``fmt`` applied to the packed ``args``.

    Without the format, trace-cmd's ``(NO FORMAT FOUND at <addr>)``; arguments cut short
    leave the rest of the format as it is.

    >>> packed = b"\\xff\\xff\\xff\\xffab\\0\\0\\x10\\0\\0\\0\\0\\0\\0\\0"
    >>> format_bprint("n=%d s=%s x=%lx\\n", 0, packed, 8, False)
    'n=-1 s=ab x=10\\n'
    """
    if fmt is None:
        return f"(NO FORMAT FOUND at {addr:x})\n"
    order: Literal["big", "little"] = "big" if big else "little"
    out: list[str] = []
    pos = 0  # in args
    last = 0  # in fmt

    def number(size: int, signed: bool) -> int | None:
        nonlocal pos
        pos = (pos + min(size, 4) - 1) & ~(min(size, 4) - 1)
        if pos + size > len(args):
            return None
        v = int.from_bytes(args[pos : pos + size], order, signed=signed)
        pos += size
        return v

    for m in _SPEC.finditer(fmt):
        out.append(fmt[last : m.start()])
        last = m.end()
        flags, width, prec, length, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if width == "*":
            w = number(4, True)
            width = None if w is None else str(w)
        if prec == "*":
            p = number(4, True)
            prec = None if p is None else str(max(p, 0))
        spec = "%" + flags + (width or "") + (f".{prec}" if prec is not None else "")
        if conv == "s":
            end = args.find(b"\0", pos)
            end = len(args) if end < 0 else end
            text = args[pos:end].decode("utf-8", "surrogateescape")
            pos = end + 1
            out.append((spec + "s") % text)
            continue
        if conv == "p":
            ext = re.match(r"[A-Za-z0-9]*", fmt[last:])
            suffix = ext.group(0) if ext else ""
            last += len(suffix)
            if suffix[:1] and suffix[0] not in "SsFfxKe":  # printed by the kernel already
                end = args.find(b"\0", pos)
                end = len(args) if end < 0 else end
                out.append(args[pos:end].decode("utf-8", "surrogateescape"))
                pos = end + 1
                continue
            v = number(long_size, False)
            if v is None:
                out.append(fmt[m.start() :])
                return "".join(out)
            out.append(f"0x{v:x}")  # no kallsyms: the address, as trace-cmd prints it then
            continue
        size = long_size if length in ("l", "z", "t") else _SIZES.get(length or "", 4)
        if conv == "c":
            size = 1
        v = number(size, conv in "di")
        if v is None:
            out.append(fmt[m.start() :])
            return "".join(out)
        if conv == "c":
            out.append((spec + "s") % chr(v))
        else:
            out.append((spec + {"u": "d", "i": "d"}.get(conv, conv)) % v)
    out.append(fmt[last:])
    return "".join(out)
