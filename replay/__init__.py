"""Replay of per-page rmap state over time: migrations, fork windows, ordering violations.

:func:`replay_trace` is the pure core (one trace's events in, replay tables out);
:func:`replay` loads traces from a dataset and publishes the tables next to them.
"""

from rmapscope.catalog import REPLAY_TABLES

from .engine import replay_trace
from .store import load_trace, replay

__all__ = ["REPLAY_TABLES", "load_trace", "replay", "replay_trace"]
