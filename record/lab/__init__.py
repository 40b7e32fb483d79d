"""``rmapscope lab``: boot a kernel under qemu, run a scenario with the probes of
``data/probes``, and bring out the trace plus the guest's own ground truth.

:func:`run_lab` does it all; the pieces are :mod:`.kernels` (images, BTF, config),
:mod:`.probes` (the probe set per kernel) and :mod:`.guest` (initramfs, qemu).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rmapscope import __version__
from rmapscope.errors import LabError, UsageError
from rmapscope.record import expand_events

from .dat import assemble, trace_clock
from .guest import ARCHES, build_initramfs, run_guest
from .kernels import Kernel, arch_of, resolve_kernel
from .probes import probe_set

__all__ = ["SCENARIOS", "LabResult", "parse_truth", "run_lab"]

#: Scenario -> what it does (the workload in data/lab/workload.c implements each).
SCENARIOS = {
    "fork-vs-migrate": "512 pages moved between node 0 and 1 six times (move_pages "
    "MPOL_MF_MOVE_ALL) while a fork storm keeps 3 children reading them",
    "exit-during-migration": "the same moves while 6 children fork, read and exit at once "
    "(children exit mid-migration)",
    "compaction": "4096 pages kept out of 16384 (3 of every 4 freed), a fork storm, then "
    "echo 1 > /proc/sys/vm/compact_memory, up to 8 passes until a kept page moved",
    "thp-split": "a THP (MADV_HUGEPAGE) shared with 3 forked children, its pmd split by "
    "mprotect (PTE-mapped order-9 folio), then moved to the other node twice (a failed "
    "move retried, up to 4 calls)",
    "thp-exit": "a THP moved between node 0 and 1 six times while 6 children fork, split "
    "their own pmd of it (mprotect: the order-9 folio PTE-mapped in each child, PMD-mapped in "
    "the parent), read it and exit at once",
}

#: The events the guest enables besides the probes (record's migration preset).
_PRESET = "migration"
_VMSTAT = re.compile(r"(\w+) (\d+)")


@dataclass
class LabResult:
    """One lab run: where it wrote, what the guest said, the counts the CLI prints."""

    trace: Path
    meta: Path
    tracedat: Path
    kernel: Kernel
    accel: str
    seconds: float
    events: int
    pages_moved: int
    meta_data: dict = field(default_factory=dict)
    console: str = ""


def _events() -> list[str]:
    out = ["rmapscope"]
    for spec in expand_events(_PRESET):
        sys_, _, ev = spec.partition(":")
        out.append(sys_ if ev in ("", "*") else f"{sys_}/{ev}")
    return out


def parse_truth(text: str) -> dict:
    """The workload's JSON lines as the sidecar's ``truth``: the pfns of every page after
    each round (``rounds``), the ``move_pages`` results, and ``moves`` (one per page and
    round whose pfn changed: addr, round, old_pfn, new_pfn, status)."""
    rows = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
    start: dict = next((r for r in rows if r["kind"] == "start"), {})
    page = start.get("page_size", 4096)
    rounds = [r for r in rows if r["kind"] == "pfns"]
    calls = {r["round"]: r for r in rows if r["kind"] == "move_pages"}
    moves = []
    for prev, cur in itertools.pairwise(rounds):
        base, stride = int(cur["base"], 16), cur.get("stride", 1)
        status = cur.get("status") or [None] * len(cur["pfn"])
        for i, (old, new) in enumerate(zip(prev["pfn"], cur["pfn"], strict=True)):
            if old and new and old != new:
                moves.append(
                    {
                        "addr": hex(base + i * page * stride),
                        "round": cur["round"],
                        "old_pfn": old,
                        "new_pfn": new,
                        "status": status[i],
                    }
                )
    return {
        "pid": start.get("pid"),
        "page_size": page,
        "rounds": [{k: v for k, v in r.items() if k != "kind"} for r in rounds],
        "move_pages": [{k: v for k, v in r.items() if k != "kind"} for r in calls.values()],
        "moves": moves,
        "other": [r for r in rows if r["kind"] not in ("pfns", "move_pages", "start", "end")],
        "complete": any(r["kind"] == "end" for r in rows),
    }


def _vmstat_delta(before: str, after: str) -> dict[str, int]:
    b = dict(_VMSTAT.findall(before))
    out = {}
    for k, v in _VMSTAT.findall(after):
        if k in b and int(v) != int(b[k]):
            out[k] = int(v) - int(b[k])
    return out


def _lost(stats: str) -> dict[str, int]:
    out = {"overrun": 0, "dropped_events": 0}
    for k, v in re.findall(r"^(overrun|dropped events): (\d+)", stats, re.M):
        out[k.replace(" ", "_")] += int(v)
    return out


def _json(meta: dict) -> bytes:
    return (json.dumps(meta, indent=1) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_lab(
    kernel: str = "debian:6.1",
    scenario: str = "fork-vs-migrate",
    *,
    output: Path,
    cpus: int = 2,
    numa_nodes: int = 2,
    memory: int = 512,
    seed: int = 1,
    timeout: float = 300.0,
    arch: str | None = None,
    accel: str = "auto",
    probes: Sequence[str] | None = None,
    note: Callable[[str], None] = lambda msg: None,
) -> LabResult:
    """Boot ``kernel`` (on ``arch``, default from the spec: :func:`~.kernels.arch_of`),
    run ``scenario``, write ``output`` (tracefs text), ``output.dat`` (the trace.dat of the
    same recording, from the guest's raw ring buffer; with its own ``output.dat.meta.json``)
    and ``output.meta.json`` (kernel facts, probes, truth); nothing is written on failure.

    ``probes``: definition lines to load instead of ``data/probes/kprobe_events`` (in the
    same ``f:`` syntax, translated to kprobes with BTF offsets where the kernel needs it)."""
    if scenario not in SCENARIOS:
        raise UsageError(
            f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}", params=("scenario",)
        )
    if numa_nodes < 1 or cpus < 1 or memory < 128:
        raise UsageError("--cpus and --numa-nodes must be >= 1, --memory >= 128 (MB)")
    if scenario != "compaction" and numa_nodes < 2:
        raise UsageError(f"scenario {scenario} moves pages between nodes: --numa-nodes >= 2")
    arch = arch or arch_of(kernel)
    if arch not in ARCHES:
        raise UsageError(f"unknown arch {arch!r}; known: {', '.join(ARCHES)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    k = resolve_kernel(kernel, arch)
    btf = k.btf()
    lines, syntax = probe_set(k.version, k.config, btf, probes)
    note(f"kernel {k.release or k.image} ({k.spec}), probes as {syntax}")
    conf = {
        "LAB_SCENARIO": scenario,
        "LAB_SEED": str(seed),
        "LAB_DATA_PORT": ARCHES[arch][3],
        "LAB_BUFFER_KB": str(max(4096, memory * 1024 // 16 // cpus)),
    }
    with tempfile.TemporaryDirectory(prefix="rmapscope-lab-") as tmp:
        initrd = build_initramfs(
            arch, conf, [p.line for p in lines], _events(), Path(tmp) / "initrd.gz"
        )
        g = run_guest(
            arch,
            k.image,
            initrd,
            cpus=cpus,
            nodes=numa_nodes,
            memory=memory,
            timeout=timeout,
            accel=accel,
        )
    note(f"guest ran {g.seconds:.1f} s under {g.accel.upper()}")
    f = {n: b.decode(errors="replace") for n, b in g.files.items()}
    if g.status == "refused":
        line = f.get("refused.txt", "?").strip()
        log = [ln for ln in f.get("error_log.txt", "").splitlines() if ln.strip()]
        name = line.split()[0].split(":", 1)[-1] if line else "?"
        raise LabError(
            f"probe {name} refused by {k.release}: {line!r}: "
            f"{' '.join(s.strip() for s in log[-3:]) or f.get('probe_err.txt', '').strip()}"
        )
    trace = g.files.get("trace.txt")
    if trace is None or "truth.jsonl" not in f:
        raise LabError(f"the guest sent no trace (files: {', '.join(sorted(g.files))})")
    truth = parse_truth(f["truth.jsonl"])
    if not truth["complete"]:
        raise LabError(
            f"the workload did not finish (status {f.get('workload_status.txt', '?')}"
            f".strip(): {f.get('workload_err.txt', '').strip()[-200:]}"
        )
    uname = f.get("uname.txt", "").splitlines()
    if f.get("raw_error.txt", "").strip() or "tracedat.tar" not in g.files:
        what = f.get("raw_error.txt", "").strip().splitlines() or ["the guest sent no tracedat.tar"]
        raise LabError(f"capturing the raw ring buffer failed: {'; '.join(what)}")
    host = f"lab-{(k.release or 'kernel').replace('/', '_')}"
    release = uname[0] if uname else k.release or "unknown"
    machine = uname[2] if len(uname) > 2 else arch
    dat = assemble(
        g.files["tracedat.tar"],
        f"Linux {host} {release} {uname[1] if len(uname) > 1 else '#'} {machine}",
    )
    dat_path = output.with_name(output.name + ".dat")
    lost = _lost(f.get("stats.txt", ""))
    events = sum(1 for ln in trace.splitlines() if ln and not ln.startswith(b"#"))
    meta = {
        "tool": "rmapscope lab",
        "tool_version": __version__,
        "format": "tracefs",
        "output": output.name,
        "tracedat": dat_path.name,
        "host": host,
        "kernel_release": release,
        "kernel_version": uname[1] if len(uname) > 1 else None,
        "machine": machine,
        "cpus": cpus,
        "clock": trace_clock(g.files["tracedat.tar"]),
        "events": _events(),
        "missing_events": f.get("missing.txt", "").split(),
        "lost_events": lost["overrun"] + lost["dropped_events"],
        "complete": True,
        "kernel_spec": kernel,
        "kernel_package": k.package,
        "kernel_config": k.facts(),
        "probe_syntax": syntax,
        "probes": [p.line for p in lines],
        "probes_loaded": f.get("probes_loaded.txt", "").splitlines(),
        "scenario": scenario,
        "scenario_text": SCENARIOS[scenario],
        "seed": seed,
        "numa_nodes": numa_nodes,
        "memory_mb": memory,
        "accel": g.accel,
        "guest_seconds": round(g.seconds, 2),
        "trace_events": events,
        "vmstat_delta": _vmstat_delta(
            f.get("vmstat_before.txt", ""), f.get("vmstat_after.txt", "")
        ),
        "truth": truth,
    }
    meta_path = output.with_name(output.name + ".meta.json")
    dat_meta = {**meta, "format": "trace_dat", "output": dat_path.name, "text": output.name}
    del dat_meta["tracedat"]
    _write_atomic(output, trace)
    _write_atomic(dat_path, dat)
    _write_atomic(dat_path.with_name(dat_path.name + ".meta.json"), _json(dat_meta))
    _write_atomic(meta_path, _json(meta))
    console = g.console + "\n----- dmesg -----\n" + f.get("dmesg", "")
    _write_atomic(output.with_name(output.name + ".console.log"), console.encode())
    return LabResult(
        output,
        meta_path,
        dat_path,
        k,
        g.accel,
        g.seconds,
        events,
        len(truth["moves"]),
        meta,
        console,
    )
