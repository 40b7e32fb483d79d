"""The report's figure and table functions on small hand-made frames, without DuckDB:
how many plotly traces each draws, its axis titles, escaping, and an empty frame."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import pytest

from rmapscope.dashboards import figures

SECONDS = "seconds since the trace's first event"
T1, T2 = "aaaaaaaa11111111", "bbbbbbbb22222222"

TRACES = pl.DataFrame(
    {
        "trace_id": [T1, T2],
        "host": ["box1", "box2"],
        "ts_first": [1_000_000_000, 5_000_000_000],
        "ts_last": [3_000_000_000, 6_000_000_000],
        "cpus": [2, 1],
    }
)


def event_counts() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1, T1, T2],
            "host": ["box1", "box1", "<b>box2</b>"],
            "event": ["sched_process_fork", "set_migration_pte", "set_migration_pte"],
            "events": [3, 10, 7],
        }
    )


def cpu_activity() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1, T1, T1, T2],
            "host": ["box1"] * 3 + ["box2"],
            "cpu": [0, 0, None, 0],
            "bucket": [0, 3, 1, 2],
            "events": [5, 100, 1, 9],
            "bucket_ns": [500_000_000] * 4,
        }
    )


def gaps() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1, T1],
            "host": ["box1", "box1"],
            "cpu": [0, None],
            "kind": ["lost", "overwritten"],
            "start_s": [0.1, 0.5],
            "end_s": [0.2, 0.4],  # an end before its start draws as a zero-width bar
            "lost": [120, None],
            "line": [10, 20],
            "text": ["CPU:0 [LOST 120 EVENTS]", "<script>x</script>"],
        }
    )


def timeline() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1] * 4,
            "host": ["box1"] * 4,
            "cpu": [0, 0, 1, 1],
            "kind": ["migrated", "leaked", "fork", "fork during a migration"],
            "start_s": [0.1, 0.2, 0.3, 0.4],
            "end_s": [0.15, 0.9, 0.3, 0.4],
            "n": [1, 1, 2, 1],
            "first_id": [1, 2, 7, 8],
            "pid": [10, 10, 11, 12],
            "comm": ["a", "b", "<i>c</i>", "d"],
            "reason": ["compaction", "compaction", None, None],
        }
    )


def latency_hist() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "reason": ["compaction", "compaction", "numa_misplaced"],
            "log10_us": [1.0, 1.1, 2.3],
            "migrations": [4, 6, 1],
        }
    )


def rate() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1, T1, T2],
            "host": ["box1", "box1", "box2"],
            "reason": ["compaction", "compaction", "unknown"],
            "outcome": ["migrated", "restored", "migrated"],
            "bucket": [0, 3, 1],
            "width_ns": [20_000_000, 20_000_000, 5_000_000],
            "migrations": [2, 1, 5],
            "per_second": [100.0, 50.0, 1000.0],
        }
    )


def forks() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1, T1, T2],
            "host": ["box1", "box1", "box2"],
            "kind": [
                "during a migration window",
                "outside migration windows",
                "thread (shares the mm)",
            ],
            "t_s": [0.1, 0.2, 0.3],
            "overlapping": [12, 0, 0],
            "forks": [1, 3, 1],
            "parent_comm": ["bash", "<svg>", "x"],
            "parent_pid": [1, 2, 3],
            "child_pid": [4, 5, 6],
            "window_us": [10.5, 3.0, 1.0],
            "clone_flags": [0x11, None, 0x100],
        }
    )


def page_states() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "trace": [T1] * 3,
            "host": ["box1"] * 3,
            "addr": [0x7F00, 0x7F00, 0x7F00],
            "mm": [None, None, None],
            "mapping": [1, 1, 1],
            "pfn": [0x100, 0x200, 0x100],
            "state": ["migration-entry", "present", "finding"],
            "migration_id": [3, 3, 3],
            "start_s": [0.1, 0.3, 0.5],
            "end_s": [0.3, 0.9, 0.5],
            "open_ended": [False, True, False],
            "rule": [None, None, "leaked-entry"],
            "verdict": [None, None, "violation"],
        },
        schema_overrides={"mm": pl.Int64, "rule": pl.String, "verdict": pl.String},
    )


def xtitle(fig: go.Figure) -> str | None:
    return fig.layout.xaxis.title.text


# (function, frame, keyword arguments, traces drawn, x axis title, y axis title)
CASES = {
    "event_counts": (figures.event_counts_figure, event_counts, {"n_traces": 2}, 2, "events", None),
    "cpu_activity": (
        figures.cpu_activity_figure,
        cpu_activity,
        {"traces": TRACES},
        1,
        SECONDS,
        None,
    ),
    "gaps": (figures.gaps_figure, gaps, {"multi": False}, 1, SECONDS, None),
    "timeline": (figures.migration_timeline_figure, timeline, {}, 4, SECONDS, None),
    "latency_hist": (
        figures.latency_histogram_figure,
        latency_hist,
        {},
        2,
        "latency (µs)",
        "folio migrations",
    ),
    "rate": (figures.migration_rate_figure, rate, {"traces": TRACES}, 3, None, "migrations/s"),
    "forks": (
        figures.forks_figure,
        forks,
        {"multi": True},
        3,
        SECONDS,
        "migrations open during the fork window",
    ),
    "page_states": (figures.page_states_figure, page_states, {}, 3, SECONDS, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_figure_traces_and_axes(case):
    fn, frame, kw, n, x, y = CASES[case]
    fig = fn(frame(), **kw)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == n
    if x is not None:
        assert xtitle(fig) == x
    if y is not None:
        assert fig.layout.yaxis.title.text == y
    assert fig.layout.template.layout.to_plotly_json()  # the report's template is set


@pytest.mark.parametrize("case", sorted(CASES))
def test_figure_of_an_empty_frame(case):
    fn, frame, kw, _, x, y = CASES[case]
    fig = fn(frame().clear(), **kw)
    assert isinstance(fig, go.Figure)
    assert sum(len(t.x if t.x is not None else []) for t in fig.data) == 0
    if x is not None and case != "rate":
        assert xtitle(fig) == x
    if y is not None:
        assert fig.layout.yaxis.title.text == y
    fig.to_json()  # serialisable, as the page needs


def test_strings_from_the_trace_are_escaped_in_figures():
    fig = figures.forks_figure(forks(), multi=False)
    comms = [c[0] for t in fig.data for c in t.customdata]
    assert "&lt;svg&gt;" in comms and "<svg>" not in comms
    fig = figures.event_counts_figure(event_counts(), n_traces=2)
    assert {t.name for t in fig.data} == {"box1 aaaaaaaa", "&lt;b&gt;box2&lt;/b&gt; bbbbbbbb"}
    assert figures.esc_plotly("<a href='x'>&") == "&lt;a href=&#39;x&#39;&gt;&amp;"


def test_several_traces_label_rows_with_host_and_trace():
    one = figures.gaps_figure(gaps(), multi=False)
    two = figures.gaps_figure(gaps(), multi=True)
    assert list(one.data[0].y) == ["cpu 0", "all cpus"]
    assert list(two.data[0].y) == ["box1 aaaaaaaa cpu 0", "box1 aaaaaaaa all cpus"]
    heat = figures.cpu_activity_figure(cpu_activity(), TRACES)
    assert list(heat.data[0].y) == [
        "box1 aaaaaaaa cpu ?",
        "box1 aaaaaaaa cpu 0",
        "box2 bbbbbbbb cpu 0",
    ]


def test_cpu_activity_cells_end_with_each_trace():
    fig = figures.cpu_activity_figure(cpu_activity(), TRACES.head(1))
    z = fig.data[0].customdata  # events per (row, 0.5 s bucket); NaN after the trace's end
    assert z.shape == (3, 4)
    assert z[1].tolist() == [5, 0, 0, 100]  # trace 1, cpu 0: 2 s = buckets 0..3 (+1 edge)
    assert [round(v, 2) for v in fig.data[0].x] == [0.25, 0.75, 1.25, 1.75]


def test_migration_rate_has_one_subplot_per_trace():
    fig = figures.migration_rate_figure(rate(), TRACES)
    assert {t.xaxis for t in fig.data} == {"x", "x2"}
    assert fig.layout.xaxis2.title.text == SECONDS and fig.layout.xaxis.title.text is None
    assert list(fig.layout.xaxis.range) == [0, 2.0]
    assert [t.showlegend for t in fig.data] == [True, True, True]


def test_tables():
    lat = pl.DataFrame(
        {
            "reason": [None, "compaction"],
            "migrations": [3, 1000],
            "p50_us": [1.25, 2.0],
            "p90_us": [1.5, 3.0],
            "p99_us": [1.75, 4.0],
            "max_us": [2.0, 5.0],
            "restored": [0, 1],
            "mean_us": [1.5, 2.5],
        }
    )
    html = figures.latency_table(lat)
    assert html.count("<tr>") == 3 and ">unknown<" in html and ">1,000<" in html
    assert html.index("restored") < html.index("p50 (µs)")  # the panel's column order
    ov = pl.DataFrame({"trace": [T1], "host": ["h"], "events": [5], "lost_events": [0]})
    ov = ov.with_columns(rejected_lines=pl.lit(2))
    kpis = figures.overview_kpis(ov)
    assert [k[1] for k in kpis] == ["traces", "events", "events lost"]
    assert "migrations" not in figures.overview_table(ov)
    errs = pl.DataFrame(
        {
            "trace": [T1],
            "host": ["h"],
            "reason": ["garbage"],
            "count": [2],
            "first_line": [7],
            "sample_lines": [[7, 9]],
            "samples": [["<img src=x>", "y"]],
        }
    )
    html = figures.ingest_errors_table(errs)
    assert "line 7: &lt;img src=x&gt;\nline 9: y" in html and "<img" not in html


def test_the_panel_model_is_a_leaf_and_dashboards_has_no_import_circle():
    import ast
    from pathlib import Path

    import rmapscope.dashboards as pkg

    root = Path(pkg.__file__).parent
    graph: dict[str, set[str]] = {}
    for f in root.glob("*.py"):
        mod = "__init__" if f.stem == "__init__" else f.stem
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module)
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "rmapscope.dashboards"
            ):
                deps.add(
                    (node.module or "").removeprefix("rmapscope.dashboards").strip(".")
                    or "__init__"
                )
        graph[mod] = deps
    assert graph["_panel"] == set()
    assert "_panel" in graph["_html"] and "_panel" in graph["panels"]
    assert "panels" not in graph["_html"] and "panels" not in graph["figures"]

    def reach(m: str, path: tuple[str, ...] = ()) -> None:
        assert m not in path, f"import circle: {' -> '.join([*path, m])}"
        for d in graph.get(m, ()):
            reach(d, (*path, m))

    for m in graph:
        reach(m)
