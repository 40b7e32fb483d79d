"""The ``rmapscope`` command line: a thin layer over the library.

:mod:`.app` builds the app from one module per command (:mod:`.ingest`, :mod:`.traces`,
:mod:`.replay`, :mod:`.sql`, :mod:`.query`, :mod:`.analyze`, :mod:`.report`,
:mod:`.record`, :mod:`.simulate`); the shared parts are leaf modules: :mod:`._options`
(options several commands take), :mod:`._errors` (the one place a library error becomes
``error: ...`` and an exit code), :mod:`._settings` (the global options in typer's
context), :mod:`._console` and :mod:`._show` (printing).
"""

import os

# numpy's bundled OpenBLAS starts a thread per CPU on import, and they spin for a while: the
# CLI does no linear algebra, and on a 2-CPU box that spinning takes ~3% of an ingest's CPU
# from the parsing threads. A value the user set stays.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .analyze import sample_trace  # after the environment is set
from .app import app, console_main, main

__all__ = ["app", "console_main", "main", "sample_trace"]
