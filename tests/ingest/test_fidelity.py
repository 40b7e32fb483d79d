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

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from tests.conftest import read_table

DATA = Path(__file__).parent.parent / "data" / "stacks"
EVENTS = 129  # event lines of report.txt (a stack and its frames is one)
FRAMES = 629  # "=>" lines of report.txt and trace.txt


def _ingest(tmp_path: Path, name: str, **kw):
    ds = Dataset(tmp_path / name.replace(".", "_"))
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
