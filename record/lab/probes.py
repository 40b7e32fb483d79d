"""The probe set of ``data/probes/kprobe_events`` made to load on one kernel.

Kernels whose probe events take BTF names (fprobe events with ``CONFIG_PROBE_EVENTS_BTF_ARGS``,
Linux >= 6.8: ``vma->vm_mm``) get the shipped lines as they are. Older ones (6.1) get the same
events as kprobes (``p:``/``r:``) whose fetchargs are ``+OFF($argN)`` dereferences, every
offset and argument number computed from that kernel's BTF: never written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from rmapscope.errors import LabError

from .btf import Btf, BtfError

__all__ = ["ProbeLine", "probe_set", "shipped_probes"]


@dataclass(frozen=True)
class ProbeLine:
    """One dynamic-event definition: its event name and the line written to tracefs."""

    event: str
    line: str


_DEF = re.compile(r"([fpr])\d*:(\S+)\s+(\S+)(.*)")


def shipped_probes() -> list[str]:
    """The definition lines of ``data/probes/kprobe_events`` (comments dropped)."""
    text = (resources.files("rmapscope.data") / "probes" / "kprobe_events").read_text()
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def supports_btf_args(version: tuple[int, int] | None, cfg: dict[str, str]) -> bool:
    """Whether the kernel's probe events resolve ``vma->vm_mm`` from BTF (fprobe events)."""
    if cfg:
        return cfg.get("CONFIG_FPROBE_EVENTS") == "y" and (
            cfg.get("CONFIG_PROBE_EVENTS_BTF_ARGS") == "y"
        )
    return version is not None and version >= (6, 8)


def _fetch(btf: Btf, func: str, expr: str) -> str:
    """``folio->mapping`` -> ``+24($arg1)`` for ``func`` from its BTF prototype."""
    if expr.startswith("$"):
        return expr
    name, *fields = expr.split("->")
    params = btf.params(func)
    names = [p for p, _ in params]
    if name not in names:
        raise BtfError(f"{func} has no parameter {name} (has {', '.join(names)})")
    index = names.index(name)
    out, tid = f"$arg{index + 1}", params[index][1]
    for f in fields:
        off, tid = btf.member(btf.pointee_struct(tid), f)
        out = f"+{off}({out})"
    return out


def translate(line: str, btf: Btf) -> str:
    """One shipped ``f:`` line as a ``p:``/``r:`` kprobe line with BTF-computed offsets."""
    m = _DEF.fullmatch(line.strip())
    if not m:
        raise LabError(f"data/probes/kprobe_events: not a probe definition: {line!r}")
    _, name, target, rest = m.groups()
    ret = target.endswith("%return")
    func = target.removesuffix("%return")
    args = []
    for arg in rest.split():
        key, _, value = arg.partition("=")
        expr, _, typ = value.rpartition(":")
        try:
            args.append(f"{key}={_fetch(btf, func, expr)}:{typ}")
        except BtfError as e:
            raise LabError(f"probe {name}: {e}") from None
    return " ".join([f"{'r' if ret else 'p'}:{name} {func}", *args])


def probe_set(
    version: tuple[int, int] | None,
    cfg: dict[str, str],
    btf: Btf | None,
    lines: Sequence[str] | None = None,
) -> tuple[list[ProbeLine], str]:
    """The probe lines for a kernel (``lines``, default the shipped ones) and how they were
    made: ``btf-names`` (as written) or ``btf-offsets`` (``f:`` lines translated)."""
    lines = list(lines) if lines is not None else shipped_probes()
    if supports_btf_args(version, cfg):
        out, how = lines, "btf-names"
    else:
        if btf is None:
            raise LabError("the kernel's probe events take no BTF names and its BTF is unknown")
        out = [translate(ln, btf) if ln.startswith("f:") else ln for ln in lines]
        how = "btf-offsets"
    return [ProbeLine(_name(ln), ln) for ln in out], how


def _name(line: str) -> str:
    m = _DEF.fullmatch(line.strip())
    if not m:
        raise LabError(f"not a probe definition: {line!r}")
    return m.group(2)
