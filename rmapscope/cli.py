"""The ``rmapscope`` command line: a thin layer over the library.

Exit codes: 0 success, 1 findings/other failure, 2 bad input or usage, 3 dataset problem,
130 interrupted.
"""

from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rmapscope import __version__
from rmapscope.dataset import ENV, Dataset
from rmapscope.errors import RmapscopeError, UsageError

app = typer.Typer(
    name="rmapscope",
    help="Ingest, replay and query Linux traces of fork, page migration and rmap walks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# No markup, emoji or wrapping: trace text (comms like "[kworker]", ":x:") prints as is, and
# every error stays on one line for scripts.
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
out = Console(
    highlight=False,
    markup=False,
    emoji=False,
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 200,
)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


_state = {"debug": False, "quiet": False}

DatasetOpt = Annotated[
    Path | None,
    typer.Option(
        "--dataset", "-d", help=f"Dataset directory [default: ${ENV} or ./rmapscope-data]."
    ),
]
#: How `sql` and `query` print their result, and where to.
ResultFormatOpt = Annotated[
    str, typer.Option("--format", help="table, csv, json, ndjson, parquet, markdown.")
]
ResultOutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write to FILE.")]
EngineOpt = Annotated[
    str,
    typer.Option(
        help="duckdb: run here, in this process (the default); spark: run on Apache Spark "
        "(pip install 'rmapscope[spark]', needs Java 17+).",
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        help="Spark master URL (local[4], spark://host:7077, yarn, ...) [default: the one "
        "spark-submit gives, else local[*]].",
        show_default=False,
    ),
]
ConfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--conf", help="Spark setting KEY=VALUE (repeatable), as spark-submit --conf.",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"rmapscope {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or summaries.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Ingest, replay and query Linux traces of fork, page migration and rmap walks."""
    _state["debug"] = debug
    _state["quiet"] = quiet


def sample_trace() -> Path:
    """The real trace shipped with rmapscope (used by ``rmapscope analyze`` with no file)."""
    return Path(str(resources.files("rmapscope.data") / "samples" / "forkstorm-slice.trace.txt.gz"))


def _progress_bar(name: str):
    """A rich progress callback for one input, or None when stderr is not a terminal."""
    if _state["quiet"] or not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = progress.add_task(Path(name).name[:40], total=None, rate="")
    start = time.monotonic()

    def update(done: int, total: int | None, events: int) -> None:
        elapsed = max(time.monotonic() - start, 1e-6)
        progress.update(task, completed=done, total=total, rate=f"{events / elapsed:,.0f} events/s")

    return progress, update


def _spark(engine: str, master: str | None, conf: list[str] | None):
    """The Spark session for ``--engine spark`` (None for the local engine)."""
    from rmapscope import spark

    if spark.check_engine(engine) != "spark":
        if master or conf:
            raise UsageError("--master and --conf only apply with --engine spark")
        return None
    return spark.session(master, spark.parse_conf(conf), verbose=_state["debug"])


def _ingest_one(path: str, dataset: Dataset, **kwargs):
    from rmapscope.ingest import ingest

    progress, update = _progress_bar(path)
    if progress is None:
        return ingest(path, dataset, **kwargs)
    with progress:
        return ingest(path, dataset, progress=update, **kwargs)


def _print_result(r) -> None:
    if _state["quiet"]:
        return
    if r.skipped:
        out.print(
            f"{r.source}: already in the dataset as trace {r.trace_id} (use --force to replace)"
        )
        return
    verb = "replaced" if r.replaced else "ingested"
    out.print(
        f"{r.source}: {verb} trace {r.trace_id} (host {r.host}, format {r.format}): "
        f"{r.events:,} events, {r.gaps} gaps ({r.lost_events:,} events lost)"
    )
    if r.errors.total:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.counts.items()))
        print(
            f"warning: {r.source}: {r.errors.total} lines not ingested ({reasons}); "
            f"see the ingest_errors table",
            file=sys.stderr,
        )


@app.command()
def ingest(
    files: Annotated[
        list[str], typer.Argument(help="Trace files (gzip/zstd/xz/bz2 detected), or - for stdin.")
    ],
    dataset: DatasetOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Host the traces were recorded on [default: unknown].")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Override format detection: tracefs, trace_pipe, tracefs_latency, "
            "tcreport, tcreport_latency, trace_dat, perf_script, perf_data, bpftrace.",
        ),
    ] = None,
    arch: Annotated[
        str,
        typer.Option(
            help="Architecture for pte decoding when the trace does not say: "
            "x86_64, x86_64-la57, arm64."
        ),
    ] = "x86_64",
    force: Annotated[
        bool, typer.Option(help="Replace a trace that is already in the dataset.")
    ] = False,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Ingest trace files into the dataset (one typed Parquet table per event).

    Re-ingesting the same content is a no-op. A file that is not a trace is reported
    as `error: FILE: why` and nothing of it is written; the other files still land.
    With --engine spark the files (globs are expanded) are ingested in parallel by the
    executors and published together in one commit at the end.
    """
    ds = Dataset(dataset)
    spark = _spark(engine, master, conf)
    if spark is not None:
        _ingest_spark(files, ds, spark, host=host, fmt=fmt, arch=arch, force=force)
        return
    failed = 0
    for path in files:
        try:
            _print_result(_ingest_one(path, ds, host=host, fmt=fmt, arch=arch, force=force))
        except RmapscopeError as e:
            if _state["debug"]:
                raise
            _error(str(e))
            failed = max(failed, e.exit_code)
    if failed:
        raise typer.Exit(failed)


def _ingest_spark(files: list[str], ds: Dataset, spark, **kwargs) -> None:
    from rmapscope.ingest.spark import FailedIngest, ingest_spark

    failed = 0
    for r in ingest_spark(files, ds, spark, **kwargs):
        if isinstance(r, FailedIngest):
            _error(r.error)
            failed = max(failed, r.exit_code)
        else:
            _print_result(r)
    if failed:
        raise typer.Exit(failed)


@app.command()
def traces(dataset: DatasetOpt = None) -> None:
    """List the traces in the dataset: id, host, format, kernel, time range, events, gaps."""
    ds = Dataset(dataset)
    ds.require()
    df = ds.traces()
    if df.is_empty():
        out.print("no traces")
        return
    from rich.table import Table

    table = Table(
        "trace",
        "host",
        "format",
        "kernel",
        "first ts (s)",
        "last ts (s)",
        "events",
        "gaps",
        "lost",
        "errors",
        "source",
    )
    for r in df.iter_rows(named=True):
        table.add_row(
            r["trace_id"],
            r["host"],
            r["format"],
            r["kernel"] or "-",
            _secs(r["ts_first"]),
            _secs(r["ts_last"]),
            f"{r['events']:,}",
            str(r["gaps"]),
            f"{r['lost_events']:,}",
            str(r["errors"]),
            r["source"],
        )
    out.print(table)


def _secs(ns: int | None) -> str:
    return "-" if ns is None else f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


@app.command()
def replay(
    trace: Annotated[
        list[str] | None, typer.Option("--trace", "-t", help="Trace id to replay (repeatable).")
    ] = None,
    all_traces: Annotated[bool, typer.Option("--all", help="Replay every trace.")] = False,
    dataset: DatasetOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Replay traces: per-page rmap state, migrations, fork windows and violations.

    Writes the tables migrations, migration_batches, page_states, fork_windows and
    violations next to the events (replacing an earlier replay of the same trace) and prints
    the findings. With --engine spark each trace is replayed by a Spark task (the same
    code) and every trace that succeeded is published in one commit. Exit code 1 when a
    violation is found (or, on Spark, a trace failed), 0 otherwise.
    """
    from rmapscope.replay import replay as run_replay

    if not trace and not all_traces:
        raise UsageError("say which traces: --trace ID (repeatable) or --all")
    ds = Dataset(dataset)
    spark = _spark(engine, master, conf)
    if spark is None:
        results, failed = run_replay(ds, None if all_traces else trace), 0
    else:
        results, failed = _replay_spark(ds, spark, None if all_traces else trace)
    if _print_findings(results) or failed:
        raise typer.Exit(1)


def _replay_spark(ds: Dataset, spark, trace_ids: list[str] | None) -> tuple[dict, int]:
    """Replay on Spark: the published tables per trace, and how many traces failed."""
    from rmapscope.replay.spark import replay_spark
    from rmapscope.replay.store import read_replay

    done = replay_spark(ds, spark, trace_ids, progress=None if _state["quiet"] else err.print)
    results, failed = {}, 0
    for r in done:
        if r.error is not None:
            _error(f"trace {r.trace_id} (host {r.host}): replay failed: {r.error}")
            failed += 1
        else:
            results[r.trace_id] = read_replay(ds, r.trace_id, skip=("page_states",))
    return results, failed


def _print_findings(results: dict) -> int:
    """Print a summary and the findings per trace; returns the number of violations."""
    import polars as pl

    violations = 0
    for trace_id, tables in results.items():
        m, v = tables["migrations"], tables["violations"]
        outcomes = ", ".join(
            f"{n:,} {o}" for o, n in sorted(m.group_by("outcome").len().iter_rows()) if o
        )
        n_viol = v.filter(pl.col("verdict") == "violation").height
        violations += n_viol
        if _state["quiet"]:
            continue
        out.print(
            f"trace {trace_id}: {tables['migration_batches'].height:,} migration batches, "
            f"folio migrations: {outcomes or 'none'}; {tables['fork_windows'].height:,} forks; "
            f"{n_viol} violations, {v.height - n_viol} inconclusive findings"
        )
        for r in v.head(20).iter_rows(named=True):
            out.print(f"  {r['verdict']:12} {r['rule']:26} {r['explanation']}")
        if v.height > 20:
            out.print(f"  ... {v.height - 20} more: rmapscope sql 'SELECT * FROM violations'")
    return violations


@app.command()
def sql(
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
    from rmapscope.analysis._output import FORMATS

    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    ds = Dataset(dataset)
    spark = _spark(engine, master, conf)
    if spark is None:
        from rmapscope.analysis import connect

        con = connect(ds)

        def run(statement: str, fmt: str, output: str | None) -> None:
            _run_sql(con, statement, fmt, output)

        split, tables = _split_sql, (
            "SELECT view_name AS name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
        )
    else:
        from rmapscope.analysis.spark import register_views

        ds.require()
        register_views(spark, ds)

        def run(statement: str, fmt: str, output: str | None) -> None:
            _run_spark_sql(spark, statement, fmt, output)

        split, tables = _split_statements, "SHOW VIEWS"
    if file is not None:
        try:
            script = file.read_text()
        except OSError as e:
            raise UsageError(f"{file}: {e.strerror}") from None
        statements = [s for s in split(script) if s.strip()]
    elif query is not None:
        statements = [query]
    else:
        _prompt(run, tables)
        return
    for i, statement in enumerate(statements):
        run(statement, fmt, output if i == len(statements) - 1 else None)


def _split_statements(script: str) -> list[str]:
    r"""Statements of a SQL script, split at ``;`` outside quotes and comments.

    >>> _split_statements("SELECT ';' AS a; -- x;\nSELECT 2")
    ["SELECT ';' AS a", ' -- x;\nSELECT 2']
    """
    import re

    token = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|--[^\n]*|/\*.*?\*/|;", re.S)
    out, start = [], 0
    for m in token.finditer(script):
        if m.group() == ";":
            out.append(script[start : m.start()])
            start = m.end()
    out.append(script[start:])
    return [s for s in out if s.strip()]


def _run_spark_sql(spark, statement: str, fmt: str, output: str | None) -> None:
    import duckdb

    from rmapscope.analysis._output import write_result

    try:
        df = spark.sql(statement)
        if df.columns:  # DDL and the like return no columns
            write_result(duckdb.from_arrow(df.toArrow()), fmt, output)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except Exception as e:
        from pyspark.errors import PySparkException

        if not isinstance(e, PySparkException):
            raise
        raise SqlError(_explain_spark_error(spark, e)) from None


def _explain_spark_error(spark, e: Exception) -> str:
    """Spark's message on one line; for an unknown table, the closest views."""
    import difflib
    import re

    text = " ".join(str(e).split("\n")[0].split())
    m = re.search(r"table or view `?([^` ]+?)`? cannot be found", text)
    if m:
        views = [r.viewName for r in spark.sql("SHOW VIEWS").collect()]
        close = difflib.get_close_matches(m.group(1), views, n=3, cutoff=0.4)
        text = re.sub(r" Verify the spelling.*", "", text)
        text += f" Closest tables: {', '.join(close)}." if close else " See `.tables`."
    return text


def _split_sql(script: str) -> list[str]:
    import duckdb

    try:
        return [s.query for s in duckdb.extract_statements(script)]
    except duckdb.Error as e:
        raise SqlError(" ".join(str(e).split())) from None


def _run_sql(con, statement: str, fmt: str, output: str | None) -> None:
    import duckdb

    from rmapscope.analysis._output import write_result

    try:
        rel = con.sql(statement)
        if rel is not None and _returns_rows(statement):
            write_result(rel, fmt, output)
    except duckdb.Error as e:
        raise SqlError(_explain_sql_error(con, e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None


def _returns_rows(statement: str) -> bool:
    """Whether a statement is a query whose rows the user wants to see (not DDL/DML)."""
    import duckdb

    quiet = {
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
    return all(s.type.name not in quiet for s in duckdb.extract_statements(statement))


def _explain_sql_error(con, e: Exception) -> str:
    """DuckDB's message on one line; for an unknown table, the closest views of the dataset."""
    import difflib
    import re

    text = " ".join(str(e).split())
    m = re.search(r"Table with name (\S+) does not exist", text)
    if m:
        views = [
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        ]
        close = difflib.get_close_matches(m.group(1), views, n=3, cutoff=0.4)
        text = re.sub(r" ?Did you mean .*?\?", "", text)
        hint = f" Closest tables: {', '.join(close)}." if close else " See `.tables`."
        text = text + hint
    return text


class SqlError(RmapscopeError):
    """DuckDB rejected a query (its message names the closest existing tables/columns)."""

    exit_code = 1


def _prompt(run, tables: str) -> None:
    """A small interactive SQL prompt with history and multi-line statements."""
    import contextlib

    with contextlib.suppress(ImportError):
        import readline

        history = Path.home() / ".rmapscope_history"
        with contextlib.suppress(OSError):
            readline.read_history_file(history)
        import atexit

        atexit.register(
            lambda: contextlib.suppress(OSError) and readline.write_history_file(history)
        )
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
        if not buf and stripped.startswith("."):
            cmd, _, arg = stripped.partition(" ")
            if cmd in (".quit", ".exit"):
                return
            if cmd == ".tables":
                statement = tables
            elif cmd == ".schema" and arg:
                statement = f"DESCRIBE {arg}"
            else:
                _error("dot commands: .tables, .schema NAME, .quit")
                continue
            buf = [statement + ";"]
            stripped = ";"
        else:
            buf.append(line)
        if stripped.endswith(";"):
            try:
                run("\n".join(buf), "table", None)
            except RmapscopeError as e:
                _error(str(e))
            buf = []


@app.command()
def query(
    name: Annotated[str, typer.Argument(help="A canned query, or `list`.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="k=v parameter (repeatable).")
    ] = None,
    fmt: ResultFormatOpt = "table",
    output: ResultOutputOpt = None,
    dataset: DatasetOpt = None,
    engine: EngineOpt = "duckdb",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Run a named query for a common question (`rmapscope query list` shows them).

    The same SQL runs on DuckDB and, with --engine spark, on Spark SQL."""
    from rmapscope.analysis import QUERIES, connect, run_canned
    from rmapscope.analysis._output import write_result

    if name == "list":
        for q in QUERIES.values():
            params = " ".join(f"{k}={'' if v is None else v}" for k, v in q.params.items())
            out.print(f"{q.name:26} {q.description}  [{params}]")
        return
    params = {}
    for p in param or []:
        k, sep, v = p.partition("=")
        if not sep:
            raise UsageError(f"--param takes k=v, not {p!r}")
        params[k] = v
    ds = Dataset(dataset)
    spark = _spark(engine, master, conf)
    if spark is not None:
        import duckdb

        from rmapscope.analysis import spark as on_spark

        ds.require()
        on_spark.register_views(spark, ds)
        result = on_spark.run_canned(spark, name, params)
        write_result(duckdb.from_arrow(result), fmt, output)
        return
    con = connect(ds)
    import duckdb

    try:
        write_result(run_canned(con, name, params), fmt, output)
    except duckdb.Error as e:
        raise SqlError(_explain_sql_error(con, e)) from None


@app.command()
def analyze(
    file: Annotated[
        str | None, typer.Argument(help="Trace to analyze [default: the bundled real sample].")
    ] = None,
    dataset: DatasetOpt = None,
    host: Annotated[str | None, typer.Option(help="Host the trace was recorded on.")] = None,
    report: Annotated[
        Path, typer.Option("--report", "-o", help="Where to write the HTML report.")
    ] = Path("rmapscope-report.html"),
) -> None:
    """Run the whole pipeline on one trace: ingest, replay, print the findings, write the
    HTML report (self-contained, opens offline).

    Exit code 1 when replay finds a violation.
    """
    from rmapscope.dashboards import build_report
    from rmapscope.replay import replay as run_replay

    ds = Dataset(dataset)
    path = file or str(sample_trace())
    if file is None and not _state["quiet"]:
        out.print(f"no trace given: analyzing the bundled real sample {path}")
    r = _ingest_one(path, ds, host=host)
    _print_result(r)
    if not _state["quiet"]:
        from rich.table import Table

        table = Table("event", "count", title=f"trace {r.trace_id} in {ds.root}")
        for name, n in sorted(r.event_counts.items(), key=lambda kv: -kv[1]):
            table.add_row(name, f"{n:,}")
        out.print(table)
        span = (r.ts_last - r.ts_first) / 1e9 if r.ts_first is not None else 0
        out.print(
            f"{r.events:,} events over {span:.3f} s; {r.gaps} gaps; {r.errors.total} lines rejected"
        )
    violations = _print_findings(run_replay(ds, [r.trace_id]))
    written = build_report(ds, [r.trace_id], output=report)
    out.print(f"report: {written.resolve()}")
    if violations:
        raise typer.Exit(1)


# commands that live next to their library code
from rmapscope._record_cli import register as _register_record  # noqa: E402
from rmapscope.dashboards._report_cli import register as _register_report  # noqa: E402
from rmapscope.replay._sim_cli import register as _register_simulate  # noqa: E402

_register_record(app)
_register_simulate(app)
_register_report(app)


def main() -> None:
    """Console-script entry point: run the app, turning user errors into one line."""
    try:
        app()
    except RmapscopeError as e:
        if _state["debug"]:
            raise
        _error(str(e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
