"""Replay walks events in time order where the file is not (bpftrace), and a fork window
starts at the parent's last event of any table."""

from __future__ import annotations

import gzip
import re

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import engine, replay
from rmapscope.replay.simulator import HEADER, simulate
from tests.conftest import real

#: A tracefs line: task-pid [cpu] flags secs.usecs: event: payload
_TRACEFS = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+\S+\s+"
    r"(?P<secs>\d+)\.(?P<us>\d{6}): (?P<rest>.*)$"
)
#: Replay columns that name events by seq (which differ between two files of one trace).
_SEQS = [*engine.SEQ_COLS, *engine.SEQ_LIST_COLS]


def _bpftrace(text: str) -> list[tuple[int, int, str]]:
    """The event lines of a tracefs text as bpftrace prints them: (ts, cpu, line)."""
    out = []
    for line in text.splitlines():
        if (m := _TRACEFS.match(line)) is None:
            continue
        ts = int(m["secs"]) * 1_000_000_000 + int(m["us"]) * 1000
        cpu = int(m["cpu"])
        out.append((ts, cpu, f"{ts} [{cpu:03d}] {m['comm']}-{m['pid']} {m['rest']}"))
    return out


def _replayed(tmp_path, name: str, lines: list[str]) -> dict[str, pl.DataFrame]:
    path = tmp_path / f"{name}.txt"
    path.write_text("Attaching 13 probes...\n" + "\n".join(lines) + "\n")
    ds = Dataset(tmp_path / f"ds-{name}")
    r = ingest(str(path), ds)
    assert r.format == "bpftrace"
    return replay(ds)[r.trace_id]


def _comparable(out: dict[str, pl.DataFrame]) -> dict[str, list[dict]]:
    """The replay tables without the columns that hold seqs, in a canonical row order."""
    res = {}
    for name in ("migrations", "migration_batches", "fork_windows", "violations"):
        df = out[name].drop([c for c in _SEQS if c in out[name].columns])
        res[name] = df.sort(df.columns, nulls_last=True).to_dicts()
    return res


@pytest.mark.parametrize(
    ("scenario", "seed", "bug"),
    [("fork-vs-remove", 1, "child-first"), ("compaction-storm", 174, "child-first")],
)
def test_bpftrace_shuffled_by_cpu_replays_as_in_time_order(tmp_path, scenario, seed, bug):
    """A bpftrace file read CPU buffer by CPU buffer gives the same findings and migrations
    as the same events in time order (and would not, walked in file order)."""
    sim = simulate(scenario, seed=seed, cpus=2, bug=bug)
    events = _bpftrace(sim.text)
    by_cpu = [line for _, _, line in sorted(events, key=lambda e: e[1])]  # stable: file order
    in_time = [line for _, _, line in events]
    assert by_cpu != in_time
    ordered = _replayed(tmp_path, "in_time", in_time)
    shuffled = _replayed(tmp_path, "by_cpu", by_cpu)
    assert ordered["violations"].height  # the bug is found ...
    assert ordered["migrations"].height
    assert _comparable(shuffled) == _comparable(ordered)  # ... and the same from either file


def test_file_order_would_replay_differently(tmp_path, monkeypatch):
    """The test above can fail: walked in file order, the shuffled file replays otherwise."""
    sim = simulate("fork-vs-remove", seed=1, cpus=2, bug="child-first")
    events = _bpftrace(sim.text)
    ordered = _replayed(tmp_path, "in_time", [line for _, _, line in events])
    monkeypatch.setattr(engine, "UNORDERED_FORMATS", ())
    by_cpu = [line for _, _, line in sorted(events, key=lambda e: e[1])]
    assert _comparable(_replayed(tmp_path, "by_cpu", by_cpu)) != _comparable(ordered)


def test_seqs_in_results_are_the_files_own(tmp_path):
    """Replay of a shuffled file names its events by the file's seqs (joinable to events)."""
    sim = simulate("fork-vs-remove", seed=1, cpus=2, bug="child-first")
    events = _bpftrace(sim.text)
    path = tmp_path / "by_cpu.txt"
    lines = [line for _, _, line in sorted(events, key=lambda e: e[1])]
    path.write_text("\n".join(lines) + "\n")
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(path), ds)
    out = replay(ds)[r.trace_id]
    sets = pl.read_parquet(ds.files("set_migration_pte", trace_id=r.trace_id))
    removes = pl.read_parquet(ds.files("remove_migration_pte", trace_id=r.trace_id))
    m = out["migrations"]
    assert m.height
    first = m.join(sets, left_on="seq_first_set", right_on="seq")
    assert first.height == m.height and (first["t_first_set"] == first["ts"]).all()
    last = m.join(removes, left_on="seq_last_remove", right_on="seq")
    assert last.height == m.height and (last["t_last_remove"] == last["ts"]).all()
    assert set(m["evidence_sets"].explode()) <= set(sets["seq"])


def test_real_bpftrace_trace_replays_as_its_time_ordered_lines(tmp_path):
    """The real bpftrace recording (file order is not time order) against its own lines
    sorted by time."""
    with gzip.open(real("forkstorm/bpftrace/bpftrace.txt.gz"), "rt") as f:
        lines = f.read().splitlines()
    head = re.compile(r"^\s*(\d+)\s+\[(\d+)\]")
    timed = [(int(m[1]), int(m[2]), i, ln) for i, ln in enumerate(lines) if (m := head.match(ln))]
    assert [t[3] for t in timed] != [t[3] for t in sorted(timed)]
    shuffled = _replayed(tmp_path, "file", [t[3] for t in timed])
    ordered = _replayed(tmp_path, "sorted", [t[3] for t in sorted(timed)])
    assert ordered["migrations"].height
    assert _comparable(shuffled) == _comparable(ordered)


_FORK = (
    "          forker-1201    [001] .....  4001.000064: task_newtask: pid=1202 comm=forker "
    "clone_flags=1200011 oom_score_adj=0\n"
    "          forker-1201    [001] .....  4001.000071: sched_process_fork: comm=forker "
    "pid=1201 child_comm=forker child_pid=1202\n"
)
_EARLIER = {
    # no shipped format: kept in other_events
    "other_events": "          forker-1201    [001] .....  4001.000010: sched_stat_runtime: "
    "comm=forker pid=1201 runtime=1000 [ns] vruntime=5000 [ns]\n",
    # a typed table replay reads for nothing else
    "typed": "          forker-1201    [001] .....  4001.000010: mm_page_alloc: "
    "page=00000000f3f771ea pfn=0x10a040 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE\n",
}


@pytest.mark.parametrize("kind", list(_EARLIER))
def test_fork_window_starts_at_parents_last_event_of_any_table(tmp_path, kind):
    path = tmp_path / "trace.txt"
    path.write_text(HEADER.format(n=3, cpus=2) + _EARLIER[kind] + _FORK)
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(path), ds)
    if kind == "other_events":
        assert ds.files("other_events", trace_id=r.trace_id)
    fw = replay(ds)[r.trace_id]["fork_windows"]
    assert fw.select("parent_pid", "child_pid", "ts_start", "ts_end").rows() == [
        (1201, 1202, 4001_000_010_000, 4001_000_071_000)
    ]
