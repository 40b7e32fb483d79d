"""What the benchmark scripts share: the command they time, and its byte-code.

* :func:`rmapscope_command` is the ``rmapscope`` script pip installed next to this
  interpreter, the one a user of this install runs: not a version manager's shim first on
  ``PATH`` (pyenv's is a bash script that starts ``pyenv exec``, ~0.1 s per run, which is
  not rmapscope's time; the per-line baseline is started as ``sys.executable`` too).
* :func:`byte_compile`: an editable install keeps the sources in the checkout, and with
  ``PYTHONDONTWRITEBYTECODE`` set (as on some build machines) every run compiles all of
  rmapscope again, ~0.4 s; a wheel install ships the byte-code. Compiling once first times
  what an installed rmapscope does.
"""

from __future__ import annotations

import compileall
import importlib
import os
import shutil
import sys
from pathlib import Path

# the package's folders (package-dir maps the top-level folders into it)
_PACKAGES = (
    "rmapscope",
    "rmapscope.ingest",
    "rmapscope.replay",
    "rmapscope.analysis",
    "rmapscope.dashboards",
    "rmapscope.record",
    "rmapscope.data",
)


def rmapscope_command() -> str:
    """The installed ``rmapscope`` console script of this interpreter (else ``PATH``'s)."""
    script = Path(sys.executable).with_name("rmapscope")
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    return shutil.which("rmapscope") or sys.exit("rmapscope is not installed")


def byte_compile() -> None:
    """Byte-compile the installed rmapscope's Python files where they are (see above)."""
    for name in _PACKAGES:
        folder = Path(importlib.import_module(name).__file__ or "").parent
        compileall.compile_dir(folder, quiet=1, workers=1)
