"""``rmapscope lab``: boot a kernel under qemu, run a race scenario with the probes, bring
out the trace and the guest's ground truth (:func:`rmapscope.record.lab.run_lab`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rmapscope.record.lab import SCENARIOS, run_lab

from . import analyze as analyze_cmd
from ._console import err, out
from ._errors import handles_errors
from ._settings import settings

_HELP = f"""Boot a kernel under qemu, run a scenario with the rmapscope probes, and write the
trace (tracefs text) plus FILE.meta.json (kernel release and config facts, the probes
loaded, scenario, seed, vmstat deltas, and the guest's ground truth: every page's pfn before
and after each migration from /proc/self/pagemap, the move_pages status), FILE.dat (the
same recording as a trace-cmd trace.dat, v6, from the guest's raw ring buffer: `ingest` and
`trace-cmd report` read it; its sidecar is FILE.dat.meta.json) and FILE.console.log (the
guest's console and dmesg).

--kernel: debian:6.1, debian:6.12 or debian:7.2 (fetched with apt into the cache,
$RMAPSCOPE_LAB_CACHE or ~/.cache/rmapscope, the system's apt config untouched;
debian:6.12/arm64 is Debian's arm64 kernel under qemu-system-aarch64, the workload built
with aarch64-linux-gnu-gcc) or the path of a bzImage/vmlinuz (or arm64 Image) you built
(its .config next to it, when there, tells the probe syntax; the probe offsets come from
the image's own BTF). KVM is used when a guest boots with it, else TCG (said in the
output).

Scenarios: {"; ".join(f"{k}: {v}" for k, v in SCENARIOS.items())}.

Needs qemu-system-x86_64, gcc (static libc), busybox-static. Exit 2 with one line when one
is missing, the image is unreadable, the kernel refuses a probe (its error_log line is
quoted) or the guest times out; the guest is always killed. --analyze then runs
`rmapscope analyze` on the trace (report FILE.html).
"""


def lab(
    ctx: typer.Context,
    kernel: Annotated[
        str, typer.Option(help="debian:6.1, debian:6.12, debian:7.2 or a bzImage path.")
    ] = "debian:6.1",
    scenario: Annotated[
        str, typer.Option(help=f"One of: {', '.join(SCENARIOS)}.")
    ] = "fork-vs-migrate",
    cpus: Annotated[int, typer.Option(help="Guest CPUs.")] = 2,
    numa_nodes: Annotated[int, typer.Option(help="Emulated NUMA nodes.")] = 2,
    memory: Annotated[int, typer.Option(help="Guest memory in MB.")] = 512,
    seed: Annotated[int, typer.Option(help="Seed of the workload's randomness.")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds before the guest is killed.")] = 300.0,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Trace file [default: lab-KERNEL-SCENARIO.trace]."),
    ] = None,
    analyze: Annotated[
        bool, typer.Option("--analyze", help="Run `rmapscope analyze` on the trace afterwards.")
    ] = False,
) -> None:
    s = settings(ctx)
    name = kernel.replace(":", "-") if kernel.startswith("debian:") else Path(kernel).name
    dest = output or Path(f"lab-{name}-{scenario}.trace")

    def note(msg: str) -> None:
        if not s.quiet:
            err.print(msg)

    r = run_lab(
        kernel,
        scenario,
        output=dest,
        cpus=cpus,
        numa_nodes=numa_nodes,
        memory=memory,
        seed=seed,
        timeout=timeout,
        note=note,
    )
    out.print(
        f"{r.trace}: {r.events:,} events, {r.pages_moved:,} page moves in the truth, "
        f"guest {r.seconds:.1f} s under {r.accel.upper()}, kernel {r.meta_data['kernel_release']}"
        f" (probes as {r.meta_data['probe_syntax']})"
    )
    out.print(f"sidecar: {r.meta}; trace.dat: {r.tracedat}")
    if analyze:
        analyze_cmd.analyze(
            ctx,
            file=str(r.trace),
            dataset=None,
            host=None,
            report=r.trace.with_name(r.trace.name + ".html"),
        )


lab.__doc__ = _HELP


def register(app: typer.Typer) -> None:
    """Add ``lab`` to ``app``."""
    app.command("lab")(handles_errors(lab))
