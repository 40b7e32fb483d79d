"""Text layouts and line variants, from real lines (and real lines edited where a layout
of another kernel or tool version is needed)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import sys

import polars as pl
import pytest
import zstandard

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from tests.conftest import ingest_text, read_table, real_lines


def tracefs_header() -> str:
    """The 12 header lines of a real tracefs ``trace`` file."""
    return "".join(real_lines("forkstorm/ftrace-text-default/trace.txt.gz", 1, 12))


FORK = (
    "{comm}-{pid} [000] .....  2958.783882: sched_process_fork: comm={comm2} pid={pid} "
    "child_comm={comm2} child_pid=530\n"
)


@pytest.mark.parametrize(
    "comm",
    [
        "Web Content",
        "kworker/u16:2",
        "foo-123",
        "(sd-pam)",
        "memfd:sealed",
        "<...>",
        "<idle>",
        "a[b]c",
        "x: y",
    ],
)
def test_comms_with_spaces_dashes_colons_and_brackets(tmp_path, comm):
    line = f"{comm:>16}-528     [001] .N...  2958.783882: task_rename: pid=528 oldcomm=a newcomm=b oom_score_adj=0\n"  # noqa: E501
    ds, r = ingest_text(tmp_path, tracefs_header() + line)
    assert r.errors.total == 0
    got = read_table(ds, "event=task_rename").row(0, named=True)
    assert (got["comm"], got["pid"], got["cpu"], got["flags"]) == (comm, 528, 1, ".N...")
    assert got["ts"] == 2958783882000


def test_old_kernel_layout_pid_width_5_and_4_flag_chars(tmp_path):
    text = (
        "            bash-2134  [000] ....   116.118248: task_newtask: pid=2137 comm=bash "
        "clone_flags=1200000 oom_score_adj=0\n"
        "         python3-2137  [001] d..1   116.685520: set_migration_pte: "
        "addr=7f6cf5de6000, pte=e7ffffffdfc7c000 order=0\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.format == "trace_pipe" and r.errors.total == 0
    t = read_table(ds, "event=task_newtask").row(0, named=True)
    assert (t["pid"], t["field_pid"], t["clone_flags"], t["flags"]) == (
        2134,
        2137,
        0x1200000,
        "....",
    )
    s = read_table(ds, "event=set_migration_pte").row(0, named=True)
    assert (s["pfn"], s["addr"], s["flags"]) == (0x101C1F, 0x7F6CF5DE6000, "d..1")


def test_trace_cmd_variants(tmp_path):
    text = (
        "cpus=2\n"
        "CPU 1 is empty\n"
        "            bash-2134  [000] .....   116.118248: sched_process_fork:   comm=bash "
        "pid=2134 child_comm=bash child_pid=2137\n"  # trace-cmd >= 3.3 prints flags
        "            bash-2134  [000]   116.118300: mm_page_free:         page=0x1289d9 "
        "pfn=0x1289d9 order=0\n"
        "   inst: bash-2134  [001]   116.118400: mm_page_free:         page=0x1289da "
        "pfn=0x1289da order=0\n"
        "CPU:1 [3 EVENTS DROPPED]\n"
        "            bash-2134  [001]   116.118500: mm_page_free:         page=0x1289db "
        "pfn=0x1289db order=0\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.format == "tcreport" and r.errors.total == 0
    assert r.event_counts == {"sched_process_fork": 1, "mm_page_free": 3}
    free = read_table(ds, "event=mm_page_free")
    assert free["instance"].to_list() == [None, "inst", None]
    assert free["pfn"].to_list() == [0x1289D9, 0x1289DA, 0x1289DB]
    gaps = pl.read_parquet(next(ds.root.glob("gaps/*/*/*.parquet"))).row(0, named=True)
    assert (gaps["kind"], gaps["cpu"], gaps["count"]) == ("dropped", 1, 3)
    assert (gaps["ts_start"], gaps["ts_end"]) == (116118400000, 116118500000)


def test_trace_cmd_raw_counter_clock(tmp_path):
    text = (
        "cpus=1\n"
        "            bash-2134  [000]     0.000000394709: mm_page_free:         page=0x1 "
        "pfn=0x1 order=0\n"
    )
    ds, _r = ingest_text(tmp_path, text)
    assert read_table(ds, "event=mm_page_free")["ts"].to_list() == [394709]
    assert ds.traces()["clock"].to_list() == ["counter"]


def test_older_kernel_field_sets_parse_by_key(tmp_path):
    text = (
        # 5.x: no group_dead; mm_migrate_pages without thp counters; decimal pfn (< 5.14)
        "            bash-2134  [000] .....   116.1: sched_process_exit: comm=bash pid=2134 "
        "prio=120\n"
        "            bash-2134  [000] .....   116.2: mm_migrate_pages: nr_succeeded=3 "
        "nr_failed=1 mode=MIGRATE_SYNC reason=compaction\n"
        "            bash-2134  [000] .....   116.3: mm_page_free: page=000000001234abcd "
        "pfn=1193046 order=0\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0
    ex = read_table(ds, "event=sched_process_exit").row(0, named=True)
    assert (ex["field_pid"], ex["prio"], ex["group_dead"]) == (2134, 120, None)
    mp = read_table(ds, "event=mm_migrate_pages").row(0, named=True)
    assert (mp["succeeded"], mp["failed"], mp["thp_succeeded"], mp["reason"]) == (
        3,
        1,
        None,
        "compaction",
    )
    assert read_table(ds, "event=mm_page_free")["pfn"].to_list() == [1193046]


def test_unknown_events_kprobes_and_stacks_are_kept_raw(tmp_path):
    text = (
        "            bash-2134  [000] .....   116.1: myprobe: (try_to_migrate_one+0x0/0x5d0) "
        "folio=0xffffea000403f7c0 addr=0x7f6cf5de6000\n"
        "            bash-2134  [000] .....   116.2: tracing_mark_write: hello: world\n"
        "            bash-2134  [000] .....   116.3: <stack trace>\n"
        " => try_to_migrate_one+0x1a/0x5d0\n"
        " => rmap_walk_anon+0x12b/0x200\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0 and (r.events, r.stack_frames) == (3, 2)  # a stack is one event
    other = read_table(ds, "other_events")
    assert other["event"].to_list() == [
        "myprobe",
        "tracing_mark_write",
        "stack_trace",
        "stack_frame",
        "stack_frame",
    ]
    assert (
        other["fields"][0]
        == "(try_to_migrate_one+0x0/0x5d0) folio=0xffffea000403f7c0 addr=0x7f6cf5de6000"
    )
    assert other["fields"][1] == "hello: world"
    assert other["fields"][3] == "=> try_to_migrate_one+0x1a/0x5d0"
    assert other["ts"].to_list() == [116100000000, 116200000000] + [116300000000] * 3


@pytest.mark.parametrize("codec", ["gzip", "zstd", "xz", "bz2"])
def test_compressed_inputs_are_detected_by_magic_bytes(tmp_path, codec):
    text = "".join(real_lines("thp/ftrace-text-default/trace.txt.gz", 1, 3000)).encode()
    pack = {
        "gzip": gzip.compress,
        "xz": lzma.compress,
        "bz2": bz2.compress,
        "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    }[codec]
    plain = tmp_path / "plain.txt"
    plain.write_bytes(text)
    packed = tmp_path / "trace.bin"  # no telling extension
    packed.write_bytes(pack(text))
    ds = Dataset(tmp_path / "ds")
    a = ingest(str(plain), ds)
    b = ingest(str(packed), ds)
    assert a.trace_id == b.trace_id and b.skipped  # same content, same trace
    assert a.events == 3000 - 12


def test_stdin(tmp_path):
    text = "".join(real_lines("forkstorm/ftrace-trace_pipe/trace_pipe.txt.gz", 1, 2000))
    ds = tmp_path / "ds"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from rmapscope.cli import main; main()",
            "ingest",
            "-",
            "--dataset",
            str(ds),
        ],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    t = Dataset(ds).traces().row(0, named=True)
    assert (t["source"], t["events"], t["format"]) == ("<stdin>", 2000, "trace_pipe")


def test_format_override_and_unknown_format(tmp_path):
    text = "".join(real_lines("forkstorm/ftrace-trace_pipe/trace_pipe.txt.gz", 1, 50))
    _ds, r = ingest_text(tmp_path, text, fmt="tracefs")
    assert r.format == "tracefs" and r.events == 50
    with pytest.raises(Exception, match="unknown format"):
        ingest_text(tmp_path, text, name="u.txt", fmt="nonsense")


def test_probe_lines_named_like_tracepoints_stay_probes(tmp_path):
    text = (
        "  fs_compactor-529     [000] .....  2958.899568: remove_migration_pte: "
        "(remove_migration_pte+0x0/0x1a0) folio=0xffffea0004070000 mm=0xffff888104a8e000 "
        "pgoff=0x7f12c5800 anon_vma=0xffff888100001000 addr=0x7f12c5800000\n"
        "  fs_compactor-529     [000] .....  2958.899570: remove_migration_pte: "
        "addr=7f12c5800000, pte=800000010c522005 order=0\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0
    assert r.event_counts == {"remove_migration_pte": 1, "probe_remove_migration_pte": 1}
    assert read_table(ds, "event=remove_migration_pte")["pfn"].to_list() == [0x10C522]
    probe = read_table(ds, "event=probe_remove_migration_pte").row(0, named=True)
    assert probe["event"] == "remove_migration_pte" and probe["func"] == "remove_migration_pte"
    assert (probe["folio"], probe["mm"], probe["pgoff"], probe["addr"]) == (
        0xFFFFEA0004070000,
        0xFFFF888104A8E000,
        0x7F12C5800,
        0x7F12C5800000,
    )
