"""The ``rmapscope`` app: global options, the commands, :func:`main` and
:func:`console_main`.

Exit codes: 0 success, 1 findings/other failure, 2 bad input or usage, 3 dataset problem,
130 interrupted.

Each command lives in its own module, which knows nothing of this one: its ``register(app)``
adds it here. The global options go into typer's context (``ctx.obj``, a
:class:`~rmapscope.cli._settings.Settings`); every command takes ``--debug`` and
``--quiet`` after its name too (:func:`~rmapscope.cli._options.with_global_options`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Annotated, NoReturn

import typer

from rmapscope import __version__
from rmapscope.errors import RmapscopeError

from . import (
    analyze,
    diff,
    explain,
    ingest,
    lab,
    query,
    record,
    replay,
    report,
    simulate,
    sql,
    traces,
)
from ._console import err
from ._errors import report as report_error
from ._options import DebugOpt, QuietOpt
from ._settings import Settings

app = typer.Typer(
    name="rmapscope",
    help="Ingest, replay and query Linux traces of fork, page migration and rmap walks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"rmapscope {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Ingest, replay and query Linux traces of fork, page migration and rmap walks."""
    settings = ctx.ensure_object(Settings)
    settings.debug = debug
    settings.quiet = quiet


for _command in (
    ingest,
    traces,
    replay,
    sql,
    query,
    analyze,
    record,
    simulate,
    report,
    diff,
    explain,
    lab,
):
    _command.register(app)


def main() -> None:
    """Run the app as ``python -m rmapscope`` does: library errors become one line and an
    exit code, raised as :class:`SystemExit` (so a caller in the same interpreter, such as
    ``runpy`` in a loop, carries on)."""
    settings = Settings()
    try:
        app(obj=settings)
    except RmapscopeError as e:
        sys.exit(report_error(e, settings))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def console_main() -> NoReturn:
    """The ``rmapscope`` console script: :func:`main`, then the process ends without the
    interpreter's teardown (see :func:`_exit`). Nothing runs after it in this process, so
    only the installed command uses it."""
    try:
        main()
    except SystemExit as e:
        _exit(e.code)
    _exit(0)


def _exit(code: int | str | None) -> NoReturn:
    """Exit with ``code`` as :func:`sys.exit` would, but skip the interpreter's teardown
    when nothing else runs: freeing every module and object of polars, pyarrow and numpy
    one by one takes ~0.15 s, a tenth of a short ingest. The ``atexit`` handlers (and so
    ``weakref.finalize`` callbacks: temporary files) still run and both streams are
    flushed; with other threads alive the normal exit joins them."""
    if threading.active_count() > 1:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # what sys.exit does with a message
        code = 1
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe, a closed stream: nothing more to say
        code = code or 120  # what the interpreter exits with when the final flush fails
    os._exit(code or 0)
