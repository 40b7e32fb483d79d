"""The README and the CLI agree: every command and option it names exists in that
command's ``--help``, every command of the app is in its commands table, and its
"Environment variables" table lists every ``RMAPSCOPE_*`` variable the tree reads."""

from __future__ import annotations

import re
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rmapscope import config
from rmapscope.cli import app

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
LIBRARY = ("rmapscope", "ingest", "replay", "analysis", "dashboards", "record")


def code_snippets(text: str) -> list[str]:
    """Inline code spans and the lines of fenced code blocks (shell comments cut off)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    lines = [line.split(" #")[0] for block in blocks for line in block.splitlines()]
    return re.findall(r"`([^`\n]+)`", prose) + lines


def usages(text: str) -> dict[str, set[str]]:
    """Command -> the options the README names in a ``rmapscope COMMAND ...`` usage
    (``""`` for options given before the command).

    >>> found = usages("`rmapscope -q replay (--trace ID ... \\\\| --all) -d /x 'a -b'`")
    >>> {command: sorted(options) for command, options in found.items()}
    {'': ['-q'], 'replay': ['--all', '--trace', '-d']}
    """
    found: dict[str, set[str]] = defaultdict(set)
    for snippet in code_snippets(text):
        snippet = snippet.replace("\\|", "|")
        for part in re.split(r"(?:^|(?<=[\s(]))rmapscope\s+", snippet)[1:]:
            part = re.sub(r"'[^']*'|\"[^\"]*\"", "", part)  # SQL, globs
            words = part.split()
            command = next((w for w in words if not w.startswith("-")), None)
            if command is None or not re.fullmatch(r"[a-z][a-z-]*", command):
                continue
            before, after = part.split(command, 1)
            found[""].update(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", before))
            found[command].update(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", after))
    return found


@cache
def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def app_commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def in_help(option: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_the_readme_names_usages():
    found = usages(README)
    assert {"analyze", "ingest", "replay", "sql", "query"} <= found.keys()
    assert "--engine" in found["replay"] and "-p" in found["query"]


@pytest.mark.parametrize("command", sorted(c for c in usages(README) if c))
def test_every_command_and_option_the_readme_names_exists(command):
    assert command in app_commands(), f"the README names `rmapscope {command}`"
    text = help_text(command)
    missing = sorted(o for o in usages(README)[command] if not in_help(o, text))
    assert not missing, f"`rmapscope {command} --help` lacks {missing}"


def test_global_options_the_readme_names_exist():
    sentence = re.search(r"Global options:(.*?)\.\n", README, re.S)
    assert sentence, "the README names the global options"
    named = set(re.findall(r"`(--?[\w-]+)`", sentence.group(1))) | usages(README)[""]
    assert {"--quiet", "--debug", "--version"} <= named
    assert [o for o in sorted(named) if not in_help(o, help_text())] == []


def test_every_command_is_in_the_commands_table():
    table = README.split("## Commands", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"^\| `rmapscope ([a-z-]+)", table, re.M))
    assert listed == app_commands()


def _readme_variables() -> set[str]:
    section = README.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {v for row in rows for v in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_environment_variable_is_in_the_readme():
    used = set()
    for top in (*LIBRARY, "tests", "data", ".ci"):
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".sh", ".md", ".toml"):
                used.update(re.findall(r"RMAPSCOPE_[A-Z0-9_]+", path.read_text(errors="replace")))
    listed = _readme_variables()
    assert used and used <= listed, sorted(used - listed)
    assert set(config.VARIABLES) <= listed


def test_the_library_reads_environment_variables_only_in_config():
    reads = re.compile(r"(environ(\.get)?\s*[\[(]|getenv\s*\()\s*[\"'][A-Z]")
    offenders = [
        str(path.relative_to(REPO))
        for top in LIBRARY
        for path in (REPO / top).rglob("*.py")
        if path != REPO / "rmapscope" / "config.py" and reads.search(path.read_text())
    ]
    assert offenders == []
