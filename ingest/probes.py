"""Typed tables for the probe events of ``data/probes`` (kprobe/fprobe/bpftrace lines).

A probe line's payload is ``(<func>+0x0/0x1a0) key=0x.. ...`` (a return probe:
``(<caller>+0x4a/0x120 <- <func>)``; perf prints the raw address ``(ffffffff812345a0)``).
The probes of the contract (``data/probes/README.md``, :data:`rmapscope.catalog.PROBES`)
become tables ``probe_<name>`` with the common columns, ``func`` and ``caller`` (return
probes), and one UInt64 column per key;
any other probe stays in ``other_events`` with its raw text.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from rmapscope.catalog import PROBE_PREFIX as PREFIX
from rmapscope.catalog import PROBES, probe_table

#: A probe payload, as tracefs, perf and bpftrace print it (the text reader's rows are
#: tested against it by the compiled core, ``native/core/src/text/partition.rs``).
PROBE_PAYLOAD = (
    r"^\((?:[\w.]+\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+|[0-9a-fA-F]+)(?: <- [\w.]+)?\)(?:\s|$)"
)


def table_name(event: str) -> str:
    """The typed table of a probe event: ``probe_<event>``."""
    return PREFIX + event


def probe_schema(event: str) -> pa.Schema:
    """Columns of a probe table: common, func, caller, then the keys as uint64 (see
    :func:`rmapscope.catalog.probe_table`)."""
    return probe_table(event).arrow_schema()


def parse(event: str, rows: pl.DataFrame) -> pl.DataFrame:
    """Typed columns of probe rows of ``event`` (``rows`` has ``rest``, the payload)."""
    rest = pl.col("rest")
    head = rest.str.extract(r"^\(([^)]*)\)", 1)
    func = head.str.extract(r"(?:<- )([\w.]+)$", 1)
    caller_or_func = head.str.extract(r"^([\w.]+)\+", 1)
    keys = [
        rest.str.extract(rf"(?:^|\s){k}=(0x[0-9a-fA-F]+|\d+)(?:\s|$)", 1).alias(k)
        for k in PROBES[event]
    ]
    parsed = rows.with_columns(
        pl.coalesce(func, caller_or_func).alias("func"),
        pl.when(func.is_not_null()).then(caller_or_func).alias("caller"),
        *keys,
    )
    numbers = [
        pl.when(pl.col(k).str.starts_with("0x"))
        .then(pl.col(k).str.slice(2).str.to_integer(base=16, dtype=pl.UInt64, strict=False))
        .otherwise(pl.col(k).str.to_integer(base=10, dtype=pl.UInt64, strict=False))
        .alias(k)
        for k in PROBES[event]
    ]
    return parsed.with_columns(*numbers)
