"""``rmapscope explain``: a rule's meaning, tier and precedent from the one registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rmapscope.cli import app
from rmapscope.replay.rulebook import RULES

runner = CliRunner()


def test_help_exists():
    result = runner.invoke(app, ["explain", "--help"])
    assert result.exit_code == 0 and "RULE" in result.output


@pytest.mark.parametrize("rule", ["read-entry-restored-writable", "uffd-wp-lost", "leaked-entry"])
def test_a_rule_prints_its_meaning_tier_and_precedent(rule):
    result = runner.invoke(app, ["explain", rule])
    assert result.exit_code == 0, result.output
    r = RULES[rule]
    text = " ".join(result.output.split())
    assert text.startswith(f"{rule} (tier {r.tier}")
    assert " ".join(r.meaning.split()) in text
    assert " ".join(r.precedent.split()) in text


def test_the_read_entry_rule_cites_its_fix():
    result = runner.invoke(app, ["explain", "read-entry-restored-writable"])
    assert "b1f9e876862d" in result.output and "Peter Xu" in result.output


def test_no_argument_lists_every_rule_once():
    result = runner.invoke(app, ["explain"])
    assert result.exit_code == 0
    firsts = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert firsts == list(RULES)
    assert "hazard" in result.output


def test_an_unknown_rule_is_one_line_and_exit_2():
    r = subprocess.run(
        [sys.executable, "-m", "rmapscope", "explain", "no-such-rule"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: ") and "no-such-rule" in r.stderr
