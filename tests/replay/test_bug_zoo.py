"""The simulator's bug zoo against replay, over random scenarios, seeds and 1-4 CPUs.

Per bug switch: replay's violations are the simulator's decidable ground truth (rule, pfn,
addr), and every decidable finding of the truth is found (as a violation, or as
inconclusive where tier 1's first-in-first-out pairing of sets and removes at one address
is a guess: entries of two pages or kinds there, and an exit's zap or a fork's copy in
between); with events lost, no violation the truth does not prove; with no bug, no
violation and no hazard."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmapscope.replay.rulebook import BUG_ZOO, RULES
from rmapscope.replay.simulator import BUGS, SCENARIOS, simulate
from tests.replay.test_replay_sim import _strip_probes, keys, replayed

ZOO = (
    "read-restored-writable",
    "uffd-wp-lost-on-fork",
    "vma-adjust-skip",
    "hugetlb-fork-copy",
    "foreign-pmd-entry",
)
#: The rule each switch's bug is caught by (the bug zoo of the rulebook).
CAUGHT_BY = {b.switch: b.rule for b in BUG_ZOO if b.switch}
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
runs = st.tuples(st.sampled_from(sorted(SCENARIOS)), st.integers(0, 10_000), st.integers(1, 4))


def _found(rows: pl.DataFrame, verdict: str = "violation") -> set[tuple]:
    return {
        (f["rule"], f["pfn"], f["addr"])
        for f in rows.filter(pl.col("verdict") == verdict).iter_rows(named=True)
    }


def _truth(sim, verdict: str = "violation", tier: int | None = None) -> set[tuple]:
    return {
        (r, p, a)
        for r, p, a, _ in keys(sim.truth, verdict=verdict, with_mm=False)
        if tier is None or RULES[r].tier == tier
    }


def test_every_switch_is_in_the_zoo():
    assert set(ZOO) <= set(BUGS)
    assert set(ZOO) <= set(CAUGHT_BY)
    assert all(CAUGHT_BY[b] in RULES for b in CAUGHT_BY)


@pytest.mark.parametrize("bug", ZOO)
@SETTINGS
@given(run=runs)
def test_with_probes_findings_equal_the_truth(tmp_path_factory, bug, run):
    scenario, seed, cpus = run
    sim = simulate(scenario, seed=seed, cpus=cpus, bug=bug)
    found = replayed(tmp_path_factory.mktemp("z"), sim.text)
    mine, truth = _found(found), _truth(sim)
    assert mine <= truth, (scenario, seed, cpus, bug, mine - truth)
    missed = truth - mine - _found(found, "inconclusive")
    assert not missed, (scenario, seed, cpus, bug, missed)
    exact = {k for k in truth if RULES[k[0]].tier == 2 or k[0] == "leaked-entry"}
    assert {k for k in mine if k[0] in {r for r, _, _ in exact}} >= exact, (scenario, seed)
    # the tier-2 rules, per (rule, pfn, addr, mm): exactly the truth, both ways
    t2 = {k for k in keys(found.iter_rows(named=True)) if RULES[k[0]].tier == 2}
    assert t2 == {k for k in keys(sim.truth) if RULES[k[0]].tier == 2}, (scenario, seed, cpus)
    assert found.filter(pl.col("verdict") == "hazard").is_empty()


@pytest.mark.parametrize("bug", ZOO)
@SETTINGS
@given(run=runs)
def test_tier1_alone_finds_the_zoo_rule_exactly(tmp_path_factory, bug, run):
    scenario, seed, cpus = run
    sim = simulate(scenario, seed=seed, cpus=cpus, bug=bug)
    found = replayed(tmp_path_factory.mktemp("z"), _strip_probes(sim.text))
    mine, truth = _found(found), _truth(sim)
    assert mine <= truth, (scenario, seed, cpus, bug, mine - truth)
    rule = CAUGHT_BY[bug]
    if RULES[rule].tier == 2:  # (these bugs need the walk probes: tier 1 cannot see them)
        assert not {k for k in mine | _found(found, "inconclusive") if k[0] == rule}
    elif rule != "leaked-entry":  # (tier 1 leaks may be unsure)
        seen = mine | _found(found, "inconclusive")
        missed = {k for k in truth if k[0] == rule} - seen
        assert not missed, (scenario, seed, cpus, bug, missed)


@pytest.mark.parametrize("bug", ZOO)
@SETTINGS
@given(run=runs)
def test_with_lost_events_no_violation_the_truth_does_not_prove(tmp_path_factory, bug, run):
    scenario, seed, cpus = run
    sim = simulate(scenario, seed=seed, cpus=cpus, bug=f"{bug},lose-events")
    found = replayed(tmp_path_factory.mktemp("z"), sim.text)
    mine = _found(found)
    assert mine <= _truth(sim), (scenario, seed, cpus, bug, mine - _truth(sim))
    # (one page at one address can have entries in several processes: the same key may be
    # proven for one and inconclusive for another)
    assert not (mine & (_truth(sim, verdict="inconclusive") - _truth(sim)))


@SETTINGS
@given(run=runs, probes=st.booleans())
def test_no_bug_no_violation_nor_hazard(tmp_path_factory, run, probes):
    scenario, seed, cpus = run
    sim = simulate(scenario, seed=seed, cpus=cpus)
    text = sim.text if probes else _strip_probes(sim.text)
    found = replayed(tmp_path_factory.mktemp("z"), text)
    bad = found.filter(pl.col("verdict").is_in(["violation", "hazard"]))
    assert bad.is_empty(), (scenario, seed, cpus, bad.to_dicts())
