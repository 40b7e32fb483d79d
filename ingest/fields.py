"""Stage 3: parse fields. Turn an event's printed payload into typed columns.

The regex comes from the event's print fmt (:mod:`rmapscope._printfmt`); rows it does not
match (a kernel that prints the event differently, e.g. without ``group_dead=`` or with a
decimal ``pfn=``) fall back to ``key=value`` tokens. Everything is vectorised per event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from rmapscope._printfmt import Conversion
from rmapscope.schema import DECODED, EventSchema, column_for

from . import pte as ptemod


def _pl_type(t: pa.DataType) -> pl.DataType:
    return pl.from_arrow(pa.array([], type=t)).dtype


@dataclass
class _Spec:
    regex: str
    convs: list[tuple[str, Conversion, bool]]  # (column, conversion, bare hex)
    keys: dict[str, tuple[str, Conversion, bool]]
    schema: list[tuple[str, pl.DataType]]
    tokens: list[tuple[str, str | None, str]] | None = None  # (prefix, column, suffix)
    padded: bool = False  # the fmt pads a value (``%-8s``): squeeze runs of spaces first


_TOKEN_KINDS = ("int", "hex", "ptr", "symbolic", "flags", "bool")


def _token_plan(pf, columns: list[str]) -> list[tuple[str, str | None, str]] | None:
    """Split a print fmt into space-separated ``prefix%vsuffix`` tokens, if it allows.

    Payloads of such events are cut with one literal split instead of a regex. Formats with
    free strings (which may hold spaces) or two values in one token have no plan and
    always use the regex.
    """
    marks = []
    for i, conv in enumerate(pf.conversions):
        if conv.kind not in _TOKEN_KINDS or any(" " in t for t, _ in conv.choices):
            return None
        if conv.kind == "bool" and any(not t for t, _ in conv.choices):
            return None
        marks.append(f"\x00{i}\x00")
    template = "".join(
        lit + (marks[i] if i < len(marks) else "") for i, lit in enumerate(pf.literals)
    )
    if "  " in template or template != template.strip():
        return None
    plan = []
    for tok in template.split(" "):
        found = re.findall("\x00(\\d+)\x00", tok)
        if len(found) > 1:
            return None
        if not found:
            plan.append((tok, None, ""))
            continue
        prefix, suffix = tok.split(f"\x00{found[0]}\x00")
        plan.append((prefix, columns[int(found[0])], suffix))
    return plan


class FieldParser:
    """Parses payload text of typed events; one per trace (holds the arch for pte decoding)."""

    def __init__(self, arch: str) -> None:
        self.arch = arch
        self._specs: dict[int, _Spec] = {}

    def _spec(self, schema: EventSchema) -> _Spec:
        spec = self._specs.get(id(schema))
        if spec is None:
            pf = schema.print_fmt
            convs: list[tuple[str, Conversion, bool]] = []
            keys = {}
            if pf is not None:
                for i, conv in enumerate(pf.conversions):
                    bare = conv.kind == "hex" and not pf.literals[i].endswith("0x")
                    convs.append((column_for(conv.column), conv, bare))
                for key, col in pf.keys(column_for).items():
                    keys[key] = next(c for c in convs if c[0] == col)
            spec = _Spec(
                regex=pf.regex(column_for) if pf else r"^(?P<_all>.*)$",
                convs=convs,
                keys=keys,
                schema=[(n, _pl_type(t)) for n, t in schema.columns()],
                tokens=_token_plan(pf, [c[0] for c in convs]) if pf else None,
                padded=pf is not None
                and any(any(ch.isdigit() for ch in c.spec) for c in pf.conversions),
            )
            self._specs[id(schema)] = spec
        return spec

    def parse(self, schema: EventSchema, rest: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        """Typed columns for ``rest`` (the payload text), and a mask of rows that parsed.

        Rows that match neither the print fmt nor any ``key=value`` of it are unparsed.
        """
        spec = self._spec(schema)
        if spec.tokens is not None:
            raw, ok = self._split_tokens(spec, rest)
            if not ok.all():
                bad = (~ok).arg_true()
                redo, redo_ok = self._regex(spec, rest.gather(bad))
                raw = (
                    raw.with_row_index("_i")
                    .update(redo.with_columns(pl.Series("_i", bad, dtype=pl.UInt32)), on="_i")
                    .drop("_i")
                )
                ok = ok.scatter(bad, redo_ok)
        else:
            raw, ok = self._regex(spec, rest)
        out = raw.select(self._convert_exprs(spec, bare_from_regex=True))
        if not ok.all():
            bad = (~ok).arg_true()
            kv = self._key_values(spec, rest.gather(bad))
            kv_ok = kv.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
            out = (
                out.with_row_index("_i")
                .update(kv.with_columns(pl.Series("_i", bad, dtype=pl.UInt32)), on="_i")
                .drop("_i")
            )
            ok = ok.scatter(bad, kv_ok)
        out = self._complete(schema, spec, out)
        return out, ok

    def _regex(self, spec: _Spec, rest: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        raw = pl.DataFrame({"rest": rest}).select(pl.col("rest").str.extract_groups(spec.regex))
        raw = raw.unnest("rest")
        if spec.convs:
            return raw, raw.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
        return raw, pl.Series([True] * len(rest))

    def _split_tokens(self, spec: _Spec, rest: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        tokens = spec.tokens
        text = pl.col("rest").str.replace_all(" +", " ") if spec.padded else pl.col("rest")
        parts = (
            pl.DataFrame({"rest": rest}).select(text.str.splitn(" ", len(tokens))).unnest("rest")
        )
        values, checks = [], []
        for i, (prefix, col, suffix) in enumerate(tokens):
            f = pl.col(f"field_{i}")
            if col is None:
                checks.append(f == prefix)
                continue
            v = f
            if prefix:
                checks.append(f.str.starts_with(prefix))
                v = v.str.slice(len(prefix))
            if suffix:
                checks.append(f.str.ends_with(suffix))
                v = v.str.strip_suffix(suffix)
            if i == len(tokens) - 1:
                checks.append(~f.str.contains(" ", literal=True))
            values.append(v.alias(col))
        out = parts.select(*values, pl.all_horizontal(checks).fill_null(False).alias("_ok"))
        return out.drop("_ok"), out.get_column("_ok")

    def _convert_exprs(self, spec: _Spec, bare_from_regex: bool) -> list[pl.Expr]:
        exprs = []
        for col, conv, bare in spec.convs:
            c = pl.col(col)
            if conv.kind in ("hex", "ptr"):
                v = c.str.strip_prefix("0x").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
                if not bare_from_regex:
                    # key=value text of another kernel: 0x-prefixed is hex, bare digits are
                    # hex only where this kernel prints bare hex (``addr=%lx``).
                    dec = c.str.to_integer(base=10, dtype=pl.UInt64, strict=False)
                    v = pl.when(c.str.starts_with("0x") | pl.lit(bare)).then(v).otherwise(dec)
                exprs.append(v.alias(col))
            elif conv.kind == "int":
                exprs.append(c.str.strip_chars().str.to_integer(strict=False).alias(col))
            elif conv.kind == "bool":
                true_text = next(t for t, v in conv.choices if v)
                exprs.append((c == true_text).alias(col))
            else:
                exprs.append(c.str.strip_chars_end().alias(col))
        return exprs

    def _key_values(self, spec: _Spec, rest: pl.Series) -> pl.DataFrame:
        cols = {}
        for key, (col, _, _) in spec.keys.items():
            rx = rf"(?:^|[\s,(]){re.escape(key)}[=\s](\S+?)[,)]?(?:\s|$)"
            cols[col] = rest.str.extract(rx, 1)
        kv = pl.DataFrame(cols) if cols else pl.DataFrame({"_": [None] * len(rest)})
        sub = _Spec(spec.regex, [c for c in spec.convs if c[0] in cols], spec.keys, spec.schema)
        return kv.select(self._convert_exprs(sub, bare_from_regex=False)) if cols else kv

    def _complete(self, schema: EventSchema, spec: _Spec, out: pl.DataFrame) -> pl.DataFrame:
        """Cast to the schema's types, add decoded pte columns, add missing columns."""
        decoded = self._decode(schema.name, out)
        exprs = []
        for name, dtype in spec.schema:
            if name in decoded:
                exprs.append(pl.Series(name, decoded[name]).cast(dtype))
            elif name in out.columns:
                exprs.append(pl.col(name).cast(dtype, strict=False))
            else:
                exprs.append(pl.lit(None, dtype=dtype).alias(name))
        return out.select(exprs)

    def _decode(self, event: str, out: pl.DataFrame) -> dict[str, np.ndarray | pl.Series]:
        if event not in DECODED:
            return {}
        col = "pte" if event.endswith("_pte") else "pmd"
        if col not in out.columns or out.height == 0:
            return {}
        series = out.get_column(col)
        values = series.fill_null(0).to_numpy().astype(np.uint64)
        if event.startswith("set_"):
            dec = ptemod.decode_swap_entry(values, self.arch)
        else:
            dec = ptemod.decode_present(values, self.arch, huge=event.endswith("_pmd"))
        nulls = series.is_null()
        result: dict[str, np.ndarray | pl.Series] = {}
        for k, v in dec.items():
            s = pl.Series(k, v)
            result[k] = s.zip_with(~nulls, pl.Series(k, [None] * len(s), dtype=s.dtype))
        return result
