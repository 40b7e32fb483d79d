"""``rmapscope diff``: a trace against itself, against a copy with stretched latencies,
simulator seeds and two recordings against each other, and the command's exit codes."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import polars as pl
import pytest
from scipy import stats

from rmapscope.analysis.diff import COLUMNS, diff, side_predicate
from rmapscope.analysis.session import DuckDBSession
from rmapscope.data import sample_trace
from rmapscope.errors import SqlError, UsageError
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.conftest import cli_command

from ._diff_data import RERECORD, sample_ds, stretched_ds, stretched_text, two_seeds_ds


@pytest.fixture(scope="module")
def stretched(tmp_path_factory):
    return stretched_ds(tmp_path_factory.mktemp("stretched") / "ds")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_command(), *args], capture_output=True, text=True, check=False)


def test_a_trace_against_itself_is_no_change_everywhere(stretched):
    r = diff(DuckDBSession(stretched), "host = 'a'", "host = 'a'")
    assert tuple(r.metrics.columns) == COLUMNS
    assert r.metrics.height > 20
    assert set(r.metrics["verdict"]) == {"no change"}, r.metrics.filter(
        pl.col("verdict") != "no change"
    )


def test_stretched_latencies_are_worse_on_latency_only(stretched):
    """The copy holds the same migrations as the recording, so the latency test is paired
    (each migration against itself) and sees the stretch at the median too; no metric
    other than latency may move."""
    m = diff(DuckDBSession(stretched), "host = 'a'", "host = 'b'").metrics
    worse = set(m.filter(pl.col("verdict") == "worse")["metric"])
    assert "migration latency distribution" in worse
    assert worse <= {
        "migration latency distribution",
        "migration latency p50",
        "migration latency p90",
        "migration latency p99",
    }
    assert set(m.filter(~pl.col("metric").str.starts_with("migration latency"))["verdict"]) == {
        "no change"
    }
    assert "better" not in set(m["verdict"])
    p50 = m.filter(pl.col("metric") == "migration latency p50").row(0, named=True)
    assert p50["b"] == pytest.approx(1.3 * p50["a"], rel=0.01)
    assert p50["verdict"] == "worse" and p50["ci_low"] > 0
    head = m.filter(pl.col("metric") == "migration latency distribution").row(0, named=True)
    assert head["test"] == "wilcoxon-signed-rank" and "paired" in head["ci_of"]


def test_a_stretched_text_copy_is_the_same_recording_and_worse(tmp_path):
    """The stretch written into the trace's text (a new file, a new trace id) and ingested:
    still the same migrations, so paired, and worse on latency only."""
    ds = sample_ds(tmp_path / "ds", "a", RERECORD)
    assert stretched_text(ds, "a", RERECORD, tmp_path / "stretched.txt") > 1000
    ingest(str(tmp_path / "stretched.txt"), ds, host="t")
    replay(ds)
    assert ds.traces()["trace_id"].n_unique() == 2
    m = diff(DuckDBSession(ds), side_predicate("host:a"), side_predicate("host:t")).metrics
    moved = m.filter(pl.col("verdict") != "no change")
    assert set(moved["metric"]) == {
        "migration latency distribution",
        "migration latency p50",
        "migration latency p90",
        "migration latency p99",
    }, moved
    assert set(moved["verdict"]) == {"worse"}
    head = m.filter(pl.col("metric") == "migration latency distribution").row(0, named=True)
    assert head["test"] == "wilcoxon-signed-rank"
    assert head["b"] == pytest.approx(1.3 * head["a"], rel=0.02)


def test_two_seeds_of_one_scenario_are_not_worse(tmp_path):
    ds = two_seeds_ds(tmp_path, "fork-vs-migrate", (1, 2))
    m = diff(DuckDBSession(ds), side_predicate("host:s1"), side_predicate("host:s2")).metrics
    assert m.height > 10
    assert "worse" not in set(m["verdict"]), m.filter(pl.col("verdict") == "worse")


def test_two_recordings_one_a_side_are_not_compared_on_latency(tmp_path):
    """Different recordings, one a side: their run-to-run drift is unmeasured, so latency
    is `not comparable` and says why (README, diff calibration)."""
    ds = sample_ds(tmp_path / "ds", "a", RERECORD)
    ingest(str(sample_trace()), ds, host="c")
    replay(ds)
    m = diff(DuckDBSession(ds), side_predicate("host:a"), side_predicate("host:c")).metrics
    latency = m.filter(pl.col("metric").str.starts_with("migration latency"))
    assert latency.height and set(latency["verdict"]) == {"not comparable"}
    assert latency["note"].str.contains("fewer than 5 recordings a side").all()
    assert (latency["n_a"] >= 20).all() and (latency["n_b"] >= 20).all()
    # control: either recording against itself is paired and compared
    same = diff(DuckDBSession(ds), side_predicate("host:c"), side_predicate("host:c")).metrics
    head = same.filter(pl.col("metric") == "migration latency distribution")
    assert head["test"].to_list() == ["wilcoxon-signed-rank"] * head.height
    assert set(head["verdict"]) == {"no change"}


def test_bad_sides_are_usage_errors(stretched):
    s = DuckDBSession(stretched)
    with pytest.raises(UsageError, match="no trace matches"):
        diff(s, side_predicate("abcd1234"), "host = 'a'")
    with pytest.raises(SqlError):
        diff(s, "no_such_column = 1", "host = 'a'")
    with pytest.raises(UsageError, match="neither a trace id"):
        side_predicate("not-a-trace")


def test_cli_formats_and_exit_codes(stretched, tmp_path):
    d = ["--dataset", str(stretched.root)]
    assert _run("diff", "--help").returncode == 0
    same = _run("diff", "host:a", "host:a", *d, "--format", "json", "--fail-on", "regression")
    assert same.returncode == 0, same.stderr
    assert {r["verdict"] for r in json.loads(same.stdout)} == {"no change"}
    page = tmp_path / "diff.html"
    worse = _run("diff", "--a", "host = 'a'", "--b", "host = 'b'", *d, "--fail-on",
                 "regression", "--format", "markdown", "-o", str(page))  # fmt: skip
    assert worse.returncode == 1, worse.stderr
    assert "worse" in worse.stdout
    assert page.stat().st_size > 100_000
    # beyond --min-effect 0.5 a 30% change does not count
    big = _run("diff", "host:a", "host:b", *d, "--fail-on", "regression", "--min-effect", "0.5")
    assert big.returncode == 0, big.stdout
    for args in (["ffff0000", "host:a"], ["--a", "nope(", "host:a"], ["host:zz", "host:a"],
                 ["host:a", "host:b", "--drift", "0.5"]):  # fmt: skip
        bad = _run("diff", *args, *d)
        assert bad.returncode == 2, bad.stdout
        assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_cli_seed_and_correction(stretched):
    d = ["host:a", "host:b", "--dataset", str(stretched.root), "--format", "json"]

    def rows(*args: str) -> list[dict]:
        done = _run("diff", *d, *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def intervals(got: list[dict]) -> list[tuple]:
        return [
            (r["metric"], r["ci_low"], r["ci_high"])
            for r in got
            if r["test"] == "cluster-bootstrap"
        ]

    holm, again, other = rows(), rows("--seed", "0"), rows("--seed", "7")
    assert holm == again  # the default seed is fixed: the same output twice
    assert intervals(other) and intervals(other) != intervals(holm)
    assert [r["verdict"] for r in other] == [r["verdict"] for r in holm]
    bh = rows("--correction", "bh")
    tested = [
        i for i, r in enumerate(holm) if r["p"] is not None and r["test"] != "cluster-bootstrap"
    ]
    raw = np.array([holm[i]["p"] for i in tested])
    assert raw.size > 10 and raw.min() < 1e-6
    order = np.argsort(raw)
    step = np.minimum(np.maximum.accumulate((raw.size - np.arange(raw.size)) * raw[order]), 1)
    want_holm = np.empty_like(raw)
    want_holm[order] = step
    assert [holm[i]["p_adj"] for i in tested] == pytest.approx(want_holm.tolist())
    want_bh = stats.false_discovery_control(raw, method="bh")
    assert [bh[i]["p_adj"] for i in tested] == pytest.approx(want_bh.tolist())
    bad = _run("diff", *d, "--correction", "bonferroni")
    assert bad.returncode == 2 and "--correction must be one of holm, bh" in bad.stderr
