"""Kernel versions (issue 11 point 13, issue 12): migration kinds per kernel and config,
the khugepaged collapse_file argument swap, clone_flags' type, and the kernel facts.

The traces are lines as each kernel prints them: ``set_migration_pte`` carries the swap
entry (type in bits 59-63 on x86_64, the pfn inverted in bits 9-58), ``remove_migration_pte``
the restored pte; the kernel release and config come from the recording's sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from rmapscope import kernels
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.ingest.pte import calibrate_kinds
from tests.conftest import LAB_TRACES

LAB = LAB_TRACES or Path("/nonexistent")  # $RMAPSCOPE_LAB_TRACES, where set

# READ swap type per release, from include/linux/swap.h and Debian's configs (see
# rmapscope/kernels.py): MEMORY_FAILURE and PTE_MARKER_UFFD_WP on everywhere, DEVICE_PRIVATE
# off in 6.1 and 6.12, on in 7.2.
DEBIAN_READ = {
    "6.1.0-47-amd64": 27,  # 32 - 3 mig - 1 hwpoison - 1 marker - 1 swapin error = 26, + 1
    "6.12.57+deb13-amd64": 28,  # 32 - 3 - 1 - 1 = 27, + 1
    "6.18.0-1-amd64": 28,  # the nearest Debian config below: 6.12's
    "7.2.13+deb14-amd64": 25,  # 32 - 3 dev (one DEVICE_EXCLUSIVE since 6.15) - 3 - 1 - 1, + 1
}


def _swp_pte(typ: int, pfn: int) -> int:
    return (typ << 59) | ((~pfn & ((1 << 50) - 1)) << 9)


def _line(ts: float, event: str, payload: str, pid: int = 2137, cpu: int = 0) -> str:
    return f"       migrator-{pid:<6d} [{cpu:03d}] ..... {ts:12.6f}: {event}: {payload}\n"


def _trace(entries: list[tuple[int, int, bool]]) -> str:
    """set then remove for each (swap type, old pfn, restored writable), new pfn + 0x100."""
    text, ts = "", 100.0
    for i, (typ, pfn, _) in enumerate(entries):
        ts += 0.00001
        addr = 0x7F0000000000 + i * 0x1000
        text += _line(ts, "set_migration_pte", f"addr={addr:x}, pte={_swp_pte(typ, pfn):x} order=0")
    for i, (_, pfn, writable) in enumerate(entries):
        ts += 0.00001
        addr = 0x7F0000000000 + i * 0x1000
        pte = (1 << 63) | ((pfn + 0x100) << 12) | (0x867 if writable else 0x865)
        text += _line(ts, "remove_migration_pte", f"addr={addr:x}, pte={pte:x} order=0")
    return text


def _ingest(tmp_path: Path, text: str, release: str, config: dict | str | None = None):
    p = tmp_path / f"{release}.trace"
    p.write_text(text)
    meta: dict = {"tool": "rmapscope lab", "kernel_release": release, "machine": "x86_64"}
    if config is not None:
        meta["config"] = config
    Path(str(p) + ".meta.json").write_text(json.dumps(meta))
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(p), ds, fmt="trace_pipe")
    sets = pl.read_parquet(ds.files("set_migration_pte", trace_id=r.trace_id))
    manifest = pl.read_parquet(ds.files("traces", trace_id=r.trace_id)).row(0, named=True)
    return sets, json.loads(manifest["migration_types"]), manifest


@pytest.mark.parametrize("release", sorted(DEBIAN_READ))
def test_every_entry_gets_its_kind_on_a_debian_kernel_without_evidence(tmp_path, release):
    """Read-only restores, one type only (the lab's 6.1 fork storm): the trace fixes
    nothing, the version's Debian config does."""
    read = DEBIAN_READ[release]
    sets, types, manifest = _ingest(
        tmp_path, _trace([(read, 0x1000 + i, False) for i in range(4)]), release
    )
    assert manifest["kernel"] == release
    assert sets["migration_kind"].to_list() == ["read"] * 4
    assert types["how"].startswith("assumed (Debian's") and release in types["how"]


@pytest.mark.parametrize(
    ("release", "config", "read"),
    [
        # the reference machine: 6.18 without DEVICE_PRIVATE and MEMORY_FAILURE
        ("6.18.44-fc-v782", {"CONFIG_MIGRATION": "y", "CONFIG_PTE_MARKER_UFFD_WP": "y"}, 28),
        # 6.1 without uffd-wp pte markers: the SWP_PTE_MARKER type is not taken
        ("6.1.0-47-amd64", {"CONFIG_MIGRATION": "y", "CONFIG_DEVICE_PRIVATE": "y"}, 24),
        ("6.12.57+deb13-amd64", {**kernels.DEBIAN_CONFIGS[(7, 2)]}, 24),
        ("6.12.57+deb13-amd64", {"CONFIG_MIGRATION": "y", "CONFIG_DEVICE_PRIVATE": "n"}, 28),
    ],
)
def test_the_kernels_own_config_places_the_types(tmp_path, release, config, read):
    entries = [(read, 0x2000, False), (read + 1, 0x2001, False), (read + 2, 0x2002, True)]
    sets, types, _ = _ingest(tmp_path, _trace(entries), release, config)
    assert sets["migration_kind"].to_list() == ["read", "read_exclusive", "write"]
    assert types["how"].startswith("kernel config of Linux " + release)


def test_config_as_dot_config_text(tmp_path):
    """The sidecar may carry the .config text itself (Debian's 6.1 with DEVICE_PRIVATE on)."""
    text = "CONFIG_MIGRATION=y\nCONFIG_DEVICE_PRIVATE=y\nCONFIG_PTE_MARKER=y\n"
    sets, types, _ = _ingest(tmp_path, _trace([(23, 0x5000, False)]), "6.1.0-47-amd64", text)
    assert sets["migration_kind"].to_list() == ["read"]
    assert types["how"].startswith("kernel config")


def test_debian_arm64_6_1_has_no_pte_marker_type():
    """Debian's arm64 6.1 config: no DEVICE_PRIVATE, no PTE_MARKER: READ = 28, not amd64's 27."""
    kinds, how = calibrate_kinds({28: 3}, {}, "6.1.0-47-arm64", None, "arm64")
    assert kinds[28] == "read" and "Debian's arm64 6.1 config" in how
    kinds, how = calibrate_kinds({27: 3}, {}, "6.1.0-47-amd64", None, "x86_64")
    assert kinds[27] == "read" and "Debian's 6.1 config" in how


def test_writable_restores_beat_the_default_config(tmp_path):
    """A 6.1 kernel built with DEVICE_PRIVATE (READ = 23) and no config in the sidecar."""
    entries = [(23, 0x3000, False), (25, 0x3001, True), (25, 0x3002, True)]
    sets, types, _ = _ingest(tmp_path, _trace(entries), "6.1.0-47-amd64")
    assert sets["migration_kind"].to_list() == ["read", "write", "write"]
    assert types["how"].startswith("writable restores")


def test_types_seen_pick_the_layout_that_holds_them(tmp_path):
    """7.2 with DEVICE_PRIVATE off: READ = 28, outside the Debian layout (25..27)."""
    sets, types, _ = _ingest(tmp_path, _trace([(28, 0x4000, False)] * 2), "7.2.0-rc1-amd64")
    assert sets["migration_kind"].to_list() == ["read", "read"]
    assert types["how"].startswith("types seen fit")


def test_unknown_kernel_keeps_the_old_assumption():
    kinds, how = calibrate_kinds({28: 5}, {28: (0, 5)})
    assert kinds[28] == "read" and how == "assumed (Linux 6.18, no device-private types)"


@pytest.mark.parametrize(
    ("release", "want"),
    [
        ("6.1.0-47-amd64", (6, 1, None, None, True)),
        ("6.18.0", (6, 18, 0, None, False)),
        ("4.14.275-207.503.amzn2.x86_64", (4, 14, 275, None, False)),
        ("7.2.0-rc1", (7, 2, 0, 1, False)),
        ("6.18.44-fc-v782", (6, 18, 44, None, False)),
    ],
)
def test_parse_release(release, want):
    v = kernels.parse_release(release)
    assert v is not None and (v.major, v.minor, v.sublevel, v.rc, v.debian) == want


def test_parse_release_without_a_version():
    assert kernels.parse_release(None) is None and kernels.parse_release("unknown") is None


def test_layouts_follow_swap_h_across_versions():
    full = {"CONFIG_MIGRATION": "y", "CONFIG_MEMORY_FAILURE": "y"}
    on = {**full, "CONFIG_DEVICE_PRIVATE": "y", "CONFIG_PTE_MARKER_UFFD_WP": "y"}

    def read(release: str, config: dict) -> int:
        return kernels.migration_read_type(kernels.parse_release(release), config)

    assert read("5.19.0", on) == 23  # 32-4-3-1-1-1 (SWP_SWAPIN_ERROR from 5.19 to 6.1)
    assert read("5.19.0", full) == 28  # no device types, no marker: 32-3-1-1 = 27, + 1
    assert read("6.6.0", on) == 24  # pte markers always compiled in, no swapin error
    assert read("6.15.0", on) == 25  # one device-exclusive type
    assert read("6.18.0", {"CONFIG_MIGRATION": "y"}) == 28  # the reference machine
    assert [lay.read for lay in kernels.swap_layouts(kernels.parse_release("7.2.0"), on)] == [25]
    # after 7.2, the proposed device-private migration types make a second candidate
    v73 = kernels.parse_release("7.3.0")
    assert [lay.read for lay in kernels.swap_layouts(v73, on)] == [25, 22]
    assert kernels.swap_layouts(v73, on)[1].kinds[28] == "read"  # SWP_MIGRATION_DEVICE_READ


def test_config_values():
    assert kernels.config_value({"CONFIG_X": "m"}, "CONFIG_X") is True
    assert kernels.config_value({"CONFIG_X": None, "CONFIG_MIGRATION": "y"}, "CONFIG_X") is False
    assert kernels.config_value({"CONFIG_Y": "y"}, "CONFIG_X") is None
    assert kernels.config_value({"CONFIG_PTE_MARKER_UFFD_WP": "y"}, "CONFIG_PTE_MARKER")


def test_migration_tracepoints_exist_from_5_19():
    assert kernels.has_migration_tracepoints(kernels.parse_release("5.18.19")) is False
    assert kernels.has_migration_tracepoints(kernels.parse_release("5.19.0")) is True
    assert kernels.has_migration_tracepoints(None) is None
    old = kernels.migration_pte_note("5.15.0-91-generic", {"mm_migrate_pages": 3})
    assert old.startswith("no migration-entry tracepoints on this kernel")
    assert "not enabled in this trace" in kernels.migration_pte_note("6.1.0-47-amd64", {})
    assert kernels.migration_pte_note("4.19.0", {"remove_migration_pte": 1}) == ""


def test_collapse_file_swap_by_version():
    def swapped(release: str) -> bool | None:
        return kernels.collapse_file_args_swapped(kernels.parse_release(release))

    assert swapped("6.1.0-47-amd64") is False  # no such tracepoint before 6.2
    assert swapped("6.5.13") is True
    assert swapped("6.6.58") is True and swapped("6.6.59") is False
    assert swapped("6.6.0-28-amd64") is None  # a Debian ABI name hides the patch level
    assert swapped("6.11.5") is True and swapped("6.11.6") is False
    assert swapped("6.12.0") is False
    assert swapped(None) is None


def _release_of(sidecar: Path) -> str:
    try:
        return str(json.loads(sidecar.read_text()).get("kernel_release") or "")
    except (OSError, ValueError, AttributeError):
        return ""


@pytest.mark.slow  # a lab recording is a few MB of text (about a minute to ingest)
@pytest.mark.parametrize("release", ["6.1", "6.12", "7.2"])
def test_lab_recordings_get_every_migration_kind(tmp_path, release):
    """The lab's recordings (made by `rmapscope lab`, with the kernel's config): every
    set_migration_pte entry has its kind."""
    found = [
        m for m in sorted(LAB.rglob("*.meta.json")) if _release_of(m).startswith(release + ".")
    ]
    if not found:
        pytest.skip(f"no lab recording of Linux {release} under {LAB}")
    trace = str(found[0])[: -len(".meta.json")]
    ds = Dataset(tmp_path / "ds")
    r = ingest(trace, ds)
    files = ds.files("set_migration_pte", trace_id=r.trace_id)
    if not files:
        pytest.skip(f"{trace}: no set_migration_pte events")
    kinds = pl.read_parquet(files)["migration_kind"]
    assert kinds.null_count() == 0, json.loads(
        pl.read_parquet(ds.files("traces", trace_id=r.trace_id))["migration_types"][0]
    )


# -- mm_khugepaged_collapse_file before 37f0b47c5143, and task_newtask's clone_flags ----------
_COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)
# include/trace/events/huge_memory.h of 6.2 to 6.11 (addr printed %ld; %lx since the fix)
COLLAPSE_FILE_FORMAT = (
    "name: mm_khugepaged_collapse_file\nID: 500\nformat:\n" + _COMMON + "\tfield:struct "
    "mm_struct * mm;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:unsigned long hpfn;\toffset:16;\tsize:8;\tsigned:0;\n"
    "\tfield:pgoff_t index;\toffset:24;\tsize:8;\tsigned:0;\n"
    "\tfield:unsigned long addr;\toffset:32;\tsize:8;\tsigned:0;\n"
    "\tfield:bool is_shmem;\toffset:40;\tsize:1;\tsigned:0;\n"
    "\tfield:__data_loc char[] filename;\toffset:44;\tsize:4;\tsigned:0;\n"
    "\tfield:int nr;\toffset:48;\tsize:4;\tsigned:1;\n"
    "\tfield:int result;\toffset:52;\tsize:4;\tsigned:1;\n\n"
    'print fmt: "mm=%p, hpage_pfn=0x%lx, index=%ld, addr=%ld, is_shmem=%d, filename=%s, '
    'nr=%d, result=%s", REC->mm, REC->hpfn, REC->index, REC->addr, REC->is_shmem, '
    '__get_str(filename), REC->nr, __print_symbolic(REC->result, { 0, "failed" }, '
    '{ 1, "succeeded" })\n'
)


def _newtask_format(long_size: int) -> str:
    """task_newtask before 6.18: ``unsigned long clone_flags`` (4 bytes on 32-bit)."""
    at = 28 if long_size == 4 else 32
    return (
        "name: task_newtask\nID: 501\nformat:\n"
        + _COMMON
        + "\tfield:pid_t pid;\toffset:8;\tsize:4;\tsigned:1;\n"
        "\tfield:char comm[16];\toffset:12;\tsize:16;\tsigned:0;\n"
        f"\tfield:unsigned long clone_flags;\toffset:{at};\tsize:{long_size};\tsigned:0;\n"
        f"\tfield:short oom_score_adj;\toffset:{at + long_size};\tsize:2;\tsigned:1;\n\n"
        'print fmt: "pid=%d comm=%s clone_flags=%lx oom_score_adj=%hd", REC->pid, REC->comm, '
        "REC->clone_flags, REC->oom_score_adj\n"
    )


def _collapse_dat(tmp_path: Path, uname: str) -> Path:
    import struct

    from rmapscope.record import tracedat as tw

    name = b"text-hugepage\0"
    # the kernel's TP_ARGS passed (addr, is_shmem) into TP_PROTO's (is_shmem, addr):
    # addr=0x400000, is_shmem=0 are stored as addr=0, is_shmem=1
    payload = (
        struct.pack(
            "<QQQQ?xxxIii",
            0xFFFF0001328F9500,
            0x20016EA00,
            512,
            0,
            True,
            (len(name) << 16) | 56,
            512,
            0,
        )
        + name
    )
    recs = [tw.data_entry(5, tw.record(500, 7291, payload))]
    spec = tw.TraceSpec(
        formats=[("huge_memory", COLLAPSE_FILE_FORMAT)],
        buffers=[tw.BufferSpec("", "local", {0: tw.make_page(1_000_000, recs)})],
        uname=uname,
        cpus=1,
    )
    p = tmp_path / "collapse.dat"
    p.write_bytes(tw.write(spec, 7, None)[0])
    return p


@pytest.mark.parametrize(
    ("uname", "fixed"),
    [("Linux box 6.5.13 x86_64", True), ("Linux box 6.6.59 x86_64", False)],
)
def test_collapse_file_columns_are_unswapped_before_the_fix(tmp_path, uname, fixed):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_collapse_dat(tmp_path, uname)), ds)
    row = pl.read_parquet(ds.files("mm_khugepaged_collapse_file")).row(0, named=True)
    if fixed:
        assert (row["addr"], row["is_shmem"]) == (None, False)
        assert any("37f0b47c5143" in w and "addr is null" in w for w in r.warnings)
    else:  # a fixed kernel's values are its own
        assert (row["addr"], row["is_shmem"]) == (0, True)
        assert not any("collapse_file" in w for w in r.warnings)


def test_collapse_file_in_text_is_flagged(tmp_path):
    line = _line(
        128.627251,
        "mm_khugepaged_collapse_file",
        "mm=0xffff0001328f9500, hpage_pfn=0x20016ea00, index=512, addr=1, is_shmem=0, "
        "filename=text-hugepage, nr=512, result=failed",
    )
    p = tmp_path / "c.trace"
    p.write_text(line)
    meta = {"tool": "rmapscope lab", "kernel_release": "6.6.0-28-amd64", "machine": "x86_64"}
    Path(str(p) + ".meta.json").write_text(json.dumps(meta))
    r = ingest(str(p), Dataset(tmp_path / "ds"), fmt="trace_pipe")
    assert any("may print addr and is_shmem swapped" in w for w in r.warnings)


def test_clone_flags_is_u64_on_every_kernel(tmp_path):
    """A 32-bit 6.1 trace.dat (unsigned long clone_flags, 4 bytes) and 6.18 text (u64)."""
    import struct

    from rmapscope.record import tracedat as tw

    payload = struct.pack("<i16sIh", 530, b"fs_parent".ljust(16, b"\0"), 0x1200011, 0)
    recs = [tw.data_entry(5, tw.record(501, 528, payload))]
    spec = tw.TraceSpec(
        formats=[("task", _newtask_format(4))],
        buffers=[tw.BufferSpec("", "local", {0: tw.make_page(1_000_000, recs, long_size=4)})],
        uname="Linux box 6.1.0-47-686 i686",
        long_size=4,
        cpus=1,
    )
    old = tmp_path / "old.dat"
    old.write_bytes(tw.write(spec, 7, None)[0])
    new = tmp_path / "new.trace"
    new.write_text(
        _line(
            2958.783854,
            "task_newtask",
            "pid=531 comm=fs_parent clone_flags=1200011 oom_score_adj=0",
            pid=528,
        )
    )
    types = set()
    values = set()
    for path, fmt in ((old, None), (new, "trace_pipe")):
        ds = Dataset(tmp_path / f"ds-{path.stem}")
        ingest(str(path), ds, fmt=fmt)
        df = pl.read_parquet(ds.files("task_newtask"))
        types.add(df.schema["clone_flags"])
        values.add(df["clone_flags"][0])
    assert types == {pl.UInt64} and values == {0x1200011}


KVER_DATA = Path(__file__).parent.parent / "data" / "kver"


@pytest.mark.parametrize(
    ("run", "with_config", "want", "how"),
    [
        # types seen: 6.1 27 and 29 (write), 6.12 28 and 29 (read_exclusive), 7.2 25
        ("debian-6.1-compaction", True, {27: "read", 29: "write"}, "kernel config"),
        ("debian-6.1-compaction", False, {27: "read", 29: "write"}, "assumed (Debian's 6.1"),
        ("debian-6.12-exit-during-migration", True, {28: "read", 29: "read_exclusive"}, "kernel"),
        ("debian-6.12-exit-during-migration", False, {28: "read", 29: "read_exclusive"}, "assumed"),
        ("debian-7.2-thp-split", True, {25: "read"}, "kernel config"),
        ("debian-7.2-thp-split", False, {25: "read"}, "assumed (Debian's 7.2"),
    ],
)
def test_lab_lines_of_each_debian_kernel(tmp_path, run, with_config, want, how):
    """set_migration_pte lines cut from the lab's recordings (every swap type they hold), with
    the guest's kernel_config in the sidecar or without it (the version's Debian config)."""
    trace = tmp_path / f"{run}.trace"
    trace.write_text((KVER_DATA / f"{run}.trace").read_text())
    meta = json.loads((KVER_DATA / f"{run}.trace.meta.json").read_text())
    if not with_config:
        del meta["kernel_config"]
    Path(str(trace) + ".meta.json").write_text(json.dumps(meta))
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(trace), ds)
    sets = pl.read_parquet(ds.files("set_migration_pte", trace_id=r.trace_id))
    got = dict(sets.select("swp_type", "migration_kind").unique().iter_rows())
    assert got == want and sets["migration_kind"].null_count() == 0
    manifest = pl.read_parquet(ds.files("traces", trace_id=r.trace_id)).row(0, named=True)
    assert json.loads(manifest["migration_types"])["how"].startswith(how)
