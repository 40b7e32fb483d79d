"""Replay on the real traces: no violations, every migration paired or explained, and the
kernel's own counts respected."""

from __future__ import annotations

import csv
import gzip
import io
import json

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.conftest import REAL, real

TRACES = [
    "forkstorm/ftrace-text-default/trace.txt.gz",
    "forkstorm/ftrace-text-tgid/trace.txt.gz",
    "forkstorm/ftrace-text-clock-counter/trace.txt.gz",
    "forkstorm/ftrace-text-latency-format/trace.txt.gz",
    "forkstorm/ftrace-trace_pipe/trace_pipe.txt.gz",
    "forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz",
    "forkstorm/ftrace-text-wrapped-overwrite/trace.txt.gz",
    "forkstorm/ftrace-text-nooverwrite/trace.txt.gz",
    "forkstorm/trace-cmd-v7/report-t.txt.gz",
    "forkstorm/trace-cmd-v7/report-cpu0.txt.gz",
    "forkstorm/trace-cmd-v7/report-cpu1.txt.gz",
    "thp/ftrace-text-default/trace.txt.gz",
    "thp/ftrace-trace_pipe/trace_pipe.txt.gz",
    "thp/trace-cmd-v7/report-l.txt.gz",
    "thp/trace-cmd-v6/report-cpu0.txt.gz",
    "thp/trace-cmd-v6/report-cpu1.txt.gz",
]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    cache = {}

    def get(path: str):
        if path not in cache:
            ds = Dataset(tmp_path_factory.mktemp("ds"))
            r = ingest(str(real(path)), ds)
            cache[path] = (r, replay(ds)[r.trace_id])
        return cache[path]

    return get


@pytest.mark.parametrize("path", TRACES)
def test_no_violations_and_kernel_counts_respected(path, replayed):
    _, out = replayed(path)
    v = out["violations"]
    assert v.filter(pl.col("verdict") == "violation").is_empty(), v.head()
    b = out["migration_batches"].filter(pl.col("succeeded").is_not_null())
    assert (b["paired_migrated_pages"] <= b["succeeded"]).all()
    m = out["migrations"]
    # every mapped migration is paired old -> new, or explained: an inconclusive one has a
    # leaked-entry finding (verdict inconclusive, saying why) for each set left open
    assert set(m["outcome"].unique().to_list()) <= {"migrated", "restored", "inconclusive"}
    open_sets = (
        m.filter(pl.col("outcome") == "inconclusive")
        .select(pl.col("n_set") - pl.col("n_remove"))
        .sum()
        .item()
    )
    leaks = v.filter(pl.col("rule") == "leaked-entry")
    assert leaks.height == (open_sets or 0)
    assert (leaks["explanation"].str.contains("lost|ends before|missing")).all()


@pytest.mark.parametrize("workload", ["forkstorm", "thp"])
def test_succeeded_sums_to_the_pgmigrate_success_delta(workload, replayed):
    _, out = replayed(f"{workload}/ftrace-text-default/trace.txt.gz")
    log = json.loads((REAL / workload / "workload" / f"{workload}.log.json").read_text())
    delta = log["vmstat_after"]["pgmigrate_success"] - log["vmstat_before"]["pgmigrate_success"]
    assert out["migration_batches"]["succeeded"].sum() == delta


def _pairs(path: str) -> list[dict]:
    name = path[:-3]
    p = REAL / f"{name}.pfnpairs.csv"
    if p.exists():
        return list(csv.DictReader(io.StringIO(p.read_text())))
    with gzip.open(f"{p}.gz", "rt") as f:
        text = f.read()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(
    "path", ["forkstorm/ftrace-text-default/trace.txt.gz", "thp/ftrace-text-default/trace.txt.gz"]
)
def test_old_to_new_pairs_match_the_ground_truth(path, replayed):
    _, out = replayed(path)
    m = out["migrations"].filter(pl.col("outcome") == "migrated")
    mine = set()
    for r in m.iter_rows(named=True):
        for i in range(2 ** r["order"] if r["kind"] == "pte" else 1):
            mine.add((r["kind"], r["old_pfn"] + i, r["new_pfn"] + i))
    truth = {
        (r["kind"], int(r["old_pfn"], 16), int(r["new_pfn"], 16))
        for r in _pairs(path)
        if r["status"] == "migrated"
    }
    assert mine == truth


def test_lost_and_cut_windows_are_inconclusive_not_violations(replayed):
    _, out = replayed("forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz")
    v = out["violations"]
    assert v.height == 6 and (v["verdict"] == "inconclusive").all()
    assert (v["rule"] == "leaked-entry").all()
    _, cpu0 = replayed("forkstorm/trace-cmd-v7/report-cpu0.txt.gz")
    assert cpu0["migrations"].filter(pl.col("outcome") == "inconclusive").height == 94
    assert (cpu0["violations"]["verdict"] == "inconclusive").all()


def test_fork_windows_list_forks_and_overlaps(replayed):
    _, out = replayed("forkstorm/ftrace-text-default/trace.txt.gz")
    f = out["fork_windows"]
    assert f.height == 26
    assert (f["ts_start"] <= f["ts_end"]).all()
    log = json.loads((REAL / "forkstorm/workload/forkstorm.log.json").read_text())
    forks = {(p["ppid"], p["pid"]) for p in log["rounds"][0]["processes"] if p["ppid"] != 32695}
    got = set(zip(f["parent_pid"].to_list(), f["child_pid"].to_list(), strict=True))
    assert forks <= got
    assert f.filter(pl.col("parent_pid") == 528)["shares_vm"].sum() == 0


def test_page_states_cover_every_set_and_remove(replayed):
    r, out = replayed("forkstorm/ftrace-text-default/trace.txt.gz")
    s = out["page_states"]
    assert (
        s.filter(pl.col("state") == "migration-entry").height == r.event_counts["set_migration_pte"]
    )
    assert s.filter(pl.col("state") == "present").height == r.event_counts["remove_migration_pte"]
    entry = s.filter(pl.col("state") == "migration-entry")
    assert (entry["ts_end"] >= entry["ts_start"]).all()


@pytest.mark.parametrize(
    "path",
    [
        "forkstorm/ftrace-text-default/trace.txt.gz",
        "thp/ftrace-text-default/trace.txt.gz",
        "forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz",
    ],
)
def test_partitioned_replay_equals_the_whole_one(tmp_path, path):
    """A trace too big for memory is replayed in address partitions: same tables."""
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(real(path)), ds)
    whole = replay(ds)[r.trace_id]
    parts = replay(ds, partitions=4)[r.trace_id]
    key = ["old_pfn", "new_pfn", "order", "kind", "outcome", "n_set", "n_remove", "t_first_set"]
    assert (
        whole["migrations"].select(key).sort(key).equals(parts["migrations"].select(key).sort(key))
    )
    assert whole["migration_batches"].equals(parts["migration_batches"])
    drop = ["overlapping_migrations"]  # migration ids are numbered per partition
    assert whole["fork_windows"].drop(drop).equals(parts["fork_windows"].drop(drop))
    assert (
        whole["fork_windows"]["overlapping_migrations"]
        .list.len()
        .equals(parts["fork_windows"]["overlapping_migrations"].list.len())
    )
    v = ["rule", "verdict", "ts", "pfn", "addr"]
    assert whole["violations"].select(v).sort(v).equals(parts["violations"].select(v).sort(v))
    states = pl.read_parquet(list(ds.root.glob(f"page_states/*/trace={r.trace_id}/*.parquet")))
    assert states.height == whole["page_states"].height
    # cut only where no batch is open: as many parts as the trace has quiet points, up to 4
    assert 2 <= len(list(ds.root.glob(f"page_states/*/trace={r.trace_id}/*.parquet"))) <= 4


def test_a_trace_without_migrations_replays_to_empty_tables(tmp_path):
    """A trace of scheduler events only: no batches, nothing to pair, no crash."""
    line = (
        "            bash-1     [000] d..2.   100.000001: sched_switch: prev_comm=bash prev_pid=1 "
        "prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120\n"
    )
    path = tmp_path / "sched.txt"
    path.write_text("# tracer: nop\n#\n" + line)
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(path), ds)
    out = replay(ds)[r.trace_id]
    assert all(df.height == 0 for df in out.values())
    assert {"batch_id", "mode", "reason", "ts_start", "ts_end"} <= set(
        out["migration_batches"].columns
    )


_HEAD = "# tracer: nop\n#\n"


def _trace_line(comm_pid: str, ts: str, body: str) -> str:
    return f"{comm_pid:>16}    [000] ...1.  {ts}: {body}\n"


def _replay_lines(tmp_path, lines: list[str]) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "t.txt"
    path.write_text(_HEAD + "".join(lines))
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(path), ds)
    return replay(ds)[r.trace_id]


SET = "set_migration_pte: addr=7f61b000c000, pte=e7ffe7ffdebac400 order=0"
RESTORE = "remove_migration_pte: addr=7f61b000c000, pte=840000010a29d025 order=0"
MIGRATED = "remove_migration_pte: addr=7f61b000c000, pte=84000001f92ad025 order=0"
START = "mm_migrate_pages_start: mode=MIGRATE_SYNC_LIGHT reason=compaction"
END = (
    "mm_migrate_pages: nr_succeeded=1 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 "
    "nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC_LIGHT reason=compaction"
)


def test_a_retry_does_not_pair_with_the_last_attempts_leftover_set(tmp_path):
    """compaction-storm seed 10 (child-first), in small: 3 sets, 2 restoring removes, then
    a retry (set, remove). FIFO over the whole batch paired the third set with the retry's
    remove and called the retry's set leaked; the retry is its own attempt."""
    k = "kcompactd0-47"
    lines = [
        _trace_line(k, "4010.002300", START),
        *[_trace_line(k, f"4010.00240{i}", SET) for i in range(3)],
        _trace_line(k, "4010.002539", RESTORE),
        _trace_line(k, "4010.002601", RESTORE),
        _trace_line(k, "4010.002833", SET),
        _trace_line(k, "4010.003126", MIGRATED),
        _trace_line(k, "4010.003141", END),
    ]
    out = _replay_lines(tmp_path, lines)
    leaked = out["violations"].filter(pl.col("rule") == "leaked-entry")
    assert leaked["evidence"].to_list() == [[3]]  # the first attempt's third set (seq 3)
    entries = out["page_states"].filter(pl.col("state") == "migration-entry")
    assert entries.select("seq_start", "seq_end").rows() == [(1, 4), (2, 5), (3, None), (6, 7)]


def test_an_unremoved_entry_during_a_fork_is_inconclusive_without_probes(tmp_path):
    """A walk that met the child before its parent sets an entry the fork's copy then
    replaces: without probes that looks like a leak, so while a fork copies page tables an
    unremoved entry is inconclusive, not a violation."""
    k, p = "kcompactd0-47", "postgres-3201"
    fork = [
        _trace_line(
            p,
            "4010.002390",
            "task_newtask: pid=3402 comm=postgres clone_flags=1200011 oom_score_adj=0",
        ),
        _trace_line(
            p,
            "4010.002410",
            "sched_process_fork: comm=postgres pid=3201 child_comm=postgres child_pid=3402",
        ),
    ]
    body = [
        _trace_line(k, "4010.002300", START),
        *[_trace_line(k, f"4010.00240{i}", SET) for i in range(3)],
        _trace_line(k, "4010.002539", RESTORE),
        _trace_line(k, "4010.002601", RESTORE),
        _trace_line(k, "4010.003141", END),
    ]
    with_fork = _replay_lines(tmp_path / "a", sorted([*body, *fork], key=lambda s: s[36:48]))
    v = with_fork["violations"].row(0, named=True)
    assert (v["rule"], v["verdict"]) == ("leaked-entry", "inconclusive")
    assert "fork" in v["explanation"]
    without = _replay_lines(tmp_path / "b", body)
    assert without["violations"]["verdict"].to_list() == ["violation"]
