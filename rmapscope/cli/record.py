"""``rmapscope record``: record tracepoints on this box (:func:`rmapscope.record.record`).

``record`` is looked up in this module when the command runs (a test replaces it)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from rmapscope.errors import RmapscopeError, UsageError
from rmapscope.record import (
    PRESETS,
    RecordPlan,
    RecordProgress,
    default_output,
    equivalent_commands,
    expand_events,
    record,
)

from ._errors import handles_errors, print_error
from ._settings import settings

_HELP = f"""Record tracepoints while a command runs, for --duration, or until Ctrl-C.

Runs as root, without trace-cmd, in its own tracefs instance (instances/rmapscope-PID) so
another user of the top-level buffer is never disturbed, and writes back every tracefs
setting it changed when it ends (also on Ctrl-C, SIGTERM and SIGHUP). The trace is the
text of the instance's trace_pipe, compressed by the output's extension (.zst or other:
zstd; .gz: gzip; .txt: none) in frames flushed every second, so the file is always
readable by `rmapscope ingest`; FILE.meta.json holds kernel, host, clock, events, lost
events and timings.

Examples: `rmapscope record -- ./workload --arg`, `rmapscope record --duration 30
-o box1.trace.zst`, `rmapscope record --preset full -e sched:sched_switch`.

Presets: {"; ".join(f"{k}: {' '.join(v) or '(nothing)'}" for k, v in PRESETS.items())}.

Ctrl-C (or SIGTERM) ends a recording normally: exit 0, complete file. Exit codes: 0 the
recording worked (the command's own status is printed); 1 not root, tracefs unusable, or a
setting could not be restored; 2 a bad option.

On stderr: the equivalent `trace-cmd record` and `perf record` command lines, warnings
(missing events, lost events as they happen) and, on a terminal, a progress line. The
summary goes to stdout. --dry-run prints the equivalent command lines on stdout and
records nothing.
"""

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def _parse_duration(text: str | None) -> float | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"bad --duration {text!r}: expected seconds, e.g. 30, 2.5, 30s, 5m, 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} KB"


class _Console:
    """Progress on a terminal (one rewritten line), warnings and notes on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty() and not quiet
        self.dirty = False

    def _clear(self) -> None:
        if self.dirty:
            sys.stderr.write("\r\033[K")
            self.dirty = False

    def note(self, msg: str) -> None:
        if not self.quiet:
            self._clear()
            print(msg, file=sys.stderr, flush=True)

    def warning(self, msg: str) -> None:
        self._clear()
        print(f"warning: {msg}", file=sys.stderr, flush=True)

    def progress(self, p: RecordProgress) -> None:
        if not self.tty:
            return
        lost = f"  lost {p.lost_events:,}" if p.lost_events else ""
        sys.stderr.write(
            f"\r\033[Krecording {p.elapsed:6.1f} s  {p.lines:,} lines  {_mb(p.bytes_text)} "
            f"-> {_mb(p.bytes_written)}{lost}  (Ctrl-C stops)"
        )
        sys.stderr.flush()
        self.dirty = True

    def done(self) -> None:
        self._clear()


def record_cmd(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="Command to run while recording (put it after --); recording stops when it exits."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Trace file [default: rmapscope-HOST-YYYYmmdd-HHMMSS.trace.zst].",
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", "-p", help=f"Event set: {', '.join(PRESETS)}.")
    ] = "migration",
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="Add events: system:event, system:* (or system), event; repeat or comma-separate.",
        ),
    ] = None,
    buffer_kb: Annotated[
        int | None,
        typer.Option(
            "--buffer-kb",
            "-b",
            help="Ring buffer per CPU in KB [default: 8192, less on small machines].",
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration",
            "-t",
            help="Stop after this long (30, 2.5, 30s, 5m, 1h); with a command, "
            "whichever ends first.",
        ),
    ] = None,
    clock: Annotated[
        str, typer.Option("--clock", help="trace_clock: local, global, mono, boot...")
    ] = "local",
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            help="tracefs instance to record in: created and removed, or if it exists, "
            "emptied, used and its settings restored [default: rmapscope-PID].",
        ),
    ] = None,
    top_level: Annotated[
        bool,
        typer.Option(
            "--top-level",
            help="Record in the top-level buffer (its current contents are discarded; "
            "every setting changed is restored).",
        ),
    ] = False,
    tracefs: Annotated[
        Path | None,
        typer.Option(
            "--tracefs",
            help="tracefs mount to use [default: the one in /proc/mounts, else "
            "/sys/kernel/tracing, mounted if needed].",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output file.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the equivalent trace-cmd and perf command lines and stop.",
        ),
    ] = False,
) -> None:
    quiet = settings(ctx).quiet
    con = _Console(quiet)
    try:
        secs = _parse_duration(duration)
        if dry_run:
            specs = expand_events(preset, event or ())
            kb = buffer_kb or 8192
            tc, perf = equivalent_commands(
                specs,
                buffer_kb=kb,
                clock=clock,
                output=output or default_output(),
                command=command,
                duration=secs,
            )
            print(tc)
            print(perf)
            return

        def started(plan: RecordPlan) -> None:
            where = f"instance {plan.instance}" if plan.instance else "the top-level buffer"
            until = (
                "until the command exits"
                if command
                else f"for {secs:g} s"
                if secs
                else "until Ctrl-C"
            )
            con.note(f"equivalent: {plan.trace_cmd}")
            con.note(f"equivalent: {plan.perf}")
            con.note(
                f"recording {len(plan.events)} events in {where} ({plan.buffer_kb} KB/CPU, "
                f"clock {plan.clock}) to {plan.output} {until}"
            )

        r = record(
            output,
            preset=preset,
            events=event or (),
            buffer_kb=buffer_kb,
            duration=secs,
            command=command,
            instance=instance,
            top_level=top_level,
            clock=clock,
            force=force,
            tracefs=tracefs,
            progress=con.progress,
            on_warning=con.warning,
            on_start=started,
        )
    except RmapscopeError:
        con.done()  # the progress line goes before the error is printed
        raise
    con.done()
    for msg in r.restore_errors:
        con.warning(msg)
    if not quiet:
        ratio = f"{_mb(r.bytes_written)} {r.compression}" if r.compression != "none" else ""
        print(
            f"{r.output}: {r.lines:,} lines ({_mb(r.bytes_text)} text"
            f"{', ' + ratio if ratio else ''}) in {r.seconds:.1f} s, stopped by "
            f"{r.stop_reason}; {r.lost_events:,} events lost",
            flush=True,
        )
        if r.command:
            status = r.command_status
            what = (
                f"still running (pid {r.command_pid})"
                if status is None
                else f"killed by signal {-status}"
                if status < 0
                else f"exited with status {status}"
            )
            print(f"command {what}", flush=True)
        if not r.restore_errors:
            gone = f" (instance {r.instance} removed)" if r.instance_created else ""
            print(f"tracefs settings restored{gone}", flush=True)
        print(
            f"ingest it with: rmapscope ingest {shlex.quote(str(r.output))} "
            f"--host {shlex.quote(r.host.split('.')[0])}",
            flush=True,
        )
    if r.restore_errors:
        print_error(f"{len(r.restore_errors)} tracefs settings could not be restored")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``record`` to ``app``."""
    app.command("record", help=_HELP, context_settings={"allow_interspersed_args": False})(
        handles_errors(record_cmd)
    )
