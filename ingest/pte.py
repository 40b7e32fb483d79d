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

import numpy as np

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
    types_seen: dict[int, int], writable_restores: dict[int, tuple[int, int]]
) -> tuple[dict[int, str], str]:
    """Map migration swap types to read / read_exclusive / write for one trace.

    ``types_seen`` counts set events per swap type; ``writable_restores`` gives, per type,
    (restores seen writable, restores seen) for removes paired with a set of that type.
    Since Linux 5.19 the three migration types are consecutive (READ, READ_EXCLUSIVE,
    WRITE). A type whose restores are writable is WRITE; otherwise three distinct types
    seen fix the range; otherwise the Linux 6.18 layout without device-private types
    (READ = 28) is assumed. Returns the mapping and how it was found.

    >>> calibrate_kinds({28: 5, 30: 2}, {30: (2, 2), 28: (0, 5)})
    ({28: 'read', 29: 'read_exclusive', 30: 'write'}, 'writable restores')
    """
    write = [t for t, (w, n) in writable_restores.items() if n and w * 2 > n]
    if len(write) == 1:
        read, how = write[0] - 2, "writable restores"
    elif len(types_seen) == 3 and max(types_seen) - min(types_seen) == 2:
        read, how = min(types_seen), "three types seen"
    else:
        read, how = 28, "assumed (Linux 6.18, no device-private types)"
    return {read + i: kind for i, kind in enumerate(KINDS)}, how
