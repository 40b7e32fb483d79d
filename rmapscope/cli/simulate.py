"""``rmapscope simulate``: the kernel-path simulator (:mod:`rmapscope.replay.simulator`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rmapscope.errors import RmapscopeError, UsageError

from ._errors import handles_errors
from ._settings import settings

__all__ = ["register"]


def simulate(
    ctx: typer.Context,
    scenario: Annotated[
        str | None,
        typer.Argument(
            help="fork-vs-migrate, fork-vs-remove, thp-split-vs-fork, exit-during-migration "
            "or compaction-storm (--list describes them).",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the scheduler and the scenario.")] = 0,
    cpus: Annotated[int, typer.Option(help="Simulated CPUs.", min=1, max=256)] = 2,
    bug: Annotated[
        list[str] | None,
        typer.Option(
            help="Switch on a bug: child-first (a forked child's avc goes before its "
            "parent's), drop-remove (remove walks sometimes skip a vma), lose-events (drop "
            "lines, print LOST markers); the bug zoo (README): read-restored-writable, "
            "uffd-wp-lost-on-fork, vma-adjust-skip, hugetlb-fork-copy, foreign-pmd-entry, "
            "moved-as-failed, write-restored-readonly, vma-adjust-undo. "
            "Repeat or comma-separate to combine.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the trace here, the ground truth to FILE.truth.json and the "
            "informational findings to FILE.info.json [default: trace to stdout].",
            show_default=False,
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            help="Write the ground truth here instead [default: FILE.truth.json with -o, "
            "none without].",
            show_default=False,
        ),
    ] = None,
    explore: Annotated[
        bool,
        typer.Option(
            "--explore",
            help="Run every interleaving of a small scenario (fork-vs-migrate, "
            "fork-vs-remove) and print how many violate, without and with --bug.",
        ),
    ] = False,
    list_: Annotated[
        bool, typer.Option("--list", help="List the scenarios and what each does.")
    ] = False,
) -> None:
    """Simulate fork, migration and rmap walks on several CPUs; write a trace plus truth.

    The trace is what a Linux 6.18 x86_64 tracefs `trace` file prints with the upstream
    tracepoints and the rmapscope probe events enabled (`rmapscope ingest` reads it); the
    ground truth lists the rule violations the run really contains (JSON, see
    data/scenarios/README.md). The same seed gives the same trace.
    """
    from rmapscope.replay import simulator as sim

    if list_:
        for s in sim.SCENARIOS.values():
            small = " [--explore]" if s.explorable else ""
            print(f"{s.name}{small}: {s.summary}")
        return
    if scenario is None:
        raise UsageError("give a SCENARIO (see --list)")
    bugs = ",".join(bug or [])
    if explore:
        base = sim.explore(scenario)
        print(base.line())
        if sim._bugs(bugs):
            print(sim.explore(scenario, bugs).line())
        return
    r = sim.simulate(scenario, seed=seed, cpus=cpus, bug=bugs)
    try:
        if output is None:
            sys.stdout.write(r.text)
            sys.stdout.flush()
            if truth is not None:
                truth.write_text(json.dumps(r.truth, indent=1) + "\n")
        else:
            _, tpath, _ = sim.write_result(r, output)
            if truth is not None:
                truth.write_text(tpath.read_text())
                tpath.unlink()
    except OSError as e:
        raise RmapscopeError(f"{e.filename or ''}: {e.strerror}") from None
    if not settings(ctx).quiet:
        nviol = len(r.violations)
        where = f" to {output}" if output is not None else ""
        print(
            f"simulated {r.scenario} (seed {seed}, {cpus} cpus, "
            f"{','.join(r.bugs) or 'no bug'}): {r.events} events{where}; "
            f"{len(r.truth)} findings ({nviol} violations, "
            f"{len(r.truth) - nviol} inconclusive), {len(r.info)} informational, "
            f"{sum(g['count'] for g in r.lost)} events lost",
            file=sys.stderr,
        )


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command("simulate")(handles_errors(simulate))
