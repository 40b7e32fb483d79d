"""trace-cmd ``trace.dat`` (v6 and v7) ingests exactly, without trace-cmd.

* The six real files (two workloads x v6, v7 zstd, v7 uncompressed) give the ground-truth
  event counts and the same rows, column by column, as the ingest of ``trace-cmd report -t``
  text of the same recording (pointer columns aside), and the latency flags of the tracefs
  text read from the same buffer.
* Hand-made files exercise what the real ones do not: time extends, absolute stamps,
  padding, lost-event flags, instances, big-endian, zlib, every field kind, the timestamp
  options.
* With trace-cmd installed (installed here when allowed, else skipped), field values of
  every event of a real file match ``trace-cmd report -R``, and counts match its report.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.errors import InputError
from rmapscope.ingest import ingest
from rmapscope.ingest._source import open_source, read_blocks
from rmapscope.ingest.tracedat import TraceDatReader
from rmapscope.ingest.tracedat._decode import build_decoder, render_flags
from rmapscope.record import tracedat as tw
from rmapscope.schema import default_registry
from tests.conftest import ground_truth, read_table, real

WORKLOADS = ("forkstorm", "thp")
DATS = [
    f"{w}/{d}/trace.dat"
    for w in WORKLOADS
    for d in ("trace-cmd-v6", "trace-cmd-v7", "trace-cmd-v7-uncompressed")
]
# pointers: trace-cmd prints page= as the pfn, tracefs and we cannot know vmemmap_base;
# mt/mm are hashed in tracefs text and absent from trace-cmd's; flags: trace-cmd 3.1 has none
NOT_IN_TEXT = ["flags", "page", "mt", "mm"]


def table(ds: Dataset, name: str) -> pl.DataFrame:
    return read_table(ds, f"event={name}")


def side(ds: Dataset, name: str) -> pl.DataFrame:
    return pl.read_parquet(next(ds.root.glob(f"{name}/*/*/*.parquet")))


# -- the real files ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", DATS)
def test_real_files_match_ground_truth_counts_and_manifest(path, ingested):
    gt = ground_truth(path)
    ds, result = ingested(path)
    assert result.format == "trace_dat"
    assert result.event_counts == gt["event_counts"]
    assert result.events == gt["total_events"]
    assert result.errors.total == 0, result.errors.counts
    assert result.gaps == gt["lost_event_markers"] == 0
    per_cpu = Counter()
    for name in gt["event_counts"]:
        for cpu, n in table(ds, name).group_by("cpu").len().iter_rows():
            per_cpu[str(cpu)] += n
    assert dict(per_cpu) == {str(k): v for k, v in gt["events_per_cpu"].items()}
    t = Dataset(ds.root).traces().row(0, named=True)
    assert t["kernel"] == gt["kernel"] == "6.18.44-fc-v782"
    assert t["cpus"] == gt["ncpus_online"] == 2
    assert t["clock"] == gt["capture"]["trace_clock"] == "local"
    assert t["host"] == "vm" and t["arch"] == "x86_64" and t["format"] == "trace_dat"
    # first/last timestamps, exact in ns (the report-t ground truth prints ns)
    gt_t = ground_truth(f"{path.split('/')[0]}/trace-cmd-v7/report-t.txt.gz")
    assert result.ts_first == int(gt_t["first_ts"].replace(".", ""))
    assert result.ts_last == int(gt_t["last_ts"].replace(".", ""))


@pytest.mark.parametrize("path", DATS)
def test_rows_equal_the_ingest_of_trace_cmd_report_text(path, ingested):
    """Every typed column, row for row (by seq), like the text trace-cmd printed (ns)."""
    workload = path.split("/")[0]
    a, result = ingested(path)
    b, _ = ingested(f"{workload}/trace-cmd-v7/report-t.txt.gz")
    for name in result.event_counts:
        left, right = table(a, name), table(b, name)
        drop = [c for c in NOT_IN_TEXT if c in left.columns]
        assert left.columns == right.columns, name
        assert left.drop(drop).equals(right.drop(drop)), name


@pytest.mark.parametrize("workload", WORKLOADS)
def test_latency_flags_and_comms_equal_the_tracefs_text_of_the_same_buffer(workload, ingested):
    """trace-cmd extract and `cat trace` read the same top-level buffer: same events."""
    a, result = ingested(f"{workload}/trace-cmd-v7/trace.dat")
    b, _ = ingested(f"{workload}/ftrace-text-default/trace.txt.gz")
    seen = set()
    for name in result.event_counts:
        left, right = table(a, name), table(b, name)
        assert left["flags"].equals(right["flags"]), name
        assert left["comm"].equals(right["comm"]), name
        assert ((left["ts"] + 500) // 1000 * 1000).equals(right["ts"]), name  # µs text
        seen |= set(left["flags"].to_list())
    assert {".....", "...1.", ".N...", ".n..."} <= seen


def test_pointer_fields_keep_their_raw_value(ingested):
    ds, _ = ingested("forkstorm/trace-cmd-v7/trace.dat")
    mm = table(ds, "exit_mmap")
    assert mm["mm"].min() >= 0xFFFF888000000000 and mm["mt"].min() >= 0xFFFF888000000000
    assert table(ds, "mm_page_alloc")["page"].null_count() == 24024  # vmemmap_base + pfn


def test_small_batches_and_page_groups_give_the_same_rows(tmp_path, monkeypatch, ingested):
    """Batch and page-group edges fall anywhere: merging across them loses nothing."""
    from rmapscope.ingest import tracedat

    path = "thp/trace-cmd-v7/trace.dat"
    ref, ref_result = ingested(path)  # with the default sizes, before they are patched
    monkeypatch.setattr(tracedat.TraceDatReader, "batch_events", 7919)
    monkeypatch.setattr(tracedat, "GROUP_BYTES", 5 * 4096)
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(real(path)), ds)
    assert r.event_counts == ref_result.event_counts and r.errors.total == 0
    for name in r.event_counts:
        assert table(ds, name).equals(table(ref, name)), name


def test_small_batches_keep_lost_event_markers_in_place(tmp_path, monkeypatch):
    """Batches of one event, decoded three at a time, place the markers (and rows) as one
    batch decoded alone does."""
    from rmapscope.ingest import tracedat

    ref = Dataset(tmp_path / "ref")
    monkeypatch.setattr(tracedat.TraceDatReader, "build_threads", 1)
    ingest(str(write(tmp_path, synthetic(instance=True), name="ref.dat")), ref)
    monkeypatch.setattr(tracedat.TraceDatReader, "batch_events", 1)
    monkeypatch.setattr(tracedat.TraceDatReader, "build_threads", 3)
    monkeypatch.setattr(tracedat, "GROUP_BYTES", 4096)
    ds = Dataset(tmp_path / "ds")
    ingest(str(write(tmp_path, synthetic(instance=True))), ds)
    assert side(ds, "gaps").sort("line").equals(side(ref, "gaps").sort("line"))
    for name, frame in everything(ref).items():
        assert everything(ds)[name].equals(frame), name


@pytest.mark.parametrize("path", ["thp/trace-cmd-v7/trace.dat", "forkstorm/trace-cmd-v6/trace.dat"])
def test_tables_read_back_with_the_schema_of_their_event(path, ingested):
    """Labels (comm, flags, symbolic fields...) are staged dictionary-encoded, yet every
    file reads back, in pyarrow and polars, with exactly the event's schema: strings."""
    import pyarrow.parquet as pq

    ds, result = ingested(path)
    registry = default_registry()
    for name in result.event_counts:
        want = registry.get(name).arrow_schema()
        (file,) = ds.root.glob(f"event={name}/*/*/*.parquet")
        got = pq.read_table(file).schema
        assert got.remove_metadata() == want.remove_metadata(), name
        frame = pl.read_parquet(file)
        assert frame.schema["comm"] == pl.String and frame.schema["flags"] == pl.String, name


def test_writer_stages_dictionary_and_plain_frames_of_one_table_alike(tmp_path):
    """Frames of one table may hold a string column as Enum or as String (and all-null):
    whichever comes first, the rows read back the same, as strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rmapscope.ingest import _writer

    schema = pa.schema([("seq", pa.int64()), ("ts", pa.int64()), ("comm", pa.string())])
    names = ["a", "b", None, "c", "b"]
    enum = pl.Series("comm", names, dtype=pl.Enum(["c", "b", "a"]))
    other = pl.Series("comm", names[::-1], dtype=pl.Enum(["b", "a", "c", "zz"]))
    plain = pl.Series("comm", ["x", None, "a", "y", "y"], dtype=pl.String)
    null = pl.Series("comm", [None] * 5, dtype=pl.String)
    frames = [enum, plain, other, null]
    expect = [v for s in frames for v in s.cast(pl.String).to_list()]
    for order in (frames, frames[1:] + frames[:1]):
        root = tmp_path / f"stage{len(list(tmp_path.iterdir()))}"
        writer = _writer.StagingWriter(root)
        for i, comm in enumerate(order):
            seq = pl.Series("seq", range(5 * i, 5 * i + 5), dtype=pl.Int64)
            writer.add("t", pl.DataFrame([seq, seq.alias("ts"), comm]), schema)
        writer.close()
        table = pq.read_table(root / "t" / "part-00000.parquet")
        assert table.schema.remove_metadata() == schema
        got = table.column("comm").to_pylist()
        assert got == [v for s in order for v in s.cast(pl.String).to_list()]
        assert sorted(got, key=str) == sorted(expect, key=str)
        assert table.column("seq").to_pylist() == list(range(20))


def test_registry_has_the_files_formats(tmp_path):
    path = str(real("thp/trace-cmd-v7/trace.dat"))
    src = open_source(path)
    blocks = read_blocks(src)
    reader = TraceDatReader(src, next(blocks), blocks, "x86_64", default_registry().copy())
    try:
        assert len(reader.registry.names()) > 2000  # every format of the file
        fork = reader.registry.get("sched_process_fork")
        assert fork.id == 366 and fork.system == "sched"  # the shipped format says 310
        # an event the shipped formats do not know, parsed from the file on request
        switch = reader.registry.get("sched_switch")
        assert switch is not None and "prev_comm" in dict(switch.columns())
        assert reader.header.kernel == "6.18.44-fc-v782" and reader.header.host == "vm"
    finally:
        reader.close()
        src.close()


def test_gzipped_trace_dat_is_spooled_and_gives_the_same_trace(tmp_path):
    spool_dir = Path(tempfile.gettempdir())
    before = set(spool_dir.glob("rmapscope-tracedat-*"))
    raw = real("thp/trace-cmd-v7/trace.dat").read_bytes()
    gz = tmp_path / "trace.dat.gz"
    gz.write_bytes(gzip.compress(raw, compresslevel=1))
    r1 = ingest(str(gz), Dataset(tmp_path / "ds"))
    r2 = ingest(str(real("thp/trace-cmd-v7/trace.dat")), Dataset(tmp_path / "ds2"))
    assert r1.format == "trace_dat" and r1.trace_id == r2.trace_id
    assert r1.event_counts == r2.event_counts
    assert set(spool_dir.glob("rmapscope-tracedat-*")) == before  # the spooled copy is gone


# -- hand-made files ----------------------------------------------------------------------------

KINDS_FORMAT = """name: kinds
ID: 100
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long addr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:long delta;\toffset:16;\tsize:8;\tsigned:1;
\tfield:int val;\toffset:24;\tsize:4;\tsigned:1;
\tfield:unsigned int state;\toffset:28;\tsize:4;\tsigned:0;
\tfield:short s16;\toffset:32;\tsize:2;\tsigned:1;
\tfield:unsigned short u16;\toffset:34;\tsize:2;\tsigned:0;
\tfield:signed char s8;\toffset:36;\tsize:1;\tsigned:1;
\tfield:bool on;\toffset:37;\tsize:1;\tsigned:0;
\tfield:unsigned char shift;\toffset:38;\tsize:1;\tsigned:0;
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:56;\tsize:4;\tsigned:0;
\tfield:__rel_loc char[] rl;\toffset:60;\tsize:4;\tsigned:0;
\tfield:unsigned long gfp;\toffset:64;\tsize:8;\tsigned:0;
\tfield:u8 raw[4];\toffset:72;\tsize:4;\tsigned:0;
\tfield:void * ptr;\toffset:80;\tsize:8;\tsigned:0;

print fmt: "addr=%lx delta=%ld val=%d state=%s s16=%hd u16=%hu s8=%d on=%s limit=%lu comm=%s \
name=%s rl=%s gfp=%s", REC->addr, REC->delta, REC->val, __print_symbolic(REC->state, \
{ 0, "RUNNING" }, { 1, "SLEEPING" }), REC->s16, REC->u16, REC->s8, REC->on ? "yes" : "no", \
1UL << REC->shift, REC->comm, __get_str(name), __get_rel_str(rl), (REC->gfp) ? \
__print_flags(REC->gfp, "|", {( unsigned long)((( gfp_t)((((1UL))) << (10)))|(( gfp_t)\
((((1UL))) << (11)))), "RECLAIM"}, {( unsigned long)(( gfp_t)((((1UL))) << (0))), "DMA"}) \
: "none"
""".replace("\\\n", "")

MARK_FORMAT = """name: mark
ID: 101
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int n;\toffset:8;\tsize:4;\tsigned:0;

print fmt: "n=%u", REC->n
"""

PRINT_FORMAT = """name: print
ID: 5
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;
\tfield:char buf[];\toffset:16;\tsize:0;\tsigned:1;

print fmt: "%ps: %s", (void *)REC->ip, REC->buf
"""

FORMATS = [("test", KINDS_FORMAT), ("test", MARK_FORMAT), ("ftrace", PRINT_FORMAT)]


def kinds_record(
    pid,
    *,
    addr,
    delta,
    val,
    state,
    s16,
    u16,
    s8,
    on,
    shift,
    comm,
    name,
    rel,
    gfp,
    raw,
    ptr,
    big=False,
    flags=0,
    preempt=0,
) -> bytes:
    e = ">" if big else "<"
    name_b, rel_b = name.encode() + b"\0", rel.encode() + b"\0"
    fixed = struct.pack(e + "QqiIhHbBB", addr, delta, val, state, s16, u16, s8, on, shift)
    fixed += b"\0" + comm.encode().ljust(16, b"\0")
    base = 88  # record offset of the dynamic data (after ptr)
    name_loc = (len(name_b) << 16) | base
    rel_loc = (len(rel_b) << 16) | (base + len(name_b) - 64)  # relative to the field's end
    fixed += struct.pack(e + "II", name_loc, rel_loc) + struct.pack(e + "Q", gfp)
    fixed += bytes(raw) + b"\0" * 4 + struct.pack(e + "Q", ptr)
    return tw.record(100, pid, fixed + name_b + rel_b, flags, preempt, big)


def mark(pid, n, big=False, flags=0, preempt=0) -> bytes:
    return tw.record(101, pid, struct.pack((">" if big else "<") + "I", n), flags, preempt, big)


def synthetic(big: bool = False, instance: bool = False, long_size: int = 8) -> tw.TraceSpec:
    """Two CPUs; CPU 0 exercises the clock entries, CPU 1 lost events."""
    e = {"big": big}
    k = {
        "addr": 0x7F00DEAD0000,
        "delta": -5,
        "val": -7,
        "state": 1,
        "s16": -300,
        "u16": 65000,
        "s8": -2,
        "on": 1,
        "shift": 3,
        "comm": "worker/0",
        "name": "alpha",
        "rel": "beta",
        "gfp": 0x0C01 | 0x100000,
        "raw": [1, 2, 254, 255],
        "ptr": 0xFFFF1234,
    }
    cpu0 = [
        tw.make_page(
            1_000_000,
            [
                tw.data_entry(10, kinds_record(7, **k, **e), **e),  # ts 1_000_010
                tw.extend_entry(1 << 28, **e),  # + 2**28
                tw.data_entry(5, mark(7, 1, **e, flags=0x01, preempt=0x12), **e),
                tw.padding_entry(3, 12, **e),  # a discarded event: its delta counts (trace-cmd)
                tw.data_entry(2, mark(8, 2, **e, flags=0x0C), **e),
                tw.stamp_entry(5_000_000_000, **e),  # absolute time stamp
                tw.data_entry(7, mark(9, 3, **e, flags=0x20), **e),
                tw.data_entry(
                    0,
                    tw.record(
                        5,
                        0,
                        struct.pack(">Q" if big else "<Q", 0xFFFFFFFF81000000)
                        + b"hello marker\n\0",
                        big=big,
                    ),
                    force_len=True,
                    **e,
                ),
            ],
            long_size=long_size,
            big=big,
        ),
        tw.make_page(
            6_000_000_000,
            [
                tw.data_entry(
                    1,
                    kinds_record(7, **{**k, "state": 9, "gfp": 0, "on": 0, "comm": "x"}, **e),
                    **e,
                ),
            ],
            long_size=long_size,
            big=big,
        ),
    ]
    cpu1 = [
        tw.make_page(
            1_000_005, [tw.data_entry(0, mark(11, 10, **e), **e)], long_size=long_size, big=big
        ),
        tw.make_page(
            2_000_000_000,
            [tw.data_entry(0, mark(11, 11, **e), **e)],
            long_size=long_size,
            big=big,
            lost=42,
        ),
        tw.make_page(
            3_000_000_000,
            [tw.data_entry(0, mark(11, 12, **e), **e)],
            long_size=long_size,
            big=big,
            lost_unknown=True,
        ),
    ]
    buffers = [tw.BufferSpec("", "local", {0: b"".join(cpu0), 1: b"".join(cpu1)})]
    if instance:
        inst = [
            tw.make_page(
                1_000_005, [tw.data_entry(0, mark(12, 99, **e), **e)], long_size=long_size, big=big
            )
        ]
        buffers.append(tw.BufferSpec("inst1", "local", {1: b"".join(inst)}))
    return tw.TraceSpec(
        formats=FORMATS,
        buffers=buffers,
        cmdlines="7 worker\n8 other thing\n11 eleven\n7 not-this-one\n",
        uname="Linux testhost 6.18.44-test #1 SMP aarch64",
        long_size=long_size,
        big_endian=big,
    )


def write(tmp_path: Path, spec: tw.TraceSpec, version=7, compression=None, name="t.dat") -> Path:
    data, _ = tw.write(spec, version, compression)
    p = tmp_path / name
    p.write_bytes(data)
    return p


def everything(ds: Dataset) -> dict[str, pl.DataFrame]:
    out = {}
    for d in ds.root.glob("event=*"):
        out[d.name[len("event=") :]] = table(ds, d.name[len("event=") :])
    return out


def test_clock_entries_padding_and_record_kinds(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(write(tmp_path, synthetic())), ds)
    assert r.errors.total == 0 and r.format == "trace_dat"
    assert r.event_counts == {"kinds": 2, "mark": 6, "print": 1}
    marks = table(ds, "mark")
    # CPU 0: 1_000_010 (kinds), +2**28 +5 (mark 1), padding +3, +2 (mark 2), absolute
    # 5e9 then +7 (mark 3); CPU 1 pages: 1_000_005, 2e9, 3e9 (merged by time)
    t1 = 1_000_010 + (1 << 28) + 5
    assert dict(zip(marks["n"].to_list(), marks["ts"].to_list(), strict=True)) == {
        1: t1,
        2: t1 + 3 + 2,
        3: 5_000_000_007,
        10: 1_000_005,
        11: 2_000_000_000,
        12: 3_000_000_000,
    }
    assert marks["seq"].to_list() == sorted(marks["seq"].to_list())
    assert marks.sort("ts")["n"].to_list() == [10, 1, 2, 11, 12, 3]
    # flags as the kernel prints them; comm from cmdlines (first entry wins), <...> unknown
    byn = {row["n"]: row for row in marks.iter_rows(named=True)}
    assert (byn[1]["flags"], byn[2]["flags"], byn[3]["flags"]) == ("d..21", ".nh..", ".p...")
    assert (byn[1]["comm"], byn[2]["comm"], byn[10]["comm"]) == ("worker", "other thing", "eleven")
    prints = table(ds, "print").row(0, named=True)
    assert prints["comm"] == "<idle>" and prints["pid"] == 0
    assert prints["buf"] == "hello marker\n" and prints["ip"] == 0xFFFFFFFF81000000
    t = Dataset(ds.root).traces().row(0, named=True)
    assert (t["host"], t["kernel"], t["arch"], t["clock"], t["cpus"]) == (
        "testhost",
        "6.18.44-test",
        "arm64",
        "local",
        2,
    )


def test_every_field_kind_is_decoded(tmp_path):
    ds = Dataset(tmp_path / "ds")
    ingest(str(write(tmp_path, synthetic())), ds)
    rows = table(ds, "kinds").rows(named=True)
    a, b = rows
    assert a["addr"] == 0x7F00DEAD0000 and a["delta"] == -5 and a["val"] == -7
    assert (a["s16"], a["u16"], a["s8"]) == (-300, 65000, -2)
    assert a["state"] == "SLEEPING" and b["state"] == "0x9"  # unknown symbol: hex, like the tools
    assert a["on"] is True and b["on"] is False
    assert a["limit"] == 8  # derived: 1UL << shift
    assert a["comm"] == "worker" and a["field_comm"] == "worker/0" and b["field_comm"] == "x"
    assert a["name"] == "alpha" and a["rl"] == "beta"
    assert a["gfp"] == "RECLAIM|DMA|0x100000" and b["gfp"] == "none"
    assert a["raw"] == "ARRAY[01, 02, fe, ff]"
    assert a["ptr"] == 0xFFFF1234
    assert render_flags(0, "|", ((1, "A"),)) == ""


def test_labels_are_the_same_built_from_codes_or_gathered(tmp_path, monkeypatch):
    """Label columns (comm, flags, symbolic and flags fields) are Enums built straight from
    their codes where polars can, else gathered from their labels: the rows are equal."""
    from rmapscope.ingest.tracedat import _decode as dec

    path = write(tmp_path, synthetic(instance=True))
    got = {}
    for from_codes in (True, False):
        monkeypatch.setattr(dec, "_FROM_CODES", from_codes)
        monkeypatch.setattr(dec, "_FROM_CODES_ROWS", 0)
        ds = Dataset(tmp_path / f"ds{from_codes}")
        ingest(str(path), ds)
        got[from_codes] = everything(ds)
    assert got[True].keys() == got[False].keys() and got[True]
    for name, frame in got[True].items():
        assert frame.equals(got[False][name]), name
    kinds = got[True]["kinds"]
    assert kinds["field_comm"].to_list() == ["worker/0", "x"] and kinds["state"][1] == "0x9"


def test_lost_events_become_gaps(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(write(tmp_path, synthetic())), ds)
    gaps = side(ds, "gaps").sort("line")
    marks = table(ds, "mark")
    seq_of = dict(zip(marks["n"].to_list(), marks["seq"].to_list(), strict=True))
    ts_of = dict(zip(marks["n"].to_list(), marks["ts"].to_list(), strict=True))
    assert gaps.select("kind", "cpu", "count").rows() == [("lost", 1, 42), ("lost", 1, None)]
    assert gaps["line"].to_list() == [seq_of[11], seq_of[12]]
    assert gaps["ts_end"].to_list() == [ts_of[11], ts_of[12]]
    assert gaps["ts_start"].to_list() == [ts_of[10], ts_of[11]]
    assert gaps["text"].to_list() == ["CPU:1 [42 EVENTS DROPPED]", "CPU:1 [EVENTS DROPPED]"]
    assert r.lost_events == 42 and r.gaps == 2


@pytest.mark.parametrize(
    "version,compression,big,long_size",
    [
        (6, None, False, 8),
        (7, None, False, 8),
        (7, "zlib", False, 8),
        (7, "zstd", False, 8),
        (7, "zstd", True, 8),
        (6, None, True, 4),
        (7, None, False, 4),
    ],
)
def test_versions_compressions_and_byte_orders_agree(
    tmp_path, version, compression, big, long_size
):
    ref = Dataset(tmp_path / "ref")
    ingest(str(write(tmp_path, synthetic(instance=True), name="ref.dat")), ref)
    ds = Dataset(tmp_path / "ds")
    spec = synthetic(big=big, instance=True, long_size=long_size)
    r = ingest(str(write(tmp_path, spec, version, compression)), ds)
    assert r.errors.total == 0
    want, got = everything(ref), everything(ds)
    assert want.keys() == got.keys()
    for name in want:
        assert got[name].equals(want[name]), name
    assert side(ds, "gaps").drop("line").equals(side(ref, "gaps").drop("line"))


def test_instances_are_merged_by_time_with_their_name(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(write(tmp_path, synthetic(instance=True))), ds)
    marks = table(ds, "mark")
    inst = marks.filter(pl.col("instance").is_not_null())
    assert inst.select("n", "instance", "cpu").rows() == [(99, "inst1", 1)]
    # same timestamp as n=10 on CPU 1 of the top buffer: the top buffer comes first
    assert marks.sort("seq")["n"].to_list()[:2] == [10, 99]
    assert r.event_counts["mark"] == 7


def test_timestamp_options_offset_date_and_tsc2nsec(tmp_path):
    spec = synthetic()
    spec.extra_options = [(7, b"1000\0"), (1, b"0x2\0")]  # OFFSET ns, DATE µs
    ds = Dataset(tmp_path / "ds")
    ingest(str(write(tmp_path, spec)), ds)
    assert table(ds, "mark").filter(pl.col("n") == 10)["ts"][0] == 1_000_005 + 1000 + 2000
    spec = synthetic()
    spec.clock = "x86-tsc"
    for b in spec.buffers:
        b.clock = "x86-tsc"
    spec.extra_options = [(14, struct.pack("<IIQ", 3, 1, 0))]  # ns = ticks * 3 >> 1
    ds = Dataset(tmp_path / "ds2")
    r = ingest(str(write(tmp_path, spec, name="tsc.dat")), ds)
    assert table(ds, "mark").filter(pl.col("n") == 10)["ts"][0] == 1_000_005 * 3 >> 1
    t = Dataset(ds.root).traces().row(0, named=True)
    assert t["clock"] == "x86-tsc" and r.events == 9


def test_unknown_event_ids_and_short_records_are_counted_not_fatal(tmp_path):
    spec = synthetic()
    page = tw.make_page(
        10,
        [
            tw.data_entry(1, mark(7, 1)),
            tw.data_entry(1, tw.record(4242, 7, b"\0" * 8)),  # no such event
            tw.data_entry(1, tw.record(100, 7, b"\0" * 4)),  # shorter than its format
        ],
    )
    spec.buffers = [tw.BufferSpec("", "local", {0: page})]
    r = ingest(str(write(tmp_path, spec)), Dataset(tmp_path / "ds"))
    assert r.events == 1
    assert r.errors.counts == {"unknown_event_id": 1, "record_shorter_than_format": 1}


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda d: d[:5000], "beyond the end of the file"),
        (lambda d: d[:20], "truncated"),
        (lambda d: b"\x17\x08Dtracing9\0" + d[12:], "version 9 (at byte 10) is not supported"),
        (lambda d: d[:12] + b"\x00\x03" + d[14:], "bad long size 3 at byte 13"),
    ],
)
def test_corrupt_files_raise_input_errors_with_a_byte_offset(tmp_path, damage, words):
    good = write(tmp_path, synthetic(), 6).read_bytes()
    bad = tmp_path / "bad.dat"
    bad.write_bytes(damage(good))
    with pytest.raises(InputError, match=re.escape(words)) as err:
        ingest(str(bad), Dataset(tmp_path / "ds"))
    assert str(bad) in str(err.value) and "byte" in str(err.value)


def test_overrunning_page_entry_is_reported_with_its_page(tmp_path):
    spec = synthetic()
    page = bytearray(tw.make_page(10, [tw.data_entry(1, mark(7, 1)), tw.data_entry(1, mark(7, 2))]))
    page[8:12] = struct.pack("<I", 20)  # commit cuts the second record in half
    spec.buffers = [tw.BufferSpec("", "local", {0: bytes(page)})]
    p = write(tmp_path, spec, 6)
    with pytest.raises(InputError, match=r"CPU 0 page at byte \d+: an entry that overruns"):
        ingest(str(p), Dataset(tmp_path / "ds"))


# -- against trace-cmd itself --------------------------------------------------------------------


def trace_cmd() -> str:
    """The trace-cmd binary, installed with apt-get when missing and allowed (root, apt-get,
    and RMAPSCOPE_NO_INSTALL unset); else the test is skipped saying why."""
    found = shutil.which("trace-cmd")
    if found:
        return found
    if os.environ.get("RMAPSCOPE_NO_INSTALL"):
        pytest.skip("trace-cmd is not installed (and RMAPSCOPE_NO_INSTALL forbids installing it)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(
            "trace-cmd is not installed and cannot be installed here (needs root + apt-get)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "trace-cmd"]
    try:
        if subprocess.run(cmd, capture_output=True, env=env, timeout=900).returncode:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=900)
            subprocess.run(cmd, capture_output=True, env=env, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"trace-cmd is not installed and apt-get failed: {e}")
    found = shutil.which("trace-cmd")
    if not found:
        pytest.skip("trace-cmd is not installed and `apt-get install trace-cmd` did not provide it")
    return found


_LINE = re.compile(
    r"^\s*(?:(?P<inst>[^\s:]+): )?(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>[^:\s]+):\s*(?P<rest>.*)$"
)


def report(binary: str, path: Path, *args: str) -> list[str]:
    out = subprocess.run(
        [binary, "report", *args, "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        errors="replace",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


class RawValue:
    """Turns the text ``trace-cmd report -R`` prints for a field into our column's value."""

    def __init__(self, col, conv) -> None:
        self.col = col
        self.hex = conv is not None and conv.kind in ("hex", "ptr")
        f = col.fdef
        self.text = f.is_string or f.array_len is not None or bool(f.dynamic)

    def number(self, text: str) -> int:
        text = text.strip()
        return int(text, 16) if text.startswith("0x") or self.hex else int(text)

    def __call__(self, text: str):
        col = self.col
        if self.text:
            return text
        v = self.number(text)
        if col.kind == "symbolic":
            return dict(col.table).get(v % (1 << 64), f"0x{v % (1 << 64):x}")
        if col.kind == "flags":
            delim, entries, _cond, other = col.table
            return render_flags(v, delim, entries) if v or other is None else other
        if col.kind == "bool":
            return v != 0
        return v


def raw_expectations(registry, name: str, text: str) -> list[tuple[str, str, RawValue]]:
    """(column, field name, converter of -R text) for each field of event ``name``."""
    schema = registry.get(name)
    convs = {c.column: c for c in schema.print_fmt.conversions} if schema.print_fmt else {}
    return [
        (col.name, col.fdef.name, RawValue(col, convs.get(col.fdef.name)))
        for col in build_decoder(schema, text).columns
        if col.source == "field"
    ]


@pytest.mark.slow
def test_field_values_match_trace_cmd_report_raw(tmp_path, ingested):
    """Every event of a real file (89144, >= 10,000) against `trace-cmd report -R -t`."""
    binary = trace_cmd()
    path = "forkstorm/trace-cmd-v7/trace.dat"
    ds, result = ingested(path)
    src = open_source(str(real(path)))
    blocks = read_blocks(src)
    reader = TraceDatReader(src, next(blocks), blocks, "x86_64", default_registry().copy())
    texts = {name: text for name, _system, text in reader._ids.values()}
    lines = [ln for ln in report(binary, real(path), "-R", "-t") if not ln.startswith("cpus=")]
    ours = {name: table(ds, name) for name in result.event_counts}
    plans = {name: raw_expectations(reader.registry, name, texts[name]) for name in ours}
    reader.close()
    src.close()
    rows = {name: iter(frame.iter_rows(named=True)) for name, frame in ours.items()}
    checked = Counter()
    for seq, line in enumerate(lines):
        m = _LINE.match(line)
        assert m, line
        name = m["event"]
        row = next(rows[name])
        assert row["seq"] == seq, line
        assert (row["pid"], row["cpu"], row["comm"]) == (int(m["pid"]), int(m["cpu"]), m["comm"])
        assert row["ts"] == int(m["ts"].replace(".", "")), line
        fields = [f for _c, f, _fn in plans[name]]
        rx = "^" + " ".join(rf"{re.escape(f)}=(.*?)" for f in fields) + "$"
        values = re.match(rx, m["rest"].strip())
        assert values, (name, m["rest"])
        for (column, _f, fn), text in zip(plans[name], values.groups(), strict=True):
            assert row[column] == fn(text), (name, column, text, row[column])
        checked[name] += 1
    assert sum(checked.values()) == result.events >= 10_000


@pytest.mark.slow
@pytest.mark.parametrize("path", DATS)
def test_counts_match_trace_cmd_report(path, ingested):
    binary = trace_cmd()
    _, result = ingested(path)
    counts = Counter()
    for line in report(binary, real(path)):
        m = _LINE.match(line)
        if m:
            counts[m["event"]] += 1
    assert dict(counts) == result.event_counts


@pytest.mark.slow
def test_hand_made_file_reads_the_same_in_trace_cmd(tmp_path):
    """Time extends, absolute stamps, padding, lost events and instances, as trace-cmd sees
    them (trace-cmd supports v6, v7 uncompressed and zstd)."""
    binary = trace_cmd()
    for version, compression in ((6, None), (7, None), (7, "zstd")):
        p = write(tmp_path, synthetic(instance=True), version, compression, f"t{version}.dat")
        ds = Dataset(tmp_path / f"ds{version}{compression}")
        ingest(str(p), ds)
        ours = pl.concat(
            [table(ds, n).select("seq", "ts", "cpu", "pid", "event") for n in ("mark", "kinds")]
            + [table(ds, "print").select("seq", "ts", "cpu", "pid", "event")]
        ).sort("seq")
        theirs = []
        for line in report(binary, p, "-t"):
            m = _LINE.match(line)
            if m:
                theirs.append(
                    (int(m["ts"].replace(".", "")), int(m["cpu"]), int(m["pid"]), m["event"])
                )
        assert ours.select("ts", "cpu", "pid", "event").rows() == theirs, (version, compression)
