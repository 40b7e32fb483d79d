"""The compiled text tokenizer (native/core/src/text) against its spec, the line regex of
each format run by Python's own ``re`` engine, on the real traces; and its fuzz target.

The tokenizer cuts ordinary tracefs and trace-cmd lines at their delimiters and matches the
others with the regex: on every line the regex matches, both must give the same fields.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rmapscope import _native
from rmapscope.ingest._columns import frame as _frame
from tests.conftest import real

CASES = [
    ("forkstorm/ftrace-text-default/trace.txt.gz", "tracefs"),
    ("forkstorm/ftrace-text-tgid/trace.txt.gz", "tracefs"),
    ("forkstorm/ftrace-text-noirqinfo/trace.txt.gz", "tracefs"),
    ("forkstorm/ftrace-text-clock-counter/trace.txt.gz", "tracefs"),
    ("forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz", "trace_pipe"),
    ("thp/ftrace-text-latency-format/trace.txt.gz", "tracefs_latency"),
    ("thp/trace-cmd-v7/report.txt.gz", "tcreport"),
    ("thp/trace-cmd-v7/report-t.txt.gz", "tcreport"),
    ("thp/trace-cmd-v7/report-l.txt.gz", "tcreport_latency"),
    ("thp/perf/perf-script-F.txt.gz", "perf_script"),
    ("thp/bpftrace/bpftrace.txt.gz", "bpftrace"),
]
LINES = 30_000


def _expected(m: re.Match, fmt: str) -> dict:
    """The fields of a line as the regex reads them (tracepoint rows)."""
    g = m.groupdict()
    rest = g["rest"] if g.get("rest") is not None else g.get("sysexit")
    if fmt in ("tcreport", "tcreport_latency"):
        rest = rest.lstrip(" ")
    return {
        "comm": g["comm"],
        "pid": int(g["pid"]),
        "tgid": int(g["tgid"]) if g.get("tgid") else None,
        "cpu": int(g["cpu"]) if g.get("cpu") else None,
        "flags": g.get("flags"),
        "event": g["event"],
        "rest": rest.rstrip("\r"),
        "instance": g.get("instance"),
    }


@pytest.mark.parametrize(("path", "fmt"), CASES)
def test_tokenizer_matches_the_line_regex(path: str, fmt: str) -> None:
    with gzip.open(real(path)) as f:
        block = b"".join(f.readline() for _ in range(LINES))
    lines, _, cols, other = _native.TextTokenizer(fmt).tokenize(block, 0)
    events = {r["lineno"]: r for r in _frame(cols).iter_rows(named=True)}
    left = set(_frame(other)["lineno"].to_list())
    assert lines == block.count(b"\n") and len(events) + len(left) == lines
    rx = re.compile(_native.line_pattern(fmt))
    checked = 0
    for n, line in enumerate(block.decode().splitlines(keepends=True), 1):
        m = rx.match(line)
        if m is None or line.startswith("#"):
            continue
        if m.groupdict().get("sample") or (m.groupdict().get("event") or "").startswith("sys_"):
            continue  # renamed rows: pinned by the reader tests
        assert n in events, f"line {n} not taken: {line!r}"
        got = {k: events[n][k] for k in ("comm", "pid", "tgid", "cpu", "flags", "event", "rest")}
        got["instance"] = events[n]["instance"]
        assert got == _expected(m, fmt), f"line {n}: {line!r}"
        checked += 1
    assert checked > 0.9 * len(events) > 0


def _fuzz_ready() -> bool:
    if shutil.which("cargo") is None:
        return False
    probe = subprocess.run(
        ["cargo", "+nightly", "fuzz", "--version"], capture_output=True, check=False
    )
    return probe.returncode == 0


FUZZ_DIR = Path(__file__).resolve().parents[2] / "native" / "core" / "fuzz"


@pytest.mark.slow
@pytest.mark.skipif(not _fuzz_ready(), reason="needs cargo-fuzz and a nightly Rust toolchain")
def test_fuzz_text_tokenizer(tmp_path: Path) -> None:
    """libFuzzer on the tokenizer for a fixed time, from the seeds of the real traces:
    no crash, no hang (a 10 s timeout per input), no failed invariant."""
    seconds = int(os.environ.get("RMAPSCOPE_FUZZ_SECONDS", "60"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    run = subprocess.run(
        [
            "cargo",
            "+nightly",
            "fuzz",
            "run",
            "text",
            str(corpus),
            "seeds/text",
            "--",
            f"-max_total_time={seconds}",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=FUZZ_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    crashes = [p.name for p in tmp_path.iterdir() if p.is_file()]
    assert run.returncode == 0 and not crashes, run.stderr[:3000]
    assert "Done" in run.stderr
