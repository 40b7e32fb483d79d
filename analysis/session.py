"""A SQL session over a dataset: DuckDB or Spark SQL behind one small protocol.

A session has the dataset's views (one per table, plus ``events``); :meth:`SqlSession.run`
runs one statement and returns its rows, or None for a statement that returns none a user
wants to see (DDL, ``SET``...). An error of the engine becomes one :class:`SqlError` line,
and for an unknown table it names the closest views.

>>> from rmapscope.analysis.session import split_statements
>>> split_statements("SELECT ';' AS a; -- x;\\nSELECT 2")
["SELECT ';' AS a", ' -- x;\\nSELECT 2']
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import duckdb
import polars as pl

from rmapscope.dataset import Dataset
from rmapscope.errors import SqlError, UsageError

from . import connect
from .queries import run_canned

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DuckDBSession",
    "SparkSqlSession",
    "SqlSession",
    "closest_tables",
    "returns_rows",
    "split_statements",
]


class SqlSession(Protocol):
    """What ``rmapscope sql`` and ``rmapscope query`` need of an engine."""

    def split(self, script: str) -> list[str]:
        """The statements of a script, in order (none empty)."""
        ...

    def run(self, statement: str) -> pl.DataFrame | None:
        """Run one statement: its rows, or None when it returns none worth showing."""
        ...

    def tables(self) -> pl.DataFrame:
        """The views of the session, one row each."""
        ...

    def schema(self, table: str) -> pl.DataFrame:
        """The columns of one view (name and type)."""
        ...

    def canned(self, name: str, params: dict[str, str] | None = None) -> pl.DataFrame:
        """The rows of a named query (:data:`rmapscope.analysis.QUERIES`)."""
        ...

    def explain_error(self, error: Exception) -> str:
        """The engine's message on one line; for an unknown table, the closest views."""
        ...


def split_statements(script: str) -> list[str]:
    r"""Statements of a SQL script, split at ``;`` outside quotes and comments.

    >>> split_statements("SELECT 1;; SELECT 2")
    ['SELECT 1', ' SELECT 2']
    """
    token = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|--[^\n]*|/\*.*?\*/|;", re.S)
    out, start = [], 0
    for m in token.finditer(script):
        if m.group() == ";":
            out.append(script[start : m.start()])
            start = m.end()
    out.append(script[start:])
    return [s for s in out if s.strip()]


#: DuckDB statement types whose result is no rows a user wants to see.
_NO_ROWS = frozenset(
    {
        "CREATE",
        "INSERT",
        "UPDATE",
        "DELETE",
        "DROP",
        "ALTER",
        "SET",
        "VARIABLE_SET",
        "COPY",
        "ATTACH",
        "DETACH",
        "TRANSACTION",
        "LOAD",
        "EXPORT",
        "PREPARE",
    }
)


def returns_rows(statement: str) -> bool:
    """Whether a statement is a query whose rows the user wants to see (not DDL/DML).

    >>> returns_rows("SELECT 1"), returns_rows("CREATE VIEW v AS SELECT 1")
    (True, False)
    """
    return all(s.type.name not in _NO_ROWS for s in duckdb.extract_statements(statement))


def closest_tables(text: str, missing: str, views: list[str], drop: str) -> str:
    """``text`` without the engine's own suggestion (the regex ``drop``), plus the views
    closest to the ``missing`` one.

    >>> closest_tables("no table migratoins.", "migratoins", ["migrations", "traces"], r"$^")
    'no table migratoins. Closest tables: migrations.'
    """
    close = difflib.get_close_matches(missing, views, n=3, cutoff=0.4)
    text = re.sub(drop, "", text)
    return text + (f" Closest tables: {', '.join(close)}." if close else " See `.tables`.")


class DuckDBSession:
    """A session on an in-process DuckDB connection (:func:`rmapscope.analysis.connect`)."""

    def __init__(self, dataset: Dataset) -> None:
        self.con = connect(dataset)

    def split(self, script: str) -> list[str]:
        """The statements of ``script`` as DuckDB's parser splits it."""
        try:
            return [s.query for s in duckdb.extract_statements(script) if s.query.strip()]
        except duckdb.Error as e:
            raise SqlError(" ".join(str(e).split())) from None

    def run(self, statement: str) -> pl.DataFrame | None:
        """Run ``statement``; its rows, or None for DDL/DML."""
        with self._errors():
            rel = self.con.sql(statement)
            if rel is None or not returns_rows(statement):
                return None
            return rel.pl()

    def tables(self) -> pl.DataFrame:
        """The dataset's views (column ``name``)."""
        with self._errors():
            return self.con.sql(
                "SELECT view_name AS name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
            ).pl()

    def schema(self, table: str) -> pl.DataFrame:
        """``DESCRIBE table``."""
        with self._errors():
            return self.con.sql(f"DESCRIBE {table}").pl()

    def canned(self, name: str, params: dict[str, str] | None = None) -> pl.DataFrame:
        """Run a canned query."""
        with self._errors():
            return run_canned(self.con, name, params).pl()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """DuckDB's errors as :class:`SqlError`."""
        try:
            yield
        except duckdb.Error as e:
            raise SqlError(self.explain_error(e)) from None

    def explain_error(self, error: Exception) -> str:
        """DuckDB's message on one line; for an unknown table, the closest views."""
        text = " ".join(str(error).split())
        m = re.search(r"Table with name (\S+) does not exist", text)
        if not m:
            return text
        views = [
            r[0]
            for r in self.con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        return closest_tables(text, m.group(1), views, r" ?Did you mean .*?\?")


class SparkSqlSession:
    """A session on Spark SQL: the dataset's views as Spark temporary views."""

    def __init__(self, spark: SparkSession, dataset: Dataset) -> None:
        from .spark import register_views

        self.spark = spark
        dataset.require()
        register_views(spark, dataset)

    def split(self, script: str) -> list[str]:
        """The statements of ``script``, split at ``;`` outside quotes and comments."""
        return split_statements(script)

    def run(self, statement: str) -> pl.DataFrame | None:
        """Run ``statement``; its rows, or None when it has no columns (DDL and the like)."""
        with self._errors():
            df = self.spark.sql(statement)
            if not df.columns:
                return None
            # through DuckDB, so that the rows print with the types the local engine gives
            return duckdb.from_arrow(df.toArrow()).pl()

    def tables(self) -> pl.DataFrame:
        """``SHOW VIEWS``."""
        return self._frame("SHOW VIEWS")

    def schema(self, table: str) -> pl.DataFrame:
        """``DESCRIBE table``."""
        return self._frame(f"DESCRIBE {table}")

    def _frame(self, statement: str) -> pl.DataFrame:
        rows = self.run(statement)
        return pl.DataFrame() if rows is None else rows

    def canned(self, name: str, params: dict[str, str] | None = None) -> pl.DataFrame:
        """Run a canned query in Spark's dialect."""
        from .spark import run_canned as run_on_spark

        with self._errors():
            return duckdb.from_arrow(run_on_spark(self.spark, name, params)).pl()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Spark's errors as :class:`SqlError` (and a bad value as :class:`UsageError`)."""
        try:
            yield
        except ValueError as e:
            raise UsageError(str(e)) from None
        except Exception as e:
            from pyspark.errors import PySparkException

            if not isinstance(e, PySparkException):
                raise
            raise SqlError(self.explain_error(e)) from None

    def explain_error(self, error: Exception) -> str:
        """Spark's message on one line; for an unknown table, the closest views."""
        text = " ".join(str(error).split("\n")[0].split())
        m = re.search(r"table or view `?([^` ]+?)`? cannot be found", text)
        if not m:
            return text
        views = [r.viewName for r in self.spark.sql("SHOW VIEWS").collect()]
        return closest_tables(text, m.group(1), views, r" Verify the spelling.*")
