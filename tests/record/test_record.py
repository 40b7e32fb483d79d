"""`rmapscope record` against the live kernel, and its argument handling.

The live tests (marked ``live``) need root and a tracefs; they skip with the reason
otherwise. Each one snapshots every tracefs setting a recording may touch before it runs and
proves they are all back afterwards, also after SIGTERM and Ctrl-C mid-recording.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import typer
import zstandard
from typer.testing import CliRunner

from rmapscope.dataset import Dataset
from rmapscope.errors import RmapscopeError, UsageError
from rmapscope.record import PRESETS, equivalent_commands, expand_events, record
from tests.conftest import live_tracefs

# A launcher of the CLI. With RMAPSCOPE_TEST_DROP=1 it becomes user nobody right before the
# library's record() runs (after the CLI parsed its options: the interpreter may live where
# nobody cannot read, and typer imports lazily).
LAUNCHER = textwrap.dedent(
    """
    import os, sys
    import rmapscope.ingest, rmapscope.record, zstandard
    from rmapscope import cli
    if os.environ.get("RMAPSCOPE_TEST_DROP"):  # become nobody once the CLI calls record()
        import rmapscope.cli.record as rc
        real_record = rc.record
        def dropped(*args, **kwargs):
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            return real_record(*args, **kwargs)
        rc.record = dropped
    cli.main()
    """
)

# Forks children sharing anonymous memory, then asks for compaction: on the test machine
# this migrates thousands of the region's pages (set/remove_migration_pte).
WORKLOAD = textwrap.dedent(
    """
    import mmap, os, time
    size = 32 << 20
    keep = mmap.mmap(-1, size)
    hole = mmap.mmap(-1, size)
    for off in range(0, size, 4096):  # interleave: leaves the region's pageblocks half free
        keep[off] = 1
        hole[off] = 2
    hole.close()
    kids = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            sum(keep[off] for off in range(0, size, 65536))
            time.sleep(1.2)
            os._exit(0)
        kids.append(pid)
    for _ in range(3):
        try:
            with open("/proc/sys/vm/compact_memory", "w") as f:
                f.write("1")
        except OSError:
            pass
        time.sleep(0.15)
    for pid in kids:
        os.waitpid(pid, 0)
    """
)

MIGRATION = {"set_migration_pte", "remove_migration_pte"}
COMPACTION = {"mm_migrate_pages_start", "mm_migrate_pages", "mm_compaction_begin"}


# --------------------------------------------------------------------------------------------
# helpers


def _tracefs() -> Path:
    """The live tracefs root; skips the test with the reason when there is none."""
    return live_tracefs()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        return f"<{e.strerror}>"


def snapshot(root: Path, base: Path | None = None) -> dict[str, str]:
    """Every setting of ``base`` (default: the top level) that a recording may touch."""
    base = base or root
    snap = {
        name: _read(base / name)
        for name in (
            "tracing_on",
            "trace_clock",
            "buffer_size_kb",
            "buffer_percent",
            "current_tracer",
            "set_event",
            "set_event_pid",
            "tracing_cpumask",
            "trace_options",
        )
    }
    snap["instances"] = " ".join(sorted(p.name for p in (root / "instances").iterdir()))
    for d in sorted((base / "per_cpu").glob("cpu*")):
        snap[f"per_cpu/{d.name}/buffer_size_kb"] = _read(d / "buffer_size_kb")
    for opt in sorted((base / "options").iterdir()):
        snap[f"options/{opt.name}"] = _read(opt)
    for sysname in sorted({spec.split(":")[0] for spec in PRESETS["full"]}):
        sysdir = base / "events" / sysname
        if not sysdir.is_dir():
            continue
        snap[f"events/{sysname}/enable"] = _read(sysdir / "enable")
        for ev in sorted(p for p in sysdir.iterdir() if (p / "enable").exists()):
            snap[f"events/{sysname}/{ev.name}/enable"] = _read(ev / "enable")
            snap[f"events/{sysname}/{ev.name}/filter"] = _read(ev / "filter")
    return snap


def assert_same(before: dict[str, str], after: dict[str, str]) -> None:
    changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()}
    changed = {k: v for k, v in changed.items() if v[0] != v[1]}
    assert not changed, f"tracefs settings not restored: {changed}"


def launcher(tmp_path: Path) -> Path:
    path = tmp_path / "launch_rmapscope.py"
    path.write_text(LAUNCHER)
    return path


def ingest_file(path: Path, tmp_path: Path):
    from rmapscope.ingest import ingest

    result = ingest(str(path), Dataset(tmp_path / "ds"), host="live-test")
    assert result.format == "trace_pipe"
    assert result.errors.total == 0, result.errors.counts
    return result


def poke(until: float, compact: bool = True) -> None:
    """Make a few forks (and one compaction) so the recording has events."""
    subprocess.run(["true"], check=False)
    if compact:
        with contextlib.suppress(OSError):
            Path("/proc/sys/vm/compact_memory").write_text("1")
    while time.monotonic() < until:
        subprocess.run(["true"], check=False)
        time.sleep(0.1)


def wait_for_data(path: Path, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and path.stat().st_size > 0:
            return
        poke(time.monotonic() + 0.3, compact=False)
    pytest.fail(f"{path} got no data in {timeout} s")


def decompress(path: Path) -> bytes:
    with (
        open(path, "rb") as f,
        zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as r,
    ):
        return r.read()


# --------------------------------------------------------------------------------------------
# live kernel


@pytest.mark.live
def test_records_fork_and_compaction_workload_and_restores_everything(tmp_path):
    root = _tracefs()
    before = snapshot(root)
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    out = tmp_path / "wl.trace.zst"
    warnings: list[str] = []
    r = record(out, command=[sys.executable, str(script)], on_warning=warnings.append)
    assert_same(before, snapshot(root))
    assert r.restore_errors == []
    assert r.stop_reason == "command" and r.command_status == 0
    assert r.instance_created and r.instance == f"rmapscope-{os.getpid()}"
    assert not (root / "instances" / r.instance).exists()
    assert "migrate:set_migration_pte" in r.events and r.skipped == []
    assert not [w for w in warnings if "does not exist" in w or "cannot" in w], warnings
    assert r.trace_cmd.startswith("trace-cmd record -e sched:sched_process_fork")
    assert " -e migrate " in r.trace_cmd and f"-b {r.buffer_kb}" in r.trace_cmd
    assert r.perf.startswith("perf record -e ") and "migrate:*" in r.perf
    assert r.bytes_written == out.stat().st_size and r.lines > 0
    meta = (tmp_path / "wl.trace.zst.meta.json").read_text()
    assert '"complete": true' in meta and os.uname().release in meta

    result = ingest_file(out, tmp_path)
    manifest = Dataset(tmp_path / "ds").traces().row(0, named=True)
    assert manifest["kernel"] == os.uname().release  # from the sidecar
    assert manifest["clock"] == r.clock and manifest["cpus"] == os.cpu_count()
    counts = result.event_counts
    assert result.events == r.lines - r.lost_markers
    assert counts.get("sched_process_fork", 0) >= 3  # the workload's own forks
    assert counts.get("task_newtask", 0) >= 3
    if counts.keys() >= MIGRATION:
        assert counts["set_migration_pte"] > 0
    else:  # compaction ran but found nothing of ours to move this time: batches still show
        assert COMPACTION & counts.keys(), counts
        print(f"note: no set_migration_pte this run, only {sorted(COMPACTION & counts.keys())}")


@pytest.mark.live
def test_sigterm_mid_recording_leaves_a_complete_file_and_restores_everything(tmp_path):
    root = _tracefs()
    before = snapshot(root)
    out = tmp_path / "term.trace.zst"
    proc = subprocess.Popen(
        [sys.executable, str(launcher(tmp_path)), "record", "--duration", "30", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_data(out, proc)
        poke(time.monotonic() + 0.5)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert took < 5
    assert "stopped by SIGTERM" in stdout and "tracefs settings restored" in stdout
    assert "equivalent: trace-cmd record -e sched:sched_process_fork" in stderr
    assert "equivalent: perf record -e " in stderr
    assert "error" not in stderr
    assert_same(before, snapshot(root))
    text = decompress(out)  # a complete zstd stream (an unfinished frame would raise)
    assert text.endswith(b"\n")
    result = ingest_file(out, tmp_path)
    assert result.event_counts.get("sched_process_fork", 0) > 0
    assert '"stop_reason": "SIGTERM"' in (tmp_path / "term.trace.zst.meta.json").read_text()


@pytest.mark.live
def test_ctrl_c_stops_the_command_and_the_recording_cleanly(tmp_path):
    root = _tracefs()
    before = snapshot(root)
    out = tmp_path / "int.trace.gz"
    args = ["record", "-o", str(out), "--", "sleep", "30"]
    proc = subprocess.Popen(
        [sys.executable, str(launcher(tmp_path)), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches it and the command
    )
    try:
        wait_for_data(out, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "stopped by SIGINT" in stdout
    assert "command killed by signal 2" in stdout
    assert_same(before, snapshot(root))
    result = ingest_file(out, tmp_path)
    assert result.event_counts.get("sched_process_fork", 0) > 0


@pytest.mark.live
def test_existing_instance_is_kept_and_its_settings_restored(tmp_path):
    root = _tracefs()
    inst = root / "instances" / f"rmapscope-test-{os.getpid()}"
    inst.mkdir()
    try:
        (inst / "trace_clock").write_text("mono")
        (inst / "buffer_size_kb").write_text("512")
        (inst / "events/sched/sched_process_fork/enable").write_text("1")  # already on
        before_inst, before_top = snapshot(root, inst), snapshot(root)
        out = tmp_path / "inst.trace.txt"
        poker = threading.Thread(target=poke, args=(time.monotonic() + 1.0,))
        poker.start()
        r = record(out, instance=inst.name, duration=1.0, buffer_kb=1024, progress=lambda p: None)
        poker.join()
        assert r.instance == inst.name and not r.instance_created and r.restore_errors == []
        assert r.compression == "none" and out.read_bytes()[:1] != b"\x28"
        assert_same(before_inst, snapshot(root, inst))
        assert_same(before_top, snapshot(root))
        assert _read(inst / "events/sched/sched_process_fork/enable") == "1"
    finally:
        inst.rmdir()


@pytest.mark.live
def test_top_level_buffer_is_restored(tmp_path):
    root = _tracefs()
    if _read(root / "set_event") or _read(root / "current_tracer") != "nop":
        pytest.skip("the top-level buffer is in use by someone else; not touching it")
    before = snapshot(root)
    out = tmp_path / "top.trace.zst"
    r = record(out, top_level=True, duration=1.0, events=["sched:sched_process_exit"])
    after = snapshot(root)
    assert r.instance is None and r.restore_errors == []
    # An unexpanded top-level buffer ("7 (expanded: 1408)") comes back at its expanded size:
    # the kernel has no way back to the unexpanded state once anything used it.
    # Sizes are kept in whole sub-buffer pages, so 1408 reads back as 1410.
    for k, v in before.items():
        if k.endswith("buffer_size_kb") and "expanded:" in v:
            size = int(v.split("expanded:")[1].strip(" )"))
            assert abs(int(after[k]) - size) <= 4, (k, v, after[k])
            after[k] = v
    assert_same(before, after)


@pytest.mark.live
def test_not_root_is_one_clear_error(tmp_path):
    _tracefs()
    os.chmod(tmp_path, 0o777)
    env = {**os.environ, "RMAPSCOPE_TEST_DROP": "1"}
    proc = subprocess.run(
        [sys.executable, str(launcher(tmp_path)), "record", "-t", "1", "-o", "x.trace.zst"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    if "Error" in proc.stderr and "setres" in proc.stderr:
        pytest.skip(f"cannot drop privileges here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: recording needs root"), proc.stderr
    assert "uid 65534" in lines[0]
    assert not (tmp_path / "x.trace.zst").exists()


@pytest.mark.live
def test_missing_events_are_skipped_with_a_warning_and_none_is_an_error(tmp_path):
    root = _tracefs()
    before = snapshot(root)
    with pytest.raises(RmapscopeError, match="none of the events exist"):
        record(tmp_path / "x.trace.zst", preset="none", events=["nosuchsys:nosuchevent"])
    assert not (tmp_path / "x.trace.zst").exists()
    warnings: list[str] = []
    r = record(
        tmp_path / "y.trace.zst",
        preset="none",
        events=["sched:sched_process_exit", "nosuch_event_xyz"],
        duration=0.5,
        on_warning=warnings.append,
    )
    assert r.events == ["sched:sched_process_exit"] and r.skipped == ["nosuch_event_xyz"]
    assert any("nosuch_event_xyz does not exist" in w for w in warnings)
    assert_same(before, snapshot(root))


@pytest.mark.live
def test_not_a_tracefs_is_one_clear_error(tmp_path):
    _tracefs()
    with pytest.raises(RmapscopeError, match="not a tracefs mount"):
        record(tmp_path / "x.trace.zst", tracefs=tmp_path, duration=1)
    assert not (tmp_path / "x.trace.zst").exists()


# --------------------------------------------------------------------------------------------
# no kernel needed


def _app() -> typer.Typer:
    from rmapscope.cli.record import register

    app = typer.Typer(add_completion=False, rich_markup_mode=None)
    register(app)

    @app.callback()
    def _main() -> None:  # keeps "record" a subcommand
        pass

    return app


def test_help_describes_the_command():
    result = CliRunner().invoke(_app(), ["record", "--help"])
    assert result.exit_code == 0
    for word in ("--duration", "--event", "--preset", "--buffer-kb", "--instance", "--top-level"):
        assert word in result.output
    assert "trace-cmd record" in result.output and "stderr" in result.output


def test_dry_run_prints_equivalent_commands_without_root():
    result = CliRunner().invoke(
        _app(), ["record", "--dry-run", "-o", "b.trace.zst", "-e", "kmem:mm_page_alloc", "-t", "5"]
    )
    assert result.exit_code == 0, result.output
    tc, perf = result.output.splitlines()
    assert tc.startswith("trace-cmd record -e sched:sched_process_fork") and "-e migrate " in tc
    assert tc.endswith("-o b.dat -- sleep 5") and "-e kmem:mm_page_alloc" in tc
    assert perf.startswith("perf record -e 'sched:") and perf.endswith(
        "-a -o b.perf.data -- sleep 5"
    )


def test_bad_options_exit_2():
    app = _app()
    for args in (
        ["--preset", "nope"],
        ["--preset", "none"],
        ["--duration", "-3"],
        ["--duration", "soon"],
        ["--instance", "a/b"],
        ["--", "no-such-command-xyz"],
    ):
        result = CliRunner().invoke(app, ["record", "-o", "/nonexistent-dir/x.zst", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: "), (args, result.output)


def test_expand_events_and_equivalents():
    assert expand_events("none", ["a:b,c:*", "a:b", "ksm"]) == ["a:b", "c:*", "ksm"]
    assert expand_events("migration")[:1] == ["sched:sched_process_fork"]
    with pytest.raises(UsageError):
        expand_events("migration", ["a:b:c"])
    tc, perf = equivalent_commands(
        ["migrate:*", "sched:sched_process_fork"],
        buffer_kb=64,
        clock="mono",
        output="x.trace.zst",
        command=["./w", "a b"],
    )
    assert tc == (
        "trace-cmd record -e migrate -e sched:sched_process_fork -b 64 -C mono -o x.dat "
        "-- ./w 'a b'"
    )
    assert (
        perf == "perf record -e 'migrate:*,sched:sched_process_fork' -a -o x.perf.data -- ./w 'a b'"
    )


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "x.trace.zst"
    out.write_bytes(b"keep")
    with pytest.raises(UsageError, match="already exists"):
        record(out, duration=1)
    assert out.read_bytes() == b"keep"


def test_ingest_reads_the_sidecar_record_writes(tmp_path):
    """A trace_pipe stream says nothing of its kernel, clock, CPUs or host: the sidecar
    `record` writes next to it does, and ingest puts that in the manifest."""
    import json

    from rmapscope.ingest import ingest

    line = (
        "            bash-7     [001] d..2.   100.000001: task_rename: pid=7 oldcomm=a "
        "newcomm=b oom_score_adj=0\n"
    )
    trace = tmp_path / "rec.trace"
    trace.write_text(line)
    meta = {
        "tool": "rmapscope record",
        "kernel_release": "6.18.0-test",
        "clock": "mono",
        "cpus": 64,
        "host": "box7.example.org",
    }
    (tmp_path / "rec.trace.meta.json").write_text(json.dumps(meta))
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(trace), ds)
    row = ds.traces().row(0, named=True)
    assert (row["kernel"], row["clock"], row["cpus"]) == ("6.18.0-test", "mono", 64)
    assert r.host == row["host"] == "box7.example.org"
    # a sidecar of another tool, or broken JSON, is ignored
    (tmp_path / "rec.trace.meta.json").write_text("{broken")
    r2 = ingest(str(trace), Dataset(tmp_path / "ds2"))
    assert r2.host == "unknown" and Dataset(tmp_path / "ds2").traces()["kernel"][0] is None
