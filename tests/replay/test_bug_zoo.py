"""The simulator's bug zoo against replay, over random scenarios, seeds and 1-4 CPUs.

Per bug switch: replay's violations are exactly the simulator's decidable ground truth
(rule, pfn, addr), with the probe lines (every rule) and without them (the tier-1 rules,
against what the tracepoints alone decide: ``decidable_tier1``); with events lost, no
violation the truth does not prove; with no bug, no violation and no hazard."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rmapscope.replay.rulebook import BUG_ZOO, RULES
from rmapscope.replay.simulator import BUGS, SCENARIOS, simulate
from tests.conftest import examples
from tests.replay.test_replay_sim import _strip_probes, keys, replayed

ZOO = (
    "read-restored-writable",
    "uffd-wp-lost-on-fork",
    "vma-adjust-skip",
    "hugetlb-fork-copy",
    "foreign-pmd-entry",
    "moved-as-failed",
    "write-restored-readonly",
    "vma-adjust-undo",
)
#: Switches whose bug the simulator had no ground truth for before: each makes its rule's
#: findings appear (the truth has them), and without the switch the same run has none.
NEW = ("moved-as-failed", "write-restored-readonly", "vma-adjust-undo")
#: The rule each switch's bug is caught by (the bug zoo of the rulebook).
CAUGHT_BY = {b.switch: b.rule for b in BUG_ZOO if b.switch}
SETTINGS = settings(
    max_examples=examples(15),
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


#: Every switch but lose-events (which the lost-events test adds to each).
SWITCHES = (*ZOO, "child-first", "drop-remove")


def _tier1(keys_: set[tuple]) -> set[tuple]:
    return {k for k in keys_ if RULES[k[0]].tier == 1}


@pytest.mark.parametrize("bug", SWITCHES)
@SETTINGS
@given(run=runs)
# drop-remove: a remove walk left the parent's entry, which a fork in progress copied into
# a child the walk had passed (3); the walk's one remove was a fork copy's, which ties it to
# no set line (2145); the child's exit was printed before the walk ended (3464)
@example(run=("compaction-storm", 3, 1))
@example(run=("compaction-storm", 2145, 2))
@example(run=("compaction-storm", 3464, 4))
def test_with_probes_findings_equal_the_truth(tmp_path_factory, bug, run):
    scenario, seed, cpus = run
    sim = simulate(scenario, seed=seed, cpus=cpus, bug=bug)
    found = replayed(tmp_path_factory.mktemp("z"), sim.text)
    mine, truth = _found(found), _truth(sim)
    # the tier-1 rules, per (rule, pfn, addr): exactly the decidable truth, both ways
    assert _tier1(mine) == _tier1(truth), (scenario, seed, cpus, bug, mine ^ truth)
    # the tier-2 rules, per (rule, pfn, addr, mm): exactly the truth, both ways
    t2 = {k for k in keys(found.iter_rows(named=True)) if RULES[k[0]].tier == 2}
    assert t2 == {k for k in keys(sim.truth) if RULES[k[0]].tier == 2}, (scenario, seed, cpus)
    assert found.filter(pl.col("verdict") == "hazard").is_empty()


@pytest.mark.parametrize("bug", SWITCHES)
@SETTINGS
@given(run=runs)
def test_tier1_alone_finds_the_tier1_truth_exactly(tmp_path_factory, bug, run):
    scenario, seed, cpus = run
    sim = simulate(scenario, seed=seed, cpus=cpus, bug=bug)
    found = replayed(tmp_path_factory.mktemp("z"), _strip_probes(sim.text))
    mine = _found(found)
    # (the tier-2 rules need the probe lines: without them none is found)
    assert mine == _tier1(mine), (scenario, seed, cpus, bug, mine - _tier1(mine))
    truth = {
        (f["rule"], f["pfn"], f["addr"])
        for f in sim.truth
        if f["verdict"] == "violation" and f["decidable"] and f["decidable_tier1"]
    }
    assert mine == truth, (scenario, seed, cpus, bug, mine ^ truth)
    rule = CAUGHT_BY[bug]
    if RULES[rule].tier == 2:  # (these bugs need the walk probes: tier 1 cannot see them)
        assert not {k for k in mine | _found(found, "inconclusive") if k[0] == rule}


@pytest.mark.parametrize("bug", SWITCHES)
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


@pytest.mark.parametrize("bug", NEW)
@SETTINGS
@given(run=runs, probes=st.booleans())
# moved-as-failed: a folio whose child's entries an exit zapped looks moved only with the
# probes (found by the long run)
@example(run=("exit-during-migration", 76, 1), probes=False)
def test_the_new_switches_findings_go_with_the_switch(tmp_path_factory, bug, run, probes):
    scenario, seed, cpus = run
    rule = CAUGHT_BY[bug]
    for switch in (bug, None):
        sim = simulate(scenario, seed=seed, cpus=cpus, bug=switch)
        text = sim.text if probes else _strip_probes(sim.text)
        found = replayed(tmp_path_factory.mktemp("z"), text)
        mine = {k for k in _found(found) | _found(found, "inconclusive") if k[0] == rule}
        truth = {
            (f["rule"], f["pfn"], f["addr"])
            for f in sim.truth
            if f["rule"] == rule
            and f["verdict"] == "violation"
            and f["decidable"]
            and (probes or f["decidable_tier1"])
        }
        if switch is None:  # the control: no switch, no finding of the rule
            assert not truth and not mine, (scenario, seed, cpus, mine)
        else:
            assert mine == truth, (scenario, seed, cpus, bug, mine ^ truth)


@pytest.mark.parametrize("bug", NEW)
def test_every_scenario_shows_the_new_switches_bug(tmp_path_factory, bug):
    """Not vacuous: on every scenario some seed makes the switch's finding."""
    rule = CAUGHT_BY[bug]
    for scenario in sorted(SCENARIOS):
        runs_ = [simulate(scenario, seed=s, cpus=2, bug=bug) for s in range(8)]
        assert any(k[0] == rule for r in runs_ for k in _truth(r)), (scenario, bug)
