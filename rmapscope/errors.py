"""Every exception class rmapscope defines.

Every error a user can cause (bad input, a busy dataset, a bad option) is a
:class:`RmapscopeError`; the CLI prints ``error: <message>`` and exits with the class's
``exit_code``, never a traceback (``--debug`` shows one). Messages speak to the library's
callers: an error about an argument names it as the Python keyword in backticks
(`` `duration` ``, `` `force=True` ``) and lists it in ``params``, which the CLI turns into
its flag (``--duration``, ``--force``) where it prints the message.

The other classes are internal signals (:class:`UnsupportedExpression`) or bugs
(:class:`SimError`), not user errors.
"""

from __future__ import annotations

from collections.abc import Sequence


class RmapscopeError(Exception):
    """Base class: a problem the user can act on, with the exit code the CLI uses.

    ``params``: the keyword arguments of the call the message names (so that a front end
    can name them its own way); ``exit_code`` overrides the class's code for one error.

    >>> e = UsageError("`duration` must be positive, not -1", params=("duration",))
    >>> str(e), e.params, e.exit_code
    ('`duration` must be positive, not -1', ('duration',), 2)
    """

    exit_code = 1

    def __init__(
        self, message: str, *, params: Sequence[str] = (), exit_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.params = tuple(params)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(RmapscopeError):
    """An input is not a trace we can read (missing, unreadable, binary junk, empty...).

    The message starts with the file name, and with a line or byte offset where known.
    """

    exit_code = 2


class DatasetError(RmapscopeError):
    """The dataset directory is unusable (not a dataset, corrupt manifest, locked...)."""

    exit_code = 3


class UsageError(RmapscopeError):
    """An option value that cannot work (unknown format, unknown arch...)."""

    exit_code = 2


class LabError(RmapscopeError):
    """``rmapscope lab`` cannot record: no qemu or compiler, an unreadable kernel image, a
    probe the kernel refused (with its error_log line), a guest that timed out."""

    exit_code = 2


class MissingTablesError(UsageError):
    """A query needs tables the dataset does not have yet (replay writes them).

    >>> e = MissingTablesError("query leaked-entries", ["migrations"])
    >>> e.tables, str(e).startswith("query leaked-entries needs the migrations table(s)")
    (('migrations',), True)
    """

    def __init__(self, needed_by: str, tables: Sequence[str]) -> None:
        self.needed_by = needed_by
        self.tables = tuple(tables)
        super().__init__(
            f"{needed_by} needs the {', '.join(self.tables)} table(s): replay the traces first "
            "(`rmapscope replay`, rmapscope.replay.replay)"
        )


class SqlError(RmapscopeError):
    """The SQL engine rejected a statement (its message names the closest existing tables)."""

    exit_code = 1


class UnsupportedExpression(ValueError):
    """A trace.dat format's C expression uses something the evaluator does not understand
    (the caller then treats the value as unknown)."""


class SimError(RuntimeError):
    """The simulator's model reached a state it does not handle (a bug in a scenario or the
    model)."""
