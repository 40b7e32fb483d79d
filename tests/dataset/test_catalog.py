"""The catalogue is what a dataset holds: every file ingest and replay write belongs to a
catalogued table, sits in that table's partition and has exactly its columns; the reasons
written are catalogued; the README's schema section agrees with the catalogue; partition
paths and commits each have one home."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from rmapscope import catalog
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from rmapscope.replay.simulator import simulate
from rmapscope.schema import default_registry
from tests.conftest import REPO, ingest_text, real

SAMPLE = REPO / "data" / "samples" / "forkstorm-slice.trace.txt.gz"
#: Package folders (setuptools package-dir) whose code writes or reads the dataset.
SOURCES = ("rmapscope", "ingest", "replay", "analysis", "dashboards", "record")


def _catalogue() -> dict[str, catalog.Table]:
    return {t.name: t for t in catalog.tables(default_registry())}


def _check_files(ds: Dataset) -> set[str]:
    """Every file of ``ds`` against the catalogue; returns the tables seen."""
    tables = _catalogue()
    manifest = ds.traces()
    hosts = dict(zip(manifest["trace_id"], manifest["host"], strict=True))
    seen = set()
    for path in sorted(ds.root.glob("*/host=*/trace=*/*.parquet")):
        name = catalog.table_of(path.parts[-4])
        assert name in tables, f"{path}: table {name!r} is not in the catalogue"
        trace_id = path.parent.name.removeprefix("trace=")
        assert path.parent == ds.partition(name, hosts[trace_id], trace_id)
        assert path in ds.files(name, hosts[trace_id], trace_id)
        got = [(f.name, f.type) for f in pq.read_schema(path)]
        assert got == tables[name].pairs(), name
        assert tables[name].stage == (
            catalog.REPLAY if name in catalog.REPLAY_TABLES else catalog.INGEST
        )
        seen.add(name)
    return seen


def _ingest_and_replay(path: Path, root: Path) -> Dataset:
    ds = Dataset(root)
    ingest(str(path), ds)
    replay(ds)
    return ds


def test_sample_files_are_the_catalogued_tables(tmp_path):
    ds = _ingest_and_replay(SAMPLE, tmp_path / "ds")
    seen = _check_files(ds)
    assert set(catalog.TABLES) - {catalog.GENERIC_DIR} <= seen
    assert {"set_migration_pte", "remove_migration_pte", "sched_process_fork"} <= seen


@pytest.mark.parametrize(
    "path", ["forkstorm/ftrace-text-default/trace.txt.gz", "thp/trace-cmd-v7/trace.dat"]
)
def test_real_trace_files_are_the_catalogued_tables(tmp_path, path):
    ds = _ingest_and_replay(real(path), tmp_path / "ds")
    seen = _check_files(ds)
    assert {*catalog.REPLAY_TABLES, "traces", "gaps", "ingest_errors"} <= seen


def test_probe_tables_are_the_catalogued_ones(tmp_path):
    sim = simulate("fork-vs-migrate", seed=3, cpus=2)
    ds, _ = ingest_text(tmp_path, sim.text)
    replay(ds)
    seen = _check_files(ds)
    assert {"probe_try_to_migrate_one", "probe_anon_vma_fork"} <= seen


def test_replay_builds_violations_with_the_catalogued_types():
    from rmapscope.replay.engine import VIOLATION_SCHEMA

    assert dict(VIOLATION_SCHEMA) == {
        "rule": pl.String,
        "verdict": pl.String,
        "ts": pl.Int64,
        "pfn": pl.UInt64,
        "addr": pl.UInt64,
        "pid": pl.Int32,
        "mm": pl.UInt64,
        "explanation": pl.String,
        "evidence": pl.List(pl.Int64),
    }
    assert list(VIOLATION_SCHEMA) == catalog.VIOLATIONS.names()


def test_every_column_has_a_doc_and_unique_name():
    for t in _catalogue().values():
        assert t.doc and t.directory == catalog.directory(t.name)
        assert len(set(t.names())) == len(t.columns), t.name
        assert all(c.doc for c in t.columns), t.name


# -- reasons ----------------------------------------------------------------------------------
def test_written_reasons_and_gap_kinds_are_catalogued(tmp_path):
    text = (
        "# tracer: nop\n#\n"
        "          <idle>-0       [000] d..2.  100.000001: sched_process_exit: "
        "comm=a pid=1 prio=120 group_dead=1\n"
        "this is not a trace line\n"
        "CPU:0 [LOST 3 EVENTS]\n"
        "          <idle>-0       [000] d..2.  100.000002: task_newtask: nonsense\n"
    )
    ds, _ = ingest_text(tmp_path, text)
    errors = pl.read_parquet(ds.files("ingest_errors")[0])
    gaps = pl.read_parquet(ds.files("gaps")[0])
    assert errors.height >= 2 and gaps.height == 1
    for value in errors["reason"]:
        reason = catalog.REASONS[catalog.reason_name(value)]
        assert reason.table == "ingest_errors"
    for value in gaps["kind"]:
        assert catalog.REASONS[value].table == "gaps"
    assert catalog.unparsed_fields("task_newtask") in errors["reason"].to_list()


def test_reasons_have_a_severity_and_a_doc():
    assert len(catalog.REASONS) >= 12
    for name, r in catalog.REASONS.items():
        assert r.name == name and r.doc
        assert r.severity in (catalog.INFO, catalog.DATA_LOSS, catalog.ERROR)
        assert r.table in ("ingest_errors", "gaps")


def _sources() -> list[Path]:
    return [p for d in SOURCES for p in sorted((REPO / d).rglob("*.py"))]


def test_readers_write_reasons_through_the_catalogue():
    """No reason or gap kind is an ad-hoc string literal in ingest."""
    names = "|".join(catalog.REASONS)
    literal = re.compile(rf"""errors\.add\(\s*f?["']|(?<!group\()["']({names})[:"']""")
    found = [
        f"{p.relative_to(REPO)}:{m.group(0)}"
        for p in sorted((REPO / "ingest").rglob("*.py"))
        for m in literal.finditer(p.read_text())
    ]
    assert found == []


# -- one home for partition paths and commits -------------------------------------------------
def test_partition_path_is_formatted_in_one_place():
    found = {
        str(p.relative_to(REPO))
        for p in _sources()
        for line in p.read_text().splitlines()
        if re.search(r"(host|trace)=(\{\w|\*)|['\"](host|trace)=", line)
    }
    assert found == {"rmapscope/dataset.py"}


def test_one_publish_function():
    """Everything published goes through Dataset.publish (its journaled commit is private)."""
    callers = [
        str(p.relative_to(REPO))
        for p in _sources()
        for line in p.read_text().splitlines()
        if re.search(r"\._commit\(|\._roll_forward\(|\.commit\(", line)
    ]
    assert set(callers) == {"rmapscope/dataset.py"}
    published = {str(p.relative_to(REPO)) for p in _sources() if ".publish(" in p.read_text()}
    assert {"ingest/__init__.py", "replay/store.py", "replay/spark.py"} <= published


# -- the README -------------------------------------------------------------------------------
def _readme_schema() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Dataset layout and schema")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _rows(section: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header row starts with ``header``."""
    lines = section[section.index(header) :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _ticked(text: str) -> set[str]:
    """The `code` spans of markdown ``text`` (fenced blocks aside)."""
    return set(re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)))


def test_readme_schema_section_lists_every_table_and_column():
    section = _readme_schema()
    ticked = _ticked(section)
    rows = {next(iter(_ticked(r[0]))): r for r in _rows(section, "| table |")}
    for t in catalog.TABLES.values():
        assert t.name in rows, t.name
        assert set(t.names()) <= _ticked(rows[t.name][-1]) | (
            set(catalog.COMMON_NAMES) if t is catalog.OTHER_EVENTS else set()
        ), t.name
        assert rows[t.name][2] == t.stage
    assert set(catalog.COMMON_NAMES) <= ticked
    for cols in catalog.DECODED.values():
        assert {c.name for c in cols} <= ticked
    probe_cols = {c.name for p in catalog.PROBES for c in catalog.probe_table(p).columns}
    assert probe_cols - set(catalog.COMMON_NAMES) <= _ticked(rows["probe_<name>"][-1])
    assert set(catalog.PROBES) <= ticked


def test_readme_lists_only_catalogued_tables():
    rows = _rows(_readme_schema(), "| table |")
    families = {"<event>": "event=<name>", "probe_<name>": "event=probe_<name>"}
    for row in rows:
        (name,), (where,) = _ticked(row[0]), _ticked(row[1])
        if name in families:
            assert where == families[name]
        else:
            assert name in catalog.TABLES, name
            assert where == catalog.directory(name)


def test_readme_reasons_are_the_catalogued_ones():
    rows = _rows(_readme_schema(), "| reason |")
    listed = {next(iter(_ticked(r[0]))).split(":")[0]: r for r in rows}
    assert set(listed) == set(catalog.REASONS)
    for name, r in catalog.REASONS.items():
        assert listed[name][1] == f"`{r.table}`" and listed[name][2] == r.severity
