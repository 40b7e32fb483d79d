"""Decode the raw ``pte``/``pmd`` values printed by the migration tracepoints.

``set_migration_pte``/``set_migration_pmd`` print a non-present swap entry holding the old
pfn; ``remove_migration_pte``/``remove_migration_pmd`` print the restored present entry,
holding the new pfn. Layouts (see docs/formats.md section 4):

* x86_64: swap entry ``TYPE(59-63) | ~OFFSET(9-58)``, offset = pfn | young << B | dirty << B+1
  with B = SWP_PFN_BITS = 34 (4-level paging) or 40 (5-level, ``x86_64-la57``).
* arm64 (>= 6.10, 4K pages, 48-bit PA): ``TYPE(6-10) | OFFSET(12-61)``, B = 36.

The swap *type* of a migration entry depends on the kernel's config (how many device and
marker types sit above it), so the read / read-exclusive / write meaning is calibrated per
trace by :func:`calibrate_kinds`.

>>> d = decode_swap_entry(np.array([0xe7ffffffdfc7c000], dtype=np.uint64), "x86_64")
>>> int(d["swp_type"][0]), hex(int(d["pfn"][0])), bool(d["young"][0])
(28, '0x101c1f', False)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rmapscope import kernels

#: Architectures we decode, with the number of pfn bits in a migration entry's offset.
ARCHES = {"x86_64": 34, "x86_64-la57": 40, "arm64": 36}
KINDS = ("read", "read_exclusive", "write")
#: uname machine spellings of the arches above.
_MACHINES = {"amd64": "x86_64", "aarch64": "arm64"}

_U = np.uint64


def machine_arch(machine: str) -> str:
    """The arch name of a uname ``machine`` (``aarch64`` is ``arm64``; others as they are).

    >>> machine_arch("aarch64"), machine_arch("armv7l")
    ('arm64', 'armv7l')
    """
    return _MACHINES.get(machine, machine)


def resolve_arch(given: str | None, said: str | None) -> str:
    """The traced machine's arch: the machine the trace ``said``, refined by a ``given``
    (``--arch``) variant of it (``x86_64-la57``); else ``given``; else x86_64.

    >>> resolve_arch("x86_64-la57", "x86_64"), resolve_arch("arm64", "i686")
    ('x86_64-la57', 'i686')
    >>> resolve_arch(None, None), resolve_arch("arm64", None)
    ('x86_64', 'arm64')
    """
    if not said:
        return given or "x86_64"
    arch = machine_arch(said)
    if given is not None and (given == arch or given.startswith(arch + "-")):
        return given
    return arch


def _bit(v: np.ndarray, n: int) -> np.ndarray:
    return ((v >> _U(n)) & _U(1)).astype(bool)


def _check_arch(arch: str) -> int:
    try:
        return ARCHES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r} (known: {', '.join(ARCHES)})") from None


def decode_swap_entry(pte: np.ndarray, arch: str) -> dict[str, np.ndarray]:
    """Decode migration swap entries: swap type, pfn, young, dirty, soft-dirty, uffd-wp."""
    bits = _check_arch(arch)
    pte = pte.astype(np.uint64, copy=False)
    if arch.startswith("x86_64"):
        typ = pte >> _U(59)
        offset = (~pte >> _U(9)) & _U((1 << 50) - 1)
        soft_dirty, uffd_wp = _bit(pte, 1), _bit(pte, 2)
    else:
        typ = (pte >> _U(6)) & _U(0x1F)
        offset = (pte >> _U(12)) & _U((1 << 50) - 1)
        soft_dirty, uffd_wp = np.zeros(len(pte), bool), _bit(pte, 3)
    return {
        "swp_type": typ.astype(np.int16),
        "pfn": offset & _U((1 << bits) - 1),
        "young": _bit(offset, bits),
        "dirty": _bit(offset, bits + 1),
        "soft_dirty": soft_dirty,
        "uffd_wp": uffd_wp,
    }


def decode_present(pte: np.ndarray, arch: str, huge: bool) -> dict[str, np.ndarray]:
    """Decode restored present entries: pfn and protections (``huge``: a PMD mapping)."""
    _check_arch(arch)
    pte = pte.astype(np.uint64, copy=False)
    if arch.startswith("x86_64"):
        mask = _U(0x000FFFFFFFE00000 if huge else 0x000FFFFFFFFFF000)
        present = _bit(pte, 0)
        # A PROT_NONE pte (present bit clear, value non-zero) stores its pfn inverted (L1TF).
        protnone = ~present & (pte != _U(0))
        pfn = np.where(protnone, (~pte & mask) >> _U(12), (pte & mask) >> _U(12))
        return {
            "pfn": pfn,
            "present": present,
            "writable": _bit(pte, 1),
            "young": _bit(pte, 5),
            # a dirty read-only pte keeps its dirty bit in _PAGE_SAVED_DIRTY (bit 58, 6.6+)
            "dirty": _bit(pte, 6) | _bit(pte, 58),
            "nx": _bit(pte, 63),
            "soft_dirty": _bit(pte, 11),
            "uffd_wp": _bit(pte, 10),
        }
    mask = _U(0x0000FFFFFFE00000 if huge else 0x0000FFFFFFFFF000)
    dbm, rdonly = _bit(pte, 51), _bit(pte, 7)
    return {
        "pfn": (pte & mask) >> _U(12),
        "present": _bit(pte, 0),
        "writable": dbm & ~rdonly,
        "young": _bit(pte, 10),
        "dirty": _bit(pte, 55) | (dbm & ~rdonly),
        "nx": _bit(pte, 54),
        "soft_dirty": np.zeros(len(pte), bool),
        "uffd_wp": _bit(pte, 2),
    }


def calibrate_kinds(
    types_seen: dict[int, int],
    writable_restores: dict[int, tuple[int, int]],
    kernel: str | None = None,
    config: Mapping[str, object] | None = None,
    arch: str | None = None,
) -> tuple[dict[int, str], str]:
    """Map migration swap types to read / read_exclusive / write for one trace.

    ``types_seen`` counts set events per swap type; ``writable_restores`` gives, per type,
    (restores seen writable, restores seen) for removes paired with a set of that type;
    ``kernel`` is the trace's kernel release and ``config`` its CONFIG_X -> value (from the
    sidecar) and ``arch`` the traced machine's, when known. The migration types sit below
    the device-private and marker types (include/linux/swap.h), so where they are depends on
    the kernel version and config
    (:func:`rmapscope.kernels.swap_layouts`). In order: the kernel's own config when it
    fixes the layout; else the trace (a type whose restores are writable is WRITE; three
    distinct types seen fix the range; the likeliest layout holding every type seen); else
    the version's Debian config (an unknown kernel: Linux 6.18 without
    device-private types, READ = 28). Returns the mapping and how it was found.

    >>> calibrate_kinds({28: 5, 30: 2}, {30: (2, 2), 28: (0, 5)})
    ({28: 'read', 29: 'read_exclusive', 30: 'write'}, 'writable restores')
    >>> calibrate_kinds({27: 4}, {}, "6.1.0-47-amd64")[0][27]
    'read'
    """
    version = kernels.parse_release(kernel)
    layouts = kernels.swap_layouts(version, config, arch)
    seen = {t for t, n in types_seen.items() if n}
    fits = [lay for lay in layouts if seen <= set(lay.kinds)]
    if config and len(layouts) == 1:
        lay = layouts[0]
        clash = (
            f"; {len(seen - set(lay.kinds))} types seen outside it" if seen - set(lay.kinds) else ""
        )
        return lay.kinds, f"{lay.basis}{clash}"
    write = [t for t, (w, n) in writable_restores.items() if n and w * 2 > n]
    if len(write) == 1:
        match = [lay for lay in layouts if lay.kinds.get(write[0]) == "write"]
        if match:
            return match[0].kinds, _how("writable restores", match[0], version)
        return _consecutive(write[0] - 2), "writable restores"
    if len(seen) == 3 and max(seen) - min(seen) == 2:
        match = [lay for lay in fits if lay.read == min(seen)]
        if match:
            return match[0].kinds, _how("three types seen", match[0], version)
        return _consecutive(min(seen)), "three types seen"
    if fits or not seen or max(seen) - min(seen) > 2:
        lay = fits[0] if fits else layouts[0]
        if lay is not layouts[0]:
            return lay.kinds, f"types seen fit {lay.basis}"
        return lay.kinds, lay.basis if config else f"assumed ({lay.basis})"
    return _consecutive(min(seen)), "assumed (lowest type seen is READ)"


def _consecutive(read: int) -> dict[int, str]:
    return {read + i: kind for i, kind in enumerate(KINDS)}


def _how(evidence: str, lay: kernels.SwapLayout, version: object) -> str:
    """``evidence``, and the layout it picked when the kernel is known."""
    if version is None:
        return evidence
    return f"{evidence} ({lay.basis})"
