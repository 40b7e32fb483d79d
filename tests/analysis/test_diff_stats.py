"""The cluster tests of ``diff`` on made-up samples whose answer is known."""

from __future__ import annotations

import numpy as np

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


def _latency_rows(xa, ka, xb, kb, of: str, stratify: bool) -> list[_Row]:
    rows: list[_Row] = []
    _distribution("migration latency", "compaction", "us", "lower", xa, ka, xb, kb, of, 0,
                  0.01, True, rows, stratify=stratify)  # fmt: skip
    _verdicts(rows, 0.01, 0.0, "holm")
    return rows


def test_batch_mix_alone_is_no_change_when_stratified():
    rng = np.random.default_rng(1)
    # side B has bigger batches, at the same time per page: not a latency change
    xa, ka = _batches(rng, [1, 2, 4, 8, 16, 32] * 30 + [2] * 200, 3.0)
    xb, kb = _batches(rng, [1, 2, 4, 8, 16, 32] * 30 + [32] * 200, 3.0)
    assert _latency_rows(xa, ka, xb, kb, "batches", True)[0].verdict == "no change"
    # control: the pooled rank test of batch medians calls it worse
    assert _latency_rows(xa, ka, xb, kb, "batches", False)[0].verdict == "worse"


def test_a_slower_side_is_worse_when_stratified():
    rng = np.random.default_rng(2)
    sizes = [1, 2, 4, 8, 16, 32] * 60
    xa, ka = _batches(rng, sizes, 3.0)
    xb, kb = _batches(rng, sizes, 3.9)  # 30% more per page
    head = _latency_rows(xa, ka, xb, kb, "batches", True)[0]
    assert head.test == "stratified-mann-whitney-u"
    assert head.verdict == "worse" and head.effect is not None and head.effect > 0


def test_six_recordings_a_side_far_apart_are_worse():
    """Trace clusters: Welch's t of log medians reaches Holm's alpha where the exact rank
    test (smallest p 2/924 at 6 vs 6) could not, once a few other tests share the family."""
    rng = np.random.default_rng(3)
    xa = rng.lognormal(np.log(50), 0.3, 600)
    xb = rng.lognormal(np.log(5000), 0.3, 600)
    k = np.repeat(np.arange(6), 100)
    rows = _latency_rows(xa, k, xb, k, "traces", False)
    # other tests of the diff share Holm's family
    rows += [_Row("events", str(i), "per second", "none", 1.0, 1.0, 10, 10, p=0.5)
             for i in range(30)]  # fmt: skip
    _verdicts(rows, 0.01, 0.0, "holm")
    assert rows[0].test == "welch-t-log-medians"
    assert rows[0].verdict == "worse"
    # the same traces against themselves: no change
    same = _latency_rows(xa, k, xa.copy(), k, "traces", False)
    assert same[0].verdict == "no change"
