"""The command line: help texts, the main job on the bundled sample, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from rmapscope.cli import app, main, sample_trace
from rmapscope.dataset import Dataset
from tests.conftest import cli_command

runner = CliRunner()
COMMANDS = ["ingest", "traces", "analyze", "replay", "sql", "query"]


def cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    # this interpreter's console script (not another install's first on PATH)
    return subprocess.run(
        [*cli_command(), *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [*COMMANDS, "record"]:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 5
    assert "--dataset" in result.output


@pytest.mark.parametrize("name", sorted(typer.main.get_command(app).commands))  # type: ignore[attr-defined]
def test_every_registered_command_has_help_text(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 5
    assert typer.main.get_command(app).commands[name].help  # type: ignore[attr-defined]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("rmapscope ")


def test_analyze_without_arguments_runs_on_the_bundled_real_sample(tmp_path):
    assert sample_trace().is_file()
    proc = cli("analyze", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "bundled real sample" in proc.stdout
    assert "set_migration_pte" in proc.stdout and "2,126" in proc.stdout
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    traces = Dataset(tmp_path / "rmapscope-data").traces()
    assert traces["events"].to_list() == [13449]
    again = cli("analyze", cwd=tmp_path)
    assert again.returncode == 0 and "already in the dataset" in again.stdout


def test_the_same_content_under_another_host_is_said_not_added(tmp_path):
    ds = str(tmp_path / "ds")
    first = cli("ingest", str(sample_trace()), "-d", ds, "--host", "box1")
    assert first.returncode == 0 and "warning" not in first.stderr
    same = cli("ingest", str(sample_trace()), "-d", ds, "--host", "box1")
    assert same.returncode == 0 and "already in the dataset" in same.stdout
    assert "not added" not in same.stderr
    other = cli("ingest", str(sample_trace()), "-d", ds, "--host", "box2")
    assert other.returncode == 0
    assert "not added for host box2" in other.stderr and "host box1" in other.stderr
    assert Dataset(ds).traces()["host"].to_list() == ["box1"]
    moved = cli("-q", "ingest", str(sample_trace()), "-d", ds, "--host", "box2", "--force")
    assert moved.returncode == 0
    assert Dataset(ds).traces()["host"].to_list() == ["box2"]


def test_traces_lists_the_dataset(tmp_path):
    ds = tmp_path / "ds"
    assert (
        cli("-q", "ingest", str(sample_trace()), "--dataset", str(ds), "--host", "box1").returncode
        == 0
    )
    proc = cli("traces", "--dataset", str(ds))
    assert proc.returncode == 0
    trace_id = Dataset(ds).traces()["trace_id"][0]
    assert trace_id in proc.stdout and "box1" in proc.stdout and "13,449" in proc.stdout


def test_traces_on_a_missing_dataset_is_a_clear_error(tmp_path):
    proc = cli("traces", "--dataset", str(tmp_path / "nothing"))
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_bad_option_values_exit_2_with_one_line(tmp_path):
    for args in (["--format", "nonsense"], ["--arch", "sparc"]):
        proc = cli("ingest", str(sample_trace()), "--dataset", str(tmp_path / "ds"), *args)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "ds" / "traces").exists()


def test_quiet_prints_nothing_on_success(tmp_path):
    proc = cli("-q", "ingest", str(sample_trace()), "--dataset", str(tmp_path / "ds"))
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_every_command_honours_debug():
    """`simulate` too: an error is one line, with --debug a traceback."""
    proc = cli("simulate", "nope")
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown scenario")
    assert proc.stderr.count("\n") == 1
    proc = cli("--debug", "simulate", "nope")
    assert "Traceback (most recent call last)" in proc.stderr and "UsageError" in proc.stderr


def test_library_keywords_print_as_flags():
    proc = cli("-q", "simulate", "--explore", "fork-vs-migrate", "--bug", "lose-events")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: --explore enumerates schedules; it cannot be combined with lose-events"
    ]


def test_the_console_script_exits_as_python_m_does(tmp_path):
    """The installed command skips the interpreter's teardown: its output, even a long one
    into a pipe, and its exit codes stay those of ``python -m rmapscope``."""
    ds = tmp_path / "ds"
    assert cli("-q", "ingest", str(sample_trace()), "--dataset", str(ds)).returncode == 0
    sql = ["sql", "select range as n from range(200000)", "--format", "csv", "--dataset", str(ds)]
    for args in (sql, ["simulate", "nope"], ["sql", "select nope", "--dataset", str(ds)]):
        fast = cli(*args)
        slow = subprocess.run(
            [sys.executable, "-m", "rmapscope", *args], capture_output=True, text=True, check=False
        )
        assert (fast.returncode, fast.stdout, fast.stderr) == (
            slow.returncode,
            slow.stdout,
            slow.stderr,
        ), args
    assert cli(*sql).stdout.splitlines()[-1] == "199999"


def test_main_raises_system_exit_so_a_caller_in_the_same_interpreter_carries_on(monkeypatch):
    for argv in (["rmapscope", "--version"], ["rmapscope", "simulate", "nope"]):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit):
            main()
