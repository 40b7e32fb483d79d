"""Data shipped with rmapscope: event formats (Linux 6.18 tracefs) and sample traces.

>>> sample_trace().name
'forkstorm-slice.trace.txt.gz'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_trace() -> Path:
    """The real trace shipped with rmapscope (``rmapscope analyze`` runs on it by default)."""
    return Path(str(resources.files(__name__) / "samples" / "forkstorm-slice.trace.txt.gz"))
