"""The HTML report: every panel has data on real traces, its SQL is shown and is what ran,
every string from a trace is escaped wherever it appears, sizes, embed vs CDN, the CLI.

The hostile trace is ~2,000 real lines whose process names are HTML/JS payloads (each at
most 15 characters, as the kernel allows), plus longer payloads where a trace can carry
them: an exec file name, a task_rename newcomm, an unknown event's name and fields, a line
ingest rejects, the trace's file name and its --host.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import plotly.io.json as pjson
import polars as pl
import pytest

from rmapscope.analysis import charts, connect
from rmapscope.cli import sample_trace
from rmapscope.dashboards import _html, build_panels, build_report, figures, panels
from rmapscope.dataset import Dataset
from rmapscope.errors import DatasetError, UsageError
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.conftest import real, real_lines

REAL_TRACES = [
    "thp/ftrace-text-default/trace.txt.gz",
    "forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz",
]
FIGURE_PANELS = [
    "event_counts",
    "cpu_activity",
    "gaps",
    "migration_timeline",
    "latency_hist",
    "migration_rate",
    "forks",
    "page_drilldown",
]
TABLE_PANELS = ["traces", "overview", "latency_pct", "violations", "ingest_errors"]

PWN = "window.__pwned=1"
#: Process names (kernel comm: at most 15 characters), one per original comm in turn.
HOSTILE_COMMS = [
    "<script>x</scr",
    "</script><b>x",
    "<svg/onload=x>",
    '"><img/src=x>',
    "'&amp;\"<i>x",
    "<b>bold</b>",
    "<u>u</u>&lt;",
]
HOSTILE_FILENAME = f"<script>{PWN}</script>"
HOSTILE_NEWCOMM = f'"><img/src/onerror={PWN}>'
HOSTILE_EVENT = f"<svg/onload={PWN}>"
HOSTILE_FIELD = f"<img/src/onerror={PWN}>"
HOSTILE_GARBAGE = f"garbage <img src=x onerror={PWN}> <script>{PWN}</script>"
# no "/" (a directory separator), "=" or "\" (DuckDB's hive partition parsing) in a host
HOSTILE_HOST = "<script>alert(1)<script><b>box\"'&amp; x"
HOSTILE_FILE = f"<img src=x onerror={PWN}>.txt"
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "script",
    "body",
    "header",
    "h1",
    "h2",
    "h3",
    "div",
    "span",
    "nav",
    "a",
    "main",
    "section",
    "p",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "details",
    "summary",
    "pre",
    "code",
    "footer",
}


def build_hostile_trace(path: Path) -> dict[str, str]:
    """Write the hostile trace; returns original comm -> hostile comm."""
    src = "forkstorm/ftrace-text-default/trace.txt.gz"
    header = real_lines(src, 1, 12)
    # forks of the fork storm, then a stretch of compaction (with migration batches)
    body = real_lines(src, 31300, 32000) + real_lines(src, 39300, 40600)
    names: dict[str, str] = {}

    def hostile(comm: str) -> str:
        if comm not in names:
            names[comm] = HOSTILE_COMMS[len(names) % len(HOSTILE_COMMS)]
        return names[comm]

    out = []
    removes = 0
    for line in body:
        if "remove_migration_pte" in line:
            removes += 1
            if removes == 61:
                continue  # drop one remove inside a complete batch: a leaked-entry violation
        if len(line) > 16 and line[16] == "-":  # "%16s-%-7d": the comm is right-aligned
            line = hostile(line[:16].strip()).rjust(16) + line[16:]
        line = re.sub(
            r"\b(comm|child_comm|oldcomm|newcomm)=(\S+)",
            lambda m: f"{m.group(1)}={hostile(m.group(2))}",
            line,
        )
        out.append(line)
    ts = out[-1].split("]", 1)[1].split()[1].rstrip(":")
    sec, usec = ts.split(".")

    def t(k: int) -> str:
        return f"{sec}.{int(usec) + k:06d}"

    c = HOSTILE_COMMS[3].rjust(16)
    out += [
        f"{c}-31337   [000] ..... {t(1)}: sched_process_exec: filename={HOSTILE_FILENAME} "
        "pid=31337 old_pid=31337\n",
        f"{c}-31337   [000] ..... {t(2)}: task_rename: pid=31337 oldcomm=x "
        f"newcomm={HOSTILE_NEWCOMM} oom_score_adj=0\n",
        f"{c}-31337   [000] ..... {t(3)}: {HOSTILE_EVENT}: field={HOSTILE_FIELD}\n",
        HOSTILE_GARBAGE + "\n",
    ]
    path.write_text("".join(header + out))
    return names


# --------------------------------------------------------------------------- fixtures
def make_real_ds(root: Path) -> Dataset:
    """The bundled sample, the thp capture and the lossy trace_pipe capture, replayed."""
    ds = Dataset(root / "ds")
    for p in [str(sample_trace()), *(str(real(t)) for t in REAL_TRACES)]:
        ingest(p, ds)
    replay(ds)
    return ds


def make_hostile_ds(root: Path) -> tuple[Dataset, dict[str, str]]:
    """The hostile trace ingested under the hostile host name, replayed."""
    trace = root / HOSTILE_FILE
    names = build_hostile_trace(trace)
    ds = Dataset(root / "ds")
    ingest(str(trace), ds, host=HOSTILE_HOST)
    replay(ds)
    return ds, names


@pytest.fixture(scope="module")
def real_ds(tmp_path_factory) -> Dataset:
    return make_real_ds(tmp_path_factory.mktemp("report-real"))


@pytest.fixture(scope="module")
def real_report(real_ds, tmp_path_factory) -> Path:
    return build_report(real_ds, output=tmp_path_factory.mktemp("out") / "report.html")


@pytest.fixture(scope="module")
def hostile_ds(tmp_path_factory) -> tuple[Dataset, dict[str, str]]:
    return make_hostile_ds(tmp_path_factory.mktemp("report-hostile"))


@pytest.fixture(scope="module")
def hostile_report(hostile_ds, tmp_path_factory) -> Path:
    return build_report(hostile_ds[0], output=tmp_path_factory.mktemp("out") / "hostile.html")


# --------------------------------------------------------------------------- helpers
def section(text: str, panel_id: str) -> str:
    """The HTML of one panel's <section>."""
    start = text.index(f'<section class="panel" id="panel-{panel_id}">')
    end = text.find("</section>", start)
    return text[start:end]


def in_figure_json(s: str) -> str:
    """How an (escaped) string looks inside plotly's figure JSON (without the quotes)."""
    return pjson.to_json_plotly(s)[1:-1]


class _Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_bodies: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_bodies.append(data)


def parse_tags(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    p.close()
    return p


def hostile_strings(names: dict[str, str]) -> list[str]:
    return [
        *set(names.values()),
        HOSTILE_FILENAME,
        HOSTILE_NEWCOMM,
        HOSTILE_EVENT,
        HOSTILE_FIELD,
        HOSTILE_GARBAGE,
        HOSTILE_HOST,
        HOSTILE_FILE,
    ]


# --------------------------------------------------------------------------- real data
def test_every_panel_has_data_on_the_real_traces(real_ds):
    sections, ctx = build_panels(real_ds)
    by_id = {p.id: p for _, _, ps in sections for p in ps}
    assert set(by_id) == set(FIGURE_PANELS) | set(TABLE_PANELS)
    for pid in FIGURE_PANELS:
        p = by_id[pid]
        assert p.has_data, (pid, p.empty)
        assert p.figure is not None and len(p.figure.data) > 0, pid
    for pid in TABLE_PANELS:
        p = by_id[pid]
        if pid == "ingest_errors":  # the real traces parse completely
            assert not p.has_data and "No ingest errors" in p.empty
            continue
        assert p.has_data and p.table_html and "<td" in p.table_html, pid
    assert ctx.traces.height == 3
    # the lossy trace_pipe capture drives the gap panel and the findings
    assert by_id["gaps"].frame.height == 5
    assert int(by_id["gaps"].frame["lost"].sum()) == 84_428
    v = by_id["violations"].frame
    assert v.height == 6 and set(v["verdict"]) == {"inconclusive"}
    assert v["evidence_events"].str.contains("set_migration_pte").all()
    states = by_id["page_drilldown"].frame
    assert {"migration-entry", "finding"} <= set(states["state"])
    # the migration timeline counts every folio migration of the three traces once
    tl = by_id["migration_timeline"].frame
    migs = tl.filter(~pl.col("kind").str.starts_with("fork"))
    assert int(migs["n"].sum()) == 687 + 549 + 6
    assert set(migs["kind"]) == {"migrated", "inconclusive"}


def test_the_sql_shown_is_the_sql_that_ran(real_ds, real_report):
    text = real_report.read_text()
    sections, _ = build_panels(real_ds)
    con = connect(real_ds)
    shown = re.findall(
        r'<details class="sql"><summary>SQL</summary><pre><code class="language-sql">'
        r"(.*?)</code></pre></details>",
        text,
        re.S,
    )
    panels_ = [p for _, _, ps in sections for p in ps]
    assert len(shown) == len(panels_)
    for p, sql in zip(panels_, shown, strict=True):
        assert html.unescape(sql) == p.sql, p.id
        if p.frame is not None:
            again = con.sql(html.unescape(sql)).pl()
            assert again.shape == p.frame.shape, p.id
            assert again.equals(p.frame), p.id


def test_header_names_traces_hosts_hashes_and_versions(real_ds, real_report):
    text = real_report.read_text()
    head = section(text, "traces")
    for r in real_ds.traces().iter_rows(named=True):
        assert r["trace_id"] in head and r["sha256"] in head
        assert _html.esc(r["source"]) in head
    assert "2958.585518000" in head  # first event of the lossy capture, exact
    assert "rmapscope: 0.1.0" in text and "ingested by" in head
    # plotly.js is embedded once, the page needs no network
    assert text.count("<script nonce=") >= len(FIGURE_PANELS) + 3
    assert not re.search(r"<script[^>]*\bsrc=", text)
    assert "Content-Security-Policy" in text


def test_report_size_and_embed_versus_cdn(real_ds, real_report, tmp_path):
    embedded = real_report.stat().st_size
    cdn = build_report(real_ds, output=tmp_path / "cdn.html", embed_plotly=False)
    text = cdn.read_text()
    size = cdn.stat().st_size
    bundle = len(_html.plotly_js().encode())
    assert embedded - size == pytest.approx(bundle, abs=200_000)
    assert size < 600_000, size  # the data and page of three real traces
    assert embedded < 6_000_000, embedded
    tag = re.search(r'<script nonce="[^"]+" src="([^"]+)" integrity="([^"]+)"', text)
    assert tag and tag.group(1) == _html.plotly_cdn_url()
    assert tag.group(2).startswith("sha384-")
    assert "</script" not in _html.plotly_js()  # safe to inline


def test_scope_to_one_trace_by_prefix(real_ds, tmp_path):
    tid = real_ds.traces().filter(pl.col("source").str.contains("lossy"))["trace_id"][0]
    sections, ctx = build_panels(real_ds, [tid[:6]])
    assert ctx.trace_ids == [tid] and ctx.traces.height == 1
    for _, _, ps in sections:
        for p in ps:
            assert f"'{tid}'" in p.sql, p.id
            if p.frame is not None and "trace" in p.frame.columns:
                assert set(p.frame["trace"]) == {tid}, p.id
    with pytest.raises(UsageError, match="not in the dataset"):
        build_panels(real_ds, ["ffffffff"])
    with pytest.raises(UsageError, match="not in the dataset"):
        build_panels(real_ds, ["b7"])  # too short to be a prefix


def test_large_rows_are_merged_into_time_buckets(real_ds, monkeypatch):
    monkeypatch.setattr(panels, "TIMELINE_ROW_CAP", 40)
    monkeypatch.setattr(panels, "FORK_CAP", 3)
    sections, _ = build_panels(real_ds)
    by_id = {p.id: p for _, _, ps in sections for p in ps}
    tl = by_id["migration_timeline"].frame
    per_row = tl.group_by("trace", "cpu", "kind").len()
    assert per_row["len"].max() <= 41  # cap buckets (+1 for the closing edge)
    assert int(tl.filter(~pl.col("kind").str.starts_with("fork"))["n"].sum()) == 1242
    assert "merged" in by_id["migration_timeline"].note
    forks = by_id["forks"].frame
    assert forks.group_by("trace", "kind").len()["len"].max() <= 4
    assert int(forks["forks"].sum()) == 27


def test_report_without_replay_tables_says_what_to_do(dataset, tmp_path):
    ingest(str(sample_trace()), dataset)
    out = build_report(dataset, output=tmp_path / "r.html")
    text = out.read_text()
    assert "rmapscope replay --all" in text
    sections, _ = build_panels(dataset)
    by_id = {p.id: p for _, _, ps in sections for p in ps}
    assert by_id["event_counts"].has_data and by_id["cpu_activity"].has_data
    assert not by_id["migration_timeline"].has_data
    assert "replay" in by_id["migration_timeline"].empty


def test_errors(tmp_path, real_ds):
    with pytest.raises(DatasetError):
        build_report(tmp_path / "nothing", output=tmp_path / "r.html")
    with pytest.raises(UsageError, match="does not exist"):
        build_report(real_ds, output=tmp_path / "no" / "r.html")
    with pytest.raises(UsageError, match="is a directory"):
        build_report(real_ds, output=tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


def test_fmt_duration():
    assert [figures.fmt_duration(n) for n in (5, 500_000, 20_000_000, 100_000_000_000)] == [
        "5 ns",
        "500 µs",
        "20 ms",
        "100 s",
    ]


def test_nice_bucket():
    assert [charts.nice_bucket(x) for x in (0, 1, 3, 7, 11, 49_000_000, 50_000_001)] == [
        1,
        1,
        5,
        10,
        20,
        50_000_000,
        100_000_000,
    ]


# --------------------------------------------------------------------------- hostile
def test_hostile_trace_reaches_every_panel(hostile_ds):
    ds, names = hostile_ds
    sections, _ = build_panels(ds)
    by_id = {p.id: p for _, _, ps in sections for p in ps}
    comms = set(names.values())

    def strings(pid: str) -> set[str]:
        f = by_id[pid].frame
        return {v for c in f.columns if f[c].dtype == pl.String for v in f[c] if v}

    assert HOSTILE_HOST in strings("traces")
    assert any(HOSTILE_FILE in s for s in strings("traces"))  # source path
    assert HOSTILE_EVENT in strings("event_counts")
    assert any(HOSTILE_GARBAGE in s for s in by_id["ingest_errors"].frame["samples"].explode())
    assert comms & strings("migration_timeline")
    assert comms & strings("forks")
    v = by_id["violations"].frame
    assert (v["verdict"] == "violation").any()
    assert any(c in e for c in comms for e in v["explanation"])
    assert any(c in e for c in comms for e in v["evidence_events"] if e)
    assert by_id["page_drilldown"].has_data
    con = connect(ds)
    q = "SELECT count(*) FROM sched_process_exec WHERE filename = ?"
    assert con.execute(q, [HOSTILE_FILENAME]).fetchall() == [(1,)]
    assert con.sql("SELECT newcomm FROM task_rename").pl()["newcomm"].to_list()[-1] == (
        HOSTILE_NEWCOMM
    )


@pytest.mark.parametrize("csp", [True, False], ids=["with-csp", "escaping-only"])
def test_hostile_strings_are_escaped_everywhere(hostile_ds, tmp_path, csp):
    ds, names = hostile_ds
    out = build_report(ds, output=tmp_path / "h.html", csp=csp)
    page = out.read_text()
    text = page.replace(_html.plotly_js(), "")  # the library is not data
    # (booleans first: pytest's explanation of `x in text` diffs megabytes of text)
    # 1. as a browser's tokenizer sees the page: only our tags, no event handler attributes,
    #    every script ours (with the nonce)
    tags = parse_tags(page)
    bad = [(t, a) for t, a in tags.tags if t not in ALLOWED_TAGS]
    assert not bad, bad[:5]
    handlers = [(t, k) for t, a in tags.tags for k in a if k.lower().startswith("on")]
    assert not handlers, handlers[:5]
    assert all("nonce" in a for t, a in tags.tags if t == "script")
    # 2. no payload appears raw anywhere, not even inside a script (figure JSON)
    raw = [s for s in hostile_strings(names) if "<" in s and s in text]
    assert not raw, raw
    for body in tags.script_bodies[1:]:  # [0] is the plotly.js bundle
        found = "</script" in body.lower() or "<!--" in body
        assert not found, body[:200]
    found = [
        t
        for t in ("<script>alert", "<script>window", "<img", "<svg", "<b>", "<i>", "<u>")
        if t in text
    ]
    assert not found, found
    rest = text.replace("&lt;img/src/onerror=", "").replace("&lt;img src=x onerror=", "")
    found = "onerror=" in rest
    assert not found
    # 3. and each one arrived, escaped, in the places it belongs
    head = section(text, "traces")
    ok = _html.esc(HOSTILE_HOST) in head and _html.esc(HOSTILE_FILE) in head
    assert ok
    ok = in_figure_json(figures.esc_plotly(HOSTILE_EVENT)) in section(text, "event_counts")
    assert ok
    ok = _html.esc(HOSTILE_GARBAGE) in section(text, "ingest_errors")
    assert ok
    viol = section(text, "violations")
    assert sum(_html.esc(c) in viol for c in set(names.values())) >= 1
    fig_comms = [in_figure_json(figures.esc_plotly(c)) for c in set(names.values())]
    for pid in ("migration_timeline", "forks"):
        ok = any(c in section(text, pid) for c in fig_comms)
        assert ok, pid
    # the host names the series of the events-per-type chart
    ok = in_figure_json(figures.esc_plotly(HOSTILE_HOST)) in section(text, "event_counts")
    assert ok


def test_page_escapes_titles_notes_and_sql():
    p = panels.Panel(
        "x<y",
        "<b>title</b>",
        "SELECT '<script>'",
        None,
        description='"><i>',
        note="<u>",
        empty="<img src=x onerror=alert(1)>",
    )
    text = _html.page(
        title="<t>", meta=[("<k>", "<v>")], sections=[_html.Section("s<", "<h2>", [p])]
    )
    tags = parse_tags(text)
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS
    for raw in ("<b>title", "<script>'", '"><i>', "<u>", "<img", "<t>", "<k>", "<v>", "<h2>"):
        assert raw not in text, raw


# --------------------------------------------------------------------------- CLI
LAUNCHER = """
import sys, typer
from rmapscope import cli
from rmapscope.errors import RmapscopeError
if any(c.name == "report" for c in cli.app.registered_commands):
    cli.main()  # rmapscope.cli registers the command itself
else:
    from rmapscope.cli.report import register
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.callback()(lambda: None)
    register(app)
    try:
        app()
    except RmapscopeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, *args], capture_output=True, text=True, check=False
    )


def test_cli(real_ds, tmp_path):
    out = tmp_path / "r.html"
    r = cli("report", "--dataset", str(real_ds.root), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out) and out.stat().st_size > 4_000_000
    tid = real_ds.traces()["trace_id"][0]
    small = tmp_path / "s.html"
    r = cli("report", "-d", str(real_ds.root), "-t", tid, "--plotly-cdn", "-o", str(small))
    assert r.returncode == 0, r.stderr
    assert small.stat().st_size < 1_000_000
    scoped = f"&#x27;{tid}&#x27;" in small.read_text()  # the SQL's trace filter, escaped
    assert scoped

    r = cli("report", "-d", str(real_ds.root), "-t", tid, "--all", "-o", str(out))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    r = cli("report", "-d", str(real_ds.root), "-t", "0000000000", "-o", str(out))
    assert r.returncode == 2 and "not in the dataset" in r.stderr
    r = cli("report", "-d", str(real_ds.root), "--bogus")
    assert r.returncode == 2
    r = cli("report", "-d", str(tmp_path / "missing"), "-o", str(out))
    assert r.returncode == 3 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
