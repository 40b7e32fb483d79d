"""The ``rmapscope`` command line: a thin layer over the library.

:mod:`.app` builds the app from one module per command (:mod:`.ingest`, :mod:`.traces`,
:mod:`.replay`, :mod:`.sql`, :mod:`.query`, :mod:`.analyze`, :mod:`.report`,
:mod:`.record`, :mod:`.simulate`); the shared parts are leaf modules: :mod:`._options`
(options several commands take), :mod:`._errors` (the one place a library error becomes
``error: ...`` and an exit code), :mod:`._settings` (the global options in typer's
context), :mod:`._console` and :mod:`._show` (printing).
"""

from .analyze import sample_trace
from .app import app, main

__all__ = ["app", "main", "sample_trace"]
