"""``rmapscope explain [RULE]``: what a replay rule means, its tier and its precedent.

The text comes from the one rule registry, :data:`rmapscope.replay.rulebook.RULES`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rmapscope.errors import UsageError

from ._console import out
from ._errors import handles_errors

__all__ = ["register"]


def explain(
    ctx: typer.Context,
    rule: Annotated[
        str | None,
        typer.Argument(
            help="A rule id of the violations table (e.g. leaked-entry); none: list them all.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print what a replay rule means, its tier, verdict and precedent (the kernel bug it
    would have caught and its fix); without RULE, list every rule."""
    from rmapscope.replay.rulebook import RULES

    if rule is None:
        width = max(len(r) for r in RULES)
        for each in RULES.values():
            out.print(f"{each.id:{width}}  tier {each.tier}  {each.verdict:9}  {each.meaning}")
        return
    r = RULES.get(rule)
    if r is None:
        raise UsageError(f"unknown rule {rule!r} (`rmapscope explain` lists them)")
    lines = [
        f"{r.id} (tier {r.tier}: "
        + ("upstream tracepoints alone" if r.tier == 1 else "needs the probe events")
        + f"; proven findings say {r.verdict})",
        f"  meaning:   {r.meaning}" + ("" if r.checked else " (not checked by replay yet)"),
    ]
    if r.precedent:
        lines.append(f"  precedent: {r.precedent}")
    if r.fix:
        lines.append(f"  fix:       {r.fix}")
    if r.kernels:
        lines.append(f"  kernels:   {r.kernels}")
    for line in lines:
        out.print(line)


def register(app: typer.Typer) -> None:
    """Add ``explain`` to ``app``."""
    app.command("explain")(handles_errors(explain))
