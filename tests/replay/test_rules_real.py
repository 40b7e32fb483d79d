"""The issue-13 rules on healthy kernels: on every real trace of the shared set and every
lab recording (qemu guests running Debian's kernels; skipped when absent), the new rules find
no violation and no hazard (the other rules are replay's own tests' business)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from rmapscope.replay.rulebook import RULES
from tests.conftest import LAB_TRACES, real

#: The rules of issue 13 (replay/_rules.py).
NEW = {r for r in RULES if RULES[r].tier == 1 and r not in ("leaked-entry", "fork-copied-entry")}
NEW |= {"foreign-entry", "shared-page-writable"}
LAB = LAB_TRACES or Path("/nonexistent")  # $RMAPSCOPE_LAB_TRACES, where set
LAB_RECORDINGS = sorted(str(p) for p in LAB.glob("*/trace.txt")) if LAB.is_dir() else []
REAL = [
    "forkstorm/ftrace-text-default/trace.txt.gz",
    "forkstorm/trace-cmd-v7/trace.dat",
    "forkstorm/perf/perf-script.txt.gz",
    "forkstorm/bpftrace/bpftrace.txt.gz",
    "thp/ftrace-text-default/trace.txt.gz",
    "thp/trace-cmd-v6/trace.dat",
    "thp/ftrace-trace_pipe/trace_pipe.txt.gz",
]


def _findings(path: str, tmp: Path) -> pl.DataFrame:
    ds = Dataset(tmp / "ds")
    r = ingest(path, ds)
    return replay(ds)[r.trace_id]["violations"]


@pytest.mark.parametrize("path", REAL)
def test_no_new_violation_nor_hazard_on_the_real_traces(path, tmp_path):
    v = _findings(str(real(path)), tmp_path)
    assert v.filter(pl.col("verdict").is_in(["violation", "hazard"])).is_empty(), v.head()
    assert set(v["rule"]) <= {"leaked-entry"} | NEW


@pytest.mark.slow
@pytest.mark.skipif(
    not LAB_RECORDINGS, reason="no lab recordings ($RMAPSCOPE_LAB_TRACES unset or empty)"
)
@pytest.mark.parametrize("path", LAB_RECORDINGS or ["none"])
def test_no_violation_nor_hazard_on_the_lab_kernels(path, tmp_path):
    v = _findings(path, tmp_path)
    bad = v.filter(pl.col("rule").is_in(NEW) & pl.col("verdict").is_in(["violation", "hazard"]))
    assert bad.is_empty(), bad.select("rule", "verdict", "explanation").to_dicts()[:5]
