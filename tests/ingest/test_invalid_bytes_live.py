"""A real recording of a task that names itself with bytes that are not UTF-8.

A small C program forks a child that renames itself (``prctl(PR_SET_NAME)``) with invalid
UTF-8, ``<b>``, a quote and control bytes, forks a grandchild (renamed too, with a literal
``\\x41``) and asks for compaction, which migrates pages in its context. Two tracefs
instances record the same events of that process tree (``set_event_pid`` and
``event-fork``): one is streamed through ``trace_pipe``, the other read as ``trace`` text and
extracted with ``trace-cmd extract -B``. The three must ingest to the same rows, comms
included (:mod:`rmapscope.ingest._bytes`). Marked ``live``: needs root, a tracefs with
instances, gcc and trace-cmd, and skips with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.ingest._bytes import escape
from tests.conftest import live_tracefs, read_table
from tests.ingest.test_invalid_bytes import CHILD, GRANDCHILD, assert_same_rows

pytestmark = pytest.mark.live

EVENTS = [
    "sched:sched_process_fork",
    "sched:sched_process_exit",
    "task:task_newtask",
    "task:task_rename",
    "migrate:mm_migrate_pages",
    "migrate:mm_migrate_pages_start",
    "migrate:set_migration_pte",
    "migrate:remove_migration_pte",
    "compaction:mm_compaction_begin",
    "compaction:mm_compaction_end",
]


def _c_string(raw: bytes) -> str:
    """``raw`` as a C string literal (octal escapes: at most 3 digits, never greedy)."""
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03o}" for b in raw)
        + '"'
    )


PROGRAM = r"""
/* Traces itself: joins argv's tracefs instances (set_event_pid, tracing_on), then a child
 * renames itself with bytes that are not UTF-8, forks a renamed grandchild that reads the
 * child's pages, and asks for compaction three times (migrations in its context). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (32 << 20)

static void put(const char *dir, const char *file, const char *value) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0) perror(path);
    if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
    char pid[32];
    snprintf(pid, sizeof pid, "%d", getpid());
    for (int i = 1; i < argc; i++) put(argv[i], "set_event_pid", pid);
    for (int i = 1; i < argc; i++) put(argv[i], "tracing_on", "1");
    pid_t kid = fork();
    if (kid == 0) {
        prctl(PR_SET_NAME, (unsigned long)CHILD, 0, 0, 0);
        char *keep = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *hole = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (keep == MAP_FAILED || hole == MAP_FAILED) _exit(2);
        for (long off = 0; off < SIZE; off += 4096) { keep[off] = 1; hole[off] = 2; }
        munmap(hole, SIZE);  /* leaves the pageblocks of keep half free: compaction moves it */
        pid_t grandkid = fork();
        if (grandkid == 0) {
            prctl(PR_SET_NAME, (unsigned long)GRANDCHILD, 0, 0, 0);
            long sum = 0;
            for (long off = 0; off < SIZE; off += 65536) sum += keep[off];
            usleep(300000);
            _exit(sum == 0);
        }
        int fd = open("/proc/sys/vm/compact_memory", O_WRONLY);
        if (fd >= 0) {
            if (write(fd, "1", 1) < 0) perror("compact_memory");
            close(fd);
        }
        waitpid(grandkid, NULL, 0);
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    usleep(100000);
    for (int i = 1; i < argc; i++) put(argv[i], "tracing_on", "0");
    return 0;
}
"""


def _needs() -> Path:
    """The tracefs root; skips with the reason when this machine cannot record."""
    for tool in ("gcc", "trace-cmd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    return live_tracefs()


@contextlib.contextmanager
def _instance(root: Path, name: str):
    base = root / "instances" / name
    base.mkdir()
    try:
        (base / "tracing_on").write_text("0")  # a new instance records at once
        (base / "buffer_size_kb").write_text("16384")
        (base / "set_event").write_text("\n".join(EVENTS) + "\n")
        (base / "options/event-fork").write_text("1")
        yield base
    finally:
        with contextlib.suppress(OSError):
            (base / "tracing_on").write_text("0")
        for _ in range(50):
            try:
                base.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def _clear_comm_cache(root: Path) -> None:
    """Empty the kernel's pid -> comm cache (``saved_cmdlines``) by writing its size back.

    The comm of a text event is looked up in that cache when the text is read, and it is
    saved lazily (at a context switch, when a lock can be taken), so a pid of this run that
    was never saved shows the name of the last task that had that pid and was saved: after
    a full suite has wrapped the pid space, often a ``true`` of another test. A cleared cache
    shows ``<...>`` instead, which :func:`assert_same_rows` allows; the run's own names stay
    checked."""
    size = root / "saved_cmdlines_size"
    with contextlib.suppress(OSError):  # an older kernel without it: the cache stays
        size.write_text(size.read_text().strip())


def record(root: Path, out: Path) -> dict[str, Path]:
    """Build the program, run it traced; the three captures of its run."""
    src = out / "rename.c"
    defines = f"#define CHILD {_c_string(CHILD)}\n#define GRANDCHILD {_c_string(GRANDCHILD)}\n"
    src.write_text(defines + PROGRAM)
    exe = out / "rename"
    subprocess.run(["gcc", "-O1", "-Wall", "-o", exe, src], check=True, capture_output=True)
    tag = f"rmapscope-utf8-{os.getpid()}"
    files = {"trace_pipe": out / "trace_pipe.txt", "tracefs": out / "trace.txt"}
    files["trace_dat"] = out / "trace.dat"
    with _instance(root, f"{tag}-pipe") as pipe, _instance(root, f"{tag}-text") as text:
        _clear_comm_cache(root)
        with open(files["trace_pipe"], "wb") as sink:
            reader = subprocess.Popen(["cat", str(pipe / "trace_pipe")], stdout=sink)
            try:
                subprocess.run([exe, pipe, text], check=True, timeout=120)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # until the pipe is drained
                    size = files["trace_pipe"].stat().st_size
                    time.sleep(0.5)
                    if files["trace_pipe"].stat().st_size == size:
                        break
            finally:
                reader.terminate()
                reader.wait()
        files["tracefs"].write_bytes((text / "trace").read_bytes())
        extract = subprocess.run(
            ["trace-cmd", "extract", "-B", text.name, "-o", str(files["trace_dat"])],
            capture_output=True,
            timeout=120,
            check=False,
            cwd=out,
        )
        if extract.returncode != 0:
            pytest.fail(f"trace-cmd extract failed: {extract.stderr.decode()[-500:]}")
    files["tcreport"] = out / "report.txt"
    with open(files["tcreport"], "wb") as sink:
        subprocess.run(
            ["trace-cmd", "report", "-i", str(files["trace_dat"])],
            stdout=sink,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=True,
        )
    return files


def test_prctl_names_ingest_alike_from_trace_pipe_text_and_trace_dat(tmp_path):
    root = _needs()
    assert_same_rows(record(root, tmp_path), tmp_path)


def test_prctl_names_through_perf(tmp_path):
    """The same program under ``perf record``: perf.data (read through ``perf script``) and
    ``perf script`` text give the names escaped by the same rule."""
    root = _needs()
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("perf is not installed")
    files = record(root, tmp_path)  # builds the program (and checks the tracefs captures)
    data = tmp_path / "perf.data"
    events = "task:task_rename,task:task_newtask,sched:sched_process_fork,sched:sched_process_exit"
    rec = subprocess.run(
        [perf, "record", "-q", "-e", events, "-o", str(data), "--", str(tmp_path / "rename")],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if rec.returncode != 0 or not data.exists():
        pytest.skip(f"perf record cannot record tracepoints here: {rec.stderr.decode()[-300:]}")
    text = tmp_path / "perf-script.txt"
    with open(text, "wb") as sink:
        subprocess.run([perf, "script", "-i", str(data)], stdout=sink, check=True, timeout=120)
    child, grandchild = escape(CHILD), escape(GRANDCHILD)
    for path in (data, text):
        ds = Dataset(tmp_path / f"ds-{path.name}")
        result = ingest(str(path), ds)
        assert result.errors.total == 0, (path.name, result.errors.counts)
        renames = read_table(ds, "event=task_rename")
        assert {child, grandchild} <= set(renames["newcomm"].to_list()), path.name
        by_pid = dict(zip(renames["field_pid"], renames["newcomm"], strict=True))
        exits = read_table(ds, "event=sched_process_exit")
        for pid, comm, field in zip(exits["pid"], exits["comm"], exits["field_comm"], strict=True):
            if pid in by_pid:  # a task's exit carries the name it gave itself
                assert comm == field == by_pid[pid], (path.name, pid, comm, field)
    assert files["trace_dat"].exists()
