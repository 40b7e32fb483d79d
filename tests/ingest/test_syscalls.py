"""Syscall tracepoints (issue 11, point 1): tracefs prints ``sys_enter_mbind`` as
``sys_mbind(start: 0x.., mode: 2, ...)`` and ``sys_exit_mbind`` as ``sys_mbind -> 0x..``;
both must give the typed rows a trace.dat of the same recording gives."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from tests.conftest import ingest_text, live_tracefs, read_table

DATA = Path(__file__).parent.parent / "data" / "syscalls"
ENTER = (
    "              sc-25680   [001] .....  6014.091508: sys_mbind(start: 0x7fb692200000, "
    "len: 0x400000, mode: 2, nmask: 0x7ffc434772e8, maxnode: 0x40, flags: 3)\n"
)
EXIT_OK = "              sc-25680   [001] .....  6014.094949: sys_mbind -> 0x0\n"
EXIT_ERR = "              sc-25680   [001] .....  6014.094953: sys_mbind -> 0xffffffffffffffea\n"
# sys_enter_X/sys_exit_X tables of the recording
TABLES = [
    f"sys_{d}_{s}"
    for s in ("clone", "madvise", "mbind", "mremap", "munmap")
    for d in ("enter", "exit")
]


def _tables(ds: Dataset) -> set[str]:
    return {p.name for p in ds.root.iterdir() if p.name.startswith("event=")}


def test_tracefs_syscall_lines_are_typed_tracepoints(tmp_path):
    ds, _ = ingest_text(tmp_path, ENTER + EXIT_OK + EXIT_ERR)
    assert _tables(ds) == {"event=sys_enter_mbind", "event=sys_exit_mbind"}
    enter = read_table(ds, "event=sys_enter_mbind")
    row = enter.row(0, named=True)
    assert row["event"] == "sys_enter_mbind"
    assert (row["start"], row["len"], row["mode"], row["maxnode"]) == (
        0x7FB692200000,
        0x400000,
        2,
        0x40,
    )
    assert row["nmask"] == 0x7FFC434772E8
    assert row["field_flags"] == 3  # "flags" is a common column
    assert enter.schema["start"] == pl.UInt64
    assert row["__syscall_nr"] is None  # text does not print it
    exit_ = read_table(ds, "event=sys_exit_mbind")
    assert exit_.schema["ret"] == pl.Int64
    assert exit_["ret"].to_list() == [0, -22]
    assert (
        read_table(ds, "ingest_errors").is_empty()
        or read_table(ds, "ingest_errors")["count"].sum() == 0
    )


def test_unknown_syscall_args_are_name_value_pairs(tmp_path):
    text = (
        "           a.out-7   [000] .....    10.000001: sys_frobnicate(fd: 3, buf: 0x7ffc1000)\n"
        "           a.out-7   [000] .....    10.000002: sys_frobnicate -> 0xfffffffffffffff2\n"
        "           a.out-7   [000] .....    10.000003: sys_getpid()\n"
        "           a.out-7   [000] .....    10.000004: sys_getpid -> 0x7\n"
    )
    ds, _ = ingest_text(tmp_path, text)
    enter = read_table(ds, "event=sys_enter_frobnicate")
    assert enter.select("fd", "buf").row(0) == (3, 0x7FFC1000)
    assert enter.schema["buf"] == pl.UInt64
    assert read_table(ds, "event=sys_exit_frobnicate")["ret"].to_list() == [-14]
    assert read_table(ds, "event=sys_enter_getpid").height == 1
    assert read_table(ds, "event=sys_exit_getpid")["ret"].to_list() == [7]


def test_odd_comm_syscall_lines_take_the_regex_path(tmp_path):
    # a comm wider than 16 columns does not fit the fast tokenizer
    text = ENTER.replace("              sc-25680", "a-very-long-comm-name-x-25680") + (
        EXIT_ERR.replace("              sc-25680", "a-very-long-comm-name-x-25680")
    )
    ds, _ = ingest_text(tmp_path, text)
    assert read_table(ds, "event=sys_exit_mbind")["ret"].to_list() == [-22]
    assert read_table(ds, "event=sys_enter_mbind")["comm"].to_list() == ["a-very-long-comm-name-x"]


def _ingest_fixture(src: Path, tmp_path: Path, name: str) -> Dataset:
    path = tmp_path / name
    path.write_bytes(gzip.decompress((src / f"{name}.gz").read_bytes()))
    ds = Dataset(tmp_path / f"ds-{name}")
    ingest(str(path), ds)
    return ds


def _rows(ds: Dataset, table: str) -> pl.DataFrame:
    """A table's rows as all sources must agree: ts to the microsecond text prints; no
    seq/instance/flags (trace-cmd prints no flags) and no __syscall_nr (text prints none)."""
    df = read_table(ds, f"event={table}")
    return df.with_columns((pl.col("ts") + 500) // 1000 * 1000).drop(
        "seq", "instance", "flags", "__syscall_nr"
    )


def _same_rows(src: Path, tmp_path: Path) -> list[Dataset]:
    """Ingest trace.dat, trace.txt and report.txt of ``src``; assert they give equal rows."""
    sets = [_ingest_fixture(src, tmp_path, n) for n in ("trace.dat", "trace.txt", "report.txt")]
    tables = _tables(sets[0])
    assert "event=sys_exit_mbind" in tables
    for ds in sets:
        assert _tables(ds) == tables
        assert read_table(ds, "other_events").is_empty()
    for table in sorted(tables):
        first = _rows(sets[0], table.removeprefix("event="))
        assert first.height > 0
        for ds in sets[1:]:
            assert _rows(ds, table.removeprefix("event=")).equals(first), table
    return sets


def test_recorded_trace_text_trace_dat_and_report_give_the_same_rows(tmp_path):
    sets = _same_rows(DATA, tmp_path)
    assert _tables(sets[0]) == {f"event={t}" for t in TABLES}
    assert _rows(sets[1], "sys_exit_mbind")["ret"].to_list() == [0, -22]
    assert _rows(sets[1], "sys_exit_madvise")["ret"].to_list()[:2] == [0, -22]
    enter = _rows(sets[1], "sys_enter_mbind")
    assert enter["field_flags"].to_list() == [3, 0xFF]
    assert enter["nmask"].dtype == pl.UInt64


def test_trace_dat_has_the_syscall_nr_and_no_print_fmt_arg_columns(tmp_path):
    ds = _ingest_fixture(DATA, tmp_path, "trace.dat")
    enter = read_table(ds, "event=sys_enter_mbind")
    assert set(enter["__syscall_nr"]) == {237}  # x86_64 mbind
    assert not [c for c in enter.columns if c.startswith("arg")]


@pytest.mark.live
def test_live_recording_gives_the_same_rows(tmp_path):
    root = live_tracefs()
    for tool in ("gcc", "trace-cmd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    binary = tmp_path / "syscalls"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(DATA / "syscalls.c")], check=True)
    name = "rmapscope-test-syscalls"
    inst = root / "instances" / name
    inst.mkdir()
    try:
        for s in ("clone", "madvise", "mbind", "mremap", "munmap"):
            for d in ("enter", "exit"):
                (inst / "events" / "syscalls" / f"sys_{d}_{s}" / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        subprocess.run([str(binary)], check=True)
        (inst / "tracing_on").write_text("0")
        raw = {"trace.txt": (inst / "trace").read_bytes()}
        dat = tmp_path / "trace.dat"
        subprocess.run(
            ["trace-cmd", "extract", "-B", name, "-o", str(dat)], check=True, capture_output=True
        )
        raw["trace.dat"] = dat.read_bytes()
        raw["report.txt"] = subprocess.run(
            ["trace-cmd", "report", str(dat)], check=True, capture_output=True
        ).stdout
    finally:
        if inst.exists():  # trace-cmd extract may remove the instance itself
            inst.rmdir()
    src = tmp_path / "rec"
    src.mkdir()
    for n, data in raw.items():
        (src / f"{n}.gz").write_bytes(gzip.compress(data))
    sets = _same_rows(src, tmp_path)
    assert -22 in _rows(sets[1], "sys_exit_mbind")["ret"].to_list()


def test_trace_pipe_of_only_syscall_exits(tmp_path):
    ds, _ = ingest_text(tmp_path, EXIT_OK + EXIT_ERR + EXIT_OK)
    assert read_table(ds, "event=sys_exit_mbind")["ret"].to_list() == [0, -22, 0]


def test_latency_format_syscall_lines(tmp_path):
    head = "# tracer: nop\n#\n# latency trace v1.1.5 on 6.18.0\n"
    text = head + (
        "      sc-25680   1.... 3426us : sys_mbind(start: 0x7fb692200000, len: 0x400000, "
        "mode: 2, nmask: 0x7ffc434772e8, maxnode: 0x40, flags: 3)\n"
        "      sc-25680   1.... 3430us : sys_mbind -> 0xffffffffffffffea\n"
    )
    ds, _ = ingest_text(tmp_path, text)
    assert read_table(ds, "event=sys_enter_mbind")["len"].to_list() == [0x400000]
    assert read_table(ds, "event=sys_exit_mbind")["ret"].to_list() == [-22]


def test_perf_script_syscall_tracepoints(tmp_path):
    text = (
        "              sc 25680 [001]  6014.091508: syscalls:sys_enter_mbind: start: "
        "0x7fbd62600000, len: 0x00400000, mode: 0x00000002, nmask: 0x7ffd434772e8, "
        "maxnode: 0x00000040, flags: 0x00000003\n"
        "              sc 25680 [001]  6014.094953: syscalls:sys_exit_mbind: 0xffffffffffffffea\n"
    )
    ds, _ = ingest_text(tmp_path, text)
    row = read_table(ds, "event=sys_enter_mbind").row(0, named=True)
    assert (row["mode"], row["field_flags"], row["maxnode"]) == (2, 3, 64)
    assert read_table(ds, "event=sys_exit_mbind")["ret"].to_list() == [-22]


def test_a_syscall_payload_that_is_no_argument_list_is_an_unparsed_field_error(tmp_path):
    text = ENTER + "              sc-25680   [001] .....  6014.094950: sys_mbind(oops)\n"
    ds, _ = ingest_text(tmp_path, text)
    assert read_table(ds, "event=sys_enter_mbind").height == 1
    errors = read_table(ds, "ingest_errors")
    assert errors.filter(pl.col("reason").str.contains("sys_enter_mbind"))["count"].sum() == 1


def test_other_kernels_argument_names_give_a_schema_of_the_names_printed(tmp_path):
    # a kernel whose madvise prints "len" where the shipped 6.18 format says "len_in"
    text = (
        "              sc-25680   [001] .....  6014.094955: sys_madvise(start: 0x7fbd62600000, "
        "len: 0x400000, behavior: 0xe)\n"
    )
    ds, _ = ingest_text(tmp_path, text)
    enter = read_table(ds, "event=sys_enter_madvise")
    assert enter.select("start", "len", "behavior").row(0) == (0x7FBD62600000, 0x400000, 14)
    assert "len_in" not in enter.columns
