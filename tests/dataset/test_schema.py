"""The event schema: format descriptions -> typed columns and text regexes."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from rmapscope._printfmt import parse_print_fmt
from rmapscope.schema import COMMON_NAMES, Registry, column_for, default_registry, parse_format

KNOWN = [
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
    "sched_process_free",
    "task_newtask",
    "task_rename",
    "mm_migrate_pages",
    "mm_migrate_pages_start",
    "set_migration_pte",
    "remove_migration_pte",
    "set_migration_pmd",
    "remove_migration_pmd",
    "mm_compaction_begin",
    "mm_compaction_end",
    "mm_compaction_migratepages",
    "mm_compaction_isolate_migratepages",
    "mm_compaction_isolate_freepages",
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_khugepaged_scan_pmd",
    "mm_collapse_huge_page",
    "mm_collapse_huge_page_isolate",
    "ksm_merge_one_page",
    "exit_mmap",
    "rss_stat",
]


@pytest.mark.parametrize("name", KNOWN)
def test_known_events_have_typed_schemas(name):
    schema = default_registry().get(name)
    assert schema is not None
    arrow = schema.arrow_schema()
    assert arrow.names[: len(COMMON_NAMES)] == COMMON_NAMES
    assert len(arrow.names) > len(COMMON_NAMES)


def test_columns_are_named_after_format_fields_not_printed_keys():
    cols = dict(default_registry().get("mm_migrate_pages").columns())
    assert cols["succeeded"] == pa.uint64()
    assert cols["thp_failed"] == pa.uint64()
    assert cols["large_folio_split"] == pa.uint64()  # printed as nr_split=
    assert cols["reason"] == pa.string()  # __print_symbolic: the label
    assert "nr_succeeded" not in cols


def test_field_clashing_with_common_column_is_renamed():
    cols = dict(default_registry().get("task_newtask").columns())
    assert cols["field_pid"] == pa.int32() and cols["field_comm"] == pa.string()
    assert column_for("child_pid") == "child_pid"


def test_migration_tables_carry_decoded_columns():
    cols = dict(default_registry().get("set_migration_pte").columns())
    for name in ("addr", "pte", "order", "pfn", "swp_type", "migration_kind", "young", "dirty"):
        assert name in cols
    assert "writable" in dict(default_registry().get("remove_migration_pmd").columns())


def test_derived_values_get_their_own_column():
    # page=%p is computed from REC->pfn; it must not take the pfn column
    pf = default_registry().get("mm_page_alloc").print_fmt
    by_col = {c.column: c for c in pf.conversions}
    assert by_col["pfn"].kind == "hex" and not by_col["pfn"].derived
    assert by_col["page"].derived
    # limit=%lu prints 1UL << defer_shift: a derived value, not defer_shift itself
    cols = dict(default_registry().get("mm_compaction_deferred").columns())
    assert "limit" in cols and "defer_shift" in cols


def test_print_fmt_regex_matches_real_payloads():
    reg = default_registry()
    samples = {
        "mm_migrate_pages": "nr_succeeded=32 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 "
        "nr_thp_split=0 nr_split=0 mode=MIGRATE_SYNC reason=compaction",
        "mm_compaction_end": "zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x100000 "
        "zone_end=0x100000, mode=sync status=complete",
        "mm_compaction_finished": "node=0 zone=DMA32    order=-1 ret=continue",
        "rss_stat": "mm_id=123 curr=1 type=MM_ANONPAGES size=4096B",
        "sched_process_fork": "comm=Web Content pid=12 child_comm=Web Content child_pid=13",
    }
    for name, text in samples.items():
        rx = re.compile(reg.get(name).print_fmt.regex(column_for))
        m = rx.match(text)
        assert m, name
    m = re.match(
        reg.get("sched_process_fork").print_fmt.regex(column_for), samples["sched_process_fork"]
    )
    assert m.group("parent_comm") == "Web Content" and m.group("child_pid") == "13"


def test_add_format_overrides_and_extends_at_run_time():
    reg = default_registry()
    text = (
        "name: mm_migrate_pages\nID: 1\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:unsigned long succeeded;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:unsigned long failed;\toffset:16;\tsize:8;\tsigned:0;\n"
        "\tfield:int reason;\toffset:24;\tsize:4;\tsigned:1;\n\n"
        'print fmt: "nr_succeeded=%lu nr_failed=%lu reason=%s", REC->succeeded, REC->failed, '
        '__print_symbolic(REC->reason, {0, "compaction"}, {1, "memory_failure"})\n'
    )
    own = Registry(dict.fromkeys([], None))
    schema = own.add_format(text)
    # reason_raw: the number behind the label (issue 11 point 10)
    assert [n for n, _ in schema.columns()] == ["succeeded", "failed", "reason", "reason_raw"]
    assert dict(schema.print_fmt.conversions[2].table) == {0: "compaction", 1: "memory_failure"}
    # the default registry is not touched by another registry's additions
    assert "thp_succeeded" in dict(reg.get("mm_migrate_pages").columns())
    new = reg.copy().add_format(text.replace("mm_migrate_pages", "my_event"))
    assert new.name == "my_event"


def test_parse_format_errors_are_clear():
    with pytest.raises(ValueError, match="no name"):
        parse_format("format:\n")
    with pytest.raises(ValueError, match="conversions"):
        parse_print_fmt('"a=%d b=%d", REC->a')
