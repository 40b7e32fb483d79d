"""A straightforward per-line Python parser of ftrace text, for the ingest benchmark.

It produces the same columns as rmapscope's typed tables (common columns, then each known
event's fields parsed with the print-fmt regex and converted to ints) and writes one Parquet
file per event: what a competent engineer would write first, without vectorisation.

    python tests/bench/_baseline.py TRACE OUTDIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rmapscope.schema import column_for, default_registry

HEADER = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\((?:\s*(?P<tgid>\d+)|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\d]\S{3,6})\s+)?(?P<secs>\d+)(?:\.(?P<frac>\d+))?:\s"
    r"(?P<event>[^:\s]+):\s?(?P<rest>.*)$"
)


def main(trace: str, outdir: str) -> None:
    registry = default_registry()
    specs = {}
    for name in registry.names():
        schema = registry.get(name)
        pf = schema.print_fmt
        specs[name] = (
            re.compile(pf.regex(column_for)),
            {column_for(c.column): c for c in pf.conversions},
        )
    tables: dict[str, dict[str, list]] = {}
    with open(trace, encoding="utf-8", errors="replace") as f:
        for seq, line in enumerate(f):
            m = HEADER.match(line)
            if not m:
                continue
            ev = m.group("event")
            frac = m.group("frac") or "0"
            row = {
                "seq": seq,
                "ts": int(m.group("secs")) * 1_000_000_000 + int(frac) * 10 ** (9 - len(frac)),
                "cpu": int(m.group("cpu")),
                "pid": int(m.group("pid")),
                "tgid": int(m.group("tgid")) if m.group("tgid") else None,
                "comm": m.group("comm"),
                "flags": m.group("flags"),
            }
            spec = specs.get(ev)
            if spec is not None and (fm := spec[0].match(m.group("rest"))):
                for col, value in fm.groupdict().items():
                    conv = spec[1][col]
                    if conv.kind in ("hex", "ptr"):
                        try:
                            row[col] = int(value.removeprefix("0x"), 16)
                        except ValueError:
                            row[col] = None
                    elif conv.kind == "int":
                        row[col] = int(value)
                    elif conv.kind == "bool":
                        row[col] = value == conv.choices[0][0]
                    else:
                        row[col] = value.rstrip()
            else:
                row["fields"] = m.group("rest")
                ev = ev if spec is None else "other_events"
            cols = tables.setdefault(ev, {})
            for k, v in row.items():
                cols.setdefault(k, []).append(v)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for ev, cols in tables.items():
        n = max(len(v) for v in cols.values())
        schema = registry.get(ev).arrow_schema() if registry.get(ev) else None
        data = {
            k: pa.array(
                v + [None] * (n - len(v)),
                type=schema.field(k).type if schema and k in schema.names else None,
            )
            for k, v in cols.items()
        }
        pq.write_table(pa.table(data), out / f"{ev}.parquet", compression="zstd")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
