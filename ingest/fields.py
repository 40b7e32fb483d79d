"""Stage 3: parse fields. Turn an event's printed payload into typed columns.

The regex comes from the event's print fmt (:mod:`rmapscope._printfmt`); rows it does not
match (a kernel that prints the event differently, e.g. without ``group_dead=`` or with a
decimal ``pfn=``) fall back to ``key=value`` tokens. Everything is vectorised per event.
The common case, a print fmt of space-separated ``key=%v`` tokens, is parsed by the compiled
core (``rmapscope._native.TokenPlan``, native/core/src/text/fields.rs, GIL released), the
regex of an event without a token plan too (``RegexPlan``), and so are the numbers behind
printed labels (``LabelTable``); the regex retry of rows a token plan leaves and the
``key=value`` fallback are polars expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from rmapscope import _native
from rmapscope._printfmt import Conversion
from rmapscope.schema import DECODED, EventSchema, arrow_schema, column_for, raw_column

from . import pte as ptemod
from ._columns import (
    array,
    bools,
    polars_schema,
    string_buffers,
    table,
    to_arrow,
    to_polars,
    to_series,
)


@dataclass
class _Spec:
    regex: str
    convs: list[tuple[str, Conversion, bool]]  # (column, conversion, bare hex)
    keys: dict[str, tuple[str, Conversion, bool]]
    arrow: pa.Schema  # the event's field columns
    tokens: list[tuple[str, str | None, str]] | None = None  # (prefix, column, suffix)
    plan: _native.TokenPlan | None = None  # the compiled ``tokens``
    #: the compiled ``regex`` and conversions (events without a plan; None: no fields, or a
    #: regex the core does not take)
    rx: _native.RegexPlan | None = None
    labels: dict[str, _native.LabelTable] = field(default_factory=dict)  # column -> table


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
    plan: list[tuple[str, str | None, str]] = []
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


def _convert(conv: Conversion, c: pl.Expr, bare: bool, guess_radix: bool) -> pl.Expr:
    """Convert printed text to the conversion's type.

    ``guess_radix``: text from ``key=value`` of another kernel: 0x-prefixed is hex, bare
    digits are hex only where this kernel prints bare hex (``addr=%lx``).
    """
    if conv.kind in ("hex", "ptr"):
        v = c.str.strip_prefix("0x").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        if guess_radix:
            dec = c.str.to_integer(base=10, dtype=pl.UInt64, strict=False)
            v = pl.when(c.str.starts_with("0x") | pl.lit(bare)).then(v).otherwise(dec)
        return v
    if conv.kind == "int":
        return c.str.strip_chars(" ").str.to_integer(strict=False)
    if conv.kind == "bool":
        true_text = next(t for t, v in conv.choices if v)
        return pl.when(c.is_in([t for t, _ in conv.choices])).then(c == true_text)
    return c.str.strip_chars_end(" ")


def _to_int64(values: list[int]) -> list[int]:
    """Table values (unsigned 64-bit, or negative) as int64 two's complement."""
    return [v - (1 << 64) if v >= 1 << 63 else v for v in values]


def _label_table(conv: Conversion) -> _native.LabelTable:
    """The compiled inverse of a ``__print_symbolic`` / ``__print_flags`` conversion: a
    label to the integer it stands for (``<field>_raw``). ``R+`` of ``prev_state`` is 0 | the
    ``+`` bit, ``GFP_KERNEL|__GFP_ZERO`` the OR of their values, a leftover ``0x..`` its
    number, the ``cond ? ... : "none"`` text 0; null where a name is not in the table."""
    first: dict[str, int] = {}
    for v, name in conv.table:
        first.setdefault(name, v)
    values = _to_int64(list(first.values()))
    delim = conv.delim if conv.kind == "flags" and conv.delim else None
    return _native.LabelTable(list(zip(first, values, strict=True)), delim, conv.other, conv.suffix)


def _bool_raw(conv: Conversion, label: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The integer behind a ``cond ? "a" : "b"`` label: 0 for the false text; the true text
    (``handled``) says only "not 0": null."""
    false = next((t for t, v in conv.choices if not v), None)
    same = pc.equal(label.cast(pa.string()), pa.scalar(false, pa.string()))
    return pc.if_else(same, pa.scalar(0, pa.int64()), pa.scalar(None, pa.int64()))


_PLAN_KINDS = {"int": "int", "hex": "hex", "ptr": "hex", "bool": "bool"}


def _compiled_plan(
    tokens: list[tuple[str, str | None, str]],
    convs: list[tuple[str, Conversion, bool]],
    padded: bool,
) -> _native.TokenPlan:
    """The token plan for the compiled core: each value token's conversion (int, hex, bool
    with its choices and true text, or a label)."""
    by_col = {col: conv for col, conv, _ in convs}
    spec = []
    for prefix, col, suffix in tokens:
        spec.append((prefix, None if col is None else _how(by_col[col]), suffix))
    return _native.TokenPlan(spec, padded)


def _how(conv: Conversion) -> tuple[str, list[str], str]:
    """A conversion as the compiled core takes it: (int, hex, bool or label; the bool
    choices; the true text)."""
    choices = [t for t, _ in conv.choices] if conv.kind == "bool" else []
    truth = next(t for t, v in conv.choices if v) if conv.kind == "bool" else ""
    return _PLAN_KINDS.get(conv.kind, "label"), choices, truth


def _compiled_regex(
    regex: str, convs: list[tuple[str, Conversion, bool]]
) -> _native.RegexPlan | None:
    """The print fmt's regex with each field's conversion (:func:`_convert` without
    ``guess_radix``: 0x-optional hex, trimmed decimals, bool choices, text less its trailing
    spaces), for the compiled core."""
    try:
        return _native.RegexPlan(regex, [(col, _how(conv)) for col, conv, _ in convs])
    except ValueError:  # a field without its group: the rows go through polars
        return None


def syscall_arg_names(rest: pl.Series) -> list[str]:
    """The argument names a syscall enter event's payload prints (``start: 0x1, len: 2``),
    from its first row; none for an exit (``0x0``)."""
    first = rest.drop_nulls().head(1).to_list()
    return re.findall(r"(?:^|, )(\w+): ", first[0]) if first else []


def _syscall_value(text: pl.Expr) -> pl.Expr:
    """A syscall argument as the kernel prints it (``%lu`` below 10, else ``0x%lx``; trace-cmd
    always ``0x%08lx``) to its 64-bit pattern as UInt64."""
    hexa = text.str.strip_prefix("0x").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    dec = text.str.to_integer(base=10, dtype=pl.UInt64, strict=False)
    return pl.when(text.str.starts_with("0x")).then(hexa).otherwise(dec)


def _syscall_args(spec: _Spec, exit_: bool, rest: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
    """Typed columns of a syscall event: an exit's payload is its ``ret``, an enter's is
    ``name: value`` pairs named after the format's fields. Values are the 64-bit patterns
    the kernel printed; a signed 64-bit field takes the two's complement (``0xff..ea`` is -22).
    ``__syscall_nr`` is not printed in text and stays null."""
    text = pl.col("rest").str.strip_chars()
    exprs = [pl.lit(None, pl.Int32).alias("__syscall_nr")]
    checks = [] if exit_ else [text.str.contains(r"^$|^\w+: ")]
    for col, dtype in polars_schema(spec.arrow).items():
        if col == "__syscall_nr" or (exit_ and col != "ret"):
            continue
        key = re.escape(col.removeprefix("field_"))
        raw = text if exit_ else text.str.extract(rf"(?:^|, ){key}: ([^,\s]+)(?:,|$)", 1)
        v = _syscall_value(raw)
        if dtype == pl.Int64:
            v = v.reinterpret(signed=True)
        exprs.append(v.alias(col))
        checks.append(v.is_not_null())
    out = pl.DataFrame({"rest": rest}).select(
        *exprs, pl.all_horizontal(checks).fill_null(False).alias("_ok")
    )
    return out.drop("_ok"), out.get_column("_ok")


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
            tokens = _token_plan(pf, [c[0] for c in convs]) if pf else None
            padded = pf is not None and any(
                any(ch.isdigit() for ch in c.spec) for c in pf.conversions
            )
            regex = pf.regex(column_for) if pf else r"^(?P<_all>.*)$"
            spec = _Spec(
                regex=regex,
                convs=convs,
                keys=keys,
                arrow=arrow_schema(schema.columns()),
                tokens=tokens,
                plan=_compiled_plan(tokens, convs, padded) if tokens else None,
                rx=_compiled_regex(regex, convs) if convs and not tokens else None,
                labels={
                    col: _label_table(conv)
                    for col, conv, _ in convs
                    if conv.kind in ("symbolic", "flags") and not conv.derived
                },
            )
            self._specs[id(schema)] = spec
        return spec

    def parse(self, schema: EventSchema, rest: pa.Array) -> tuple[pa.Table, np.ndarray]:
        """Typed columns for ``rest`` (the payload text), and a mask of rows that parsed.

        Rows are cut by tokens where the print fmt allows, else (or when that fails) by its
        regex, else by ``key=value``; rows that match none of these are unparsed.
        """
        spec = self._spec(schema)
        n = len(rest)
        ok: np.ndarray
        if schema.is_syscall:
            out, by_args = _syscall_args(spec, schema.name.startswith("sys_exit_"), to_series(rest))
            return self._complete(schema, spec, to_arrow(out), n), by_args.to_numpy()
        if spec.plan is not None:
            data, ok = self._split_tokens(spec, spec.plan, rest)
            if not ok.all():
                data, ok = self._retry(data, ok, rest, lambda r: self._regex(spec, r))
        elif spec.rx is not None:
            cols, parsed = spec.rx.parse(*string_buffers(rest))
            data, ok = (
                table(dict(zip([c for c, _, _ in spec.convs], cols, strict=True))),
                bools(parsed),
            )
        else:
            out, by_regex = self._regex(spec, to_series(rest))
            data, ok = to_arrow(out), by_regex.to_numpy()
        if not ok.all():
            data, ok = self._retry(data, ok, rest, lambda r: self._key_values(spec, r))
        return self._complete(schema, spec, data, n), ok

    @staticmethod
    def _retry(data: pa.Table, ok: np.ndarray, rest: pa.Array, parse) -> tuple:
        """Parse the rows not ``ok`` again with ``parse`` (polars) and merge what it gets."""
        bad = np.flatnonzero(~ok)
        redo, redo_ok = parse(to_series(rest).gather(bad))
        redo = redo.filter(redo_ok).with_columns(
            pl.Series("_i", bad, dtype=pl.UInt32).filter(redo_ok)
        )
        out = to_polars(data) if data.num_columns else pl.DataFrame({"_": [None] * len(ok)})
        out = out.with_row_index("_i").update(redo, on="_i").drop("_i")
        fixed = ok.copy()
        fixed[bad] = redo_ok.to_numpy()
        return to_arrow(out.drop("_", strict=False)), fixed

    def _regex(self, spec: _Spec, rest: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        raw = pl.DataFrame({"rest": rest}).select(pl.col("rest").str.extract_groups(spec.regex))
        raw = raw.unnest("rest")
        if not spec.convs:
            return raw, pl.Series([True] * len(rest))
        ok = raw.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
        out = raw.select(
            _convert(conv, pl.col(col), bare, guess_radix=False) for col, conv, bare in spec.convs
        )
        return out, ok

    def _split_tokens(
        self, spec: _Spec, plan: _native.TokenPlan, rest: pa.Array
    ) -> tuple[pa.Table, np.ndarray]:
        """Cut the payloads at spaces by the token plan and convert them (compiled core)."""
        cols, ok = plan.split(*string_buffers(rest))
        names = [col for _, col, _ in spec.tokens or () if col is not None]
        return table(dict(zip(names, cols, strict=True))), bools(ok)

    def _key_values(self, spec: _Spec, rest: pl.Series) -> tuple[pl.DataFrame, pl.Series]:
        """``key=value`` tokens (text of a kernel that prints the event differently)."""
        cols = {}
        for key, (col, _, _) in spec.keys.items():
            rx = rf"(?:^|[\s,(]){re.escape(key)}[=\s](\S+?)[,)]?(?:\s|$)"
            cols[col] = rest.str.extract(rx, 1)
        if not cols:
            return pl.DataFrame({"_": [None] * len(rest)}), pl.Series([False] * len(rest))
        kv = pl.DataFrame(cols)
        ok = kv.select(pl.any_horizontal(pl.all().is_not_null())).to_series()
        out = kv.select(
            _convert(conv, pl.col(col), bare, guess_radix=True)
            for col, conv, bare in spec.convs
            if col in cols
        )
        return out, ok

    def _complete(self, schema: EventSchema, spec: _Spec, out: pa.Table, n: int) -> pa.Table:
        """Cast to the schema's types, add decoded pte columns, the numbers behind labels
        (``<field>_raw``), and missing columns."""
        cols: dict[str, pa.Array | pa.ChunkedArray] = {
            name: out.column(name) for name in out.column_names
        }
        for col, conv, _ in spec.convs:
            name = raw_column(conv.column)
            if conv.derived or col not in cols or name not in spec.arrow.names:
                continue
            if conv.kind == "bool":
                cols[name] = _bool_raw(conv, cols[col])
            elif col in spec.labels:
                cols[name] = array(spec.labels[col].values(*string_buffers(cols[col])))
        for name, values in self._decode(schema.name, _ptes(cols)).items():
            cols[name] = pl.Series(name, values).to_arrow()
        arrays = []
        for f in spec.arrow:
            got = cols.get(f.name)
            arrays.append(pa.nulls(n, f.type) if got is None else _cast(got, f.type))
        return pa.Table.from_arrays(arrays, schema=spec.arrow)

    def _decode(self, event: str, out: pl.DataFrame) -> dict[str, np.ndarray | pl.Series]:
        if event not in DECODED or self.arch not in ptemod.ARCHES:
            return {}  # no layout known for this arch: the decoded columns stay null
        col = "pte" if event.endswith("_pte") else "pmd"
        if col not in out.columns or out.height == 0:
            return {}
        series = out.get_column(col)
        values = series.fill_null(0).to_numpy().astype(np.uint64)
        if event.startswith("set_"):
            dec = ptemod.decode_swap_entry(values, self.arch)
        else:
            dec = ptemod.decode_present(values, self.arch, huge=event.endswith("_pmd"))
        if not series.null_count():
            return dict(dec)
        nulls = series.is_null()
        result: dict[str, np.ndarray | pl.Series] = {}
        for k, v in dec.items():
            s = pl.Series(k, v)
            result[k] = s.zip_with(~nulls, pl.repeat(None, len(s), dtype=s.dtype, eager=True))
        return result


def _ptes(cols: dict[str, pa.Array | pa.ChunkedArray]) -> pl.DataFrame:
    """The pte/pmd columns of ``cols`` for :meth:`FieldParser._decode`."""
    return pl.DataFrame([to_series(cols[k]).alias(k) for k in ("pte", "pmd") if k in cols])


def _cast(values: pa.Array | pa.ChunkedArray, to: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """``values`` as type ``to``; a value that does not fit becomes null (as polars' cast with
    ``strict=False`` has it), through polars only when one does not."""
    if values.type == to:
        return values
    try:
        return values.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        dtype = polars_schema(pa.schema([pa.field("v", to)]))["v"]
        return to_series(values).cast(dtype, strict=False).to_arrow().cast(to)
