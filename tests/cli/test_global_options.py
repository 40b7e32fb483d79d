"""The global options ``--quiet``/``-q`` and ``--debug`` work after every command's name
too, with the same effect as before it; ``--version`` stays global."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from rmapscope.cli import app, sample_trace
from rmapscope.cli.simulate import register as register_simulate
from tests.conftest import cli_command

SAMPLE = str(sample_trace())
#: A quick run of each command; DS is the dataset holding the sample, TMP a scratch folder.
RUNS = {
    "ingest": ["ingest", SAMPLE, "-d", "DS"],
    "traces": ["traces", "-d", "DS"],
    "replay": ["replay", "--all", "-d", "DS"],
    "sql": ["sql", "select 1 as one", "-d", "DS"],
    "query": ["query", "list"],
    "analyze": ["analyze", SAMPLE, "-d", "TMP/ds", "-o", "TMP/a.html"],
    "report": ["report", "-d", "DS", "-o", "TMP/r.html"],
    "record": ["record", "--dry-run", "-o", "TMP/x.trace"],
    "lab": ["lab", "--help"],  # a real run boots a guest (tests/lab)
    "simulate": ["simulate", "fork-vs-migrate", "-o", "TMP/t.txt"],
    "explain": ["explain", "leaked-entry"],
    "diff": ["diff", "host:unknown", "host:unknown", "-d", "DS"],
}


def invoke(args: list[str], ds: Path | None = None, tmp: Path | None = None) -> Result:
    args = [a.replace("DS", str(ds)).replace("TMP", str(tmp)) for a in args]
    return CliRunner().invoke(app, args)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cli_command(), *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("global") / "ds"
    result = invoke(["-q", "ingest", SAMPLE, "-d", str(root)])
    assert result.exit_code == 0, result.output
    return root


def commands() -> dict:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def test_every_command_has_a_run():
    assert set(RUNS) == set(commands())


@pytest.mark.parametrize("name", sorted(RUNS))
def test_help_of_every_command_lists_them(name):
    result = invoke([name, "--help"])
    assert result.exit_code == 0
    assert "--debug" in result.output and "-q, --quiet" in result.output
    assert "--version" not in result.output


@pytest.mark.parametrize("name", sorted(RUNS))
def test_no_command_has_an_option_twice(name):
    params = commands()[name].params
    names = [o for p in params for o in (*p.opts, *p.secondary_opts)]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_command_accepts_them_after_its_name(name, ds, tmp_path):
    for flags in (["--quiet"], ["-q"], ["--debug"], ["--debug", "-q"]):
        result = invoke([*RUNS[name], *flags], ds, tmp_path)
        assert "No such option" not in result.output, flags
        assert result.exit_code == 0, (flags, result.output, result.exception)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_quiet_after_the_name_does_what_it_does_before(name, ds, tmp_path):
    before = invoke(["-q", *RUNS[name]], ds, tmp_path)
    after = invoke([*RUNS[name], "-q"], ds, tmp_path)
    assert (after.exit_code, after.output) == (before.exit_code, before.output)


def test_ingest_quiet_after_the_file_prints_no_summary(tmp_path):
    quiet = invoke(["ingest", SAMPLE, "-d", str(tmp_path / "a"), "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""
    loud = invoke(["ingest", SAMPLE, "-d", str(tmp_path / "b")])
    assert loud.exit_code == 0 and "ingested trace" in loud.output


def test_quiet_after_the_name_in_the_console_script(tmp_path):
    proc = cli("ingest", SAMPLE, "--dataset", str(tmp_path / "ds"), "-q")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


@pytest.mark.parametrize(
    "args", [["simulate", "nope"], ["traces", "-d", "/nonexistent/ds"]], ids=["usage", "dataset"]
)
def test_debug_after_the_name_shows_the_traceback_the_global_one_does(args):
    plain = cli(*args)
    assert plain.stderr.startswith("error: ") and plain.stderr.count("\n") == 1
    before = cli("--debug", *args)
    after = cli(*args, "--debug")
    assert "Traceback (most recent call last)" in before.stderr
    assert "Traceback (most recent call last)" in after.stderr
    assert after.stderr.splitlines()[-1] == before.stderr.splitlines()[-1]
    assert after.returncode == before.returncode


def test_version_stays_global():
    assert invoke(["--version"]).exit_code == 0
    result = invoke(["ingest", SAMPLE, "--version"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_a_command_in_another_app_takes_them_too(tmp_path):
    """A host app without the global options: a command's own set its settings."""
    other = typer.Typer(rich_markup_mode=None)
    other.callback()(lambda: None)
    register_simulate(other)
    args = ["simulate", "fork-vs-migrate", "-o", str(tmp_path / "t.txt")]
    assert "simulated fork-vs-migrate" in CliRunner().invoke(other, args).output
    assert CliRunner().invoke(other, [*args, "-q"]).output == ""
    assert CliRunner().invoke(other, ["simulate", "nope"]).exit_code == 2
    debug = CliRunner().invoke(other, ["simulate", "nope", "--debug"])
    assert type(debug.exception).__name__ == "UsageError"
