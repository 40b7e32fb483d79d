"""The reader contract: every format's reader behind one registry, and ``--format X``.

``--format X`` (``fmt=X``) uses reader X without running detection: a trace of X forced
through X gives exactly the rows detection gives, and input X cannot read gets X's own
one-line error (file, and line or byte offset), exit 2 and nothing written.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
from pathlib import Path

import polars as pl
import pytest

import rmapscope.ingest as ingest_pkg
from rmapscope.dataset import Dataset
from rmapscope.errors import InputError, UsageError
from rmapscope.ingest import FORMATS, ingest
from rmapscope.ingest._source import open_source, read_blocks
from rmapscope.ingest.detect import detect_format
from rmapscope.ingest.perf import perf_binary
from rmapscope.ingest.readers import READERS, Reader, ReaderOptions, open_reader
from rmapscope.record import tracedat as tw
from rmapscope.schema import default_registry
from tests.conftest import REPO, cli_command, real
from tests.ingest.test_tracedat import MARK_FORMAT

SAMPLE = REPO / "data" / "samples" / "forkstorm-slice.trace.txt.gz"

# Three sched_process_fork events in each text layout (the lines of the real capture set).
_FORKS = [
    (32695, 14512, "3337.671915"),
    (14512, 14513, "3337.672743"),
    (14512, 14514, "3337.674839"),
]


def _payload(parent: int, child: int) -> str:
    return f"comm=capture.sh pid={parent} child_comm=capture.sh child_pid={child}"


TEXTS = {
    "tracefs": "# tracer: nop\n#\n"
    + "".join(
        f"      capture.sh-{p:<5}   [001] .....  {t}: sched_process_fork: {_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
    "trace_pipe": "".join(
        f"      capture.sh-{p:<5}   [001] .....  {t}: sched_process_fork: {_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
    "tracefs_latency": "# tracer: nop\n#\n# nop latency trace v1.1.5 on 6.18.44-fc-v782\n"
    + "".join(
        f"capture.-{p:<5}     1..... {t.replace('.', '')[-7:]}us : sched_process_fork: "
        f"{_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
    "tcreport": "cpus=2\n"
    + "".join(
        f"      capture.sh-{p:<5} [001]  {t}: sched_process_fork:   {_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
    "tcreport_latency": "cpus=2\n"
    + "".join(
        f"capture.-{p:<5}   1.....  {t}: sched_process_fork:   {_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
    "perf_script": "".join(
        f"      capture.sh {p:>5} [001]  {t}:          sched:sched_process_fork: {_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
    "bpftrace": "Attaching 13 probes...\n"
    + "".join(
        f"{t.replace('.', '')}000 [001] capture.sh-{p} sched_process_fork: {_payload(p, c)}\n"
        for p, c, t in _FORKS
    ),
}

# One real file of every format (the thp run: the smallest), for forced == detected.
REAL = {
    "tracefs": "thp/ftrace-text-default/trace.txt.gz",
    "trace_pipe": "thp/ftrace-trace_pipe/trace_pipe.txt.gz",
    "tracefs_latency": "thp/ftrace-text-latency-format/trace.txt.gz",
    "tcreport": "thp/trace-cmd-v7/report.txt.gz",
    "tcreport_latency": "thp/trace-cmd-v7/report-l.txt.gz",
    "perf_script": "thp/perf/perf-script.txt.gz",
    "bpftrace": "thp/bpftrace/bpftrace.txt.gz",
    "trace_dat": "thp/trace-cmd-v7/trace.dat",
    "perf_data": "thp/perf/perf.data",
}

# For every format X, a text of another format that X cannot read at all.
FOREIGN = {
    "tracefs": "bpftrace",
    "trace_pipe": "perf_script",
    "tracefs_latency": "tracefs",
    "tcreport": "bpftrace",
    "tcreport_latency": "tcreport",
    "perf_script": "tracefs",
    "bpftrace": "trace_pipe",
    "trace_dat": "tracefs",
    "perf_data": "bpftrace",
}

# What names the format in its reader's errors.
FORMAT_WORD = {"trace_dat": "trace.dat", "perf_data": "perf.data"}


def _trace_dat(tmp_path: Path) -> Path:
    """A small trace.dat (v7): three ``mark`` events on CPU 0."""
    entries = [tw.data_entry(10, tw.record(101, 7, struct.pack("<I", n))) for n in (1, 2, 3)]
    spec = tw.TraceSpec(
        formats=[("test", MARK_FORMAT)],
        buffers=[tw.BufferSpec("", "local", {0: tw.make_page(1_000_000, entries)})],
        cmdlines="7 worker\n",
    )
    p = tmp_path / "small.dat"
    p.write_bytes(tw.write(spec)[0])
    return p


def _text_file(tmp_path: Path, fmt: str) -> Path:
    p = tmp_path / f"{fmt}.txt"
    p.write_text(TEXTS[fmt])
    return p


def everything(ds: Dataset) -> dict[str, pl.DataFrame]:
    """Every table of a dataset holding one trace, rows in a fixed order (no ingest time)."""
    out = {}
    for d in sorted(p for p in ds.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(d.glob("*/*/*.parquet"))
        if not files:
            continue
        df = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        df = df.drop([c for c in ("ingested_at", "host", "trace") if c in df.columns])
        out[d.name] = df.sort("seq") if "seq" in df.columns else df
    return out


def assert_same_rows(a: Dataset, b: Dataset) -> None:
    ta, tb = everything(a), everything(b)
    assert sorted(ta) == sorted(tb)
    assert "traces" in ta
    for name in ta:
        assert ta[name].equals(tb[name], null_equal=True), name


def _detection_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(head: bytes, name: str) -> str:
        raise AssertionError(f"detection ran for {name}")

    monkeypatch.setattr(ingest_pkg, "detect_format", fail)


# -- the registry ----------------------------------------------------------------------------


def test_every_format_has_a_reader_and_formats_are_the_registry():
    assert tuple(READERS) == FORMATS
    assert set(TEXTS) | {"trace_dat", "perf_data"} == set(FORMATS)


@pytest.mark.parametrize("fmt", list(TEXTS))
def test_text_samples_are_what_they_claim(fmt, tmp_path):
    assert detect_format(TEXTS[fmt].encode(), "t") == fmt
    _ds, r = _ingest(_text_file(tmp_path, fmt), tmp_path / "ds")
    assert (r.format, r.events, r.errors.total) == (fmt, 3, 0)


def _ingest(path: Path, root: Path, fmt: str | None = None):
    ds = Dataset(root)
    return ds, ingest(str(path), ds, fmt=fmt)


def _readable(fmt: str, tmp_path: Path) -> Path:
    if fmt in TEXTS:
        return _text_file(tmp_path, fmt)
    if fmt == "trace_dat":
        return _trace_dat(tmp_path)
    return real(REAL[fmt])


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_reader_keeps_the_contract(fmt, tmp_path):
    if fmt == "perf_data" and perf_binary() is None:
        pytest.skip("perf is not installed")
    path = _readable(fmt, tmp_path)
    src = open_source(str(path))
    try:
        blocks = read_blocks(src)
        head = next(blocks, b"")
        with open_reader(fmt, src, head, blocks, default_registry().copy()) as reader:
            assert isinstance(reader, Reader)
            assert reader.header.format in (fmt, "perf_script")  # perf.data reads perf's text
            assert reader.time_ordered is (fmt != "bpftrace")
            assert reader.registry.get("sched_process_fork") is not None
            n = sum(b.n_events for b in reader.batches())
        assert n > 0
        reader.close()  # closing twice is harmless
    finally:
        src.close()


def test_unknown_format_is_a_usage_error_naming_the_known_ones(tmp_path):
    path = _text_file(tmp_path, "tracefs")
    with pytest.raises(UsageError) as e:
        ingest(str(path), Dataset(tmp_path / "ds"), fmt="ftrace")
    assert "'ftrace'" in str(e.value) and all(f in str(e.value) for f in FORMATS)
    assert not (tmp_path / "ds").exists()
    src = open_source(str(path))
    try:
        with pytest.raises(UsageError, match=r"unknown format 'nope'; known: tracefs, "):
            open_reader("nope", src, b"", iter(()), default_registry(), ReaderOptions())
    finally:
        src.close()


# -- (a) forced == detected ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(TEXTS))
def test_forcing_a_text_format_gives_the_rows_detection_gives(fmt, tmp_path, monkeypatch):
    path = _text_file(tmp_path, fmt)
    detected, _ = _ingest(path, tmp_path / "detected")
    _detection_must_not_run(monkeypatch)
    forced, r = _ingest(path, tmp_path / "forced", fmt)
    assert r.format == fmt and r.events == 3
    assert_same_rows(detected, forced)


def test_forcing_trace_dat_gives_the_rows_detection_gives(tmp_path, monkeypatch):
    path = _trace_dat(tmp_path)
    detected, r0 = _ingest(path, tmp_path / "detected")
    assert r0.format == "trace_dat" and r0.events == 3
    _detection_must_not_run(monkeypatch)
    forced, _ = _ingest(path, tmp_path / "forced", "trace_dat")
    assert_same_rows(detected, forced)


def test_forcing_the_bundled_sample_gives_the_rows_detection_gives(tmp_path, monkeypatch):
    detected, r0 = _ingest(SAMPLE, tmp_path / "detected")
    assert r0.format == "tracefs" and r0.events == 13449
    _detection_must_not_run(monkeypatch)
    forced, _ = _ingest(SAMPLE, tmp_path / "forced", "tracefs")
    assert_same_rows(detected, forced)


@pytest.mark.parametrize("fmt", list(REAL))
def test_forcing_a_real_file_gives_the_rows_detection_gives(fmt, tmp_path, monkeypatch):
    path = real(REAL[fmt])
    if fmt == "perf_data" and perf_binary() is None:
        pytest.skip("perf is not installed")
    detected, r0 = _ingest(path, tmp_path / "detected")
    assert r0.format == fmt
    _detection_must_not_run(monkeypatch)
    forced, r = _ingest(path, tmp_path / "forced", fmt)
    assert (r.format, r.events, r.trace_id) == (fmt, r0.events, r0.trace_id)
    assert_same_rows(detected, forced)


# -- (b) a file X cannot read: X's own one-line error, nothing written ------------------------


def _assert_own_error(e: InputError, fmt: str, path: Path) -> str:
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: "), msg
    assert FORMAT_WORD.get(fmt, fmt) in msg, msg
    assert "line " in msg or "byte" in msg or "offset" in msg, msg
    assert "recognised" not in msg, msg
    return msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_of_another_format_gets_the_forced_readers_own_error(fmt, tmp_path, monkeypatch):
    path = _text_file(tmp_path, FOREIGN[fmt])
    _detection_must_not_run(monkeypatch)
    with pytest.raises(InputError) as e:
        ingest(str(path), Dataset(tmp_path / "ds"), fmt=fmt)
    msg = _assert_own_error(e.value, fmt, path)
    if fmt in TEXTS:  # the first line it cannot read, quoted
        assert f"not a {fmt} trace: line " in msg and "is not in its layout" in msg
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "trace_dat"])
def test_a_binary_file_gets_the_forced_readers_own_error(fmt, tmp_path):
    path = _trace_dat(tmp_path)
    with pytest.raises(InputError) as e:
        ingest(str(path), Dataset(tmp_path / "ds"), fmt=fmt)
    msg = _assert_own_error(e.value, fmt, path)
    if fmt in TEXTS:
        assert "binary data (NUL byte at offset 11)" in msg
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_input_forced_through_any_reader_writes_nothing(fmt, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"\n\n")
    with pytest.raises(InputError, match=rf"^{path}: (empty input|not a )"):
        ingest(str(path), Dataset(tmp_path / "ds"), fmt=fmt)
    assert not (tmp_path / "ds").exists()


def test_a_text_format_names_the_first_line_it_cannot_read(tmp_path):
    text = "# tracer: nop\n#\nnot an event at all\n" + TEXTS["trace_pipe"]
    path = tmp_path / "t.txt"
    path.write_text(text)
    _ds, r = _ingest(path, tmp_path / "ok", "tracefs")  # one event line is enough
    assert r.events == 3 and r.errors.counts == {"unparsed_line": 1}
    path.write_text(TEXTS["bpftrace"].replace("Attaching 13 probes...\n", ""))
    with pytest.raises(InputError, match=r": not a tcreport trace: line 1 is not in its layout: '"):
        ingest(str(path), Dataset(tmp_path / "ds"), fmt="tcreport")


def test_forced_format_error_on_the_cli_is_one_line_and_writes_nothing(tmp_path):
    root = tmp_path / "ds"
    ok = subprocess.run(
        [*cli_command(), "-q", "ingest", str(_text_file(tmp_path, "tracefs")), "-d", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    before = sorted((str(p), p.stat().st_size) for p in root.rglob("*"))
    for fmt, other in (("tcreport", "bpftrace"), ("trace_dat", "tracefs")):
        path = _text_file(tmp_path, other)
        r = subprocess.run(
            [*cli_command(), "ingest", str(path), "-d", str(root), "--format", fmt],
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"error: {path}: ") and r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr and "recognised" not in r.stderr
        assert FORMAT_WORD.get(fmt, fmt) in r.stderr
    assert sorted((str(p), p.stat().st_size) for p in root.rglob("*")) == before


# -- what detection rejects, a forced reader reads -------------------------------------------


def test_a_tcreport_that_detection_rejects_ingests_with_format_tcreport(tmp_path):
    # trace-cmd report of 4 CPUs, two of them empty, its "cpus=4" line cut off (a tail of
    # the report): as many "CPU N is empty" lines as events, so detection cannot tell
    events = TEXTS["tcreport"].split("\n", 1)[1]
    text = "CPU 0 is empty\nCPU 2 is empty\nCPU 3 is empty\nCPU 4 is empty\n" + events
    path = tmp_path / "report.txt"
    path.write_text(text)
    with pytest.raises(InputError, match="not a recognised trace format"):
        ingest(str(path), Dataset(tmp_path / "detected"))
    ds, r = _ingest(path, tmp_path / "ds", "tcreport")
    assert (r.format, r.events, r.errors.total) == ("tcreport", 3, 0)
    forks = pl.read_parquet(next(ds.root.glob("event=sched_process_fork/*/*/*.parquet")))
    assert forks.sort("seq")["child_pid"].to_list() == [14512, 14513, 14514]
    assert Dataset(ds.root).traces()["format"].to_list() == ["tcreport"]


def test_a_tcreport_latency_without_cpus_ingests_with_its_format(tmp_path):
    path = tmp_path / "report-l.txt"
    path.write_text(TEXTS["tcreport_latency"].split("\n", 1)[1])  # no "cpus=2" line
    with pytest.raises(InputError, match="not a recognised trace format"):
        ingest(str(path), Dataset(tmp_path / "detected"))
    _ds, r = _ingest(path, tmp_path / "ds", "tcreport_latency")
    assert (r.format, r.events, r.errors.total) == ("tcreport_latency", 3, 0)


def test_a_real_tcreport_without_its_cpus_line_ingests_with_format_tcreport(tmp_path):
    gz = real("thp/trace-cmd-v7/report-l.txt.gz")
    lines = gzip.decompress(gz.read_bytes()).splitlines(keepends=True)
    assert lines[0].startswith(b"cpus=")
    path = tmp_path / "report-l.txt"
    path.write_bytes(b"".join(lines[1:2001]))
    with pytest.raises(InputError, match="not a recognised trace format"):
        ingest(str(path), Dataset(tmp_path / "detected"))
    _ds, r = _ingest(path, tmp_path / "ds", "tcreport_latency")
    assert r.events == 2000 and r.errors.total == 0


# -- the reader is always closed ---------------------------------------------------------------


class _Spy:
    """Wraps a reader; records in ``closed`` that it was closed."""

    def __init__(self, inner: Reader, fail_after: int | None, closed: list[str]) -> None:
        self.inner = inner
        self.closed = closed
        self.fail_after = fail_after
        self.header = inner.header
        self.registry = inner.registry
        self.time_ordered = inner.time_ordered

    def batches(self):
        for i, b in enumerate(self.inner.batches()):
            if self.fail_after is not None and i >= self.fail_after:
                raise InputError("spy: failing on purpose")
            yield b

    def close(self) -> None:
        self.inner.close()
        self.closed.append("closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.mark.parametrize("fail_after", [None, 0])
def test_stage_closes_the_reader_on_success_and_on_error(fail_after, tmp_path, monkeypatch):
    inner = READERS["tracefs"]

    def spy(src, head, rest, registry, options):
        return _Spy(inner(src, head, rest, registry, options), fail_after, closed)

    closed: list[str] = []
    monkeypatch.setitem(READERS, "tracefs", spy)
    path = _text_file(tmp_path, "tracefs")
    if fail_after is None:
        _ds, r = _ingest(path, tmp_path / "ds")
        assert r.events == 3
    else:
        with pytest.raises(InputError, match="failing on purpose"):
            _ingest(path, tmp_path / "ds")
        assert not list((tmp_path / "ds").glob("traces/*"))
    assert closed == ["closed"]


def test_trace_dat_reader_closed_early_stops_and_releases_its_file(tmp_path):
    path = _trace_dat(tmp_path)
    src = open_source(str(path))
    try:
        blocks = read_blocks(src)
        with open_reader("trace_dat", src, next(blocks), blocks, default_registry().copy()) as rd:
            it = rd.batches()
            next(it)  # the decoding thread runs
        assert rd._worker is not None and not rd._worker.is_alive()
        assert rd._file._f.closed
    finally:
        src.close()
