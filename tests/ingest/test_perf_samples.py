"""perf script of non-tracepoint samples (profiles): ``cpu-clock:``, ``cycles:u:``,
``task-clock:ppp:``, with a period, with or without ``[cpu]``, with callchains; and perf.data
whose samples carry no CPU. Real recordings in tests/data/perf-samples/ (see its README)."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rmapscope.cli import app
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.ingest import perf as perfmod
from rmapscope.ingest.detect import detect_format
from tests.conftest import ingest_text, read_table

DATA = Path(__file__).resolve().parent.parent / "data" / "perf-samples"


@pytest.fixture(scope="module")
def perf_bin() -> str:
    """The perf binary, or the test skips."""
    found = perfmod.perf_binary()
    if found is None:
        pytest.skip("perf is not installed")
    probe = subprocess.run([found, "--version"], capture_output=True, check=False, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{found} does not run")
    return found


def _samples(ds: Dataset):
    rows = read_table(ds, "other_events")
    return rows.filter(rows["event"] != "stack_frame"), rows.filter(rows["event"] == "stack_frame")


@pytest.mark.parametrize(
    ("name", "event", "samples", "frames", "cpus"),
    [
        ("cpu-clock-uH-g.txt.gz", "cpu-clock:uH", 249, 738, None),  # default fields, no [cpu]
        ("cpu-clock-a-F.txt.gz", "cpu-clock", 153, 658, {0, 1}),  # -F ...,cpu,...,period,ip,sym
    ],
)
def test_recorded_profile_text(tmp_path, name, event, samples, frames, cpus):
    path = DATA / name
    assert detect_format(gzip.decompress(path.read_bytes())[:65536], name) == "perf_script"
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(path), ds)
    assert r.format == "perf_script" and r.errors.total == 0, r.errors.counts
    assert r.event_counts == {event: samples, "stack_frame": frames}
    got, stack = _samples(ds)
    assert got["fields"].to_list() == ["period=250000"] * samples
    assert (set(got["cpu"].to_list()) == {None}) if cpus is None else set(got["cpu"]) <= cpus
    assert stack["ts"].is_null().sum() == 0  # frames inherit their sample's time


@pytest.mark.parametrize(
    ("name", "event", "samples", "callchains"),
    [
        ("cpu-clock-g-task.perf.data.gz", "cpu-clock", 48, True),
        ("task-clock-ppp.perf.data.gz", "task-clock:ppp", 45, False),
    ],
)
def test_perf_data_without_cpu(perf_bin, tmp_path, name, event, samples, callchains):
    ds = Dataset(tmp_path / "ds")
    r = ingest(str(DATA / name), ds)  # compressed: copied for perf
    assert r.format == "perf_data" and r.errors.total == 0, r.errors.counts
    assert r.event_counts[event] == samples
    got, stack = _samples(ds)
    assert got["cpu"].null_count() == samples  # the samples carry no CPU: null, not rejected
    assert got["fields"].str.starts_with("period=250000").all()
    if callchains:
        assert stack.height > samples
    else:  # no callchain: ip and symbol on the sample line, after the period
        assert stack.height == 0
        assert got["fields"].str.contains(r"^period=250000 [0-9a-f]+ \S").all()


def test_script_fields_follow_the_sample_type():
    no_cpu = b"cpu-clock: type: 1, sample_type: IP|TID|TIME|CALLCHAIN|PERIOD, inherit: 1\n"
    assert perfmod.script_fields(no_cpu) == (
        "comm,pid,tid,time,event,period,trace,ip,sym,symoff,dso"
    )
    evlist = (
        b"sched:sched_switch: type: 2, sample_type: IP|TID|TIME|CPU|PERIOD|RAW\n"
        b"dummy:u: type: 1, sample_type: IP|TID|TIME|CPU\n"  # no samples: does not count
    )
    assert perfmod.script_fields(evlist) == "comm,pid,tid,cpu,time,event,period,trace"
    assert perfmod.script_fields(b"") == perfmod.FIELDS  # no evlist: everything but ip


# Lines of modifier forms that cannot be recorded here (no hardware PMU in the VM), in the
# layouts perf 4.x-6.x print: "%16s %5d [%03d] %12s: %10lu name:mods: ip sym (dso)".
MODIFIERS = (
    "            perf  4121 [002]  1054.300271:          1 cycles:u:  ffffffff9a2b6c5e "
    "native_write_msr+0xe ([kernel.kallsyms])\n"
    "            perf  4121 [002]  1054.300277:          1 cycles:u:  ffffffff9a2b6c5e "
    "native_write_msr+0xe ([kernel.kallsyms])\n"
    "           stress  4122 [001]  1054.301002:     823931 cycles:u: \n"
    "\t    55d0c0e4a1b7 hogcpu+0x27 (/usr/bin/stress)\n"
    "\t    7f3e2a229d8f __libc_start_call_main+0x7f (/usr/lib/libc.so.6)\n"
    "\n"
    "          python3  5210/5211  1054.402100:     250000 task-clock:ppp:      7f8a422e187a "
    "get_common_indices.constprop.0+0x7a (/usr/lib/ld-linux-x86-64.so.2)\n"
    "             bash  5300 [000]  1054.500000: cpu/cycles/u:  ffffffff8225bc16 "
    "do_syscall_64+0x46 ([kernel.kallsyms])\n"
    "             bash  5300 [000]  1054.500010:     100003 instructions:k:  ffffffff8225bc16 "
    "do_syscall_64+0x46 ([kernel.kallsyms])\n"
    "             bash  5300 [000]  1054.500020:          1 sched:sched_process_exec: "
    "filename=/bin/ls pid=5300 old_pid=5300\n"
)


_COUNT_CYCLES = "SELECT count(*) AS n FROM other_events WHERE event = 'cycles:u'"


def test_modifier_forms_keep_the_whole_name_and_period(tmp_path):
    assert detect_format(MODIFIERS.encode(), "t") == "perf_script"
    ds, r = ingest_text(tmp_path, MODIFIERS)
    assert r.errors.total == 0, r.errors.counts
    assert r.event_counts == {
        "cycles:u": 3,
        "stack_frame": 2,
        "task-clock:ppp": 1,
        "cpu/cycles/u": 1,
        "instructions:k": 1,
        "sched_process_exec": 1,  # a tracepoint keeps its typed table, its period dropped
    }
    rows = read_table(ds, "other_events")
    fields = dict(zip(rows["event"], rows["fields"], strict=True))
    assert fields["task-clock:ppp"] == (
        "period=250000 7f8a422e187a get_common_indices.constprop.0+0x7a "
        "(/usr/lib/ld-linux-x86-64.so.2)"
    )
    assert fields["cpu/cycles/u"] == "ffffffff8225bc16 do_syscall_64+0x46 ([kernel.kallsyms])"
    cyc = rows.filter(rows["event"] == "cycles:u")
    assert cyc["fields"].to_list()[2] == "period=823931"
    assert cyc["cpu"].to_list() == [2, 2, 1]
    task = rows.filter(rows["event"] == "task-clock:ppp").row(0, named=True)
    assert (task["cpu"], task["pid"], task["tgid"]) == (None, 5211, 5210)
    stack = rows.filter(rows["event"] == "stack_frame")
    assert stack["pid"].to_list() == [4122, 4122]
    assert stack["fields"].to_list()[0] == "55d0c0e4a1b7 hogcpu+0x27 (/usr/bin/stress)"
    exe = read_table(ds, "event=sched_process_exec").row(0, named=True)
    assert exe["filename"] == "/bin/ls"
    # the event name is a column of other_events, not a directory: plain SQL finds it
    out = CliRunner().invoke(
        app,
        ["sql", "-d", str(ds.root), "--format", "csv", _COUNT_CYCLES],
    )
    assert out.exit_code == 0, out.output
    assert out.stdout.split() == ["n", "3"]
