"""Re-recordings of one workload on this machine, diffed: no metric is ``worse``.

A small C program (:data:`WORKLOAD`) maps 64 MiB, touches it, unmaps every other page,
forks a reader and asks for compaction, three times; ``rmapscope record`` records it
:data:`RUNS` times one after the other. Odd runs are side A, even runs side B, so each side
has five recordings and the latency tests count recordings (the run-to-run drift of one
machine is larger than a single recording's batches show). Marked ``live``: needs root, a
tracefs with instances and gcc, and skips with the reason otherwise.
"""

from __future__ import annotations

import shutil
import subprocess

import polars as pl
import pytest

from rmapscope.analysis.diff import diff, side_predicate
from rmapscope.analysis.session import DuckDBSession
from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay
from tests.conftest import cli_command, live_tracefs

pytestmark = [pytest.mark.live, pytest.mark.slow]

RUNS = 10
WORKLOAD = r"""
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#define SIZE (64L << 20)
int main(void) {
    for (int r = 0; r < 3; r++) {
        char *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 2;
        for (long off = 0; off < SIZE; off += 4096) p[off] = 1;
        for (long off = 4096; off < SIZE; off += 8192) munmap(p + off, 4096);
        pid_t kid = fork();
        if (kid == 0) {
            long sum = 0;
            for (int i = 0; i < 4; i++)
                for (long off = 0; off < SIZE; off += 8192) sum += p[off];
            usleep(200000);
            _exit(sum == 0);
        }
        int fd = open("/proc/sys/vm/compact_memory", O_WRONLY);
        if (fd >= 0) { if (write(fd, "1", 1) < 0) perror("compact_memory"); close(fd); }
        waitpid(kid, NULL, 0);
        for (long off = 0; off < SIZE; off += 8192) munmap(p + off, 4096);
    }
    return 0;
}
"""


def test_rerecordings_of_one_workload_are_not_worse(tmp_path):
    live_tracefs()
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    src = tmp_path / "workload.c"
    src.write_text(WORKLOAD)
    exe = tmp_path / "workload"
    subprocess.run(["gcc", "-O2", "-o", exe, src], check=True, capture_output=True)
    ds = Dataset(tmp_path / "ds")
    for run in range(RUNS):
        out = tmp_path / f"run{run}.trace.zst"
        done = subprocess.run([*cli_command(), "record", "-q", "-o", str(out), "--", str(exe)],
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        ingest(str(out), ds, host="ab"[run % 2])
    replay(ds)
    m = diff(DuckDBSession(ds), side_predicate("host:a"), side_predicate("host:b")).metrics
    latency = m.filter(pl.col("metric").str.starts_with("migration latency"))
    assert latency.height, "the workload migrated nothing"
    # five recordings a side: the trace is the cluster, never the batch
    said = latency.select(pl.concat_str("ci_of", "note", separator=" "))["ci_of"]
    assert not said.str.contains("batches").any(), said.to_list()
    worse = m.filter(pl.col("verdict") == "worse").select("metric", "group", "a", "b", "p_adj")
    assert worse.is_empty(), worse.rows()
