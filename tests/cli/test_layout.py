"""The CLI package's shape: each command module registers itself without importing the
app module, and none of them holds SQL, counts findings or branches on the engine."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rmapscope.cli import app
from rmapscope.cli._errors import cli_message
from rmapscope.errors import MissingTablesError, UsageError

CLI = Path(__file__).resolve().parents[2] / "rmapscope" / "cli"
COMMAND_MODULES = sorted(
    p for p in CLI.glob("*.py") if not p.name.startswith("_") and p.name != "app.py"
)


def imported(path: Path) -> set[str]:
    """Modules ``path`` imports, relative ones resolved within ``rmapscope.cli``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "rmapscope.cli" + (f".{base}" if base else "")
            if node.module:
                names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def test_there_is_one_module_per_command():
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {p.stem for p in COMMAND_MODULES} == commands


LEAVES = sorted(p for p in CLI.glob("_*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", [*COMMAND_MODULES, *LEAVES], ids=lambda p: p.name)
def test_no_cli_module_imports_the_app_back(path):
    assert not {"rmapscope.cli", "rmapscope.cli.app"} & imported(path)


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_holds_no_sql_no_counting_and_no_engine_branch(path):
    text = path.read_text()
    for word in ("SELECT", "duckdb_views", "SHOW VIEWS", "DESCRIBE", "group_by", "filter("):
        assert word not in text, word
    assert not re.search(r"[=!]=\s*[\"']spark[\"']|[\"']spark[\"']\s*[=!]=", text)
    assert "import duckdb" not in text and "pyspark" not in text


def test_library_errors_name_the_cli_flags_where_the_cli_prints_them():
    e = UsageError("`duration` must be positive, not 0", params=("duration",))
    assert cli_message(e) == "--duration must be positive, not 0"
    e = UsageError("no events to record: give `events` or a preset", params=("events",))
    assert cli_message(e) == "no events to record: give --event or a preset"
    e = MissingTablesError("query violations", ["violations"])
    assert "rmapscope replay --all" in cli_message(e) and "--" not in str(e)


def test_spark_options_without_spark_are_a_usage_error_naming_the_flags(tmp_path):
    r = CliRunner().invoke(app, ["sql", "-d", str(tmp_path), "--conf", "a=b", "SELECT 1"])
    assert isinstance(r.exception, UsageError)
    assert str(r.exception) == "--master and --conf only apply with --engine spark"
