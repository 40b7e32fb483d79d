"""The one place a library error becomes ``error: ...`` on stderr and an exit code.

Library messages name arguments as Python keywords in backticks (listed in
:attr:`RmapscopeError.params`); here they become the CLI's flags (`` `top_level=True` `` ->
``--top-level``). Under the rmapscope app a command's error goes up to
:func:`rmapscope.cli.main`, which prints it (so that ``--debug`` can show the traceback, and
a test invoking the app sees the exception); a command added to another app
(:func:`handles_errors`) prints it itself.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from rmapscope.errors import MissingTablesError, RmapscopeError

from ._options import with_global_options
from ._settings import Settings, app_settings, settings

#: Library keyword -> CLI flag, where the flag is not ``--`` + the keyword with dashes.
FLAGS = {"events": "--event"}

P = ParamSpec("P")
R = TypeVar("R")


def flag(param: str) -> str:
    """The CLI flag of a library keyword argument.

    >>> flag("top_level"), flag("events")
    ('--top-level', '--event')
    """
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def cli_message(e: RmapscopeError) -> str:
    """The message of ``e`` in the CLI's terms: flags for keywords, commands for next steps.

    >>> from rmapscope.errors import UsageError
    >>> cli_message(UsageError("`instance` and `top_level` exclude each other",
    ...                        params=("instance", "top_level")))
    '--instance and --top-level exclude each other'
    >>> cli_message(UsageError("x exists (use `force=True` to overwrite)", params=("force",)))
    'x exists (use --force to overwrite)'
    """
    if isinstance(e, MissingTablesError):
        tables = ", ".join(e.tables)
        return f"{e.needed_by} needs the {tables} table(s): run `rmapscope replay --all` first"
    text = str(e)
    for p in e.params:
        text = re.sub(rf"`{re.escape(p)}(=True)?`", flag(p), text)
    return text


def translate(e: RmapscopeError) -> RmapscopeError:
    """``e`` with its message in the CLI's terms (in place)."""
    if e.params or isinstance(e, MissingTablesError):
        e.args = (cli_message(e),)
        e.params = ()
    return e


def print_error(message: str) -> None:
    """``error: message`` on stderr, one line."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def report(e: RmapscopeError, settings: Settings) -> int:
    """Print ``e`` as one ``error:`` line and return its exit code; with ``--debug``, raise
    it (the traceback shows)."""
    if settings.debug:
        raise translate(e)
    print_error(cli_message(e))
    return e.exit_code


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command (which takes ``ctx: typer.Context``): its library errors in the CLI's
    terms, and printed with their exit code when the command runs outside the rmapscope app
    (whose ``main`` prints them); it takes the global options after its name too
    (:func:`~rmapscope.cli._options.with_global_options`)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RmapscopeError as e:
            ctx = kwargs.get("ctx")  # typer passes every parameter by keyword
            if app_settings(ctx) is not None:  # type: ignore[arg-type]
                raise translate(e) from None
            raise typer.Exit(report(e, settings(ctx))) from None  # type: ignore[arg-type]

    return with_global_options(run)
