"""Kernel facts: what a trace's kernel release says about its events and its swap types.

One table of facts (:data:`FACTS`), each with the kernel versions it holds for and its
source (commit or lore message), consulted by ingest (the migration swap types, the
``mm_khugepaged_collapse_file`` argument swap), replay and the report (whether the
migration-entry tracepoints exist at all). See docs/formats.md, "Kernel versions".

>>> v = parse_release("6.1.0-47-amd64")
>>> v.key, v.sublevel, v.debian
((6, 1), None, True)
>>> str(parse_release("7.2.0-rc1")), parse_release("4.14.275-207.503.amzn2.x86_64").sublevel
('7.2.0-rc1', 275)
>>> migration_read_type(parse_release("6.1.0-47-amd64"), None)
27
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product

__all__ = [
    "DEBIAN_CONFIGS",
    "DEBIAN_CONFIGS_ARM64",
    "FACTS",
    "SAME_TYPE_COLUMNS",
    "Fact",
    "KernelVersion",
    "SwapLayout",
    "as_counts",
    "collapse_file_args_swapped",
    "collapse_file_warning",
    "config_value",
    "debian_config",
    "has_migration_tracepoints",
    "migration_pte_note",
    "migration_read_type",
    "parse_config",
    "parse_release",
    "swap_layouts",
]


@dataclass(frozen=True)
class KernelVersion:
    """A parsed ``uname -r``: version, patch level (None: not in the release string, as in
    Debian's ``6.1.0-47-amd64`` ABI names), release candidate, and the text."""

    major: int
    minor: int
    sublevel: int | None
    rc: int | None
    release: str
    debian: bool = False

    @property
    def key(self) -> tuple[int, int]:
        """(major, minor): what the mainline facts compare."""
        return (self.major, self.minor)

    def at_least(self, major: int, minor: int) -> bool:
        """Whether this kernel has what mainline ``major.minor`` merged (an rc has its
        merge window)."""
        return self.key >= (major, minor)

    def __str__(self) -> str:
        return self.release


_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?")
# Debian's ABI names: X.Y.0-N-flavour (the stable patch level is only in `uname -v`).
_DEBIAN = re.compile(r"\d+\.\d+\.0-\d+(?:\+\w+)?-(?:amd64|arm64|cloud-\w+|rt-\w+|\w+)$")


def parse_release(release: str | None) -> KernelVersion | None:
    """The version of a kernel release string (``uname -r``), None when there is none."""
    if not release:
        return None
    m = _RELEASE.search(release)
    if m is None:
        return None
    major, minor, sub, rc = m.groups()
    debian = bool(_DEBIAN.match(release[m.start() :]))
    return KernelVersion(
        int(major),
        int(minor),
        None if debian or sub is None else int(sub),
        int(rc) if rc else None,
        release,
        debian,
    )


@dataclass(frozen=True)
class Fact:
    """One kernel fact: what, from which version (None: always), until which (None: still),
    and where it is documented."""

    name: str
    what: str
    since: tuple[int, int] | None
    until: tuple[int, int] | None
    source: str

    def holds(self, v: KernelVersion) -> bool:
        """Whether the fact holds for ``v`` by its mainline version."""
        return (self.since is None or v.key >= self.since) and (
            self.until is None or v.key < self.until
        )


FACTS: dict[str, Fact] = {
    f.name: f
    for f in (
        Fact(
            "migration_pte_tracepoints",
            "migrate:set_migration_pte / remove_migration_pte (and thp:set/remove_migration_pmd)",
            (5, 19),
            None,
            "'mm/migration: add trace events for base page and HugeTLB "
            "migrations' and '... for THP migrations' (Anshuman Khandual; "
            "lore 1643080105-11416-3-git-send-email-anshuman.khandual@arm.com)",
        ),
        Fact(
            "migration_read_exclusive",
            "three migration swap types (READ, READ_EXCLUSIVE, WRITE); two before",
            (5, 19),
            None,
            "'mm: remember exclusively mapped anonymous pages with "
            "PG_anon_exclusive' (David Hildenbrand)",
        ),
        Fact(
            "device_exclusive_types",
            "CONFIG_DEVICE_PRIVATE takes 4 swap types (DEVICE_WRITE/READ, "
            "DEVICE_EXCLUSIVE_WRITE/READ); 2 from 4.14",
            (5, 14),
            (6, 15),
            "'mm: device exclusive memory access' (Alistair Popple)",
        ),
        Fact(
            "single_device_exclusive_type",
            "CONFIG_DEVICE_PRIVATE takes 3 swap types (one DEVICE_EXCLUSIVE)",
            (6, 15),
            None,
            "'mm: use single SWP_DEVICE_EXCLUSIVE entry type' (David Hildenbrand; lore "
            "20250210193801.781278-7-david@redhat.com)",
        ),
        Fact(
            "device_private_migration_types",
            "proposed: 3 more device-private types (SWP_MIGRATION_DEVICE_*), 6 in all; not "
            "in 7.2 (Debian's 7.2.13 headers), so both layouts are candidates after 7.2",
            (7, 3),
            None,
            "RFC 'mm: Add a new swap type for migration entries with device private PFNs' "
            "(Jordan Niethe; lore 20251128044146.80050-5-jniethe@nvidia.com)",
        ),
        Fact(
            "swapin_error_type",
            "SWP_SWAPIN_ERROR takes one swap type",
            (5, 19),
            (6, 2),
            "'mm/swapfile: unuse_pte can map random data if swap read fails' (Miaohe Lin; "
            "lore 20220421125348.62483-2-linmiaohe@huawei.com); removed by 'mm: use pte "
            "markers for swap errors' (Peter Xu; lore 20221024204830.1342169-3-peterx@redhat.com)",
        ),
        Fact(
            "pte_marker_by_config",
            "SWP_PTE_MARKER takes a swap type only with CONFIG_PTE_MARKER "
            "(selected by PTE_MARKER_UFFD_WP); always from 6.2",
            (5, 19),
            (6, 2),
            "'mm: introduce PTE_MARKER swap entry' (Peter Xu, 5.19); 'mm: always compile in "
            "pte markers' (Peter Xu; lore 20221030214151.402274-2-peterx@redhat.com, 6.2)",
        ),
        Fact(
            "collapse_file_args_swapped",
            "huge_memory:mm_khugepaged_collapse_file prints addr and is_shmem swapped "
            "(TP_PROTO and TP_ARGS disagree): addr= shows is_shmem, is_shmem= shows addr != 0",
            (6, 2),
            (6, 12),
            "4c9473e87e75 'mm/khugepaged: add tracepoint to collapse_file()' (6.2); fixed by "
            "37f0b47c5143 'mm: khugepaged: fix the arguments order in khugepaged_collapse_file "
            "trace point' (Yang Shi, 6.12-rc4; lore "
            "20241012011702.1084846-1-yang@os.amperecomputing.com), in 6.6.59 and 6.11.6",
        ),
        Fact(
            "clone_flags_u64",
            "task:task_newtask clone_flags is u64 (%llx); unsigned long (%lx) before",
            (6, 18),
            None,
            "≈6.18: the series widening clone_flags to 64 bits on every arch (Simon "
            "Schuster, linux-fsdevel, Sep 2025); the 6.18 format (docs/formats.md 1.1)",
        ),
    )
}

#: The upstream commit that fixed mm_khugepaged_collapse_file's argument order.
COLLAPSE_FILE_FIX = "37f0b47c5143"
#: Stable series that took the collapse_file fix, with the first fixed patch level.
COLLAPSE_FILE_FIXED_STABLE = {(6, 6): 59, (6, 11): 6}


#: Columns whose type changed across kernels, stored as one type whatever the trace's format
#: says (Arrow type names): clone_flags was ``unsigned long`` (4 bytes on 32-bit kernels)
#: before 6.18 and is u64 since (FACTS["clone_flags_u64"]).
SAME_TYPE_COLUMNS: dict[str, dict[str, str]] = {"task_newtask": {"clone_flags": "uint64"}}


def has_migration_tracepoints(v: KernelVersion | None) -> bool | None:
    """Whether kernel ``v`` has set/remove_migration_pte (None: not known)."""
    return None if v is None else FACTS["migration_pte_tracepoints"].holds(v)


def migration_pte_note(release: str | None, event_counts: Mapping[str, int] | None) -> str:
    """Why a trace's migration counts are not measured ('' when they are): its kernel has
    no migration-entry tracepoints, or the trace holds none of their events.

    >>> migration_pte_note("5.15.0-91-generic", {})[:47]
    'no migration-entry tracepoints on this kernel ('
    >>> migration_pte_note("6.1.0-47-amd64", {"set_migration_pte": 3})
    ''
    """
    counts = event_counts or {}
    if any(counts.get(e) for e in MIGRATION_PTE_EVENTS):
        return ""
    if has_migration_tracepoints(parse_release(release)) is False:
        return (
            f"no migration-entry tracepoints on this kernel (Linux {release}; "
            "set/remove_migration_pte exist from 5.19)"
        )
    return (
        "migration-entry tracepoints not enabled in this trace (no set/remove_migration_pte "
        "or _pmd events; or nothing was migrated)"
    )


def as_counts(counts: object) -> dict[str, int]:
    """A manifest's ``event_counts`` (a map, read as a dict, (key, value) pairs or
    {key, value} structs) as a dict.

    >>> as_counts([("a", 1)]), as_counts([{"key": "b", "value": 2}]), as_counts(None)
    ({'a': 1}, {'b': 2}, {})
    """
    if isinstance(counts, Mapping):
        return dict(counts)
    out: dict[str, int] = {}
    for item in counts or []:  # type: ignore[attr-defined]
        k, n = (item["key"], item["value"]) if isinstance(item, Mapping) else item
        out[k] = n
    return out


#: The per-entry migration events whose absence means migrations were not measured.
MIGRATION_PTE_EVENTS = (
    "set_migration_pte",
    "remove_migration_pte",
    "set_migration_pmd",
    "remove_migration_pmd",
)


def collapse_file_args_swapped(v: KernelVersion | None) -> bool | None:
    """Whether ``mm_khugepaged_collapse_file`` of kernel ``v`` printed addr and is_shmem
    swapped (None: cannot tell, e.g. a Debian 6.6 release without its patch level)."""
    if v is None or not FACTS["collapse_file_args_swapped"].holds(v):
        return None if v is None else False
    fixed_at = COLLAPSE_FILE_FIXED_STABLE.get(v.key)
    if fixed_at is None:
        return True
    return None if v.sublevel is None else v.sublevel < fixed_at


def collapse_file_warning(release: str | None, fixed: bool) -> str:
    """What ingest says of a trace of kernel ``release`` holding ``mm_khugepaged_collapse_file``
    events ('' when that kernel printed them right); ``fixed``: the typed table was corrected.

    >>> collapse_file_warning("6.12.0", True)
    ''
    """
    v = parse_release(release)
    swapped = collapse_file_args_swapped(v)
    if swapped is False or v is None:
        return ""
    if swapped is None:
        return (
            f"mm_khugepaged_collapse_file: Linux {release} may print addr and is_shmem "
            "swapped (6.2 to 6.11; fixed in 6.12, 6.6.59 and 6.11.6, and this release does "
            "not give its patch level): is_shmem= may be addr != 0 and addr= is_shmem; "
            "left as printed"
        )
    done = (
        "is_shmem now holds the printed addr (the real is_shmem) and addr is null (lost)"
        if fixed
        else "the fields are kept as printed: addr= is is_shmem, is_shmem= is addr != 0"
    )
    return (
        f"mm_khugepaged_collapse_file: Linux {release} prints addr and is_shmem swapped "
        f"(fixed by {COLLAPSE_FILE_FIX} in 6.12): {done}"
    )


# ----------------------------------------------------------------------------- swap types
#: The options that move swap types in Debian's amd64 kernel configs, read from the
#: packages: 6.1.170-3 (bookworm, /boot/config-6.1.0-47-amd64), 6.12.117-1 (trixie,
#: /boot/config-6.12.117+deb13-amd64), 7.2.13-1 (sid, linux-base-7.2.13+deb14-amd64's
#: /usr/lib/modules/7.2.13+deb14-amd64/config). Debian turned CONFIG_DEVICE_PRIVATE on
#: (with CONFIG_HSA_AMD_SVM) somewhere between 6.12 and 7.2.
DEBIAN_CONFIGS: dict[tuple[int, int], dict[str, str]] = {
    (6, 1): {
        "CONFIG_MIGRATION": "y",
        "CONFIG_MEMORY_FAILURE": "y",
        "CONFIG_DEVICE_PRIVATE": "n",
        "CONFIG_PTE_MARKER": "y",
        "CONFIG_PTE_MARKER_UFFD_WP": "y",
    },
    (6, 12): {
        "CONFIG_MIGRATION": "y",
        "CONFIG_MEMORY_FAILURE": "y",
        "CONFIG_DEVICE_PRIVATE": "n",
        "CONFIG_PTE_MARKER_UFFD_WP": "y",
    },
    (7, 2): {
        "CONFIG_MIGRATION": "y",
        "CONFIG_MEMORY_FAILURE": "y",
        "CONFIG_DEVICE_PRIVATE": "y",
        "CONFIG_PTE_MARKER_UFFD_WP": "y",
    },
}


#: Debian's arm64 configs where they differ: 6.1.170-3 (/boot/config-6.1.0-47-arm64) has
#: neither DEVICE_PRIVATE nor PTE_MARKER (no arch uffd-wp on arm64 then).
DEBIAN_CONFIGS_ARM64: dict[tuple[int, int], dict[str, str]] = {
    (6, 1): {"CONFIG_MIGRATION": "y", "CONFIG_MEMORY_FAILURE": "y"},
}


def debian_config(
    key: tuple[int, int], arch: str | None = None
) -> tuple[tuple[int, int], dict[str, str]]:
    """Debian's config (amd64's, or arm64's where known) of the nearest packaged version at
    or below ``key`` (the oldest one below 6.1), and that version.

    >>> debian_config((6, 18))[0], debian_config((5, 10))[0]
    ((6, 12), (6, 1))
    >>> debian_config((6, 1), "arm64")[1].get("CONFIG_PTE_MARKER") is None
    True
    """
    below = [k for k in DEBIAN_CONFIGS if k <= key]
    at = max(below) if below else min(DEBIAN_CONFIGS)
    if arch and arch.startswith("arm64") and at in DEBIAN_CONFIGS_ARM64:
        return at, DEBIAN_CONFIGS_ARM64[at]
    return at, DEBIAN_CONFIGS[at]


#: The options that move the migration swap types.
SWAP_OPTIONS = ("CONFIG_DEVICE_PRIVATE", "CONFIG_MEMORY_FAILURE", "CONFIG_PTE_MARKER")


_NOT_SET = re.compile(r"#\s*(CONFIG_\w+) is not set")


def parse_config(config: object) -> dict[str, object] | None:
    """A sidecar's ``config`` as CONFIG_X -> value: a JSON object as it is, or the text of a
    ``.config`` (``CONFIG_X=y`` lines, ``# CONFIG_X is not set`` as None); else None.

    >>> parse_config("CONFIG_MIGRATION=y\\n# CONFIG_DEVICE_PRIVATE is not set\\n")
    {'CONFIG_MIGRATION': 'y', 'CONFIG_DEVICE_PRIVATE': None}
    """
    if isinstance(config, Mapping):
        return dict(config)
    if not isinstance(config, str):
        return None
    out: dict[str, object] = {}
    for line in config.splitlines():
        line = line.strip()
        if m := _NOT_SET.fullmatch(line):
            out[m.group(1)] = None
        elif line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip('"')
    return out or None


def config_value(config: Mapping[str, object] | None, name: str) -> bool | None:
    """Whether option ``name`` is on in ``config`` (a sidecar's CONFIG_X -> value): "y",
    "m" or a value are on; "n", null or "is not set" off; absent: off in a whole config
    (one that names CONFIG_MIGRATION), unknown (None) in a partial one. CONFIG_PTE_MARKER
    is also on when CONFIG_PTE_MARKER_UFFD_WP (which selects it) is.

    >>> config_value({"CONFIG_MIGRATION": "y"}, "CONFIG_DEVICE_PRIVATE")
    False
    >>> config_value({"CONFIG_DEVICE_PRIVATE": "y"}, "CONFIG_MEMORY_FAILURE") is None
    True
    """
    if not config:
        return None
    if name == "CONFIG_PTE_MARKER" and _on(config.get("CONFIG_PTE_MARKER_UFFD_WP")):
        return True
    if name in config:
        return _on(config[name])
    return False if "CONFIG_MIGRATION" in config else None


def _on(value: object) -> bool:
    if value is None or value is False:
        return False
    text = str(value).strip().strip('"').lower()
    return text not in ("", "n", "no", "0", "false", "is not set")


@dataclass(frozen=True)
class SwapLayout:
    """Where the migration swap types sit: ``read`` is SWP_MIGRATION_READ; ``kinds`` maps
    every migration swap type to read / read_exclusive / write; ``basis`` says why."""

    read: int
    kinds: dict[int, str]
    basis: str


def _layout(
    v: tuple[int, int], device: bool, hwpoison: bool, marker: bool, device_migration: bool
) -> tuple[int, dict[int, str]]:
    """SWP_MIGRATION_READ and the kinds for kernel version ``v`` and these options, from
    include/linux/swap.h: MAX_SWAPFILES = 32 - DEVICE - MIGRATION - HWPOISON - PTE_MARKER
    (- SWAPIN_ERROR), READ = MAX_SWAPFILES + HWPOISON, device types after the migration ones."""
    three = v >= (5, 19)
    migration_num = 3 if three else 2
    if not device:
        device_num = 0
    elif v < (5, 14):
        device_num = 2
    elif v < (6, 15):
        device_num = 4
    else:
        device_num = 6 if device_migration else 3
    marker_num = 1 if v >= (6, 2) else int(marker and v >= (5, 19))
    swapin_error = int((5, 19) <= v < (6, 2))
    hw = int(hwpoison)
    max_swapfiles = 32 - device_num - migration_num - hw - marker_num - swapin_error
    read = max_swapfiles + hw
    names = ("read", "read_exclusive", "write") if three else ("read", "write")
    kinds = {read + i: k for i, k in enumerate(names)}
    if device_num == 6:  # SWP_MIGRATION_DEVICE_READ, _READ_EXCLUSIVE, _WRITE
        kinds |= {read + migration_num + 3 + i: k for i, k in enumerate(names)}
    return read, kinds


#: The last version checked to have no SWP_MIGRATION_DEVICE_* types (Debian's 7.2.13
#: headers: SWP_DEVICE_NUM 3); later versions get them as a second candidate.
DEVICE_MIGRATION_TYPES_ABSENT_UNTIL = (7, 2)
#: Versions that stand for every layout era when the kernel is not known.
_ERAS: tuple[tuple[int, int], ...] = ((6, 18), (6, 12), (6, 1), (7, 3))


def swap_layouts(
    v: KernelVersion | None, config: Mapping[str, object] | None = None, arch: str | None = None
) -> list[SwapLayout]:
    """The possible migration swap-type layouts of kernel ``v`` with ``config``, most
    likely first: options the config does not give take Debian's value first, then the
    other; an unknown kernel starts with Linux 6.18 without device-private types (the
    reference machine's), then every era's layouts."""
    known = {o: config_value(config, o) for o in SWAP_OPTIONS}
    out: list[SwapLayout] = []
    seen: set[tuple[int, tuple]] = set()

    def add(key: tuple[int, int], opts: dict[str, bool], dm: bool, basis: str) -> None:
        read, kinds = _layout(
            key,
            opts["CONFIG_DEVICE_PRIVATE"],
            opts["CONFIG_MEMORY_FAILURE"],
            opts["CONFIG_PTE_MARKER"],
            dm,
        )
        sig = (read, tuple(sorted(kinds.items())))
        if sig not in seen:
            seen.add(sig)
            out.append(SwapLayout(read, kinds, basis))

    if v is None:
        base = {"CONFIG_DEVICE_PRIVATE": False, "CONFIG_MEMORY_FAILURE": False}
        add(
            (6, 18),
            {**base, "CONFIG_PTE_MARKER": True},
            False,
            "Linux 6.18, no device-private types",
        )
        eras = _ERAS
    else:
        eras = (v.key,)
    for key in eras:
        label = f"Linux {v}" if v is not None else f"Linux {key[0]}.{key[1]}"
        deb_at, deb = debian_config(key, arch)
        deb_arch = "arm64 " if deb is DEBIAN_CONFIGS_ARM64.get(deb_at) else ""
        deb_label = f"Debian's {deb_arch}{deb_at[0]}.{deb_at[1]} config for {label}"
        choices: list[list[bool]] = []
        for o in SWAP_OPTIONS:
            if known[o] is not None:
                choices.append([bool(known[o])])
            else:
                default = config_value(deb, o)
                choices.append([bool(default), not default])
        given = all(known[o] is not None for o in SWAP_OPTIONS)
        dms = [False, True] if key > DEVICE_MIGRATION_TYPES_ABSENT_UNTIL else [False]
        for dm, values in product(dms, product(*choices)):
            opts = dict(zip(SWAP_OPTIONS, values, strict=True))
            first = not out or (v is None and len(out) == 1)
            if given:
                how = f"kernel config of {label}"
            elif first and not dm:
                how = deb_label
            else:
                how = f"a possible config of {label}"
            extra = ", with the proposed device-private migration types" if dm else ""
            add(key, opts, dm, how + extra)
    return out


def migration_read_type(v: KernelVersion | None, config: Mapping[str, object] | None) -> int:
    """SWP_MIGRATION_READ of the most likely layout of ``v`` with ``config``."""
    return swap_layouts(v, config)[0].read
