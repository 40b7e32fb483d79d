"""The global options (``--debug``, ``--quiet``), carried in typer's context as ``ctx.obj``."""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass
class Settings:
    """What the global options say; the app's callback puts one in the root context."""

    debug: bool = False
    quiet: bool = False


def app_settings(ctx: typer.Context | None) -> Settings | None:
    """The settings of the rmapscope app's context, or None when a command runs in another
    app (a test's, or a plugin host's) that has none."""
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Settings) else None


def settings(ctx: typer.Context | None) -> Settings:
    """The settings of ``ctx`` (the defaults outside the rmapscope app)."""
    return app_settings(ctx) or Settings()
