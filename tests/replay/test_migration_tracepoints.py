"""Migrations are "not measured" on a kernel without set/remove_migration_pte (before 5.19)
or a trace that did not enable them: replay's findings, ``rmapscope analyze`` and the HTML
report say so instead of showing zero migrations as if measured (issue 11 point 13)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rmapscope.dashboards import build_report
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from rmapscope.replay.findings import summarize
from tests.conftest import cli_command

# What a 5.15 kernel prints during a compaction run: the migration windows, no per-pte events.
_HEAD = "    fs_compactor-529     [001] .....  2958.899"
OLD_LINES = "".join(
    f"{_HEAD[:-3]}{line}\n"
    for line in (
        "783854: task_newtask: pid=530 comm=fs_parent clone_flags=1200000 oom_score_adj=0",
        "899000: mm_migrate_pages_start: mode=MIGRATE_SYNC_LIGHT reason=compaction",
        "899900: sched_process_exit: comm=fs_child pid=530 prio=120",
    )
)
# 6.1 prints the entries (swap type 27: READ on Debian's 6.1 config).
NEW_LINES = (
    f"{_HEAD[:-3]}900100: set_migration_pte: addr=7f0000001000, pte=dfffffffffdffc00 order=0\n"
    f"{_HEAD[:-3]}900200: remove_migration_pte: addr=7f0000001000, pte=8000000001101865 order=0\n"
)
NOTE = "no migration-entry tracepoints on this kernel"


def _trace(tmp_path: Path, release: str, text: str) -> Path:
    p = tmp_path / f"{release}.trace"
    p.write_text(text)
    meta = {"tool": "rmapscope lab", "kernel_release": release, "machine": "x86_64"}
    Path(str(p) + ".meta.json").write_text(json.dumps(meta))
    return p


def test_findings_and_report_say_migrations_are_not_measured_on_5_15(tmp_path):
    ds = Dataset(tmp_path / "ds")
    old = ingest(str(_trace(tmp_path, "5.15.0-91-generic", OLD_LINES)), ds, fmt="trace_pipe")
    new = ingest(
        str(_trace(tmp_path, "6.1.0-47-amd64", OLD_LINES + NEW_LINES)), ds, fmt="trace_pipe"
    )
    found = {f.trace_id: f for f in summarize(replay(ds, None), ds.traces())}
    assert found[old.trace_id].unmeasured.startswith(NOTE)
    assert "Linux 5.15.0-91-generic" in found[old.trace_id].unmeasured
    assert found[new.trace_id].unmeasured == ""

    html = build_report(ds, output=tmp_path / "r.html").read_text()
    assert NOTE in html and f"trace {old.trace_id}: {NOTE}" in html
    assert f"trace {new.trace_id}:" not in html.split("Migrations not measured")[1][:400]

    only_old = build_report(ds, [old.trace_id], output=tmp_path / "old.html").read_text()
    assert f"Not measured: {NOTE}" in only_old  # the migration charts say why they are empty


def test_a_trace_without_the_events_enabled_says_so(tmp_path):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(_trace(tmp_path, "6.12.57+deb13-amd64", OLD_LINES)), ds, fmt="trace_pipe")
    (found,) = summarize(replay(ds, [r.trace_id]), ds.traces())
    assert "not enabled in this trace" in found.unmeasured


def test_analyze_prints_not_measured(tmp_path):
    trace = _trace(tmp_path, "5.10.0-30-amd64", OLD_LINES)
    run = subprocess.run(
        [
            *cli_command(),
            "analyze",
            str(trace),
            "--dataset",
            str(tmp_path / "ds"),
            "-o",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"folio migrations: not measured: {NOTE}" in " ".join(run.stdout.split())
