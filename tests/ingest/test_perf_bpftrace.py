"""`perf script` text, perf.data (through `perf script`) and bpftrace output.

Real files are checked against their ground truth (``*.gt.json``); layout variants the real
capture does not have (comms with spaces, pid/tid, perf 6.x widths, callchains, ``--ns``,
``Lost N events``) are written by hand in the tools' own printf layouts.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections import Counter

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.errors import InputError
from rmapscope.ingest import FORMATS, ingest
from rmapscope.ingest import perf as perfmod
from rmapscope.ingest.detect import detect_format
from tests.conftest import ground_truth, ingest_text, read_table, real

PERF_TEXT = [
    f"{w}/perf/{f}"
    for w in ("forkstorm", "thp")
    for f in ("perf-script.txt.gz", "perf-script-F.txt.gz")
]
BPFTRACE = ["forkstorm/bpftrace/bpftrace.txt.gz", "thp/bpftrace/bpftrace.txt.gz"]
MIGRATION = (
    "set_migration_pte",
    "remove_migration_pte",
    "set_migration_pmd",
    "remove_migration_pmd",
)


def _per_cpu(ds: Dataset, names) -> dict[str, int]:
    per_cpu: Counter[str] = Counter()
    for name in names:
        for cpu, n in read_table(ds, f"event={name}").group_by("cpu").len().iter_rows():
            per_cpu[str(cpu)] += n
    return dict(per_cpu)


# -- real files --------------------------------------------------------------------------


@pytest.mark.parametrize("path", PERF_TEXT + BPFTRACE)
def test_real_files_match_ground_truth(path, ingested):
    gt = ground_truth(path)
    ds, r = ingested(path)
    # the ground truth names events without perf's "sys:" (sched_process_fork), as we do
    assert r.event_counts == gt["event_counts"]
    assert r.events == gt["total_events"]
    assert r.errors.total == 0, r.errors.counts
    assert r.format == {"perf": "perf_script", "bpftrace": "bpftrace"}[gt["parser_format"]]
    assert _per_cpu(ds, gt["event_counts"]) == gt["events_per_cpu"]
    digits = gt["first_ts"].replace(".", ""), gt["last_ts"].replace(".", "")
    scale = 1000 if "." in gt["first_ts"] else 1  # perf prints µs, bpftrace ns
    assert (r.ts_first, r.ts_last) == (int(digits[0]) * scale, int(digits[1]) * scale)
    assert r.gaps == gt["lost_event_markers"] == 0
    trace = ds.traces().row(0, named=True)
    assert trace["clock"] == {"perf": "perf", "bpftrace": "mono"}[gt["parser_format"]]


def test_perf_pid_tid_form_gives_tgids(ingested):
    default, _ = ingested("forkstorm/perf/perf-script.txt.gz")
    with_pid, _ = ingested("forkstorm/perf/perf-script-F.txt.gz")
    a = read_table(default, "event=sched_process_exit")
    b = read_table(with_pid, "event=sched_process_exit")
    assert a["tgid"].null_count() == a.height  # the default fields have no pid
    assert b["tgid"].null_count() == 0
    assert a.drop("tgid").equals(b.drop("tgid"))
    # " memfd:sealed-91  3706/32685 [000] ...": a thread of process 3706
    memfd = b.filter(pl.col("comm") == "memfd:sealed-91")
    assert memfd.height and set(memfd["tgid"].to_list()) == {3706}


def test_bpftrace_keeps_file_order_which_is_not_time_order(ingested):
    """bpftrace reads its per-CPU buffers in turns: seq is the file order, replay sorts."""
    for path in BPFTRACE:
        gt = ground_truth(path)
        ds, r = ingested(path)
        ts = pl.concat([read_table(ds, f"event={n}").select("seq", "ts") for n in r.event_counts])
        ts = ts.sort("seq")["ts"]
        behind = ts.cum_max().shift(1) - ts  # how far a line is behind the latest before it
        assert (behind > 0).sum() == gt["timestamp_inversions_file_order"] > 0
        assert behind.max() == round(gt["timestamp_inversion_max"] * 1e9)


def test_bpftrace_numbers_become_the_kernels_words(ingested):
    """The script printed reason=0, mode=2, group_dead=1: typed like tracefs rows."""
    ds, _ = ingested("thp/bpftrace/bpftrace.txt.gz")
    start = read_table(ds, "event=mm_migrate_pages_start")
    assert Counter(start["reason"].to_list()) == {"compaction": 52, "memory_hotplug": 1}
    assert set(start["mode"].to_list()) == {"MIGRATE_SYNC"}
    exits = read_table(ds, "event=sched_process_exit")
    assert exits["group_dead"].null_count() == 0 and exits["group_dead"].sum() > 0
    end = read_table(ds, "event=mm_compaction_end")
    assert end["sync"].null_count() == 0 and end["status"].is_in(["complete", "contended"]).all()


def _migration_rows(ds: Dataset, name: str) -> pl.DataFrame:
    t = read_table(ds, f"event={name}")
    if not t.height:
        return t
    cols = [c for c in ("addr", "pte", "pmd", "order", "pfn") if c in t.columns]
    return t.select("seq", "ts", "cpu", "pid", *cols)


@pytest.mark.parametrize("workload", ["forkstorm", "thp"])
def test_perf_and_tracefs_have_the_same_migration_rows(workload, ingested):
    """perf has extra samples at the window edges (129 / 254), none of them migration
    events: the typed rows (addr, pte/pmd, order, decoded pfn) are the same, in order."""
    perf, pr = ingested(f"{workload}/perf/perf-script.txt.gz")
    ftrace, fr = ingested(f"{workload}/ftrace-text-default/trace.txt.gz")
    assert pr.events - fr.events == {"forkstorm": 129, "thp": 254}[workload]
    seen = 0
    for name in MIGRATION:
        a, b = _migration_rows(perf, name), _migration_rows(ftrace, name)
        assert a.height == b.height
        if not a.height:
            continue
        seen += 1
        cols = [c for c in a.columns if c not in ("seq", "ts")]
        # as multisets, and even n-th to n-th (same order, task and cpu)
        assert Counter(a.select(cols).rows()) == Counter(b.select(cols).rows())
        assert a.select(cols).equals(b.select(cols)), name
        assert a["pfn"].null_count() == 0
    assert seen == {"forkstorm": 2, "thp": 4}[workload]


def test_perf_clock_is_a_constant_offset_from_tracefs_local(ingested):
    """Match the n-th migration event of perf-script and the default trace: perf - tracefs
    has a floor of -30.329 ms that stays put within ±1 µs over each run and across both
    workloads (6 minutes apart): one clock offset, no drift. Single events sit up to ~70 µs
    above the floor (one-sided): perf's tracepoint callback reads its clock after ftrace's
    has written its event, and tracefs rounds to µs where perf truncates."""
    floors = []
    for workload in ("forkstorm", "thp"):
        perf, _ = ingested(f"{workload}/perf/perf-script.txt.gz")
        ftrace, _ = ingested(f"{workload}/ftrace-text-default/trace.txt.gz")
        parts = []
        for name in MIGRATION:
            a, b = _migration_rows(perf, name), _migration_rows(ftrace, name)
            if a.height:
                parts.append(pl.DataFrame({"ts": b["ts"], "off": a["ts"] - b["ts"]}))
        off = pl.concat(parts).sort("ts")
        span = off["ts"].max() - off["ts"].min() + 1
        tenth = ((off["ts"] - off["ts"].min()) * 10 // span).alias("tenth")
        per_tenth = off.with_columns(tenth).group_by("tenth").agg(pl.col("off").min())
        floor = off["off"].min()
        assert (per_tenth["off"] - floor).abs().max() <= 1000  # ±1 µs all along the run
        assert (off["off"] - floor).max() < 100_000  # one-sided callback delay
        assert off["off"].median() - floor <= 3000  # half of them within 3 µs of the floor
        floors.append(floor)
    assert abs(floors[0] - floors[1]) <= 1000
    assert abs(floors[0] - (-30_329_000)) <= 1000


# -- perf.data ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perf_tool():
    """The perf binary; installed with apt when missing and we may, else the test skips."""
    found = perfmod.perf_binary()
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "linux-perf"],
            capture_output=True,
            timeout=900,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = perfmod.perf_binary()
    if found is None:
        pytest.skip("perf is not installed and could not be installed (apt-get install linux-perf)")
    probe = subprocess.run([found, "--version"], capture_output=True, check=False, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{found} does not run: {probe.stderr.decode(errors='replace')[-200:]}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["forkstorm", "thp"])
def test_perf_data_ingests_like_its_perf_script_text(workload, perf_tool, ingested, tmp_path):
    path = f"{workload}/perf/perf.data"
    gt = ground_truth(path)
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(real(path)), ds)
    assert r.format == "perf_data"
    assert r.event_counts == gt["event_counts"] and r.events == gt["total_events"]
    assert r.errors.total == 0, r.errors.counts
    assert r.trace_id == gt["artifact_sha256"][:16]  # the id is the perf.data file's hash
    trace = ds.traces().row(0, named=True)
    assert (trace["host"], trace["kernel"], trace["cpus"], trace["clock"]) == (
        "vm",
        "6.18.44-fc-v782",
        2,
        "perf",
    )
    text, _ = ingested(f"{workload}/perf/perf-script-F.txt.gz")
    for name in ("set_migration_pte", "sched_process_fork", "mm_page_alloc"):
        a, b = read_table(ds, f"event={name}"), read_table(text, f"event={name}")
        # --ns: the text's µs are the ns truncated (perf prints usecs = ns / 1000)
        assert (a["ts"] // 1000 * 1000).equals(b["ts"])
        assert (a["ts"] % 1000 != 0).any()
        assert a.drop("ts").equals(b.drop("ts")), name


@pytest.mark.slow
def test_compressed_perf_data_is_copied_for_perf(perf_tool, tmp_path):
    src = real("thp/perf/perf.data")
    packed = tmp_path / "perf.data.gz"
    packed.write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
    r = ingest(str(packed), Dataset(tmp_path / "ds"))
    assert r.format == "perf_data" and r.events == 59151 and r.errors.total == 0
    assert r.trace_id == ground_truth("thp/perf/perf.data")["artifact_sha256"][:16]
    assert not list(tmp_path.glob("rmapscope-*"))


def test_perf_data_without_perf_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(perfmod, "perf_binary", lambda: None)
    p = tmp_path / "perf.data"
    p.write_bytes(b"PERFILE2" + b"\x00" * 200)
    with pytest.raises(InputError, match=r"perf\.data needs `perf`.*linux-perf.*perf script >"):
        ingest(str(p), Dataset(tmp_path / "ds"))
    assert not (tmp_path / "ds").exists() or not list((tmp_path / "ds").glob("traces/*"))


def test_broken_perf_data_is_an_input_error(perf_tool, tmp_path):
    p = tmp_path / "perf.data"
    p.write_bytes(b"PERFILE2" + b"\x07" * 4000)
    with pytest.raises(InputError, match=r"perf\.data"):
        ingest(str(p), Dataset(tmp_path / "ds"))


# -- perf script layouts, by hand -------------------------------------------------------


def perf_line(comm, tid, secs, event, payload, cpu=1, pid=None, width=5, name_width=30):
    """One line the way builtin-script.c prints it: "%16s %5d [%03d] %12s: %*s: %s"."""
    task = f"{tid:>{width}}" if pid is None else f"{pid:>{width}}/{tid:<{width}}"
    return f"{comm:>16} {task} [{cpu:03d}] {secs:>12}: {event:>{name_width}}: {payload}\n"


def fork(comm, pid, child=530):
    return f"comm={comm} pid={pid} child_comm={comm} child_pid={child}"


@pytest.mark.parametrize(
    "comm",
    ["Web Content", "kworker/u16:2", "foo-123", "memfd:sealed-91", "(sd-pam)", "x: y", "a 12"],
)
@pytest.mark.parametrize("form", ["default", "pid/tid", "perf6.5"])
def test_perf_comms_with_spaces_colons_and_dashes(tmp_path, comm, form):
    kw = {"default": {}, "pid/tid": {"pid": 4000}, "perf6.5": {"pid": 4000, "width": 7}}[form]
    text = perf_line(comm, 4242, "2958.783882", "sched:sched_process_fork", fork(comm, 4242), **kw)
    text += perf_line(
        comm, 4242, "2958.783890", "kmem:mm_page_free", "page=0x1 pfn=0x1 order=0", **kw
    )
    assert detect_format(text.encode(), "t") == "perf_script"
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0, r.errors.counts
    assert r.event_counts == {"sched_process_fork": 1, "mm_page_free": 1}
    row = read_table(ds, "event=sched_process_fork").row(0, named=True)
    assert (row["comm"], row["pid"], row["cpu"], row["ts"]) == (comm, 4242, 1, 2958783882000)
    assert row["tgid"] == (None if form == "default" else 4000)
    assert (row["parent_comm"], row["child_pid"]) == (comm, 530)
    assert row["event"] == "sched_process_fork"


def test_perf_ns_timestamps_period_and_no_cpu_column(tmp_path):
    text = (
        perf_line(
            "bash",
            2134,
            "116.118248123",
            "task:task_newtask",
            "pid=2137 comm=bash clone_flags=1200000 oom_score_adj=0",
        )
        # -F comm,tid,time,period,event,trace: no [cpu], the period before the event
        + "            bash  2134   116.118249001:          1      sched:sched_process_fork: "
        + fork("bash", 2134, 2137)
        + "\n"
    )
    ds, r = ingest_text(tmp_path, text, fmt="perf_script")  # --format perf_script
    assert r.errors.total == 0 and r.events == 2
    assert read_table(ds, "event=task_newtask")["ts"].to_list() == [116118248123]
    f = read_table(ds, "event=sched_process_fork").row(0, named=True)
    assert (f["ts"], f["cpu"], f["pid"], f["child_pid"]) == (116118249001, None, 2134, 2137)


def test_perf_callchains_are_kept_as_stack_frames(tmp_path):
    # perf script of a `perf record -g` (real output of perf 6.1): comm is not padded then
    text = (
        "sh  7960 [000]  2375.544239: sched:sched_process_fork: "
        "comm=sh pid=7960 child_comm=sh child_pid=7962\n"
        "\tffffffff813a5371 __traceiter_sched_process_fork+0x31 ([kernel.kallsyms])\n"
        "\tffffffff8135f7aa kernel_clone+0x28a ([kernel.kallsyms])\n"
        "\t           d43b8 __vfork+0x8 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
        "\n"
        "ls  7962 [001]  2375.547557: sched:sched_process_exit: "
        "comm=ls pid=7962 prio=120 group_dead=true\n"
        "\tffffffff813a5250 __traceiter_sched_process_exit+0x30 ([kernel.kallsyms])\n"
        "\n"
    )
    assert detect_format(text.encode(), "t") == "perf_script"
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0, r.errors.counts
    assert r.event_counts == {"sched_process_fork": 1, "sched_process_exit": 1, "stack_frame": 4}
    frames = read_table(ds, "other_events")
    assert frames["seq"].to_list() == [1, 2, 3, 5]
    assert (
        frames["fields"].to_list()[2] == "d43b8 __vfork+0x8 (/usr/lib/x86_64-linux-gnu/libc.so.6)"
    )
    # a frame inherits the time, cpu and task of its event
    assert frames["ts"].to_list() == [2375544239000] * 3 + [2375547557000]
    assert frames["pid"].to_list() == [7960] * 3 + [7962]
    assert frames["cpu"].to_list() == [0] * 3 + [1]


def test_perf_header_task_events_and_probes(tmp_path):
    text = (
        "# ========\n"
        "# captured on    : Thu Nov 26 00:31:28 2026\n"
        "# hostname : box7\n"
        "# os release : 6.18.44-fc-v782\n"
        "# nrcpus online : 2\n"
        "# ========\n"
        "#\n"
        "         swapper     0/0     [000]     0.000000000: PERF_RECORD_FORK(1:1):(0:0)\n"
        "     process_api     0/0     [000]     0.000000000: PERF_RECORD_COMM: process_api:1/1\n"
        "              sh  6224/6224  [000]   444.894767000: PERF_RECORD_COMM exec: ls:6224/6224\n"
        "    fs_compactor   529/529   [000]  2958.899568000:  probe:remove_migration_pte: "
        "(ffffffff812345a0) folio=0xffffea0004070000 addr=0x7f12c5800000\n"
        "    fs_compactor   529/529   [000]  2958.899570000:    migrate:remove_migration_pte: "
        "addr=7f12c5800000, pte=800000010c522005 order=0\n"
    )
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0, r.errors.counts
    trace = ds.traces().row(0, named=True)
    assert (trace["host"], trace["kernel"], trace["cpus"], trace["clock"]) == (
        "box7",
        "6.18.44-fc-v782",
        2,
        "perf",
    )
    other = read_table(ds, "other_events")
    assert other["event"].to_list() == ["PERF_RECORD_FORK", "PERF_RECORD_COMM", "PERF_RECORD_COMM"]
    assert other["fields"].to_list() == ["(1:1):(0:0)", "process_api:1/1", "exec: ls:6224/6224"]
    # the kprobe (raw address form) lands in its typed probe table, not the tracepoint's
    probe = read_table(ds, "event=probe_remove_migration_pte").row(0, named=True)
    assert (probe["folio"], probe["addr"], probe["mm"]) == (
        0xFFFFEA0004070000,
        0x7F12C5800000,
        None,
    )
    assert read_table(ds, "event=remove_migration_pte")["pfn"].to_list() == [0x10C522]


def test_formats_are_accepted_by_name():
    assert {"perf_script", "perf_data", "bpftrace"} <= set(FORMATS)


# -- bpftrace, by hand -------------------------------------------------------------------


BPF = (
    "2958869761873 [000] fs_compactor-529 set_migration_pte: "
    "addr=7fd1b12a4000, pte=efffe7ffd1092800 order=0\n"
)


def bpf(ts: int, cpu: int, task: str, event: str, payload: str) -> str:
    return f"{ts} [{cpu:03d}] {task} {event}: {payload}\n"


def test_bpftrace_lost_events_maps_and_messages(tmp_path):
    text = (
        "Attaching 13 probes...\n"
        + BPF
        + "Lost 5 events\n"
        + bpf(
            2958869762000,
            1,
            "memfd:sealed-91-32685",
            "sched_process_exit",
            "comm=memfd:sealed-91 pid=32685 prio=120 group_dead=1",
        )
        + bpf(2958869761000, 0, "fs compactor-529", "mm_migrate_pages_start", "mode=2 reason=0")
        + "ERROR: something bpftrace said on stdout\n"
        + "\n\n"
        + "@forks[sh, 6857]: 2\n"
        + "@h:\n"
        + "[4K, 8K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
    )
    assert detect_format(text.encode(), "t") == "bpftrace"
    ds, r = ingest_text(tmp_path, text)
    assert r.event_counts == {
        "set_migration_pte": 1,
        "sched_process_exit": 1,
        "mm_migrate_pages_start": 1,
    }
    assert r.gaps == 1 and r.lost_events == 5
    gap = pl.read_parquet(next(ds.root.glob("gaps/*/*/*.parquet"))).row(0, named=True)
    assert (gap["kind"], gap["cpu"], gap["count"], gap["line"]) == ("lost", None, 5, 3)
    assert (gap["ts_start"], gap["ts_end"]) == (2958869761873, 2958869762000)
    # map dumps and bpftrace's own messages are not events: counted, with samples
    assert r.errors.counts == {"bpftrace_map": 3, "tool_message": 1}
    exit_ = read_table(ds, "event=sched_process_exit").row(0, named=True)
    assert (exit_["comm"], exit_["pid"], exit_["group_dead"]) == ("memfd:sealed-91", 32685, True)
    start = read_table(ds, "event=mm_migrate_pages_start").row(0, named=True)
    assert (start["comm"], start["mode"], start["reason"]) == (
        "fs compactor",
        "MIGRATE_SYNC",
        "compaction",
    )
    assert read_table(ds, "event=set_migration_pte")["pfn"].null_count() == 0
    assert ds.traces()["clock"].to_list() == ["mono"]


def test_bpftrace_without_the_attaching_line_and_probe_lines(tmp_path):
    """Newer bpftrace prints "Attached N probes" on stderr; the probe contract's lines
    (data/probes/rmapscope.bt) go to other_events even when named like a tracepoint."""
    text = (
        bpf(
            2958869760000,
            0,
            "fs_compactor-529",
            "rmap_walk_anon",
            "(rmap_walk_anon+0x0/0x0) folio=0xffffea0004070000 anon_vma=0xffff888100001000 "
            "op=0xffffffff81234560",
        )
        + bpf(
            2958869760100,
            0,
            "fs_compactor-529",
            "remove_migration_pte",
            "(remove_migration_pte+0x0/0x0) folio=0xffffea0004070000 mm=0xffff888104a8e000 "
            "pgoff=0x7f12c5800 anon_vma=0xffff888100001000 addr=0x7f12c5800000",
        )
        + bpf(
            2958869760200,
            0,
            "fs_compactor-529",
            "remove_migration_pte",
            "addr=7f12c5800000, pte=800000010c522005 order=0",
        )
        + bpf(
            2958869760300,
            0,
            "fs_compactor-529",
            "rmap_walk_anon_ret",
            "(rmap_walk_anon+0x0/0x0 <- rmap_walk_anon)",
        )
    )
    assert detect_format(text.encode(), "t") == "bpftrace"
    ds, r = ingest_text(tmp_path, text)
    assert r.errors.total == 0, r.errors.counts
    # probe lines land in their typed probe tables, with their keys as numbers
    walks = read_table(ds, "event=probe_rmap_walk_anon")
    visit = read_table(ds, "event=probe_remove_migration_pte").row(0, named=True)
    ret = read_table(ds, "event=probe_rmap_walk_anon_ret").row(0, named=True)
    assert walks["ts"].to_list() == [2958869760000]
    assert (visit["ts"], visit["func"], visit["addr"]) == (
        2958869760100,
        "remove_migration_pte",
        0x7F12C5800000,
    )
    assert (ret["ts"], ret["func"], ret["caller"]) == (
        2958869760300,
        "rmap_walk_anon",
        "rmap_walk_anon",
    )
    assert read_table(ds, "event=remove_migration_pte")["pfn"].to_list() == [0x10C522]
    assert not (ds.root / "other_events").exists()


def test_callchain_cut_by_a_block_boundary_keeps_its_event_context(tmp_path, monkeypatch):
    """Blocks of 4 KiB cut callchains everywhere: every frame still has its event's time,
    cpu and task (the frames at the top of a block take them from the block before)."""
    from rmapscope.ingest import _source

    monkeypatch.setattr(_source, "BLOCK_SIZE", 1 << 12)
    events = []
    for i in range(400):
        events.append(
            f"sh  {7000 + i} [00{i % 4}]  {2375 + i / 1000:.6f}: sched:sched_process_fork: "
            f"comm=sh pid={7000 + i} child_comm=sh child_pid={9000 + i}\n"
            + "".join(
                f"\tffffffff813a5{k:03x} frame{k}+0x31 ([kernel.kallsyms])\n" for k in range(5)
            )
            + "\n"
        )
    ds, r = ingest_text(tmp_path, "".join(events), fmt="perf_script")
    assert r.errors.total == 0 and r.event_counts == {
        "sched_process_fork": 400,
        "stack_frame": 2000,
    }
    forks = read_table(ds, "event=sched_process_fork").select("seq", "ts", "cpu", "pid")
    frames = read_table(ds, "other_events").select("seq", "ts", "cpu", "pid")
    assert frames["ts"].null_count() == 0
    # each frame carries exactly its own event's values (the event is 1..5 rows above it)
    own = frames.join_asof(forks.rename(lambda c: f"e_{c}"), left_on="seq", right_on="e_seq")
    assert (own["ts"] == own["e_ts"]).all() and (own["pid"] == own["e_pid"]).all()
    assert (own["cpu"] == own["e_cpu"]).all() and (own["seq"] - own["e_seq"]).max() == 5
