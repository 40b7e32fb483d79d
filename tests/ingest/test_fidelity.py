"""Issue 11, points 5, 6, 7, 10 and the event count: what a trace says is kept whole.

``tests/data/stacks`` is one recording made on this machine (its README says how): a tracefs
instance with ``options/stacktrace``, multi-line ``trace_marker`` writes and ``sched_switch``
lines printing ``R+``; its tracefs ``trace``, its trace.dat and trace-cmd's report of it.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from tests.conftest import ingest_text, read_table

DATA = Path(__file__).parent.parent / "data" / "stacks"
EVENTS = 129  # event lines of report.txt (a stack and its frames is one)
FRAMES = 629  # "=>" lines of report.txt and trace.txt


def _ingest(tmp_path: Path, name: str, **kw):
    ds = Dataset(tmp_path / name.replace(".", "_"))  # tmp_path may be a new sub-directory
    return ds, ingest(str(DATA / name), ds, **kw)


def _report_stacks() -> list[list[int]]:
    """The frames of every kernel_stack of trace-cmd's report, as addresses."""
    stacks: list[list[int]] = []
    for line in gzip.decompress((DATA / "report.txt.gz").read_bytes()).decode().splitlines():
        if re.search(r"\] +\d+\.\d+: kernel_stack: ", line):
            stacks.append([])
        elif m := re.match(r"=> \S+ \(([0-9a-f]+)\)$", line):
            stacks[-1].append(int(m.group(1), 16))
    return stacks


def test_the_recording_counts_its_own_events():
    report = gzip.decompress((DATA / "report.txt.gz").read_bytes()).decode().splitlines()
    assert sum(1 for ln in report if ln.startswith("fid_rec_")) == EVENTS
    assert sum(1 for ln in report if ln.startswith("=> ")) == FRAMES


def test_tracedat_stacks_keep_every_frame_like_trace_cmd(tmp_path):
    ds, r = _ingest(tmp_path, "trace.dat.gz")
    assert r.errors.total == 0, r.errors.counts  # no record_shorter_than_format
    assert (r.events, r.stack_frames) == (EVENTS, 0)
    stacks = read_table(ds, "event=kernel_stack").sort("seq")
    assert stacks.schema["caller"] == pl.List(pl.UInt64)
    assert "arg0" not in stacks.columns
    want = _report_stacks()
    assert stacks["caller"].to_list() == want
    lengths = {len(s) for s in want}
    assert min(lengths) < 8 < max(lengths)  # shorter and longer than the format's caller[8]
    assert stacks["size"].to_list() == [len(s) for s in want]


def test_a_stack_is_one_event_in_every_reader(tmp_path):
    for name in ("trace.txt.gz", "report.txt.gz", "trace.dat.gz"):
        ds, r = _ingest(tmp_path, name)
        frames = 0 if name.endswith(".dat.gz") else FRAMES
        assert (r.events, r.stack_frames) == (EVENTS, frames), name
        t = ds.traces().row(0, named=True)
        assert (t["events"], t["stack_frames"]) == (EVENTS, frames), name


# -- point 5: messages holding newlines ---------------------------------------------------
MESSAGE = "-e first line\nsecond line\n\nfourth after blank"
FORK = "comm=bash pid=25681 child_comm=bash child_pid=25685"
# (format, header, event-line prefix of task sh-25686 at 12999.739587 and of a fork, event
# name the tool prints for a trace_marker write, its payload prefix)
TRACEFS_HEAD = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/3   #P:2\n#\n"
VARIANTS = {
    "tracefs": (
        TRACEFS_HEAD,
        "              sh-25686   [001] ...1. 12999.73958{}: ",
        "tracing_mark_write: ",
    ),
    "trace_pipe": (
        "",
        "              sh-25686   [001] ...1. 12999.73958{}: ",
        "tracing_mark_write: ",
    ),
    "noirqinfo": (
        TRACEFS_HEAD,
        "              sh-25686   [001] 12999.73958{}: ",
        "tracing_mark_write: ",
    ),
    "tgid": (
        TRACEFS_HEAD,
        "              sh-25686   (  25686) [001] ...1. 12999.73958{}: ",
        "tracing_mark_write: ",
    ),
    "latency": (
        "# tracer: nop\n#\n# latency trace v1.1.5 on 6.18.44\n#\n",
        "      sh-25686     1...1. 523958{}us : ",
        "tracing_mark_write: ",
    ),
    "tcreport": (
        "cpus=2\n",
        "fid_rec_23143:               sh-25686 [001] 12999.73958{}: ",
        "print:                tracing_mark_write: ",
    ),
    "tcreport-2.x": (
        "version = 6\nCPU 0 is empty\ncpus=2\n",
        "              sh-25686 [001] 12999.73958{}: ",
        "print:                tracing_mark_write: ",
    ),
    "tcreport-l": (
        "cpus=2\n",
        "      sh-25686   1...1. 12999.73958{}: ",
        "print:                tracing_mark_write: ",
    ),
}


def _marker_text(variant: str) -> tuple[str, str]:
    head, prefix, marker = VARIANTS[variant]
    fork = "sched_process_fork: " + FORK
    if variant.startswith("tcreport"):
        fork = "sched_process_fork:   " + FORK
    text = (
        head
        + prefix.format(1) + fork + "\n"
        + prefix.format(2) + marker + MESSAGE + "\n"
        + prefix.format(3) + marker + "single\n"
        + prefix.format(4) + marker + "-e x\ny\n"
        + prefix.format(5) + fork + "\n"
    )  # fmt: skip
    return text, marker


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_message_lines_stay_with_their_event_in_every_text_variant(tmp_path, variant):
    text, marker = _marker_text(variant)
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0, r.errors.counts  # no unparsed_line
    assert r.events == 5
    other = read_table(ds, "other_events").sort("seq")
    lead = marker.split(":", 1)[1].lstrip() if marker.startswith("print:") else ""
    assert other["fields"].to_list() == [lead + m for m in (MESSAGE, "single", "-e x\ny")]
    assert read_table(ds, "event=sched_process_fork")["child_pid"].to_list() == [25685] * 2


def test_the_recorded_messages_whole_across_any_block_boundary(tmp_path, monkeypatch):
    from rmapscope.ingest import _source

    for name, lead in (("trace.txt.gz", ""), ("report.txt.gz", "tracing_mark_write: ")):
        data = gzip.decompress((DATA / name).read_bytes())
        cut = data.index(b"\nsecond line\n") + 1
        # one block; a block that ends right before a continuation line (and some others)
        for size in (1 << 16, cut, 301):
            monkeypatch.setattr(_source, "BLOCK_SIZE", size)
            ds, r = _ingest(tmp_path / str(size), name)
            assert r.errors.total == 0, (name, r.errors.counts)
            assert (r.events, r.stack_frames) == (EVENTS, FRAMES)
            other = read_table(ds, "other_events")
            marks = other.filter(pl.col("event").is_in(["tracing_mark_write", "print"]))
            assert marks.sort("seq")["fields"].to_list() == [
                lead + m for m in (MESSAGE, "single", "-e x\ny")
            ]


def test_lines_after_a_typed_event_are_still_errors(tmp_path):
    """A typed event's text (no trailing ``%s``) never continues: a torn or foreign line
    after it is an unparsed_line, as before."""
    text, _ = _marker_text("trace_pipe")
    lines = text.splitlines(keepends=True)
    lines.insert(1, "not a trace line\n")  # after the first fork
    _ds, r = ingest_text(tmp_path, "".join(lines))
    assert r.errors.counts == {"unparsed_line": 1}


# -- point 7: casts in print fmts, old print/bprint ----------------------------------------
# from this machine's tracefs (Linux 6.18.44): events/maple_tree/ma_write/format
MA_WRITE = """name: ma_write
ID: 2323
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const char * fn;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long min;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long max;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long index;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long last;\toffset:40;\tsize:8;\tsigned:0;
\tfield:unsigned long piv;\toffset:48;\tsize:8;\tsigned:0;
\tfield:void * val;\toffset:56;\tsize:8;\tsigned:0;
\tfield:void * node;\toffset:64;\tsize:8;\tsigned:0;

print fmt: "%s\\tNode %p (%lu %lu) range:%lu-%lu piv (%lu) val %p", REC->fn, (void *) REC->node, \
(unsigned long) REC->min, (unsigned long) REC->max, (unsigned long) REC->index, \
(unsigned long) REC->last, (unsigned long) REC->piv, (void *) REC->val
"""
# events/xfs/xfs_log_assign_tail_lsn: a narrowing (uint) cast prints part of the field
XFS_PRINT = (
    '"dev %d:%d new tail lsn %d/%d, old lsn %d/%d, head lsn %d/%d", '
    "((unsigned int) ((REC->dev) >> 20)), ((unsigned int) ((REC->dev) & ((1U << 20) - 1))), "
    "((uint)((REC->new_lsn)>>32)), ((uint)(REC->new_lsn)), ((uint)((REC->old_lsn)>>32)), "
    "((uint)(REC->old_lsn)), ((uint)((REC->head_lsn)>>32)), ((uint)(REC->head_lsn))"
)


def test_casts_in_front_of_a_field_add_no_columns():
    from rmapscope._printfmt import parse_print_fmt
    from rmapscope.schema import parse_format

    schema = parse_format(MA_WRITE)
    assert [c for c, _ in schema.columns()] == [
        "fn", "min", "max", "index", "last", "piv", "val", "node"
    ]  # fmt: skip
    convs = schema.print_fmt.conversions
    assert [(c.column, c.derived) for c in convs[1:3]] == [("node", False), ("min", False)]
    xfs = parse_print_fmt(XFS_PRINT)
    assert all(c.derived for c in xfs.conversions)  # computed or narrowed: not the fields


def test_tracedat_print_has_no_spurious_arg_column(tmp_path):
    ds, _ = _ingest(tmp_path, "trace.dat.gz")
    prints = read_table(ds, "event=print").sort("seq")
    assert [c for c in prints.columns if c.startswith("arg")] == []
    assert prints["buf"].to_list() == [m + "\n" for m in (MESSAGE, "single", "-e x\ny")]
    assert set(prints["ip"].to_list()) == {0xFFFFFFFF814AA7C1}  # tracing_mark_write


def _ftrace_format(name: str, ev_id: int, fields: str, fmt: str) -> str:
    common = (
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n"
    )
    return f"name: {name}\nID: {ev_id}\nformat:\n{common}\n{fields}\nprint fmt: {fmt}\n"


# Linux 3.x-4.x spelled the flexible arrays without brackets (and printed %pf)
OLD_PRINT = _ftrace_format(
    "print",
    5,
    "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:char buf;\toffset:16;\tsize:0;\tsigned:0;\n",
    '"%pf: %s", REC->ip, REC->buf',
)
OLD_BPRINT = _ftrace_format(
    "bprint",
    6,
    "\tfield:unsigned long ip;\toffset:8;\tsize:8;\tsigned:0;\n"
    "\tfield:const char * fmt;\toffset:16;\tsize:8;\tsigned:0;\n"
    "\tfield:u32 buf;\toffset:24;\tsize:0;\tsigned:0;\n",
    '"%pf: %s", REC->ip, REC->fmt',
)
FMT_ADDR = 0xFFFFFFFF81E0A9C8
PRINTK = (
    b'0xffffffff81e0a9c8 : "migrate %s pfn=%lx order=%d nid=%hd ptr %ps\\n"\n'
    b'0xffffffff81e0aa00 : "no args\\n"\n'
)


def _old_kernel_tracedat(tmp_path: Path, version: int) -> Path:
    import struct

    from rmapscope.record import tracedat as tw

    ip = 0xFFFFFFFF81123450
    text = b"TRACING hello\n\0"
    # vbin_printf: "%s" inline with its NUL, then each value aligned to its size (8 to 4)
    args = b"anon\0" + b"\0\0\0" + struct.pack("<Q", 0x1C0FFE) + struct.pack("<i", -3)
    args += struct.pack("<h", 2) + b"\0\0" + struct.pack("<Q", ip)
    entries = [
        tw.data_entry(0, tw.record(5, 7, struct.pack("<Q", ip) + text)),
        tw.data_entry(10, tw.record(6, 7, struct.pack("<QQ", ip, FMT_ADDR) + args)),
        tw.data_entry(10, tw.record(6, 7, struct.pack("<QQ", ip, FMT_ADDR + 0x38))),
        tw.data_entry(10, tw.record(6, 7, struct.pack("<QQ", ip, 0x1234))),
    ]
    spec = tw.TraceSpec(
        formats=[("ftrace", OLD_PRINT), ("ftrace", OLD_BPRINT)],
        buffers=[tw.BufferSpec("", "local", {0: tw.make_page(1_000_000, entries)})],
        cmdlines="7 worker\n",
        printk=PRINTK,
        uname="Linux old 4.4.0 x86_64",
    )
    data, _ = tw.write(spec, version)
    path = tmp_path / f"old{version}.dat"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("version", [6, 7])
def test_old_kernel_print_is_text_and_bprint_is_formatted(tmp_path, version):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_old_kernel_tracedat(tmp_path, version)), ds)
    assert r.errors.total == 0 and r.event_counts == {"print": 1, "bprint": 3}
    p = read_table(ds, "event=print").row(0, named=True)
    assert p["buf"] == "TRACING hello\n"  # not the integer 1128354388 of "TRAC"
    assert p["ip"] == 0xFFFFFFFF81123450
    b = read_table(ds, "event=bprint").sort("seq")
    assert [c for c in b.columns if c.startswith("arg")] == []
    assert b["fmt"].to_list() == [FMT_ADDR, FMT_ADDR + 0x38, 0x1234]
    assert b["buf"].to_list() == [
        "migrate anon pfn=1c0ffe order=-3 nid=2 ptr 0xffffffff81123450\n",
        "no args\n",
        "(NO FORMAT FOUND at 1234)\n",
    ]


# -- point 10: labels keep their numbers ----------------------------------------------------
def _recorded_formats() -> dict[str, str]:
    """The format texts of the recording's trace.dat, by event name."""
    from rmapscope.ingest.tracedat._file import FileReader, read_metadata

    raw = gzip.decompress((DATA / "trace.dat.gz").read_bytes())
    f = FileReader(_spool(raw), "trace.dat")
    try:
        formats = read_metadata(f).formats
    finally:
        f.close()
    return {re.search(r"^name: (\S+)", t, re.M).group(1): t for _s, t in formats}


def _spool(data: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".dat", delete=False) as out:
        out.write(data)
    return out.name


def _registry_with(*names: str):
    from rmapscope.schema import default_registry

    reg = default_registry().copy()
    formats = _recorded_formats()
    for name in names:
        reg.add_format(formats[name], system="sched" if name.startswith("sched") else "irq")
    return reg


def test_prev_state_label_is_whole_and_its_number_kept_in_both_readers(tmp_path):
    reg = _registry_with("sched_switch", "irq_handler_exit")
    text_ds, _ = _ingest(tmp_path, "trace.txt.gz", registry=reg)
    dat_ds, _ = _ingest(tmp_path, "trace.dat.gz")
    key = "seq"
    # the text's time is in microseconds, and it names no instance
    other = ["seq", "ts", "instance"]
    text = read_table(text_ds, "event=sched_switch").sort(key).drop(other)
    dat = read_table(dat_ds, "event=sched_switch").sort(key).drop(other)
    assert [c for c in dat.columns if c.startswith("arg")] == []
    assert text.columns == dat.columns and "prev_state_raw" in dat.columns
    assert text.equals(dat)  # the same rows, R+ and its number included
    states = dict(zip(dat["prev_state"], dat["prev_state_raw"], strict=True))
    assert states["R+"] == 0x100 and states["R"] == 0  # TASK_REPORT_MAX: preempted
    assert states["S"] == 1 and states["D"] == 2
    # irq_handler_exit.ret (an int printed handled/unhandled): the number stays
    irq_dat = read_table(dat_ds, "event=irq_handler_exit").sort(key)
    irq_text = read_table(text_ds, "event=irq_handler_exit").sort(key)
    assert irq_dat.schema["ret"] == pl.Boolean and irq_dat.schema["ret_raw"] == pl.Int64
    assert (irq_dat["ret_raw"] != 0).to_list() == irq_dat["ret"].to_list()
    # text says 0 for "unhandled" and only "not 0" for "handled"
    assert irq_text["ret_raw"].to_list() == [0 if not r else None for r in irq_dat["ret"]]


# Linux 5.4's sched_switch (TASK_REPORT_MAX 0x100 printed as "+")
SWITCH_5_4 = (
    '"prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s%s ==> next_comm=%s next_pid=%d '
    'next_prio=%d", REC->prev_comm, REC->prev_pid, REC->prev_prio, (REC->prev_state & ((((0x0000'
    " | 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0040) + 1) << 1) - 1)) ? "
    "__print_flags(REC->prev_state & ((((0x0000 | 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | "
    '0x0020 | 0x0040) + 1) << 1) - 1), "|", { 0x0001, "S" }, { 0x0002, "D" }, { 0x0004, "T" }, '
    '{ 0x0008, "t" }, { 0x0010, "X" }, { 0x0020, "Z" }, { 0x0040, "P" }, { 0x0080, "I" }) : "R",'
    " REC->prev_state & (((0x0000 | 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0040)"
    ' + 1) << 1) ? "+" : "", REC->next_comm, REC->next_pid, REC->next_prio'
)


def test_a_5_4_kernels_prev_state_text(tmp_path):
    formats = _recorded_formats()
    text = formats["sched_switch"].split("print fmt:")[0] + "print fmt: " + SWITCH_5_4 + "\n"
    from rmapscope.schema import default_registry

    reg = default_registry().copy()
    reg.add_format(text, system="sched")
    line = (
        "          <idle>-0     [001] d..2  4711.000{}: sched_switch: prev_comm=kworker/1:1 "
        "prev_pid=77 prev_prio=120 prev_state={} ==> next_comm=swapper/1 next_pid=0 "
        "next_prio=120\n"
    )
    states = ["R+", "R", "D", "S|D", "I"]
    body = "".join(line.format(i, s) for i, s in enumerate(states))
    ds, r = ingest_text(tmp_path, body, registry=reg)
    assert r.errors.total == 0, r.errors.counts
    rows = read_table(ds, "event=sched_switch").sort("seq")
    assert "arg4" not in rows.columns
    assert rows["prev_state"].to_list() == states
    assert rows["prev_state_raw"].to_list() == [0x100, 0, 2, 3, 0x80]


def test_every_label_of_the_shipped_events_has_its_number():
    from rmapscope.schema import default_registry

    reg = default_registry()
    mp = dict(reg.get("mm_migrate_pages").columns())
    assert mp["reason"] == "string" and mp["reason_raw"] == "int64"
    assert dict(reg.get("mm_page_alloc").columns())["gfp_flags_raw"] == "int64"
    assert "group_dead_raw" not in dict(reg.get("sched_process_exit").columns())  # a bool


def test_text_labels_map_back_to_the_trace_dat_numbers(tmp_path):
    """mm_page_alloc's gfp_flags (a __print_flags over expressions, ``none`` for 0) and
    mm_migrate_pages' reason (__print_symbolic): the number behind each label."""
    text = (
        "            bash-2134    [000] .....   116.100000: mm_page_alloc: page=00000000a3c2e1f0 "
        "pfn=0x1289d9 order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP\n"
        "            bash-2134    [000] .....   116.100001: mm_page_alloc: page=00000000a3c2e1f1 "
        "pfn=0x1289da order=0 migratetype=0 gfp_flags=none\n"
        "            bash-2134    [000] .....   116.100002: mm_migrate_pages: nr_succeeded=1 "
        "nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 nr_split=0 "
        "mode=MIGRATE_SYNC reason=syscall_or_cpuset\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0
    alloc = read_table(ds, "event=mm_page_alloc").sort("seq")
    # GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT, __GFP_ZERO 0x100, __GFP_COMP 0x40000 (6.18)
    assert alloc["gfp_flags_raw"].to_list() == [0x400CC0 | 0x100 | 0x40000, 0]
    mp = read_table(ds, "event=mm_migrate_pages").row(0, named=True)
    assert (mp["mode"], mp["mode_raw"], mp["reason"], mp["reason_raw"]) == (
        "MIGRATE_SYNC",
        2,
        "syscall_or_cpuset",
        3,
    )


def test_user_stacks_end_at_their_first_zero_and_old_kernel_stacks_at_ulong_max(tmp_path):
    """user_stack: eight words, zero-filled after the last frame (the kernel's text stops at
    the first 0); a 4.x kernel_stack: eight words, ended by ULONG_MAX."""
    import struct

    from rmapscope.record import tracedat as tw

    formats = _recorded_formats()
    user = [0x7F0000001000, 0x7F0000002000, 0x55550000AAAA] + [0] * 5
    old = [0xFFFFFFFF81000010, 0xFFFFFFFF81000020, (1 << 64) - 1] + [0] * 5
    entries = [
        tw.data_entry(0, tw.record(13, 7, struct.pack("<II8Q", 7, 0, *user))),
        tw.data_entry(5, tw.record(4, 7, struct.pack("<ii8Q", 8, 0, *old))),
    ]
    spec = tw.TraceSpec(
        formats=[("ftrace", formats["user_stack"]), ("ftrace", formats["kernel_stack"])],
        buffers=[tw.BufferSpec("", "local", {0: tw.make_page(1_000_000, entries)})],
        cmdlines="7 worker\n",
    )
    data, _ = tw.write(spec, 7)
    path = tmp_path / "u.dat"
    path.write_bytes(data)
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(path), ds)
    assert r.errors.total == 0 and (r.events, r.stack_frames) == (2, 0)
    assert read_table(ds, "event=user_stack")["caller"].to_list() == [user[:3]]
    assert read_table(ds, "event=kernel_stack")["caller"].to_list() == [old[:2]]


def test_only_message_like_events_continue(tmp_path):
    """A line that is no event after an event not named like a kernel function (no
    trace_printk caller, no trace_marker) is an error, as before."""
    text, _ = _marker_text("trace_pipe")
    odd = "              sh-25686   [001] ...1. 12999.739590: <svg/onload=x>: a=1\n"
    lines = text.splitlines(keepends=True)
    lines[1:1] = [odd, "garbage <b>\n"]  # after the first fork
    _ds, r = ingest_text(tmp_path, "".join(lines))
    assert r.errors.counts == {"unparsed_line": 1}
