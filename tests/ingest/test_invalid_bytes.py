"""Bytes that are not UTF-8: kept, escaped as ``\\xNN``, the same in every format.

A comm is 16 arbitrary bytes (``prctl(PR_SET_NAME)``); payloads carry user bytes too. Every
text format and trace.dat turn them into the same string (docs/formats.md), no line is an
error because of its bytes, and every command that reads such a dataset answers without a
traceback.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.ingest._bytes import escape, unescape
from rmapscope.ingest.text import split_lines
from rmapscope.ingest.tracedat._file import _parse_cmdlines
from tests.conftest import CAPTURE_SKIP, REPO, read_table, sorted_rows

# invalid UTF-8, markup, a quote and control bytes: what a hostile task can name itself
RAW = b'\xff\xfe<b>"\x01\x1b\xc3('
NAME = '\\xff\\xfe<b>"\x01\x1b\\xc3('
# the names of the recorded tasks (tests/data/prctl-rename, test_invalid_bytes_live.py)
CHILD = RAW + b"x"
GRANDCHILD = b"g\x80\\x41<i>"
RECORDING = REPO / "tests" / "data" / "prctl-rename"


def test_the_rule():
    assert escape(RAW) == NAME
    assert escape("é😀".encode()) == "é😀"  # valid UTF-8 stays as it is
    assert escape(b"a\\x41b") == "a\\x5cx41b"  # a \xNN of the input is not a byte
    assert escape(b"a\\b\\x") == "a\\b\\x"  # other backslashes stay
    assert escape(b"\xed\xa0\x80") == "\\xed\\xa0\\x80"  # UTF-16 surrogates are not UTF-8


@given(st.binary(max_size=64))
def test_the_rule_is_lossless(raw):
    text = escape(raw)
    assert unescape(text) == raw
    assert text.count("\n") == raw.count(b"\n")


def test_split_lines_escapes_only_what_it_must():
    lines = split_lines(b"ok\n" + RAW + b" x\nplain \\x41\n\xff")
    assert lines.to_list() == ["ok\n", NAME + " x\n", "plain \\x5cx41\n", "\\xff"]


def test_trace_dat_cmdlines_use_the_same_rule():
    assert _parse_cmdlines(b"42 " + RAW + b"\n43 ok\n") == {42: NAME, 43: "ok"}


def _task_newtask(comm: bytes) -> dict[str, bytes]:
    """One ``task_newtask`` line of task ``comm`` (pid 528) in every text format."""
    pad = b" " * max(0, 16 - len(comm))
    body = b"task_newtask: pid=530 comm=" + comm + b" clone_flags=1200000 oom_score_adj=0\n"
    return {
        "tracefs": b"# tracer: nop\n#\n" + pad + comm + b"-528  [000] .....  2958.783854: " + body,
        "trace_pipe": pad + comm + b"-528  [000] .....  2958.783854: " + body,
        "tcreport": b"cpus=2\n" + pad + comm + b"-528   [000]  2958.783854123: " + body,
        "perf_script": pad + comm + b"   528 [000]  2958.783854123:   task:" + body,
        "bpftrace": b"Attaching 13 probes...\n2958783854123 [0] " + comm + b"-528 " + body,
    }


@pytest.mark.parametrize("fmt", ["tracefs", "trace_pipe", "tcreport", "perf_script", "bpftrace"])
def test_every_text_format_gives_the_same_comm(tmp_path, fmt):
    path = tmp_path / "t.txt"
    path.write_bytes(_task_newtask(RAW)[fmt])
    ds = Dataset(tmp_path / "ds")
    result = ingest(str(path), ds, fmt=fmt)
    assert result.events == 1 and result.errors.total == 0
    row = read_table(ds, "event=task_newtask").row(0, named=True)
    assert row["comm"] == NAME  # the task's name, in the common column
    assert row["field_comm"] == NAME  # and the event's own comm= field
    assert row["field_pid"] == 530 and row["clone_flags"] == 0x1200000


@pytest.mark.parametrize("fmt", ["tracefs", "trace_pipe", "tcreport"])
def test_a_name_wider_once_escaped_cannot_pass_for_another_pid(tmp_path, fmt):
    """``\\xff-5 `` is 4 bytes, so the kernel pads it to 16 columns with 12 spaces; escaped
    it is 7 characters and puts its own ``-5`` where the pid's dash belongs."""
    path = tmp_path / "t.txt"
    path.write_bytes(_task_newtask(b"\xff-5 ")[fmt])
    ds = Dataset(tmp_path / "ds")
    ingest(str(path), ds, fmt=fmt)
    row = read_table(ds, "event=task_newtask").row(0, named=True)
    assert (row["pid"], row["comm"], row["field_comm"]) == (528, "\\xff-5 ", "\\xff-5")


# --- every command that reads such a dataset ----------------------------------------------


def _hostile_sample(tmp_path) -> str:
    """The bundled real sample with hostile names: the compactor (whose lines carry the
    migrations) renamed to bytes that are not UTF-8, and such bytes in event fields."""
    text = gzip.decompress((REPO / "data/samples/forkstorm-slice.trace.txt.gz").read_bytes())
    text = text.replace(b"fs_compactor", RAW + b"ab")  # 12 bytes, the columns stay
    text = text.replace(b"comm=fs_parent", b"comm=fs\xffparent\\x41")
    path = tmp_path / "hostile.txt"
    path.write_bytes(text)
    return str(path)


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "rmapscope", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        check=False,
    )
    assert "Traceback" not in proc.stderr, f"{args}: {proc.stderr[-2000:]}"
    assert proc.returncode in (0, 1), f"{args}: exit {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def test_commands_on_a_dataset_of_hostile_bytes(tmp_path):
    trace = _hostile_sample(tmp_path)
    ds = str(tmp_path / "ds")
    _run("-q", "ingest", "-d", ds, trace, cwd=tmp_path)
    _run("-q", "replay", "-d", ds, "--all", cwd=tmp_path)
    out = _run(
        "sql",
        "-d",
        ds,
        "--format",
        "json",
        "select comm, count(*) as n from set_migration_pte group by comm order by comm",
        cwd=tmp_path,
    ).stdout
    assert json.loads(out) == [{"comm": NAME + "ab", "n": 2126}]
    names = _run("sql", "-d", ds, "--format", "csv", "select comm from other_events", cwd=tmp_path)
    assert "Traceback" not in names.stdout
    forks = _run(
        "sql",
        "-d",
        ds,
        "--format",
        "json",
        "select field_comm as comm from task_newtask",
        cwd=tmp_path,
    ).stdout
    assert {r["comm"] for r in json.loads(forks)} >= {"fs\\xffparent\\x5cx41"}
    listing = _run("query", "list", cwd=tmp_path).stdout
    for name in [ln.split()[0] for ln in listing.splitlines() if ln.strip()]:
        _run("query", name, "-d", ds, "--format", "json", cwd=tmp_path)
    html = tmp_path / "report.html"
    _run("report", "-d", ds, "-o", str(html), cwd=tmp_path)
    # in the report the name is escaped twice: \xNN for the bytes, HTML entities for the
    # markup (plotly renders hover text as HTML); never a raw <b>
    shown = "\\\\xff\\\\xfe&lt;b&gt;&#34;"  # as it stands in the page's JSON
    for page in (html, tmp_path / "a.html"):
        if page.name == "a.html":
            analyze = ("analyze", trace, "-d", str(tmp_path / "ds2"), "-o", str(page))
            _run(*analyze, cwd=tmp_path)
        text = page.read_text(encoding="utf-8")
        assert shown in text and "<b>" not in text


def test_no_line_is_an_error_because_of_its_bytes(tmp_path):
    trace = _hostile_sample(tmp_path)
    ds = Dataset(tmp_path / "ds")
    result = ingest(trace, ds)
    plain = ingest(str(REPO / "data/samples/forkstorm-slice.trace.txt.gz"), Dataset(tmp_path / "p"))
    assert result.events == plain.events and result.errors.total == plain.errors.total
    assert result.event_counts == plain.event_counts
    comms = read_table(ds, "event=set_migration_pte")["comm"].unique().to_list()
    assert comms == [NAME + "ab"]
    assert pl.Series(comms).str.contains("<b>").all()


# --- a real recording: trace_pipe, trace text and trace.dat of one run -------------------


def assert_same_rows(files: dict[str, Path], tmp_path: Path) -> None:
    """The captures ``files`` (``tracefs``: the ``trace`` text and ``trace_dat``: the
    trace.dat of one tracefs instance, ``tcreport``: ``trace-cmd report`` of that trace.dat,
    ``trace_pipe``: another instance's stream of the same run) ingest to the same rows, with
    the recorded tasks' names escaped alike."""
    child, grandchild = escape(CHILD), escape(GRANDCHILD)
    assert child == '\\xff\\xfe<b>"\x01\x1b\\xc3(x' and grandchild == "g\\x80\\x5cx41<i>"
    datasets = {}
    for fmt, path in files.items():
        ds = Dataset(tmp_path / f"ds-{fmt}")
        result = ingest(str(path), ds, host="live")
        assert result.errors.total == 0, (fmt, result.errors.counts)
        assert result.lost_events == 0, fmt
        datasets[fmt] = (ds, result)
    counts = {fmt: r.event_counts for fmt, (_, r) in datasets.items()}
    assert all(c == counts["trace_dat"] for c in counts.values()), counts
    dat = datasets["trace_dat"][0]
    renames = read_table(dat, "event=task_rename")
    assert {child, grandchild} <= set(renames["newcomm"].to_list())
    assert child in set(renames["oldcomm"].to_list())
    assert child in set(read_table(dat, "event=sched_process_fork")["comm"].to_list())
    names = set()  # every name a task of the run had
    for table in counts["trace_dat"]:
        names |= set(read_table(dat, f"event={table}")["comm"].to_list())
    for table in counts["trace_dat"]:
        for fmt in set(files) - {"trace_dat"}:
            # trace-cmd 3.1 prints no irq flags. The pipe is another instance, so its copy
            # of an event may see other flags, and it was read during the run: its comm
            # column is the name the kernel's comm cache held then (a task's old name,
            # right after a rename), the others' the name it held at the end
            skip = CAPTURE_SKIP | ({"flags"} if fmt in ("trace_pipe", "tcreport") else set())
            if fmt == "trace_pipe":
                skip |= {"comm"}
                comms = set(read_table(datasets[fmt][0], f"event={table}")["comm"].to_list())
                # "<...>": the pid had left the kernel's comm cache when the pipe was read
                assert comms - {"<...>"} <= names, (table, comms - names)
            want = sorted_rows(dat, f"event={table}", skip)
            got = sorted_rows(datasets[fmt][0], f"event={table}", skip)
            assert got.equals(want), (table, fmt, got, want)
        # the text and the trace.dat of one instance: the same times (text rounds to us)
        text_ts = read_table(datasets["tracefs"][0], f"event={table}")["ts"]
        dat_ts = read_table(dat, f"event={table}")["ts"]
        assert (text_ts // 1000).to_list() == ((dat_ts + 500) // 1000).to_list(), table
    if counts["trace_dat"].get("set_migration_pte"):  # the child's compaction moved pages
        for fmt, (ds, _) in datasets.items():
            comms = read_table(ds, "event=set_migration_pte")["comm"].unique().to_list()
            assert child in comms, (fmt, comms)


def test_the_bundled_recording_ingests_alike_in_every_format(tmp_path):
    files = {
        "tracefs": RECORDING / "trace.txt.gz",
        "trace_pipe": RECORDING / "trace_pipe.txt.gz",
        "trace_dat": RECORDING / "trace.dat",
        "tcreport": RECORDING / "report.txt.gz",
    }
    assert_same_rows(files, tmp_path)


def test_the_bundled_perf_script_gives_the_same_names(tmp_path):
    ds = Dataset(tmp_path / "ds")
    result = ingest(str(RECORDING / "perf-script.txt.gz"), ds)
    assert result.format == "perf_script" and result.errors.total == 0
    renames = read_table(ds, "event=task_rename")
    assert renames["newcomm"].to_list() == ["rename2", escape(CHILD), escape(GRANDCHILD)]
    assert renames["comm"].to_list() == ["perf-exec", "rename2", escape(CHILD)]
