"""Shared fixtures: where the real traces live, and a fresh dataset per test."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    import polars as pl

# no example database: nothing written into the work tree, runs stay independent
settings.register_profile("rmapscope", database=None, deadline=None)
#: ``RMAPSCOPE_HYPOTHESIS_PROFILE=long``: a long fixed-count run by hand, every property
#: test with 20x its examples (those that set their own ``max_examples`` scale it by
#: :func:`examples`; the others get the profile's 2000)
settings.register_profile("long", parent=settings.get_profile("rmapscope"), max_examples=2000)
PROFILE = os.environ.get("RMAPSCOPE_HYPOTHESIS_PROFILE", "rmapscope")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``n`` examples, times the ``RMAPSCOPE_HYPOTHESIS_EXAMPLES_FACTOR`` of a long run
    (default 20 under the ``long`` profile, else 1)."""
    default = "20" if PROFILE == "long" else "1"
    return n * int(os.environ.get("RMAPSCOPE_HYPOTHESIS_EXAMPLES_FACTOR", default))


REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RMAPSCOPE_SHARED", REPO.parent / "shared"))
#: A directory of kept `rmapscope lab` recordings (``NAME/trace.txt`` with its
#: ``trace.txt.meta.json``), for the tests that replay stored guests; unset: they skip.
LAB_TRACES = (
    Path(os.environ["RMAPSCOPE_LAB_TRACES"]) if os.environ.get("RMAPSCOPE_LAB_TRACES") else None
)
REAL = SHARED / "data" / "real"


def cli_command() -> list[str]:
    """The installed ``rmapscope`` console script (the one next to this interpreter first)."""
    script = Path(sys.executable).with_name("rmapscope")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("rmapscope")
    if found:
        return [found]
    return [sys.executable, "-c", "from rmapscope.cli import console_main; console_main()"]


def real(path: str) -> Path:
    """A file under shared/data/real; skips the test when the real data is not there."""
    p = REAL / path
    if not p.exists():
        pytest.skip(f"real trace {p} not available (set RMAPSCOPE_SHARED to the shared/ folder)")
    return p


def ground_truth(path: str) -> dict:
    """The ``.gt.json`` next to a real trace (named after the uncompressed file)."""
    p = real(path)
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    return json.loads((p.parent / f"{name}.gt.json").read_text())


def real_lines(path: str, start: int, stop: int) -> list[str]:
    """Lines ``start``..``stop`` (1-based, inclusive) of a real gzipped text trace."""
    out = []
    with gzip.open(real(path), "rt") as f:
        for i, line in enumerate(f, 1):
            if i > stop:
                break
            if i >= start:
                out.append(line)
    return out


def read_table(ds, table: str):
    """All rows of one dataset table (``event=<name>``, ``gaps``, ...) in ``seq`` order.

    An empty frame when the table has no files."""
    import polars as pl

    files = sorted(ds.root.glob(f"{table}/*/*/*.parquet"))
    if not files:
        return pl.DataFrame()
    df = pl.concat([pl.read_parquet(f) for f in files])
    return df.sort("seq") if "seq" in df.columns else df


#: Columns that differ between two captures of one recording by design (text and trace.dat
#: of one tracefs buffer, or another instance's pipe): the event's time (each instance
#: stamps its own copy, text prints microseconds), the row order of simultaneous events, the
#: instance name (only trace.dat records it) and what names the file or its host.
CAPTURE_SKIP = frozenset({"ts", "seq", "trace_id", "host", "instance"})


def sorted_rows(ds, table: str, skip) -> pl.DataFrame:
    """The rows of ``table`` without the columns ``skip``, sorted by all the others: two
    captures of one recording give equal frames."""
    df = read_table(ds, table)
    keep = [c for c in df.columns if c not in skip]
    return df.select(keep).sort(keep)


def ingest_text(tmp_path: Path, text: str, name: str = "t.txt", **kw):
    """Write ``text`` to a file and ingest it into a fresh dataset: ``(dataset, result)``."""
    from rmapscope.dataset import Dataset
    from rmapscope.ingest import ingest

    path = tmp_path / name
    path.write_text(text)
    ds = Dataset(tmp_path / "ds")
    return ds, ingest(str(path), ds, **kw)


@pytest.fixture(scope="session")
def ingested(tmp_path_factory):
    """``ingested(path)``: the real trace at ``path`` ingested into its own dataset, once per
    test session, as ``(dataset, result)``."""
    from rmapscope.dataset import Dataset
    from rmapscope.ingest import ingest

    cache: dict[str, tuple] = {}

    def get(path: str):
        if path not in cache:
            ds = Dataset(tmp_path_factory.mktemp("ds"))
            cache[path] = (ds, ingest(str(real(path)), ds))
        return cache[path]

    return get


@pytest.fixture
def dataset(tmp_path: Path):
    """An empty dataset directory (not yet created on disk)."""
    from rmapscope.dataset import Dataset

    return Dataset(tmp_path / "ds")


def live_tracefs() -> Path:
    """The live tracefs root for a recording test; skips it with the reason when there is none
    (not root, tracefs not mounted, no instances, tracing_on unreadable)."""
    import os

    from rmapscope.errors import RmapscopeError
    from rmapscope.record import find_tracefs

    if os.geteuid() != 0:
        pytest.skip("live recording needs root")
    try:
        root, _ = find_tracefs(mount=False)
    except RmapscopeError as e:
        pytest.skip(f"no tracefs here: {e}")
    if not (root / "instances").is_dir():
        pytest.skip(f"{root} has no instances/ directory")
    try:
        (root / "tracing_on").read_text()
    except OSError as e:
        pytest.skip(f"cannot read {root}/tracing_on: {e}")
    return root
