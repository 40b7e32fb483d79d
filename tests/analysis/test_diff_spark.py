"""``rmapscope diff --engine spark`` gives the numbers DuckDB gives, on a simulated fleet
split into two hosts."""

from __future__ import annotations

import polars as pl
import pytest

from rmapscope.analysis.diff import diff, side_predicate
from rmapscope.analysis.session import DuckDBSession, SparkSqlSession
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from rmapscope.replay.simulator import simulate
from tests.replay.test_spark import spark

pytestmark = pytest.mark.spark
__all__ = ["spark"]  # a fixture, used by name


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Dataset:
    """Simulated runs of two scenarios over two hosts, replayed."""
    base = tmp_path_factory.mktemp("diff-fleet")
    ds = Dataset(base / "ds")
    runs = [
        ("compaction-storm", 1), ("fork-vs-migrate", 2), ("compaction-storm", 3),
        ("fork-vs-migrate", 4), ("exit-during-migration", 5), ("fork-vs-remove", 6),
    ]  # fmt: skip
    for i, (scenario, seed) in enumerate(runs):
        path = base / f"{scenario}-{seed}.txt"
        path.write_text(simulate(scenario, seed, bug="drop-remove" if i == 1 else None).text)
        ingest(str(path), ds, host=f"box{i % 2}")
    replay(ds)
    return ds


def test_spark_gives_the_same_numbers(fleet, spark):
    a, b = side_predicate("host:box0"), side_predicate("host:box1")
    local = diff(DuckDBSession(fleet), a, b).metrics
    distributed = diff(SparkSqlSession(spark, fleet), a, b).metrics
    assert local.height > 20
    assert distributed.columns == local.columns
    floats = [c for c, t in local.schema.items() if t == pl.Float64]
    assert distributed.drop(floats).equals(local.drop(floats))
    for c in floats:
        assert distributed[c].is_null().equals(local[c].is_null()), c
        got, want = distributed[c].drop_nulls().to_list(), local[c].drop_nulls().to_list()
        assert got == pytest.approx(want, rel=1e-9, nan_ok=True), c
