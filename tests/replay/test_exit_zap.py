"""An exit's silent zap spans from its ``sched_process_exit`` line to the task's reaping on
Linux 6.16+, which prints the line before ``exit_mm``: an entry that lost its remove in a
batch inside that span may have been zapped, so ``leaked-entry`` is inconclusive there.

The lines are from a recording on this machine (Linux 6.18, ``rmapscope record`` of the
fork + compaction workload of ``tests/analysis/test_diff_live.py``): the reader child
exited 1.4 ms before a compaction batch that moved pages it shared with its parent, and its
zap dropped its entries of two pages, which got one remove each (the parent's). Before the
fix these were two ``leaked-entry`` violations on a healthy kernel."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from rmapscope.replay import replay

_P = "        workload-4564    [000] "
_C = "        workload-4566    [001] "
FORK = (
    f"{_P}..... 57301.905841: task_newtask: pid=4566 comm=workload clone_flags=1200000 "
    "oom_score_adj=0\n"
    f"{_P}..... 57301.905877: sched_process_fork: comm=workload pid=4564 child_comm=workload "
    "child_pid=4566\n"
)
OLD_EXIT = f"{_C}..... 57302.114907: sched_process_exit: comm=workload pid=4566 prio=120\n"
EXIT = OLD_EXIT.replace("prio=120", "prio=120 group_dead=true")
BATCH = "".join(
    f"{_P}{line}\n"
    for line in (
        "..... 57302.116265: mm_migrate_pages_start: mode=MIGRATE_SYNC reason=compaction",
        "...1. 57302.116276: set_migration_pte: addr=7f8e2465a000, pte=e7ffe7ffc780b400 order=0",
        "...1. 57302.116277: set_migration_pte: addr=7f8e2465a000, pte=e7ffe7ffc780b400 order=0",
        "...1. 57302.116280: set_migration_pte: addr=7f8e228aa000, pte=e7ffe7ffc7813a00 order=0",
        "...1. 57302.116281: set_migration_pte: addr=7f8e228aa000, pte=e7ffe7ffc7813a00 order=0",
        "...1. 57302.116287: set_migration_pte: addr=7f8e22846000, pte=e7ffe7ffc781d200 order=0",
        "...1. 57302.116288: set_migration_pte: addr=7f8e22846000, pte=e7ffe7ffc781d200 order=0",
        "...1. 57302.116353: remove_migration_pte: addr=7f8e2465a000, pte=840000039c434025 order=0",
        "...1. 57302.116353: remove_migration_pte: addr=7f8e2465a000, pte=840000039c434025 order=0",
        "...1. 57302.116385: remove_migration_pte: addr=7f8e228aa000, pte=840000039c49a025 order=0",
        "...1. 57302.116431: remove_migration_pte: addr=7f8e22846000, pte=840000039c447025 order=0",
        "..... 57302.116511: mm_migrate_pages: nr_succeeded=3 nr_failed=0 nr_thp_succeeded=0 "
        "nr_thp_failed=0 nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC reason=compaction",
    )
)
MMAP_DONE = f"{_C}..... 57302.115500: exit_mmap: mt_mod 00000000c0d13792, DESTROY\n"
MMAP_LATE = f"{_C}..... 57302.117000: exit_mmap: mt_mod 00000000c0d13792, DESTROY\n"
FREE = f"{_P}..s.. 57303.187247: sched_process_free: comm=workload pid=4566 prio=120\n"
EARLY_FREE = f"{_P}..s.. 57302.115000: sched_process_free: comm=workload pid=4566 prio=120\n"


def _leaks(tmp_path: Path, text: str) -> pl.DataFrame:
    p = tmp_path / "t.trace"
    p.write_text(text)
    ds = Dataset(tmp_path / "ds")
    trace = ingest(str(p), ds, fmt="trace_pipe").trace_id
    return replay(ds)[trace]["violations"].filter(pl.col("rule") == "leaked-entry")


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        # as recorded: the child's zap may run until it is reaped, after the batch
        (FORK + EXIT + BATCH + FREE, "inconclusive"),
        # no free line at all: the zap may run until the trace ends
        (FORK + EXIT + BATCH, "inconclusive"),
        # exit_mmap (printed when the page tables are gone) bounds the zap tighter
        (FORK + EXIT + BATCH + MMAP_LATE + FREE, "inconclusive"),
        # control: its exit_mmap came before the batch, so its zap was over: a leak
        (FORK + EXIT + MMAP_DONE + BATCH + FREE, "violation"),
        # control: reaped before the batch, so its zap was over: a leak
        (FORK + EXIT + EARLY_FREE + BATCH + FREE, "violation"),
        # control: a kernel before 6.16 prints the exit after the zap: a leak
        (FORK + OLD_EXIT + BATCH + FREE, "violation"),
    ],
)
def test_an_exit_before_the_batch_may_zap_during_it(tmp_path, text, verdict):
    leaks = _leaks(tmp_path, text)
    assert leaks.height == 2, leaks
    assert set(leaks["verdict"]) == {verdict}
    assert set(leaks["addr"]) == {0x7F8E228AA000, 0x7F8E22846000}
    if verdict == "inconclusive":
        assert leaks["explanation"].str.contains("a process exited meanwhile").all()
