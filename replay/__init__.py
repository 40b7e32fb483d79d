"""Replay of per-page rmap state over time (issue: the replay engine; not built yet)."""
