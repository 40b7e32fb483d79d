"""The named-query model: a query's name, SQL and parameters, how values bind, how it reads.

A leaf module: the canned queries (:mod:`rmapscope.analysis.queries`) and the report's
chart queries (:mod:`rmapscope.analysis.charts`) are both built from it.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field

from rmapscope.errors import UsageError


@dataclass(frozen=True)
class CannedQuery:
    """A named query: what it answers, its SQL, its parameters and the tables it needs."""

    name: str
    description: str
    sql: str
    params: dict[str, object] = field(default_factory=dict)
    needs: tuple[str, ...] = ()


def trace_filter(column: str = "trace") -> str:
    """The condition every named query scopes by: ``$trace`` is NULL (every trace), one
    trace id, or several separated by commas (DuckDB and Spark SQL read it alike).

    >>> trace_filter("m.trace")
    "($trace IS NULL OR array_contains(split($trace, ','), m.trace))"
    """
    return f"($trace IS NULL OR array_contains(split($trace, ','), {column}))"


def dedent(text: str) -> str:
    r"""SQL written indented in Python, as it should read: the lines after the first lose
    their common indent, the first line its own, and blank ends go.

    >>> dedent("SELECT 1\n             AS x\n      FROM t\n")
    'SELECT 1\n       AS x\nFROM t'
    """
    first, *rest = text.strip("\n").splitlines()
    lines = [first.strip(), *textwrap.dedent("\n".join(rest)).splitlines()]
    return "\n".join(ln.rstrip() for ln in lines)


def bind_params(q: CannedQuery, params: Mapping[str, object] | None) -> dict[str, object]:
    """The query's defaults updated with ``params`` (strings, converted to the default's type)."""
    name = q.name
    values = dict(q.params)
    for k, v in (params or {}).items():
        if k not in q.params:
            raise UsageError(
                f"query {name} has no parameter {k!r} (it takes {', '.join(q.params)})"
            )
        default = q.params[k]
        try:
            values[k] = int(str(v)) if isinstance(default, int) and not isinstance(v, int) else v
        except ValueError:
            raise UsageError(f"parameter {k} of {name} must be an integer, not {v!r}") from None
    return values


def sql_literal(value: object) -> str:
    """``value`` (None, an int or a string) as a SQL literal.

    >>> [sql_literal(v) for v in (None, 42, "it's")]
    ['NULL', '42', "'it''s'"]
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


_PARAM = re.compile(r"\$(\w+)")


def bound_sql(q: CannedQuery, values: dict[str, object]) -> str:
    """``q``'s SQL with every ``$name`` replaced by the literal of its bound value: the
    text runs as is in ``rmapscope sql`` and gives what the query gives with ``values``.

    >>> q = CannedQuery("x", "", "SELECT $a, $b", {"a": None, "b": 1})
    >>> bound_sql(q, bind_params(q, {"b": "2"}))
    'SELECT NULL, 2'
    """
    return _PARAM.sub(lambda m: sql_literal(values[m.group(1)]), q.sql)


def invocation(q: CannedQuery, values: dict[str, object]) -> str:
    """The ``rmapscope query`` command line that runs ``q`` with ``values``.

    >>> q = CannedQuery("x", "", "SELECT $trace, $n", {"trace": None, "n": 5})
    >>> invocation(q, {"trace": "ab12", "n": 5})
    'rmapscope query x -p trace=ab12'
    """
    given = [f" -p {k}={v}" for k, v in values.items() if v is not None and v != q.params.get(k)]
    return f"rmapscope query {q.name}" + "".join(given)
