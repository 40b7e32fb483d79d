"""The few exception classes rmapscope raises for user-facing problems.

Every error a user can cause (bad input, a busy dataset, a bad option) is one of these;
the CLI prints ``error: <message>`` and exits with the class's ``exit_code``, never a
traceback (``--debug`` shows one).
"""

from __future__ import annotations


class RmapscopeError(Exception):
    """Base class: a problem the user can act on, with the exit code the CLI uses."""

    exit_code = 1


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
