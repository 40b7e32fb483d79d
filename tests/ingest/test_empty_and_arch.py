"""Issue 11, points 14 and 9.

* A trace with a header and no events (a tracefs ``trace`` file, a trace-cmd report, a
  trace.dat without data, a recording with its ``.meta.json``) ingests as 0 events with a
  warning; replay, sql and report run on it. Text that is no trace is still rejected.
* The manifest's ``arch`` is the machine the trace names (trace.dat uname, the sidecar's
  ``machine``), else ``--arch``, else x86_64; ptes are decoded only for the arches
  :mod:`rmapscope.ingest.pte` knows, otherwise the decoded columns are null and ingest warns.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rmapscope.dataset import Dataset
from rmapscope.errors import InputError
from rmapscope.ingest import ingest
from rmapscope.ingest import pte as ptemod
from rmapscope.record import tracedat as tw
from tests.conftest import cli_command, read_table

EMPTY = Path(__file__).parent.parent / "data" / "empty"
PTE = 0xE7FFFFFFDFC7C000  # a 6.18 x86_64 migration entry: pfn 0x101c1f
PIPE_LINE = (
    "         python3-2137  [001] d..1   116.685520: set_migration_pte: "
    f"addr=7f6cf5de6000, pte={PTE:x} order=0\n"
)


def _set_pte_format(long_size: int) -> str:
    """``set_migration_pte``'s format on a kernel whose ``long`` has ``long_size`` bytes."""
    n = long_size
    return (
        "name: set_migration_pte\nID: 711\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
        f"\tfield:unsigned long addr;\toffset:8;\tsize:{n};\tsigned:0;\n"
        f"\tfield:unsigned long pte;\toffset:{8 + n};\tsize:{n};\tsigned:0;\n"
        f"\tfield:int order;\toffset:{8 + 2 * n};\tsize:4;\tsigned:1;\n\n"
        'print fmt: "addr=%lx, pte=%lx order=%d", REC->addr, REC->pte, REC->order\n'
    )


def _tracedat(tmp_path: Path, uname: str, long_size: int, events: bool = True) -> Path:
    """A trace.dat of one ``set_migration_pte`` (none: ``events`` False) with this uname."""
    w = "Q" if long_size == 8 else "I"
    pte = PTE if long_size == 8 else 0x0101C1F7  # a 32-bit non-present pte
    rec = tw.record(711, 7, struct.pack(f"<{w}{w}i", 0x7F000, pte, 0))
    pages = {0: tw.make_page(1_000_000, [tw.data_entry(5, rec)], long_size=long_size)}
    spec = tw.TraceSpec(
        formats=[("migrate", _set_pte_format(long_size))],
        buffers=[tw.BufferSpec("", "local", pages if events else {})],
        uname=uname,
        long_size=long_size,
        cpus=2,
    )
    p = tmp_path / "t.dat"
    p.write_bytes(tw.write(spec, 7, None)[0])
    return p


def _manifest(ds: Dataset) -> dict:
    return ds.traces().row(0, named=True)


# -- point 14: empty but valid traces --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"), [("tracefs_trace.txt", "tracefs"), ("tcreport.txt", "tcreport")]
)
def test_recorded_empty_text_traces_ingest_with_zero_events(tmp_path, name, fmt):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(EMPTY / name), ds)
    assert (r.format, r.events, r.event_counts) == (fmt, 0, {})
    assert r.warnings == [f"{EMPTY / name}: a valid trace with no events"]
    t = _manifest(ds)
    assert (t["events"], t["cpus"], t["format"]) == (0, 2, fmt)


def test_trace_dat_without_data_pages_is_an_empty_trace(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_tracedat(tmp_path, "Linux box 6.18.0 x86_64", 8, events=False)), ds)
    assert (r.format, r.events) == ("trace_dat", 0)
    assert any("a valid trace with no events" in w for w in r.warnings)
    assert _manifest(ds)["events"] == 0


def test_an_empty_recording_with_its_sidecar_is_an_empty_trace(tmp_path):
    p = tmp_path / "rec.trace"
    p.write_text("# a recording that saw nothing\n")
    sidecar = {"tool": "rmapscope record", "machine": "x86_64", "cpus": 2, "host": "rec"}
    Path(str(p) + ".meta.json").write_text(json.dumps(sidecar))
    r = ingest(str(p), Dataset(tmp_path / "ds"), fmt="trace_pipe")
    assert (r.events, r.host) == (0, "rec") and r.warnings


@pytest.mark.parametrize("text", ["hello\nworld\n", "# just a comment\n"])
def test_text_without_a_trace_header_is_still_rejected(tmp_path, text):
    p = tmp_path / "x.txt"
    p.write_text(text)
    with pytest.raises(InputError, match=r"no trace events found|not a "):
        ingest(str(p), Dataset(tmp_path / "ds"), fmt="trace_pipe")
    assert not (tmp_path / "ds" / "traces").exists()


def test_cli_warns_and_replay_sql_report_run_on_an_empty_trace(tmp_path):
    ds = str(tmp_path / "ds")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli_command(), *args, "--dataset", ds], capture_output=True, text=True, check=False
        )

    r = run("ingest", str(EMPTY / "tracefs_trace.txt"))
    assert r.returncode == 0, r.stderr
    assert f"warning: {EMPTY / 'tracefs_trace.txt'}: a valid trace with no events" in r.stderr
    assert ": 0 events" in r.stdout
    for args in (
        ["replay", "--all"],
        ["sql", "select events from traces"],
        ["report", "-o", str(tmp_path / "r.html")],
    ):
        got = run(*args)
        assert got.returncode == 0 and "Traceback" not in got.stderr, (args, got.stderr)
    assert (tmp_path / "r.html").stat().st_size > 0


# -- point 9: the arch in the manifest -------------------------------------------------------


@pytest.mark.parametrize(
    ("uname", "long_size", "arch"),
    [
        ("Linux pi 5.10.0 #1 SMP armv7l", 4, "armv7l"),
        ("Linux old 4.19.0 #1 SMP i686", 4, "i686"),
        ("", 4, "32-bit"),  # a 32-bit kernel that names no machine is no x86_64
        ("Linux box 6.18.0 #1 SMP riscv64", 8, "riscv64"),
    ],
)
def test_trace_dat_of_an_undecoded_arch_has_its_machine_and_null_pfns(
    tmp_path, uname, long_size, arch
):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_tracedat(tmp_path, uname, long_size)), ds, arch="x86_64")
    assert r.event_counts == {"set_migration_pte": 1} and r.errors.total == 0
    t = _manifest(ds)
    assert (t["arch"], t["arch_from"]) == (arch, "trace")
    row = read_table(ds, "event=set_migration_pte").row(0, named=True)
    assert row["pte"] is not None
    assert row["pfn"] is None and row["swp_type"] is None and row["young"] is None
    assert [w for w in r.warnings if "not decoded" in w] == [
        f"{r.source}: pte/pmd values of arch {arch} are not decoded (pfn columns null); "
        "rmapscope decodes x86_64, x86_64-la57, arm64"
    ]


def test_trace_dat_of_a_known_arch_decodes_and_does_not_warn(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_tracedat(tmp_path, "Linux box 6.18.0 #1 SMP x86_64", 8)), ds)
    assert r.warnings == [] and (_manifest(ds)["arch"], r.arch) == ("x86_64", "x86_64")
    assert read_table(ds, "event=set_migration_pte")["pfn"].to_list() == [0x101C1F]


def _pipe(tmp_path: Path, machine: str | None) -> Path:
    p = tmp_path / "rec.trace"
    p.write_text(PIPE_LINE)
    if machine is not None:
        meta = {"tool": "rmapscope record", "machine": machine}
        Path(str(p) + ".meta.json").write_text(json.dumps(meta))
    return p


def _decoded_pfn(arch: str) -> int:
    return int(ptemod.decode_swap_entry(np.array([PTE], np.uint64), arch)["pfn"][0])


@pytest.mark.parametrize(
    ("machine", "given", "arch", "arch_from"),
    [
        (None, None, "x86_64", "default"),
        (None, "arm64", "arm64", "option"),
        ("aarch64", None, "arm64", "sidecar"),  # no --arch arm64 needed any more
        ("aarch64", "x86_64", "arm64", "sidecar"),  # the recording knows its machine
        ("x86_64", "x86_64-la57", "x86_64-la57", "sidecar"),  # --arch refines it
    ],
)
def test_text_trace_arch_comes_from_sidecar_then_option_then_default(
    tmp_path, machine, given, arch, arch_from
):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_pipe(tmp_path, machine)), ds, arch=given)
    t = _manifest(ds)
    assert (t["arch"], t["arch_from"], r.arch, r.warnings) == (arch, arch_from, arch, [])
    assert read_table(ds, "event=set_migration_pte")["pfn"].to_list() == [_decoded_pfn(arch)]


def test_recording_of_an_undecoded_machine_warns_once(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_pipe(tmp_path, "armv7l")), ds)
    assert (_manifest(ds)["arch"], len(r.warnings)) == ("armv7l", 1)
    assert read_table(ds, "event=set_migration_pte")["pfn"].to_list() == [None]


def test_cli_arch_default_is_the_traces_own(tmp_path):
    p = _pipe(tmp_path, "aarch64")
    ds = str(tmp_path / "ds")
    got = subprocess.run(
        [*cli_command(), "ingest", str(p), "--dataset", ds],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert _manifest(Dataset(ds))["arch"] == "arm64"


@pytest.mark.parametrize(
    ("machine", "arch", "pfns"), [("armv7l", "armv7l", 0), ("x86_64", "x86_64", 1)]
)
def test_perf_script_header_names_the_machine(tmp_path, machine, arch, pfns):
    p = tmp_path / "perf.txt"
    p.write_text(
        "# ========\n"
        "# hostname : pi\n"
        "# os release : 6.1.0\n"
        f"# arch : {machine}\n"
        "# nrcpus online : 2\n"
        "# ========\n"
        "#\n"
        "    fs_compactor   529/529   [000]  2958.899570000:    migrate:set_migration_pte: "
        f"addr=7f12c5800000, pte={PTE:x} order=0\n"
    )
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(p), ds, fmt="perf_script")
    assert r.event_counts == {"set_migration_pte": 1}
    t = _manifest(ds)
    assert (t["arch"], t["arch_from"], len(r.warnings)) == (arch, "trace", 1 - pfns)
    got = read_table(ds, "event=set_migration_pte")["pfn"]
    assert got.len() - got.null_count() == pfns
