"""The probe events of the contract (``data/probes``) in a trace.dat: kprobe, kretprobe and
fprobe formats, decoded into the same ``probe_<name>`` tables the text readers make.

A probe's format has ``__probe_ip`` (entry: the probed address) or ``__probe_func`` and
``__probe_ret_ip`` (return: the function and the address returned to), then one field per
fetcharg. The text prints those addresses as ``(func+0x0/0x310)`` and
``(caller+0x4a/0x120 <- func)`` with the kernel's symbols: here they are resolved with the
file's kallsyms (trace-cmd records ``/proc/kallsyms``), the symbol whose address is the
highest at or below the address, the first of its aliases, as the kernel's ``%pS`` does.
Without kallsyms ``func`` and ``caller`` are null (the text readers' value for a probe line
printed with raw addresses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from rmapscope.catalog import PROBES

from ._decode import Buffer

__all__ = ["ProbeFormat", "Symbols", "probe_columns", "probe_format"]

_FIELD = re.compile(r"field:[^;]*?\b(\w+)(?:\[\d*\])?;\s*offset:(\d+);\s*size:(\d+);")


@dataclass(frozen=True)
class ProbeFormat:
    """Where a probe event's addresses and keys are in its records."""

    name: str
    ip: tuple[int, int] | None  # (offset, size) of __probe_ip (entry probes)
    func: tuple[int, int] | None  # __probe_func (return probes)
    ret_ip: tuple[int, int] | None  # __probe_ret_ip (return probes)
    keys: dict[str, tuple[int, int]]  # key -> (offset, size); keys the format lacks are null

    @property
    def min_size(self) -> int:
        """Bytes a record needs for every field."""
        spans = [f for f in (self.ip, self.func, self.ret_ip, *self.keys.values()) if f]
        return max((off + size for off, size in spans), default=0)


def probe_format(name: str, text: str) -> ProbeFormat | None:
    """The layout of ``text`` if it is a probe event of the contract named ``name`` (any
    other event, a tracepoint of the same name included: None)."""
    if name not in PROBES:
        return None
    fields = {
        m.group(1): (int(m.group(2)), int(m.group(3)))
        for m in _FIELD.finditer(text)
        if int(m.group(3)) in (1, 2, 4, 8)
    }
    entry = "__probe_ip" in fields
    ret = "__probe_func" in fields and "__probe_ret_ip" in fields
    if entry == ret:
        return None
    keys = {k: fields[k] for k in PROBES[name] if k in fields}
    if entry:
        return ProbeFormat(name, fields["__probe_ip"], None, None, keys)
    return ProbeFormat(name, None, fields["__probe_func"], fields["__probe_ret_ip"], keys)


class Symbols:
    """Addresses -> function names from ``/proc/kallsyms`` text (text symbols only)."""

    def __init__(self, kallsyms: bytes) -> None:
        addrs: list[int] = []
        names: list[str] = []
        for line in kallsyms.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW" and len(parts[1]) == 1:
                try:
                    addrs.append(int(parts[0], 16))
                except ValueError:
                    continue
                names.append(parts[2])
        a = np.array(addrs, dtype=np.uint64)
        order = np.argsort(a, kind="stable")
        a = a[order]
        # the first alias of each address (kallsyms' own order), as %pS prints
        first = np.ones(len(a), dtype=bool)
        first[1:] = a[1:] != a[:-1]
        self.addrs = a[first]
        self.names = pl.Series("name", [names[i] for i in order[first].tolist()], pl.String)

    def __bool__(self) -> bool:
        return len(self.addrs) > 0

    def lookup(self, addr: np.ndarray, name: str) -> pl.Series:
        """The function containing each address (null below the first symbol, or for 0)."""
        at = np.searchsorted(self.addrs, addr.astype(np.uint64), side="right").astype(np.int64)
        at -= 1
        known = (at >= 0) & (addr != 0)
        out = self.names.gather(np.where(known, at, 0)).alias(name)
        return out.scatter(np.flatnonzero(~known), None) if not known.all() else out


def probe_columns(
    buf: Buffer, rec: np.ndarray, fmt: ProbeFormat, symbols: Symbols
) -> dict[str, pl.Series]:
    """``func``, ``caller`` and the key columns (UInt64) of records ``rec`` of ``fmt``."""
    n = len(rec)

    def read(field: tuple[int, int]) -> np.ndarray:
        off, size = field
        return buf.uint(rec + off, size).astype(np.uint64)

    def names(field: tuple[int, int] | None, col: str) -> pl.Series:
        if field is None or not symbols:
            return pl.Series(col, [None] * n, pl.String)
        return symbols.lookup(read(field), col)

    cols = {
        "func": names(fmt.ip or fmt.func, "func"),
        "caller": names(fmt.ret_ip, "caller"),
    }
    for k in PROBES[fmt.name]:
        if k in fmt.keys:
            cols[k] = pl.Series(k, read(fmt.keys[k]), pl.UInt64)
        else:
            cols[k] = pl.Series(k, [None] * n, pl.UInt64)
    return cols
