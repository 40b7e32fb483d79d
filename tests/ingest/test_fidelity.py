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
