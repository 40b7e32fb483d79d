"""The global options (``--debug``, ``--quiet``), carried in typer's context as ``ctx.obj``."""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass
class Settings:
    """What the global options say; the app's callback puts one in the root context, and
    a command's own ``--debug``/``--quiet`` (after its name) switch them on there."""

    debug: bool = False
    quiet: bool = False


def app_settings(ctx: typer.Context | None) -> Settings | None:
    """The settings of the rmapscope app's context, or None when a command runs in another
    app (a test's, or a plugin host's) that has none."""
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Settings) else None


def settings(ctx: typer.Context | None) -> Settings:
    """The settings of ``ctx``: the app's, else those a command's own global options set
    (:func:`~rmapscope.cli._options.with_global_options`), else the defaults."""
    found = ctx.find_object(Settings) if ctx is not None else None
    return found or Settings()


def switch_on(ctx: typer.Context | None, *, debug: bool, quiet: bool) -> None:
    """Switch on the global options given after a command's name: in the app's settings,
    or outside the app in the command's own (which :func:`settings` then finds)."""
    if ctx is not None:
        s = ctx.ensure_object(Settings)
        s.debug, s.quiet = s.debug or debug, s.quiet or quiet
