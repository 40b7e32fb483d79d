"""The Spark engine gives what the local engine gives: replay tables row for row, canned
queries, and a parallel ingest of many files (one of them corrupt).

Runs Spark in local mode; skipped with the reason when pyspark or Java is missing
(`pip install -e '.[spark]'`, and a Java 17+ runtime).
"""

from __future__ import annotations

import decimal
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from rmapscope.catalog import REPLAY_TABLES
from rmapscope.dataset import Dataset
from rmapscope.errors import UsageError
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from rmapscope.replay.simulator import simulate
from tests.conftest import REAL, cli_command, real

pytestmark = pytest.mark.spark

#: Every real trace file (every format, both workloads; perf.data needs perf: its
#: `perf script` texts are here), its workload as the host.
REAL_PATTERNS = ("*/*/*.txt.gz", "*/*/trace.dat")


def _real_traces() -> list[Path]:
    files = sorted(p for pattern in REAL_PATTERNS for p in REAL.glob(pattern))
    return [p for p in files if "pfnpairs" not in p.name and p.parent.name != "workload"]


def _java() -> bool:
    return bool(os.environ.get("JAVA_HOME") or shutil.which("java"))


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark", reason="pyspark not installed: pip install -e '.[spark]'")
    if not _java():
        pytest.skip("Spark needs Java 17+ and none is installed")
    from rmapscope.spark import session

    s = session(
        "local[2]",
        {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"},
    )
    yield s
    s.stop()


def _copy(ds: Dataset, to: Path) -> Dataset:
    shutil.copytree(ds.root, to, ignore=shutil.ignore_patterns(".lock", ".staging"))
    return Dataset(to)


def _replay_tables(ds: Dataset) -> dict[str, pl.DataFrame]:
    files = sorted(
        p.relative_to(ds.root) for t in REPLAY_TABLES for p in ds.root.glob(f"{t}/*/*/*.parquet")
    )
    return {str(f): pl.read_parquet(ds.root / f) for f in files}


def assert_same_replay(source: Dataset, tmp_path: Path, spark) -> dict[str, pl.DataFrame]:
    """Replay copies of ``source`` with both engines; every replay file is equal."""
    from rmapscope.replay.spark import replay_spark

    local, distributed = _copy(source, tmp_path / "local"), _copy(source, tmp_path / "spark")
    replay(local)
    results = replay_spark(distributed, spark)
    assert [r.error for r in results] == [None] * len(results)
    want, got = _replay_tables(local), _replay_tables(distributed)
    assert sorted(got) == sorted(want)
    assert len(want) == len(REPLAY_TABLES) * local.traces().height
    for name, df in want.items():
        assert got[name].schema == df.schema, name
        assert got[name].equals(df), name  # row for row, in the same order
    return want


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory) -> Dataset:
    files = _real_traces()
    if not files:
        real("forkstorm")  # skips, saying where the real data should be
    ds = Dataset(tmp_path_factory.mktemp("real") / "ds")
    for p in files:
        ingest(str(p), ds, host=p.parent.parent.name)
    return ds


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Dataset:
    """Simulated traces of every scenario and bug over three hosts."""
    base = tmp_path_factory.mktemp("fleet")
    ds = Dataset(base / "ds")
    runs = [
        ("compaction-storm", 1, 3, "child-first"),
        ("compaction-storm", 2, 2, None),
        ("compaction-storm", 3, 4, "drop-remove"),
        ("compaction-storm", 4, 2, "lose-events"),
        ("fork-vs-migrate", 5, 2, "child-first"),
        ("fork-vs-migrate", 6, 2, "drop-remove"),
        ("fork-vs-remove", 7, 2, "child-first"),
        ("fork-vs-remove", 8, 3, None),
        ("thp-split-vs-fork", 9, 2, "child-first"),
        ("thp-split-vs-fork", 10, 2, "lose-events"),
        ("exit-during-migration", 11, 2, None),
        ("exit-during-migration", 12, 2, "drop-remove"),
    ]
    for i, (scenario, seed, cpus, bug) in enumerate(runs):
        path = base / f"{scenario}-{seed}.txt"
        path.write_text(simulate(scenario, seed, cpus, bug).text)
        ingest(str(path), ds, host=f"box{i % 3}")
    return ds


def test_replay_equals_the_local_engine_on_real_traces(real_dataset, tmp_path, spark):
    tables = assert_same_replay(real_dataset, tmp_path, spark)
    migrations = sum(df.height for k, df in tables.items() if k.startswith("migrations/"))
    assert migrations > 1000  # the comparison covered real migrations


def test_replay_equals_the_local_engine_on_a_simulated_fleet(fleet, tmp_path, spark):
    tables = assert_same_replay(fleet, tmp_path, spark)
    violations = pl.concat(
        [df for k, df in tables.items() if k.startswith("violations/") and df.height]
    )
    assert set(violations["verdict"]) == {"violation", "inconclusive"}
    assert violations["rule"].n_unique() >= 3


def _values(rows: list[dict]) -> list[tuple]:
    """Rows as comparable values: Spark's DECIMAL sums and unsigned columns as ints."""

    def norm(v):
        if isinstance(v, decimal.Decimal):
            return int(v) if v == v.to_integral_value() else float(v)
        if isinstance(v, float):
            return round(v, 6) if math.isfinite(v) else v
        if isinstance(v, list):
            return [norm(x) for x in v]
        return v

    return [tuple(norm(v) for v in r.values()) for r in rows]


def test_every_canned_query_gives_the_same_rows_on_both_engines(
    real_dataset, fleet, tmp_path, spark
):
    from rmapscope.analysis import CANNED, connect, run_canned
    from rmapscope.analysis import spark as on_spark

    ds = _copy(real_dataset, tmp_path / "both")
    for src in sorted(fleet.root.glob("*/host=*/trace=*")):  # one dataset: real + fleet
        shutil.copytree(src, ds.root / src.relative_to(fleet.root))
    replay(ds)
    con = connect(ds)
    on_spark.register_views(spark, ds)
    nonempty = 0
    for name, q in CANNED.items():
        params = [{}]
        if "trace" in q.params:
            params.append({"trace": ds.traces()["trace_id"][0]})
        for p in params:
            want = run_canned(con, name, p).pl().to_dicts()
            got = on_spark.run_canned(spark, name, p).to_pylist()
            assert _values(got) == _values(want), (name, p)
            nonempty += bool(want)
    assert nonempty >= len(CANNED)  # every query returned rows at least once


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"tracing: junk\x00\x01\x02" * 100)
    return path


def test_parallel_ingest_of_many_files_equals_one_by_one(tmp_path, spark):
    from rmapscope.ingest.spark import FailedIngest, ingest_spark

    files = []
    for i in range(52):
        scenario = ("fork-vs-migrate", "fork-vs-remove", "exit-during-migration")[i % 3]
        path = tmp_path / "in" / f"t{i:02d}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(simulate(scenario, i, 2, "lose-events" if i % 7 == 0 else None).text)
        files.append(str(path))
    bad = str(_corrupt(tmp_path / "in" / "t99-bad.txt"))

    one_by_one = Dataset(tmp_path / "local")
    for f in files:
        ingest(f, one_by_one, host="fleet")
    parallel = Dataset(tmp_path / "spark")
    results = ingest_spark([str(tmp_path / "in" / "t*.txt")], parallel, spark, host="fleet")

    failed = [r for r in results if isinstance(r, FailedIngest)]
    assert [f.source for f in failed] == [bad]
    assert failed[0].error.startswith(f"{bad}: ") and failed[0].exit_code == 2
    landed = [r for r in results if not isinstance(r, FailedIngest)]
    assert len(landed) == 52 and not any(r.skipped for r in landed)
    assert _dataset_rows(parallel) == _dataset_rows(one_by_one)
    assert not any((parallel.root / ".staging").iterdir())

    again = ingest_spark([*files[:2], files[0]], parallel, spark, host="fleet")
    assert [r.skipped for r in again] == [True, True, True]
    forced = ingest_spark([files[0], files[0]], parallel, spark, host="fleet", force=True)
    assert [(r.replaced, r.skipped) for r in forced] == [(True, False), (False, True)]
    assert _dataset_rows(parallel) == _dataset_rows(one_by_one)


def _dataset_rows(ds: Dataset) -> dict[str, list]:
    """Every file of the dataset as sorted rows (the manifest without its ingest time)."""
    out = {}
    for f in sorted(ds.root.glob("*/host=*/trace=*/*.parquet")):
        df = pl.read_parquet(f)
        if "ingested_at" in df.columns:
            df = df.drop("ingested_at")
        out[str(f.relative_to(ds.root))] = df.rows()
    return out


def test_a_failing_trace_is_reported_not_raised(tmp_path):
    import pyarrow as pa

    from rmapscope.replay.spark import _replay_group

    files = pa.table(
        {
            "host": ["h"],
            "trace": ["t"],
            "path": ["file:/lake/event=set_migration_pte/host=h/trace=t/part-00000.parquet"],
            "content": [b"PAR1 this is not Parquet"],
        }
    )
    out = _replay_group(files, staging=str(tmp_path / "stage"))
    row = out.to_pylist()[0]
    assert (row["host"], row["trace"]) == ("h", "t")
    assert row["error"] and "parquet" in row["error"].lower()
    assert not (tmp_path / "stage").exists()


def test_cli_spark_engine(fleet, tmp_path, spark):
    """`replay`, `sql` and `query` with --engine spark (in-process: the active session)."""
    from typer.testing import CliRunner

    from rmapscope.cli import app

    ds = _copy(fleet, tmp_path / "cli")
    runner = CliRunner()
    one = fleet.traces()["trace_id"][0]
    r = runner.invoke(app, ["replay", "-t", one, "-d", str(ds.root), "--engine", "spark"])
    assert {p.name for p in ds.root.glob("migrations/host=*/trace=*")} == {f"trace={one}"}
    r = runner.invoke(app, ["replay", "--all", "-d", str(ds.root), "--engine", "spark"])
    assert r.exit_code == 1, r.output  # the fleet has violations
    assert r.output.count("trace ") >= fleet.traces().height
    r = runner.invoke(
        app,
        [
            "sql",
            "-d",
            str(ds.root),
            "--engine",
            "spark",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM events",
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["n", str(fleet.traces()["events"].sum())]
    r = runner.invoke(app, ["sql", "-d", str(ds.root), "--engine", "spark", "SELECT * FROM evnts"])
    assert "Closest tables: events" in str(r.exception)
    r = runner.invoke(app, ["query", "violations", "-d", str(ds.root), "--format", "csv"])
    want = r.output
    r = runner.invoke(
        app, ["query", "violations", "-d", str(ds.root), "--format", "csv", "--engine", "spark"]
    )
    assert r.exit_code == 0 and r.output == want and want.count("\n") > 2


def test_cli_reports_a_bad_spark_query_on_one_line(fleet, tmp_path):
    """A fresh process: its own Spark session, a typo answered with the closest views."""
    if not _java():
        pytest.skip("Spark needs Java 17+ and none is installed")
    pytest.importorskip("pyspark", reason="pyspark not installed: pip install -e '.[spark]'")
    r = subprocess.run(
        [
            *cli_command(),
            "sql",
            "-d",
            str(fleet.root),
            "--engine",
            "spark",
            "--master",
            "local[1]",
            "SELECT * FROM violatons",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "violatons" in errors[0]
    assert "Traceback" not in r.stderr


def test_engine_spark_without_pyspark_says_how_to_install(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from rmapscope.cli import app

    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now fails
    r = CliRunner().invoke(app, ["replay", "--all", "-d", str(tmp_path), "--engine", "spark"])
    assert isinstance(r.exception, UsageError)  # exit code 2 from the console script
    assert "pip install 'rmapscope[spark]'" in str(r.exception)


def test_spark_options_need_the_spark_engine(tmp_path):
    from typer.testing import CliRunner

    from rmapscope.cli import app

    r = CliRunner().invoke(app, ["replay", "--all", "-d", str(tmp_path), "--master", "local"])
    assert isinstance(r.exception, UsageError) and "--engine spark" in str(r.exception)
    r = CliRunner().invoke(app, ["replay", "--all", "-d", str(tmp_path), "--engine", "flink"])
    assert isinstance(r.exception, UsageError) and "unknown engine" in str(r.exception)


@pytest.mark.parametrize("command", ["ingest", "replay", "sql", "query"])
def test_help_explains_the_engines(command):
    from typer.testing import CliRunner

    from rmapscope.cli import app

    r = CliRunner().invoke(app, [command, "--help"])
    assert r.exit_code == 0
    for option in ("--engine", "--master", "--conf", "rmapscope[spark]"):
        assert option in r.output, (command, option)
