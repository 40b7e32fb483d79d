"""The compiled trace.dat page walk and batch decode under coverage-guided fuzzing
(cargo-fuzz, libFuzzer).

Runs native/core/fuzz's ``tracedat`` target (the walk, then ``decode_batch`` of the records
walked) for a fixed time from the committed seed corpus (real pages of the shared captures
and of the synthetic test files): it must end with no crash (a panic, an out-of-bounds
access, a broken invariant of the walk's or the decode's output) and no hang (an input
taking over 10 s). Skipped without the nightly toolchain and cargo-fuzz.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "native" / "core" / "fuzz"
SECONDS = 60


def _cargo_fuzz() -> bool:
    if not shutil.which("cargo"):
        return False
    try:
        done = subprocess.run(
            ["cargo", "+nightly", "fuzz", "--version"], capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.mark.slow
def test_page_walk_survives_fuzzing(tmp_path: Path) -> None:
    if not _cargo_fuzz():
        pytest.skip("needs the nightly Rust toolchain and cargo-fuzz")
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "seeds" / "tracedat", corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    build = subprocess.run(
        ["cargo", "+nightly", "fuzz", "build", "tracedat"],
        cwd=FUZZ.parent,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run(
        [
            "cargo", "+nightly", "fuzz", "run", "tracedat", str(corpus), "--",
            f"-max_total_time={SECONDS}", "-max_len=16384", "-timeout=10",
            f"-artifact_prefix={artifacts}/",
        ],
        cwd=FUZZ.parent,
        capture_output=True,
        text=True,
        timeout=SECONDS + 600,
    )  # fmt: skip
    found = sorted(p.name for p in artifacts.iterdir())
    assert run.returncode == 0 and not found, (found, run.stderr[-3000:])
    assert "Done " in run.stderr  # libFuzzer's summary: it ran to the time limit
    assert len(list(corpus.iterdir())) > len(list((FUZZ / "seeds" / "tracedat").iterdir()))
