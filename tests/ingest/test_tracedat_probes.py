"""Probe events of the contract in a trace.dat (kprobe, kretprobe, fprobe formats): the same
``probe_<name>`` tables the text readers make, func and caller named from the file's
kallsyms, and a probe named like a tracepoint (``remove_migration_pte``) kept apart from it.
The lab's recordings check the same against the text of real kernels (tests/lab)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.ingest.tracedat._probes import Symbols, probe_format
from rmapscope.record import tracedat as tw
from tests.conftest import CAPTURE_SKIP, REPO, ingest_text, read_table, sorted_rows

_COMMON = (
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
    "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
    "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
)


def _fmt(name: str, ev_id: int, fields: list[tuple[str, str, int]], fmt: str) -> str:
    body = "".join(
        f"\tfield:{typ} {f};\toffset:{8 + 8 * i};\tsize:{size};\tsigned:0;\n"
        for i, (typ, f, size) in enumerate(fields)
    )
    return f"name: {name}\nID: {ev_id}\nformat:\n{_COMMON}{body}\nprint fmt: {fmt}\n"


KPROBE = _fmt(
    "remove_migration_pte",
    1500,
    [("unsigned long", "__probe_ip", 8)]
    + [("u64", k, 8) for k in ("folio", "mm", "pgoff", "anon_vma", "addr")],
    '"(%lx) folio=0x%Lx mm=0x%Lx pgoff=0x%Lx anon_vma=0x%Lx addr=0x%Lx", REC->__probe_ip, '
    "REC->folio, REC->mm, REC->pgoff, REC->anon_vma, REC->addr",
)
KRETPROBE = _fmt(
    "copy_page_range_ret",
    1501,
    [
        ("unsigned long", "__probe_func", 8),
        ("unsigned long", "__probe_ret_ip", 8),
        ("u64", "ret", 8),
    ],
    '"(%lx <- %lx) ret=0x%Lx", REC->__probe_func, REC->__probe_ret_ip, REC->ret',
)
# the tracepoint of the same name (another system's event), as the kernel ships it
TRACEPOINT = (REPO / "data/formats/migrate/remove_migration_pte/format").read_text()
KALLSYMS = (
    b"0000000000000000 A fixed_percpu_data\n"
    b"ffffffff81000000 T _stext\n"
    b"ffffffff81100000 T dup_mmap\n"
    b"ffffffff81100000 t dup_mmap_alias\n"
    b"ffffffff81100800 d some_data\n"
    b"ffffffff81200000 T copy_page_range\n"
    b"ffffffff81300000 T remove_migration_pte\n"
    b"ffffffff81400000 T end_of_text\n"
)
TEXT = (
    "# tracer: nop\n#\n"
    "  workload-7   [000] .....  1.000001: remove_migration_pte: (remove_migration_pte+0x0/0x"
    "200) folio=0xffffea0000100000 mm=0xff11000001000000 pgoff=0x10 anon_vma=0xff110000020000"
    "00 addr=0x7f0000010000\n"
    "  workload-7   [000] .....  1.000002: remove_migration_pte: addr=7f0000010000, pte=3e00 "
    "order=0\n"
    "  workload-7   [000] .....  1.000003: copy_page_range_ret: (dup_mmap+0x438/0x610 <- copy"
    "_page_range) ret=0x0\n"
)


def _dat(tmp_path, version: int, kallsyms: bytes = KALLSYMS):
    le = "<"
    kprobe = struct.pack(
        le + "6Q",
        0xFFFFFFFF81300000,
        0xFFFFEA0000100000,
        0xFF11000001000000,
        0x10,
        0xFF11000002000000,
        0x7F0000010000,
    )
    tracepoint = struct.pack(le + "QQi4x", 0x7F0000010000, 0x3E00, 0)
    ret = struct.pack(le + "3Q", 0xFFFFFFFF81200000, 0xFFFFFFFF81100438, 0)
    page = tw.make_page(
        1_000_000_000,
        [
            tw.data_entry(1000, tw.record(1500, 7, kprobe)),
            tw.data_entry(1000, tw.record(710, 7, tracepoint)),
            tw.data_entry(1000, tw.record(1501, 7, ret)),
        ],
    )
    spec = tw.TraceSpec(
        formats=[("migrate", TRACEPOINT), ("rmapscope", KPROBE), ("rmapscope", KRETPROBE)],
        buffers=[tw.BufferSpec(cpus={0: page})],
        cmdlines="7 workload\n",
        kallsyms=kallsyms,
        cpus=1,
    )
    path = tmp_path / f"probes-v{version}.dat"
    path.write_bytes(tw.write(spec, version)[0])
    return path


@pytest.mark.parametrize("version", [6, 7])
def test_probe_events_get_the_text_readers_tables(tmp_path, version):
    ds = Dataset(tmp_path / "dat")
    r = ingest(str(_dat(tmp_path, version)), ds)
    assert r.errors.total == 0
    assert r.event_counts == {
        "probe_remove_migration_pte": 1,
        "remove_migration_pte": 1,
        "probe_copy_page_range_ret": 1,
    }
    text_ds, text = ingest_text(tmp_path, TEXT)
    assert text.event_counts == r.event_counts
    for table in r.event_counts:
        got = sorted_rows(ds, f"event={table}", CAPTURE_SKIP)
        want = sorted_rows(text_ds, f"event={table}", CAPTURE_SKIP)
        assert got.equals(want), (table, got.to_dicts(), want.to_dicts())
    ret = read_table(ds, "event=probe_copy_page_range_ret").to_dicts()[0]
    # the first alias of dup_mmap's address, as %pS names it
    assert (ret["func"], ret["caller"], ret["ret"]) == ("copy_page_range", "dup_mmap", 0)


def test_without_kallsyms_func_and_caller_are_null(tmp_path):
    ds = Dataset(tmp_path / "dat")
    ingest(str(_dat(tmp_path, 6, kallsyms=b"")), ds)
    row = read_table(ds, "event=probe_remove_migration_pte").to_dicts()[0]
    assert row["func"] is None and row["caller"] is None and row["pgoff"] == 0x10


def test_symbols_name_the_function_holding_an_address():
    s = Symbols(KALLSYMS)
    addrs = [0xFFFFFFFF81100900, 0xFFFFFFFF81100000, 0x10, 0, 0xFFFFFFFF813FFFFF]
    got = s.lookup(np.array(addrs, dtype=np.uint64), "f").to_list()
    # data symbols are no functions; below the first text symbol or 0: unknown
    assert got == ["dup_mmap", "dup_mmap", None, None, "remove_migration_pte"]


def test_only_probes_of_the_contract_are_probe_formats():
    assert probe_format("remove_migration_pte", KPROBE) is not None
    assert probe_format("remove_migration_pte", TRACEPOINT) is None
    assert probe_format("my_own_probe", KPROBE.replace("remove_migration_pte", "x")) is None
    ret = probe_format("copy_page_range_ret", KRETPROBE)
    assert ret is not None and ret.ip is None and ret.ret_ip == (16, 8)
    assert ret.keys == {"ret": (24, 8)} and ret.min_size == 32
