"""The CLI starts without loading the pipeline stages a command does not use.

Every ``rmapscope`` run pays for what ``rmapscope.cli`` imports: replay (and pandas, which
pyarrow pulls in on first use), the dashboards and the ingest readers are loaded by the
commands that need them, not at start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, real

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


def _ingest_loads(trace: Path, dataset: Path) -> set[str]:
    code = (
        "from rmapscope.cli import main; "
        f"sys.argv = ['rmapscope', 'ingest', '-q', '-d', {str(dataset)!r}, {str(trace)!r}]\n"
        "try: main()\nexcept SystemExit as e: assert e.code == 0, e.code"
    )
    return _loaded_after(code)


@pytest.mark.parametrize(
    "trace",
    ["sample", "thp/trace-cmd-v7/trace.dat", "thp/perf/perf-script.txt.gz"],
)
def test_an_ingest_does_not_import_pandas(trace: str, tmp_path: Path) -> None:
    """pyarrow imports pandas on the first ``pa.array``/``pa.table``/``pa.scalar`` of
    Python values (0.3 s, a sixth of a 2 M-line ingest): the ingest path builds its small
    arrays through polars or from buffers instead."""
    path = REPO / "data/samples/forkstorm-slice.trace.txt.gz" if trace == "sample" else real(trace)
    loaded = _ingest_loads(path, tmp_path / "ds")
    assert "rmapscope.ingest" in loaded  # the probe really ran an ingest
    assert "pandas" not in loaded
