"""The CLI starts without loading the pipeline stages a command does not use.

Every ``rmapscope`` run pays for what ``rmapscope.cli`` imports: replay (and pandas, which
pyarrow pulls in on first use), the dashboards and the ingest readers are loaded by the
commands that need them, not at start.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("rmapscope.replay", "rmapscope.dashboards", "rmapscope.ingest", "pandas", "scipy")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys; {code}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_importing_the_cli_loads_no_pipeline_stage() -> None:
    assert _loaded_after("import rmapscope.cli") == set()


def test_help_of_every_command_loads_no_pipeline_stage() -> None:
    code = (
        "from typer.testing import CliRunner; from rmapscope.cli import app; "
        "r = CliRunner(); "
        "[r.invoke(app, [c, '--help']) for c in ('ingest', 'replay', 'analyze', 'explain')]"
    )
    assert _loaded_after(code) == set()
