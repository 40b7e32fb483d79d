"""SQL over the dataset: views, the events union, output formats, errors, canned queries."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from rmapscope.analysis import CANNED, connect, run_canned
from rmapscope.cli import sample_trace
from rmapscope.dataset import Dataset
from rmapscope.errors import UsageError
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.conftest import real


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from rmapscope.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin, check=False)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    d = Dataset(tmp_path_factory.mktemp("ds") / "ds")
    a = ingest(str(sample_trace()), d, host="box1")
    b = ingest(str(real("forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz")), d, host="box2")
    replay(d)
    return d, a, b


def test_every_table_is_a_view_and_events_counts_everything(ds):
    d, a, b = ds
    con = connect(d)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    for name in [
        "set_migration_pte",
        "mm_migrate_pages",
        "traces",
        "gaps",
        "ingest_errors",
        "migrations",
        "migration_batches",
        "page_states",
        "fork_windows",
        "violations",
        "events",
    ]:
        assert name in views, name
    counts = dict(con.sql("SELECT event, count(*) FROM events GROUP BY 1").fetchall())
    expected: dict[str, int] = {}
    for r in (a, b):
        for k, v in r.event_counts.items():
            expected[k] = expected.get(k, 0) + v
    assert counts == expected
    per_trace = dict(con.sql("SELECT trace, count(*) FROM events GROUP BY 1").fetchall())
    assert per_trace == {a.trace_id: a.events, b.trace_id: b.events}
    # partition columns come from the directory names
    hosts = dict(con.sql("SELECT trace, any_value(host) FROM migrations GROUP BY 1").fetchall())
    assert hosts[a.trace_id] == "box1"


def test_trace_filter_prunes_partitions(ds):
    d, a, _ = ds
    con = connect(d)
    plan = con.sql(f"EXPLAIN SELECT sum(pfn) FROM mm_page_free WHERE trace = '{a.trace_id}'")
    text = "\n".join(r[1] for r in plan.fetchall())
    assert "Scanning Files: 1/2" in text


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "parquet", "markdown", "table"])
def test_output_formats(ds, tmp_path, fmt):
    d, *_ = ds
    out = tmp_path / f"out.{fmt}"
    q = "SELECT outcome, count(*) AS n FROM migrations GROUP BY 1 ORDER BY 1"
    r = cli("sql", q, "--format", fmt, "-o", str(out), "--dataset", str(d.root))
    assert r.returncode == 0, r.stderr
    if fmt == "csv":
        got = pl.read_csv(out)
    elif fmt == "json":
        got = pl.DataFrame(json.loads(out.read_text()))
    elif fmt == "ndjson":
        got = pl.read_ndjson(out)
    elif fmt == "parquet":
        got = pl.read_parquet(out)
    else:
        text = out.read_text()
        assert "migrated" in text and "inconclusive" in text
        return
    assert dict(zip(got["outcome"], got["n"], strict=True)) == dict(connect(d).sql(q).fetchall())


def test_file_of_queries(ds, tmp_path):
    d, *_ = ds
    f = tmp_path / "q.sql"
    f.write_text("CREATE TEMP TABLE x AS SELECT 41 AS v;\nSELECT v + 1 AS answer FROM x;\n")
    r = cli("sql", "-f", str(f), "--format", "csv", "--dataset", str(d.root))
    assert r.returncode == 0 and r.stdout.strip().splitlines() == ["answer", "42"]


def test_sql_errors_are_one_line_with_the_closest_names(ds):
    d, *_ = ds
    r = cli("sql", "SELECT * FROM migratoins", "--dataset", str(d.root))
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "migratoins" in r.stderr and "Closest tables: migrations" in r.stderr
    r = cli("sql", "SELECT outcme FROM migrations", "--dataset", str(d.root))
    assert r.returncode == 1 and "outcome" in r.stderr and "Traceback" not in r.stderr


def test_interactive_prompt(ds):
    d, *_ = ds
    r = cli(
        "sql",
        "--dataset",
        str(d.root),
        stdin=".tables\nSELECT count(*) AS n\nFROM traces;\n.schema traces\n",
    )
    assert r.returncode == 0, r.stderr
    assert "migrations" in r.stdout and "trace_id" in r.stdout
    assert "│ 2" in r.stdout  # the two traces, after a statement over two lines


@pytest.mark.parametrize("name", sorted(CANNED))
def test_canned_queries_run(ds, name):
    d, a, _ = ds
    con = connect(d)
    rows = run_canned(con, name).fetchall()
    one = run_canned(con, name, {"trace": a.trace_id}).fetchall()
    assert len(one) <= len(rows)
    if name in ("migrations-by-reason", "migration-latency", "events-per-second", "top-forkers"):
        assert one, name


def test_canned_query_parameters_are_checked(ds):
    d, *_ = ds
    con = connect(d)
    with pytest.raises(UsageError, match="no parameter"):
        run_canned(con, "top-forkers", {"bogus": "1"})
    with pytest.raises(UsageError, match="integer"):
        run_canned(con, "top-forkers", {"limit": "ten"})
    r = cli("query", "top-forkers", "-p", "limit=1", "--format", "csv", "--dataset", str(d.root))
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 2
    r = cli("query", "list")
    assert all(n in r.stdout for n in CANNED)


def test_canned_query_before_replay_says_what_to_do(tmp_path):
    d = Dataset(tmp_path / "ds")
    ingest(str(sample_trace()), d)
    with pytest.raises(UsageError, match="rmapscope replay"):
        run_canned(connect(d), "migrations-by-reason")
