"""Every chart of the report is a named query: ``rmapscope query NAME -p trace=ID`` (the
command line the report prints above each chart's SQL) gives exactly the chart's rows.

The queries run through the CLI in a subprocess (``python -m rmapscope query ... --format
json``), the charts through the report's own panel builder, on one dataset holding the
bundled sample and a real lossy capture (its parts skip when the real traces are missing),
scoped to each trace, to both and to all; and on the sample before replay.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from rmapscope.analysis import CANNED, QUERIES, bind_params, bound_sql, charts, connect
from rmapscope.analysis._output import render
from rmapscope.cli import sample_trace
from rmapscope.dashboards import build_panels, panels
from rmapscope.dashboards._panel import Panel
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.conftest import REAL

REAL_TRACE = "forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz"

#: The named query of every chart (the overview's is report-overview-ingest before replay).
CHART_QUERIES = {
    "traces": "report-traces",
    "overview": "report-overview",
    "event_counts": "report-event-counts",
    "cpu_activity": "report-cpu-activity",
    "gaps": "report-gaps",
    "ingest_errors": "report-ingest-errors",
    "migration_timeline": "report-migration-timeline",
    "latency_hist": "report-latency-histogram",
    "latency_pct": "migration-latency",
    "migration_rate": "report-migration-rate",
    "forks": "report-forks",
    "violations": "report-findings",
    "page_drilldown": "report-page-states",
}

# Runs `python -m rmapscope ARGS...` once per line of stdin (a JSON list of argument
# lists) in one interpreter, as the console would, and prints each run's exit code,
# stdout and stderr: one process instead of one per query.
BATCH = """
import contextlib, io, json, runpy, sys
results = []
for argv in json.load(sys.stdin):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["rmapscope", *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module("rmapscope", run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
json.dump(results, sys.__stdout__)
"""


def rmapscope_many(calls: list[list[str]]) -> list[dict]:
    """Run ``python -m rmapscope`` with each argument list (in one subprocess)."""
    r = subprocess.run(
        [sys.executable, "-c", BATCH],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(r.stdout)


def command(p: Panel) -> list[str]:
    """The ``rmapscope query`` arguments printed in the first line of a panel's SQL."""
    head = p.sql.split("\n", 1)[0]
    assert head.startswith("-- rmapscope query "), (p.id, head)
    return head.split()[2:]


def rows(p: Panel) -> list[dict]:
    """The panel's rows as ``--format json`` writes them (none when it drew nothing)."""
    return [] if p.frame is None else json.loads(render(p.frame, "json"))


def all_panels(ds: Dataset, trace_ids: list[str] | None) -> list[Panel]:
    sections, _ = build_panels(ds, trace_ids)
    return [p for _, _, ps in sections for p in ps]


def check_against_cli(ds: Dataset, ps: list[Panel]) -> dict[str, str]:
    """Run each panel's printed command through the CLI and compare the rows; returns
    panel id -> query name."""
    calls = [[*command(p), "--format", "json", "--dataset", str(ds.root)] for p in ps]
    seen = {}
    for p, call, got in zip(ps, calls, rmapscope_many(calls), strict=True):
        name = call[1]
        seen[p.id] = name
        if got["code"] != 0:  # only a panel whose tables replay has not written yet
            assert got["code"] == 2 and "rmapscope replay" in got["stderr"], (p.id, got)
            assert p.frame is None and "rmapscope replay" in p.empty, p.id
            continue
        assert json.loads(got["stdout"]) == rows(p), (p.id, name)
    return seen


def shown_query(p: Panel) -> str:
    """The SQL under the command line: the named query with the printed values bound."""
    args = command(p)
    q = QUERIES[args[1]]
    given = dict(a.split("=", 1) for a in args[3::2])
    return bound_sql(q, bind_params(q, given))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Dataset:
    """The bundled sample and, when the real traces are there, the lossy capture; replayed."""
    d = Dataset(tmp_path_factory.mktemp("charts") / "ds")
    ingest(str(sample_trace()), d)
    if (REAL / REAL_TRACE).exists():
        ingest(str(REAL / REAL_TRACE), d)
    replay(d)
    return d


def trace_id(ds: Dataset, which: str) -> str:
    t = ds.traces()
    sample = t.filter(t["source"].str.ends_with(Path(str(sample_trace())).name))
    if which == "sample":
        return sample["trace_id"][0]
    other = t.filter(~t["trace_id"].is_in(sample["trace_id"].implode()))
    if other.is_empty():
        pytest.skip(f"real trace {REAL / REAL_TRACE} not available")
    return other["trace_id"][0]


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("scope", ["sample", "real", "both", "all"])
def test_each_chart_query_gives_the_charts_rows(ds, scope):
    which = {"all": None, "sample": ["sample"], "real": ["real"], "both": ["sample", "real"]}
    ids = None if scope == "all" else [trace_id(ds, w) for w in which[scope]]
    ps = all_panels(ds, ids)
    seen = check_against_cli(ds, ps)
    assert seen == CHART_QUERIES
    for p in ps:
        assert p.sql.split("\n", 1)[1] == shown_query(p), p.id
        if ids is None:
            assert "-p trace=" not in p.sql.split("\n", 1)[0], p.id
        else:
            assert f"-p trace={','.join(ids)}" in p.sql.split("\n", 1)[0], p.id
    drew = {p.id for p in ps if p.frame is not None}
    assert {"traces", "overview", "event_counts", "cpu_activity", "migration_timeline"} <= drew
    if scope != "real":  # the sample's migrations complete
        assert {"latency_hist", "latency_pct", "migration_rate", "forks"} <= drew
    if scope != "sample":  # the lossy capture: gaps and inconclusive findings
        assert {"gaps", "violations", "page_drilldown"} <= drew


def test_caps_the_report_changes_are_printed_and_reproduce(ds, monkeypatch):
    monkeypatch.setattr(panels, "TIMELINE_ROW_CAP", 40)
    monkeypatch.setattr(panels, "FORK_CAP", 3)
    ps = [p for p in all_panels(ds, None) if p.id in ("migration_timeline", "forks")]
    assert [command(p)[1:] for p in ps] == [
        ["report-migration-timeline", "-p", "row_cap=40"],
        ["report-forks", "-p", "cap=3"],
    ]
    check_against_cli(ds, ps)
    assert ps[0].frame is not None and (ps[0].frame["n"] > 1).any()  # merged rows


def test_before_replay_the_overview_is_the_ingest_query(tmp_path):
    d = Dataset(tmp_path / "ds")
    ingest(str(sample_trace()), d)
    ps = all_panels(d, None)
    seen = check_against_cli(d, ps)
    assert seen["overview"] == "report-overview-ingest"
    by_id = {p.id: p for p in ps}
    assert by_id["overview"].frame is not None and by_id["cpu_activity"].frame is not None
    assert by_id["migration_timeline"].frame is None


def test_the_latency_panel_is_the_canned_query(ds):
    tid = trace_id(ds, "sample")
    p = next(p for p in all_panels(ds, [tid]) if p.id == "latency_pct")
    q = CANNED["migration-latency"]
    assert p.sql.split("\n", 1)[1] == bound_sql(q, {"trace": tid})
    assert p.frame is not None
    # the canned columns first, as before; the panel's extra columns after them
    assert p.frame.columns == [
        "reason",
        "migrations",
        "p50_us",
        "p90_us",
        "p99_us",
        "max_us",
        "restored",
        "mean_us",
    ]
    query = ["query", "migration-latency", "-p", f"trace={tid}", "--format", "json"]
    r = subprocess.run(
        [sys.executable, "-m", "rmapscope", *query, "--dataset", str(ds.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == rows(p)
    # the same numbers as the report's own SQL before it used the canned query
    before = connect(ds).sql(LATENCY_BEFORE, params={"trace": tid}).pl()
    assert before.height == p.frame.height > 0
    assert before.equals(p.frame.select(before.columns).with_columns(reason=before["reason"]))
    assert p.frame["reason"].fill_null("unknown").equals(before["reason"])


#: The latency panel's SQL before it was the migration-latency query.
LATENCY_BEFORE = """
    SELECT coalesce(reason, 'unknown') AS reason, count(*) AS migrations,
           count(*) FILTER (WHERE outcome = 'restored') AS restored,
           quantile_cont(lat, 0.5) / 1e3 AS p50_us,
           quantile_cont(lat, 0.9) / 1e3 AS p90_us,
           quantile_cont(lat, 0.99) / 1e3 AS p99_us,
           max(lat) / 1e3 AS max_us,
           avg(lat) / 1e3 AS mean_us
    FROM (SELECT reason, outcome, t_last_remove - t_first_set AS lat FROM migrations
          WHERE trace = $trace AND outcome IN ('migrated', 'restored')
            AND t_last_remove IS NOT NULL)
    GROUP BY ALL
    ORDER BY migrations DESC
"""


def test_nice_bucket_sql_is_the_python_rule():
    values = [0, 0.4, 1, 2, 3, 7, 9.99, 10, 11, 19, 20, 21, 49_000_000, 50_000_000]
    values += [50_000_001, 123_456_789.5, 2e9 / 150, 9e11 / 400, 1e15 + 1]
    con = duckdb.connect()
    con.execute("CREATE TABLE s AS SELECT unnest($v) AS x", {"v": [float(v) for v in values]})
    got = con.sql(f"SELECT x, width FROM ({charts.nice_bucket_sql('s')}) ORDER BY x").fetchall()
    assert [w for _, w in got] == [charts.nice_bucket(x) for x in sorted(values)]
