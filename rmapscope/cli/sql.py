"""``rmapscope sql``: SQL over the dataset, a query, a script or an interactive prompt."""

from __future__ import annotations

import atexit
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rmapscope.analysis._output import write_result
from rmapscope.dataset import Dataset
from rmapscope.errors import RmapscopeError, UsageError

from ._console import out
from ._errors import cli_message, handles_errors, print_error
from ._options import (
    ConfOpt,
    DatasetOpt,
    EngineOpt,
    MasterOpt,
    ResultFormatOpt,
    ResultOutputOpt,
    check_result_options,
    start_engine,
)
from ._settings import settings

if TYPE_CHECKING:
    from rmapscope.analysis.session import SqlSession

HISTORY = Path.home() / ".rmapscope_history"


def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None, typer.Argument(help="SQL to run; none: an interactive prompt.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Run the queries in FILE.")
    ] = None,
    fmt: ResultFormatOpt = "table",
    output: ResultOutputOpt = None,
    dataset: DatasetOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Run SQL over the dataset (DuckDB, or Spark SQL with --engine spark): every table is
    a view, plus `events`.

    Views: one per event (set_migration_pte, mm_migrate_pages, ...), other_events, traces,
    gaps, ingest_errors, and after `rmapscope replay` migrations, migration_batches,
    page_states, fork_windows, violations. `events` has one row per event of every table
    with the common columns. Without a query, an interactive prompt (`.tables`,
    `.schema NAME`, statements end with `;`, Ctrl-D to leave).
    """
    check_result_options(fmt, output)
    s = settings(ctx)
    session = start_engine(engine, master, conf, s).sql(Dataset(dataset))
    if file is not None:
        try:
            script = file.read_text()
        except OSError as e:
            raise UsageError(f"{file}: {e.strerror}") from None
        statements = session.split(script)
    elif query is not None:
        statements = [query]
    else:
        _prompt(session)
        return
    for i, statement in enumerate(statements):
        rows = session.run(statement)
        if rows is not None:
            write_result(rows, fmt, output if i == len(statements) - 1 else None)


def _prompt(session: SqlSession) -> None:
    """A small interactive SQL prompt with history and multi-line statements."""
    with contextlib.suppress(ImportError):
        import readline

        with contextlib.suppress(OSError):
            readline.read_history_file(HISTORY)

        def save_history() -> None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY)

        atexit.register(save_history)
    out.print("rmapscope sql: statements end with ';', .tables, .schema NAME, Ctrl-D to leave")
    buf: list[str] = []
    while True:
        try:
            line = input("...> " if buf else "sql> ")
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            buf = []
            continue
        stripped = line.strip()
        try:
            if not buf and stripped.startswith("."):
                cmd, _, arg = stripped.partition(" ")
                if cmd in (".quit", ".exit"):
                    return
                if cmd == ".tables":
                    write_result(session.tables(), "table", None)
                elif cmd == ".schema" and arg:
                    write_result(session.schema(arg.rstrip(";")), "table", None)
                else:
                    print_error("dot commands: .tables, .schema NAME, .quit")
                continue
            buf.append(line)
            if stripped.endswith(";"):
                statement, buf = "\n".join(buf), []
                rows = session.run(statement)
                if rows is not None:
                    write_result(rows, "table", None)
        except RmapscopeError as e:
            print_error(cli_message(e))  # one line, and the prompt goes on (even with --debug)


def register(app: typer.Typer) -> None:
    """Add ``sql`` to ``app``."""
    app.command("sql")(handles_errors(sql))
