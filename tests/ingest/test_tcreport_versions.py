"""trace-cmd report across versions: the 2.x header (``version = 6``, ``CPU N is empty``,
``cpus=N``) and 3.x stack traces whose frames start at column 0 (``=> func (addr)``)."""

from __future__ import annotations

import polars as pl

from tests.conftest import ingest_text, read_table


def _pad(event: str) -> str:
    """``event: `` padded as trace-cmd pads it: the name and colon in 20 columns."""
    return f"{event}: " + " " * max(0, 20 - len(event) - 1)


def _line(comm: str, pid: int, cpu: int, ts: str, event: str, payload: str) -> str:
    """An event line in trace-cmd 2.x's default layout (no flags column)."""
    return f"{comm:>16}-{pid:<5} [{cpu:03d}] {ts:>12}: {_pad(event)}{payload}\n"


HEADER_2X = "version = 6\nCPU 0 is empty\nCPU 2 is empty\nCPU 3 is empty\nCPU 5 is empty\ncpus=6\n"


def _fork(i: int) -> str:
    pid = 2134 + i
    return _line(
        "bash", 2134, 1, f"{5093 + i / 1000:.6f}", "sched_process_fork",
        f"comm=bash pid=2134 child_comm=bash child_pid={pid}",
    )  # fmt: skip


def _free(i: int) -> str:
    return _line(
        "kworker/u12:3", 312, 4, f"{5093 + i / 1000 + 0.0005:.6f}", "mm_page_free",
        f"page=0x{0x1289D9 + i:x} pfn=0x{0x1289D9 + i:x} order=0",
    )  # fmt: skip


def _check_2x(tmp_path, n: int) -> None:
    text = HEADER_2X + "".join(_fork(i) + _free(i) for i in range(n))
    ds, r = ingest_text(tmp_path, text, name="report.txt")
    assert r.format == "tcreport"
    assert r.errors.total == 0
    assert r.event_counts == {"sched_process_fork": n, "mm_page_free": n}
    forks = read_table(ds, "event=sched_process_fork")
    assert forks["child_pid"].to_list() == [2134 + i for i in range(n)]
    assert forks["child_comm"].to_list() == ["bash"] * n  # no padding in the field text
    free = read_table(ds, "event=mm_page_free")
    assert free["pfn"].to_list() == [0x1289D9 + i for i in range(n)]
    assert free["comm"].to_list() == ["kworker/u12:3"] * n and free["cpu"].unique().to_list() == [4]
    assert free["flags"].null_count() == n  # 2.x prints no flags column
    manifest = ds.traces().row(0, named=True)
    assert (manifest["format"], manifest["cpus"]) == ("tcreport", 6)
    assert manifest["empty_cpus"] == [0, 2, 3, 5]


def test_trace_cmd_2x_report_is_a_tcreport(tmp_path):
    _check_2x(tmp_path, 300)


def test_short_trace_cmd_2x_report_is_not_rejected(tmp_path):
    # two events under six header lines: no layout has a majority of the lines
    _check_2x(tmp_path, 1)


def test_trace_cmd_2x_report_fields_of_unknown_events_have_no_padding(tmp_path):
    text = (
        HEADER_2X
        + _fork(0)
        # a comm wider than trace-cmd's 16 columns: parsed by the regex path
        + _line("a very long comm name", 2138, 1, "5093.000600", "foo_unknown", "a=1 b=2")
        + _line("bash", 2134, 1, "5093.000700", "bar_unknown", "x=3")
    )
    ds, r = ingest_text(tmp_path, text, name="report.txt")
    assert (r.format, r.errors.total) == ("tcreport", 0)
    other = read_table(ds, "other_events").sort("seq")
    assert other["event"].to_list() == ["foo_unknown", "bar_unknown"]
    assert other["fields"].to_list() == ["a=1 b=2", "x=3"]
    assert other["comm"].to_list() == ["a very long comm name", "bash"]


def test_trace_cmd_2x_header_without_cpus_line_is_still_a_tcreport(tmp_path):
    # "version = N" is trace-cmd's alone; a report whose cpus= line went missing
    text = "version = 6\nCPU 1 is empty\n" + _fork(0)
    ds, r = ingest_text(tmp_path, text, name="report.txt")
    assert (r.format, r.events, r.errors.total) == ("tcreport", 1, 0)
    assert ds.traces().row(0, named=True)["empty_cpus"] == [1]


def test_trace_cmd_3x_report_without_empty_cpus_notes_none(tmp_path):
    text = "cpus=2\n" + _fork(0)
    ds, r = ingest_text(tmp_path, text)
    assert r.format == "tcreport"
    assert ds.traces().row(0, named=True)["empty_cpus"] == []


# -- trace-cmd 3.x stack traces: frames at column 0 ------------------------------------------

FRAMES = [
    "try_to_wake_up (ffffffffa8902e5f)",
    "wake_up_q (ffffffffa8903a12)",
    "futex_wake (ffffffffa89c4b01)",
    "do_futex (ffffffffa89c6d7e)",
    "__x64_sys_futex (ffffffffa89c7230)",
]


def _stack_event(i: int, cpu: int) -> str:
    ts = f"{2958 + i / 1000:.6f}"
    return (
        f"      capture.sh-{32695 + i} [{cpu:03d}] {ts:>12}: {_pad('kernel_stack')}<stack trace >\n"
        + "".join(f"=> {f}\n" for f in FRAMES)
    )


def test_column_0_stack_frames_are_stack_frame_rows(tmp_path):
    text = "cpus=2\n" + _fork(0) + _stack_event(1, 0) + _free(2)
    ds, r = ingest_text(tmp_path, text)
    assert (r.format, r.errors.total) == ("tcreport", 0)
    assert r.event_counts["stack_frame"] == len(FRAMES)
    other = read_table(ds, "other_events").sort("seq")
    stack = other.filter(pl.col("event") == "kernel_stack").row(0, named=True)
    frames = other.filter(pl.col("event") == "stack_frame")
    assert frames["fields"].to_list() == [f"=> {f}" for f in FRAMES]
    assert frames["seq"].to_list() == [stack["seq"] + 1 + k for k in range(len(FRAMES))]
    for col in ("ts", "cpu", "pid", "comm"):
        assert frames[col].to_list() == [stack[col]] * len(FRAMES), col
    assert (stack["ts"], stack["cpu"], stack["pid"]) == (2958_001_000_000, 0, 32696)


def test_column_0_stack_frames_cut_by_a_block_boundary_keep_their_event(tmp_path, monkeypatch):
    """Blocks of 4 KiB cut the stacks everywhere: every frame still has its event's time,
    cpu and task (those at the top of a block take them from the block before)."""
    from rmapscope.ingest import _source

    monkeypatch.setattr(_source, "BLOCK_SIZE", 1 << 12)
    n = 300
    text = "cpus=4\n" + "".join(_stack_event(i, i % 4) for i in range(n))
    assert len(text) > 15 * (1 << 12)  # many blocks
    ds, r = ingest_text(tmp_path, text)
    assert (r.format, r.errors.total) == ("tcreport", 0)
    assert r.event_counts == {"kernel_stack": n, "stack_frame": n * len(FRAMES)}
    other = read_table(ds, "other_events").sort("seq")
    stacks = other.filter(pl.col("event") == "kernel_stack").select("seq", "ts", "cpu", "pid")
    frames = other.filter(pl.col("event") == "stack_frame").select("seq", "ts", "cpu", "pid")
    assert frames["ts"].null_count() == 0
    own = frames.join_asof(stacks.rename(lambda c: f"e_{c}"), left_on="seq", right_on="e_seq")
    assert (own["ts"] == own["e_ts"]).all() and (own["pid"] == own["e_pid"]).all()
    assert (own["cpu"] == own["e_cpu"]).all() and (own["seq"] - own["e_seq"]).max() == len(FRAMES)
