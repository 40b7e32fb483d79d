"""Where the CLI prints: stdout for results, stderr for progress, warnings and errors."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from rich.console import Console

# No markup, emoji or wrapping: trace text (comms like "[kworker]", ":x:") prints as is, and
# every error stays on one line for scripts.
err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
out = Console(
    highlight=False,
    markup=False,
    emoji=False,
    soft_wrap=True,
    width=None if sys.stdout.isatty() else 200,
)

Progress = Callable[[int, int | None, int], None]


def no_progress(name: str) -> tuple[AbstractContextManager[object], Progress | None]:
    """No progress bar (``--quiet``)."""
    return nullcontext(), None


def progress_bar(name: str) -> tuple[AbstractContextManager[object], Progress | None]:
    """A rich progress bar for the input ``name`` and its callback, while it is entered;
    nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return no_progress(name)
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task(Path(name).name[:40], total=None, rate="")
    start = time.monotonic()

    def update(done: int, total: int | None, events: int) -> None:
        elapsed = max(time.monotonic() - start, 1e-6)
        bar.update(task, completed=done, total=total, rate=f"{events / elapsed:,.0f} events/s")

    return bar, update


def warning(message: str) -> None:
    """``warning: message`` on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
