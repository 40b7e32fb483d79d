"""Every tracefs and trace-cmd text trace of the real capture set ingests exactly.

Counts per event are compared with the independent ground truth next to each file
(``*.gt.json``, made by an awk counter and a separate parser), lost-event markers with the
markers it lists, decoded pfns with its pfn pairing CSV.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter

import polars as pl
import pytest

from rmapscope.dataset import Dataset
from rmapscope.ingest import ingest
from tests.conftest import REAL, ground_truth, read_table, real

TEXT_TRACES = [
    f"{w}/{d}"
    for w, dirs in {
        "forkstorm": [
            "ftrace-text-default/trace.txt.gz",
            "ftrace-text-tgid/trace.txt.gz",
            "ftrace-text-noirqinfo/trace.txt.gz",
            "ftrace-text-clock-mono/trace.txt.gz",
            "ftrace-text-clock-counter/trace.txt.gz",
            "ftrace-text-latency-format/trace.txt.gz",
            "ftrace-trace_pipe/trace_pipe.txt.gz",
            "ftrace-trace_pipe-lossy/trace_pipe.txt.gz",
            "ftrace-text-wrapped-overwrite/trace.txt.gz",
            "ftrace-text-nooverwrite/trace.txt.gz",
            "trace-cmd-v7/report.txt.gz",
            "trace-cmd-v7/report-l.txt.gz",
            "trace-cmd-v7/report-t.txt.gz",
            "trace-cmd-v7/report-cpu0.txt.gz",
            "trace-cmd-v7/report-cpu1.txt.gz",
            "trace-cmd-v6/report.txt.gz",
            "trace-cmd-v7-uncompressed/report.txt.gz",
        ],
        "thp": [
            "ftrace-text-default/trace.txt.gz",
            "ftrace-text-tgid/trace.txt.gz",
            "ftrace-text-noirqinfo/trace.txt.gz",
            "ftrace-text-clock-mono/trace.txt.gz",
            "ftrace-text-clock-counter/trace.txt.gz",
            "ftrace-text-latency-format/trace.txt.gz",
            "ftrace-trace_pipe/trace_pipe.txt.gz",
            "trace-cmd-v7/report.txt.gz",
            "trace-cmd-v7/report-l.txt.gz",
            "trace-cmd-v7/report-t.txt.gz",
            "trace-cmd-v6/report-cpu0.txt.gz",
            "trace-cmd-v6/report-cpu1.txt.gz",
        ],
    }.items()
    for d in dirs
]

EXPECTED_FORMAT = {
    "ftrace_latency": "tracefs_latency",
    "tcreport_l": "tcreport_latency",
    "tcreport": "tcreport",
}


def table(ds: Dataset, name: str) -> pl.DataFrame:
    return read_table(ds, f"event={name}")


@pytest.mark.parametrize("path", TEXT_TRACES)
def test_counts_gaps_and_no_errors_match_ground_truth(path, ingested):
    gt = ground_truth(path)
    ds, result = ingested(path)
    assert result.event_counts == gt["event_counts"]
    assert result.events == gt["total_events"]
    assert result.errors.total == 0, result.errors.counts
    assert result.format == EXPECTED_FORMAT.get(gt["parser_format"], result.format)
    gaps = pl.read_parquet(next(ds.root.glob("gaps/*/*/*.parquet")))
    lost = gaps.filter(pl.col("kind").is_in(["lost", "dropped"]))
    assert lost.height == gt["lost_event_markers"]
    assert (lost["count"].sum() or 0) == gt["lost_events_reported_total"]
    # per-cpu counts agree too
    per_cpu = Counter()
    for name in gt["event_counts"]:
        for cpu, n in table(ds, name).group_by("cpu").len().iter_rows():
            per_cpu[str(cpu)] += n
    assert dict(per_cpu) == {str(k): v for k, v in gt["events_per_cpu"].items()}


def test_wrapped_buffer_reports_overwritten_events_and_buffer_start(ingested):
    ds, _ = ingested("forkstorm/ftrace-text-wrapped-overwrite/trace.txt.gz")
    gaps = pl.read_parquet(next(ds.root.glob("gaps/*/*/*.parquet")))
    over = gaps.filter(pl.col("kind") == "overwritten").row(0, named=True)
    assert over["count"] == 89144 - 15660
    started = gaps.filter(pl.col("kind") == "buffer_started").row(0, named=True)
    assert started["cpu"] == 1 and started["line"] == 3542 and started["ts_end"] is not None


def test_lost_markers_carry_the_time_range_of_the_gap(ingested):
    ds, _ = ingested("forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz")
    gaps = pl.read_parquet(next(ds.root.glob("gaps/*/*/*.parquet"))).sort("line")
    assert gaps["line"].to_list() == [208, 322, 460, 604, 2008]
    assert gaps["count"].to_list() == [32647, 21343, 12330, 3972, 14136]
    assert (gaps["ts_start"] < gaps["ts_end"]).all()


def test_timestamps_are_exact_nanoseconds(ingested):
    gt = ground_truth("forkstorm/trace-cmd-v7/report-t.txt.gz")
    _, result = ingested("forkstorm/trace-cmd-v7/report-t.txt.gz")
    assert result.ts_first == int(gt["first_ts"].replace(".", ""))
    assert result.ts_last == int(gt["last_ts"].replace(".", ""))
    _, result_c = ingested("forkstorm/ftrace-text-clock-counter/trace.txt.gz")
    assert (result_c.ts_first, result_c.ts_last) == (394709, 484632)


def test_tgid_column_and_unknown_tgids(ingested):
    ds, result = ingested("forkstorm/ftrace-text-tgid/trace.txt.gz")
    # "(-------)": tgid unknown (339 lines in this capture, data/real/README.md)
    unknown = sum(table(ds, name)["tgid"].null_count() for name in result.event_counts)
    assert unknown == 339
    allocs = table(ds, "mm_page_alloc")
    shell = allocs.filter(pl.col("pid") == 32695)
    assert shell.height > 0 and (shell["tgid"] == 32695).all()


def _common(ds: Dataset, name: str, drop: list[str]) -> pl.DataFrame:
    return table(ds, name).drop([c for c in drop if c in table(ds, name).columns]).sort("seq")


def test_tracefs_text_and_trace_cmd_report_give_the_same_rows(ingested):
    a, _ = ingested("forkstorm/ftrace-text-default/trace.txt.gz")
    b, _ = ingested("forkstorm/trace-cmd-v7/report.txt.gz")
    gt = ground_truth("forkstorm/ftrace-text-default/trace.txt.gz")
    # flags: trace-cmd 3.1 prints none; page/mt: pointers tracefs prints hashed
    drop = ["flags", "page", "mt"]
    for name in gt["event_counts"]:
        left, right = _common(a, name, drop), _common(b, name, drop)
        assert left.equals(right), name


def test_microsecond_text_is_the_rounded_nanosecond_time(ingested):
    us, _ = ingested("forkstorm/trace-cmd-v7/report.txt.gz")
    ns, _ = ingested("forkstorm/trace-cmd-v7/report-t.txt.gz")
    a = table(us, "set_migration_pte").sort("seq")["ts"]
    b = table(ns, "set_migration_pte").sort("seq")["ts"]
    assert ((b + 500) // 1000 * 1000).equals(a)


def _pfnpairs(path: str) -> list[dict]:
    p = REAL / path
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    csv_path = p.parent / f"{name}.pfnpairs.csv"
    if csv_path.exists():
        data = csv_path.read_text()
    else:
        with gzip.open(str(csv_path) + ".gz", "rt") as f:
            data = f.read()
    return list(csv.DictReader(io.StringIO(data)))


@pytest.mark.parametrize(
    "path", ["forkstorm/ftrace-text-default/trace.txt.gz", "thp/ftrace-text-default/trace.txt.gz"]
)
def test_decoded_pfns_agree_with_the_pairing_facts(path, ingested):
    ds, _ = ingested(path)
    rows = _pfnpairs(path)
    for kind in ("pte", "pmd"):
        sets = table(ds, f"set_migration_{kind}")
        removes = table(ds, f"remove_migration_{kind}")
        mine = [r for r in rows if r["kind"] == kind]
        expect_old = Counter()
        expect_new = Counter()
        young = dirty = 0
        for r in mine:
            if r["old_pfn"]:
                expect_old[int(r["old_pfn"], 16)] += int(r["n_set"])
                young += int(r["young"] or 0)
                dirty += int(r["dirty"] or 0)
            if r["new_pfn"]:
                expect_new[int(r["new_pfn"], 16)] += int(r["n_remove"])
        got_old = Counter(sets["pfn"].to_list()) if sets.height else Counter()
        got_new = Counter(removes["pfn"].to_list()) if removes.height else Counter()
        assert got_old == expect_old, kind
        assert got_new == expect_new, kind
        if sets.height:
            assert int(sets["young"].sum()) == young and int(sets["dirty"].sum()) == dirty
            swp = Counter()
            for r in mine:
                for part in filter(None, r["swp_types"].split(";")):
                    t, n = part.split(":")
                    swp[t.replace("MIGRATION_", "").lower()] += int(n)
            assert Counter(sets["migration_kind"].to_list()) == swp


def test_small_blocks_cut_lines_anywhere_and_lose_nothing(tmp_path, monkeypatch):
    """Blocks end mid-line all the time: parse the real trace in 64 KiB blocks."""
    from rmapscope.ingest import _source

    monkeypatch.setattr(_source, "BLOCK_SIZE", 1 << 16)
    path = "forkstorm/ftrace-trace_pipe-lossy/trace_pipe.txt.gz"
    gt = ground_truth(path)
    ds = Dataset(tmp_path / "ds")
    result = ingest(str(real(path)), ds)
    assert result.event_counts == gt["event_counts"] and result.errors.total == 0
    gaps = pl.read_parquet(next(ds.root.glob("gaps/*/*/*.parquet"))).sort("line")
    assert gaps["line"].to_list() == [208, 322, 460, 604, 2008]
    assert gaps["ts_end"].null_count() == 0 and gaps["ts_start"].null_count() == 0
    seqs = pl.concat([table(ds, n).select("seq") for n in gt["event_counts"]])["seq"].sort()
    assert seqs.to_list() == list(range(result.events))
