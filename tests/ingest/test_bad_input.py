"""The CLI contract for inputs that are not traces.

``rmapscope ingest BAD --dataset DIR`` must exit 2 with exactly one ``error: BAD: why`` line on
stderr, no traceback, and leave the dataset exactly as it was. Several files in one call: the
good ones land, the call still exits 2. Malformed lines inside a real trace are not fatal: they
are counted in the ``ingest_errors`` table and reported by one ``warning:`` line.

Every command runs as a real subprocess of the installed console script.
"""

from __future__ import annotations

import ctypes
import gzip
import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from tests.conftest import REPO, cli_command, real, real_lines

SAMPLE = REPO / "data" / "samples" / "forkstorm-slice.trace.txt.gz"
FORKSTORM_TEXT = "forkstorm/ftrace-text-default/trace.txt.gz"
GOOD_A = "forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz"
GOOD_B = "forkstorm/ftrace-text-nooverwrite/trace.txt.gz"


CLI = cli_command()


def run_cli(*args: object, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``rmapscope ARGS`` (without any inherited ``$RMAPSCOPE_DATASET``)."""
    env = {k: v for k, v in os.environ.items() if k != "RMAPSCOPE_DATASET"}
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        **kwargs,
    )


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root`` -> (kind, size, sha256 of the content)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir", 0, "")
        else:
            data = p.read_bytes()
            out[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return out


def assert_one_error_line(r: subprocess.CompletedProcess[str], path: Path | str) -> str:
    """Exit 2, stderr exactly one ``error: ...PATH...`` line, no traceback; returns the line."""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stderr.endswith("\n")
    assert lines[0].startswith("error: "), lines[0]
    assert str(path) in lines[0], lines[0]
    return lines[0]


# -- a dataset that already holds the real sample ---------------------------------------------
@pytest.fixture(scope="module")
def _populated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "ds"
    r = run_cli("-q", "ingest", SAMPLE, "--dataset", root)
    assert r.returncode == 0, r.stderr
    assert Dataset(root).traces().height == 1
    return root


@pytest.fixture
def populated(_populated_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of a dataset holding the real sample trace."""
    root = tmp_path / "ds"
    shutil.copytree(_populated_template, root)
    return root


# -- the bad inputs -------------------------------------------------------------------------
def _junk(d: Path) -> Path:
    data = bytearray(random.Random(20240611).randbytes(64 << 10))
    data[0:4] = b"\x7fJNK"  # no compression magic: it must be rejected as junk, not as gzip
    data[1000] = 0  # and it certainly holds a NUL
    p = d / "junk.bin"
    p.write_bytes(bytes(data))
    return p


def _json(d: Path) -> Path:
    p = d / "trace.json"  # a Chrome/Perfetto trace-event file: JSON, not ftrace text
    p.write_text(
        json.dumps(
            {
                "traceEvents": [
                    {
                        "name": "mm_page_alloc",
                        "ph": "i",
                        "ts": 2958585498,
                        "pid": 32695,
                        "tid": 32695,
                    },
                    {
                        "name": "mm_page_free",
                        "ph": "i",
                        "ts": 2958585532,
                        "pid": 32695,
                        "tid": 32695,
                    },
                ]
            },
            indent=2,
        )
    )
    return p


def _empty(d: Path) -> Path:
    p = d / "empty.txt"
    p.write_bytes(b"")
    return p


def _directory(d: Path) -> Path:
    p = d / "a-directory"
    p.mkdir()
    (p / "trace.txt").write_bytes(SAMPLE.read_bytes())
    return p


def _missing(d: Path) -> Path:
    return d / "no-such-trace.txt.gz"


def _truncated_gzip(d: Path) -> Path:
    data = SAMPLE.read_bytes()
    p = d / "half.trace.txt.gz"
    p.write_bytes(data[: len(data) // 2])
    return p


def _truncated_gzip_after_first_block(d: Path) -> Path:
    """> 16 MiB of real text, gzipped, cut at 90%: fails after staging has begun."""
    text = gzip.decompress(real(FORKSTORM_TEXT).read_bytes())
    lines = text.splitlines(keepends=True)
    head, body = b"".join(lines[:12]), b"".join(lines[12:])
    z = gzip.compress(head + body + body, compresslevel=1)
    p = d / "big-truncated.trace.txt.gz"
    p.write_bytes(z[: len(z) * 9 // 10])
    return p


def _trace_dat(d: Path) -> Path:
    """A real trace.dat cut short: its sections point past the end of the file."""
    data = real("thp/trace-cmd-v7/trace.dat").read_bytes()
    p = d / "cut.dat"
    p.write_bytes(data[: len(data) // 3])
    return p


BAD_INPUTS: dict[str, Callable[[Path], Path]] = {
    "binary-junk": _junk,
    "json": _json,
    "empty": _empty,
    "directory": _directory,
    "missing": _missing,
    "truncated-gzip": _truncated_gzip,
    "truncated-gzip-after-first-block": _truncated_gzip_after_first_block,
    "trace-dat": _trace_dat,
}

EXPECTED_WORDS = {
    "binary-junk": "binary",
    "json": "JSON",
    "empty": "empty",
    "directory": "directory",
    "missing": "no such file",
    "truncated-gzip": "corrupt gzip",
    "truncated-gzip-after-first-block": "corrupt gzip",
    "trace-dat": "truncated or corrupt trace.dat",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_writes_nothing(
    case: str, populated: Path, tmp_path: Path
) -> None:
    bad = BAD_INPUTS[case](tmp_path)
    before = snapshot(populated)
    r = run_cli("ingest", bad, "--dataset", populated)
    line = assert_one_error_line(r, bad)
    assert EXPECTED_WORDS[case] in line
    assert snapshot(populated) == before
    assert r.stdout == ""


def test_corrupt_gzip_stream_is_one_error_line(populated: Path, tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    bad = tmp_path / "corrupt.trace.txt.gz"
    bad.write_bytes(data[: len(data) // 2] + b"\xff" * 4096)  # valid start, then junk
    before = snapshot(populated)
    r = run_cli("ingest", bad, "--dataset", populated)
    assert snapshot(populated) == before
    line = assert_one_error_line(r, bad)
    assert "corrupt gzip" in line


def test_bad_input_into_new_dataset_creates_nothing(tmp_path: Path) -> None:
    bad = _junk(tmp_path)
    root = tmp_path / "never-created"
    r = run_cli("ingest", bad, "--dataset", root)
    assert_one_error_line(r, bad)
    assert not root.exists()


# -- no read permission ---------------------------------------------------------------------
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def _drop_dac_capabilities() -> None:
    """Stay uid 0 but lose the capabilities that let root read any file (kept across exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _unprivileged(secret: Path) -> tuple[Callable[[], None] | None, str]:
    """A preexec_fn under which the interpreter imports rmapscope but cannot read ``secret``."""
    if os.geteuid() != 0:
        return None, "not root"
    probe = [
        sys.executable,
        "-c",
        f"import rmapscope\ntry:\n    open({str(secret)!r}, 'rb')\n"
        f"except PermissionError:\n    raise SystemExit(42)\n",
    ]
    why = []
    for fn, name in ((_become_nobody, "uid 65534"), (_drop_dac_capabilities, "no CAP_DAC_*")):
        try:
            r = subprocess.run(
                probe, preexec_fn=fn, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError) as e:
            why.append(f"{name}: cannot even start python ({e})")
            continue
        if r.returncode == 42:
            return fn, name
        why.append(f"{name}: probe exited {r.returncode}: {r.stderr.strip()[-200:]}")
    pytest.skip("running as root and no way to make a file unreadable: " + "; ".join(why))


@pytest.fixture
def world_tmp() -> Path:
    """A world-writable temporary directory (a dropped user can use it)."""
    d = Path(tempfile.mkdtemp(prefix="rmapscope-perm-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_unreadable_file(world_tmp: Path) -> None:
    root = world_tmp / "ds"
    assert run_cli("-q", "ingest", SAMPLE, "--dataset", root).returncode == 0
    secret = world_tmp / "secret.trace.txt.gz"
    secret.write_bytes(SAMPLE.read_bytes())
    secret.chmod(0)
    for p in (world_tmp, *world_tmp.rglob("*")):  # let a dropped user traverse and read the rest
        if p != secret:
            p.chmod(p.stat().st_mode | stat.S_IRWXO if p.is_dir() else p.stat().st_mode | 0o006)
    preexec, how = _unprivileged(secret)
    before = snapshot(root)
    r = run_cli("ingest", secret, "--dataset", root, preexec_fn=preexec)
    line = assert_one_error_line(r, secret)
    assert "permission denied" in line, (how, line)
    assert snapshot(root) == before


# -- several files, one bad -----------------------------------------------------------------
def test_several_files_one_bad(tmp_path: Path) -> None:
    good_a, good_b = real(GOOD_A), real(GOOD_B)
    bad = _junk(tmp_path)
    root = tmp_path / "ds"
    r = run_cli("ingest", good_a, bad, good_b, "--dataset", root)
    assert_one_error_line(r, bad)
    assert f"{good_a}: ingested trace" in r.stdout
    assert f"{good_b}: ingested trace" in r.stdout
    assert sorted(Dataset(root).traces()["source"].to_list()) == sorted([str(good_a), str(good_b)])
    listing = run_cli("traces", "--dataset", root)
    assert listing.returncode == 0, listing.stderr
    for trace_id in Dataset(root).traces()["trace_id"]:
        assert trace_id in listing.stdout


def test_several_bad_files_each_reported_once(populated: Path, tmp_path: Path) -> None:
    bad = [_junk(tmp_path), _empty(tmp_path), _missing(tmp_path)]
    before = snapshot(populated)
    r = run_cli("ingest", *bad, "--dataset", populated)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 3, r.stderr
    for line, path in zip(lines, bad, strict=True):
        assert line.startswith(f"error: {path}")
    assert snapshot(populated) == before


# -- malformed lines inside a real trace ----------------------------------------------------
def test_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    header = real_lines(FORKSTORM_TEXT, 1, 12)
    body = real_lines(FORKSTORM_TEXT, 40001, 41988)
    assert all(ln.startswith("#") for ln in header)
    assert not any(ln.lstrip().startswith("#") or not ln.strip() for ln in body)
    torn = body[500][: body[500].index(".") + 3] + "\n"  # a real line cut inside its timestamp
    garbage = {  # 0-based index in the final file -> line
        100: "%%% this line is not a trace record %%%\n",
        1002: torn,
        1903: "\x7fgarbage: with a colon but no task-pid [cpu] or timestamp\n",
    }
    lines = header + body
    for at in sorted(garbage):
        lines.insert(at, garbage[at])
    assert [lines[at] for at in sorted(garbage)] == [garbage[at] for at in sorted(garbage)]
    path = tmp_path / "malformed.trace.txt"
    path.write_text("".join(lines))
    root = tmp_path / "ds"

    r = run_cli("ingest", path, "--dataset", root)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    warnings = r.stderr.splitlines()
    assert len(warnings) == 1, r.stderr
    assert warnings[0].startswith(f"warning: {path}: 3 lines not ingested")
    assert "unparsed_line: 3" in warnings[0]

    errors = pl.read_parquet(root / "ingest_errors" / "**" / "*.parquet")
    assert errors["reason"].to_list() == ["unparsed_line"]
    row = errors.row(0, named=True)
    assert row["count"] == 3
    expected_lines = [at + 1 for at in sorted(garbage)]  # 1-based line numbers in the file
    assert row["sample_lines"] == expected_lines
    assert row["first_line"] == expected_lines[0]
    assert [s + "\n" for s in row["samples"]] == [garbage[at] for at in sorted(garbage)]

    manifest = Dataset(root).traces()
    assert manifest.height == 1
    assert manifest["events"].sum() == len(body)
    assert manifest["errors"].sum() == 3
    events = pl.concat(
        [pl.read_parquet(p).select("seq") for p in root.glob("event=*/**/*.parquet")]
        + [pl.read_parquet(p).select("seq") for p in root.glob("other_events/**/*.parquet")]
    )
    assert events.height == len(body)
    assert sorted(events["seq"].to_list()) == list(range(len(body)))


# -- --debug --------------------------------------------------------------------------------
def test_debug_shows_traceback(populated: Path, tmp_path: Path) -> None:
    bad = _junk(tmp_path)
    before = snapshot(populated)
    r = run_cli("--debug", "ingest", bad, "--dataset", populated)
    assert r.returncode != 0
    assert "Traceback (most recent call last)" in r.stderr
    assert "InputError" in r.stderr
    assert str(bad) in r.stderr
    assert snapshot(populated) == before
    # without --debug: the same failure is one error line
    assert_one_error_line(run_cli("ingest", bad, "--dataset", populated), bad)
