"""The one rule registry: the README's tables are generated from it, every rule id replay
and the simulator emit is in it, and every bug-zoo switch exists."""

from __future__ import annotations

import re
from pathlib import Path

from rmapscope.replay.rulebook import BUG_ZOO, RULES, VERDICTS, rules_table, zoo_table
from rmapscope.replay.simulator import BUGS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_the_readme_tables_are_the_registry():
    assert rules_table() in README
    assert zoo_table() in README


def test_every_rule_id_in_the_code_is_registered():
    ids = set()
    for path in [*(REPO / "replay").glob("*.py"), *(REPO / "replay" / "simulator").glob("*.py")]:
        text = path.read_text()
        ids.update(re.findall(r'lit\("([a-z]+(?:-[a-z]+)+)"\)\.alias\("rule"\)', text))
        ids.update(re.findall(r'Finding\(\s*"([a-z-]+)"', text))
        ids.update(re.findall(r'_finding\(\s*"([a-z-]+)"', text))
        ids.update(re.findall(r'\("([a-z]+-overlaps-migration)"', text))
    assert {"leaked-entry", "stale-old-pfn", "mremap-overlaps-migration"} <= ids
    assert ids - {"child-before-parent-"} <= set(RULES), sorted(ids - set(RULES))


def test_the_zoo_names_registered_rules_and_real_switches():
    for bug in BUG_ZOO:
        assert not bug.switch or bug.switch in BUGS
        if bug.rule:
            assert bug.rule in RULES
            assert bug.tier1_suffices == (RULES[bug.rule].tier == 1)
        else:
            assert not bug.switch and not bug.tier1_suffices
    assert {r.verdict for r in RULES.values()} <= set(VERDICTS)


def test_the_probes_readme_lists_every_rule():
    text = (REPO / "data" / "probes" / "README.md").read_text()
    assert rules_table() in text
    listed = set(re.findall(r"^\| `([a-z-]+)` \| [12] \|", text, re.M))
    assert listed == set(RULES)
