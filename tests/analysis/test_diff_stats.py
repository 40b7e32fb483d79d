"""The cluster tests of ``diff`` on made-up samples whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from rmapscope.analysis.diff import _distribution, _Row, _verdicts


def _batches(rng: np.random.Generator, sizes: list[int], per_page_us: float):
    """Latencies of batches of the given sizes (a batch's latency grows with its size, as
    in a batched migrate_pages), and each sample's batch code."""
    x, k = [], []
    for code, n in enumerate(sizes):
        base = per_page_us * n * rng.lognormal(0, 0.2)
        x += list(base * rng.uniform(0.5, 1.0, n))
        k += [code] * n
    return np.array(x), np.array(k)


def _latency_rows(xa, ka, xb, kb, of: str, design: str, drift: float | None = None
                  ) -> list[_Row]:  # fmt: skip
    rows: list[_Row] = []
    _distribution("migration latency", "compaction", "us", "lower", xa, ka, xb, kb, of, 0,
                  0.01, True, rows, design, drift)  # fmt: skip
    _verdicts(rows, 0.01, 0.0, "holm")
    return rows


def test_the_same_batches_30_percent_slower_are_worse_when_paired():
    rng = np.random.default_rng(2)
    xa, k = _batches(rng, [1, 2, 4, 8, 16, 32] * 10, 3.0)
    xb = xa * rng.uniform(1.2, 1.4, xa.size)  # every migration 20-40% longer
    head, p50, *_ = _latency_rows(xa, k, xb, k, "batches", "paired")
    assert head.test == "wilcoxon-signed-rank"
    assert head.verdict == "worse" and head.effect == pytest.approx(0.3, abs=0.05)
    # the paired bootstrap sees the shift at the median too
    assert p50.verdict == "worse" and p50.ci_low is not None and p50.ci_low > 0
    # control: the same batches unchanged, and shuffled within +-5% both ways
    assert _latency_rows(xa, k, xa.copy(), k, "batches", "paired")[0].verdict == "no change"
    noise = xa * rng.uniform(0.95, 1.05, xa.size)
    assert _latency_rows(xa, k, noise, k, "batches", "paired")[0].verdict == "no change"


def test_few_recordings_a_side_unpaired_are_not_comparable():
    rng = np.random.default_rng(1)
    sizes = [1, 2, 4, 8, 16, 32] * 60
    xa, ka = _batches(rng, sizes, 3.0)
    xb, kb = _batches(rng, sizes, 30.0)  # 10x: still a re-recording's drift here
    rows = _latency_rows(xa, ka, xb, kb, "batches", "drift")
    assert {r.verdict for r in rows} == {"not comparable"}
    assert "recordings a side" in rows[0].note and rows[0].p is None
    # control: as clusters of 5+ recordings the same samples are worse
    assert _latency_rows(xa, ka, xb, kb, "batches", "clusters")[0].verdict == "worse"
    # with the machine's drift given: 10x is within a 20x drift, 100x beyond it
    within = _latency_rows(xa, ka, xb, kb, "batches", "drift", 20.0)
    assert {r.verdict for r in within} == {"no change"} and within[0].p is not None
    assert "--drift 20x" in within[0].ci_of
    xc, kc = _batches(rng, sizes, 300.0)
    beyond = _latency_rows(xa, ka, xc, kc, "batches", "drift", 20.0)
    assert beyond[0].verdict == "worse"


def test_six_recordings_a_side_far_apart_are_worse():
    """Trace clusters: Welch's t of log medians reaches Holm's alpha where the exact rank
    test (smallest p 2/924 at 6 vs 6) could not, once a few other tests share the family."""
    rng = np.random.default_rng(3)
    xa = rng.lognormal(np.log(50), 0.3, 600)
    xb = rng.lognormal(np.log(5000), 0.3, 600)
    k = np.repeat(np.arange(6), 100)
    rows = _latency_rows(xa, k, xb, k, "traces", "clusters")
    # other tests of the diff share Holm's family
    rows += [_Row("events", str(i), "per second", "none", 1.0, 1.0, 10, 10, p=0.5)
             for i in range(30)]  # fmt: skip
    _verdicts(rows, 0.01, 0.0, "holm")
    assert rows[0].test == "welch-t-log-medians"
    assert rows[0].verdict == "worse"
    # the same traces against themselves: no change
    same = _latency_rows(xa, k, xa.copy(), k, "traces", "clusters")
    assert same[0].verdict == "no change"
