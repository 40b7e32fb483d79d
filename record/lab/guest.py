"""The guest: an initramfs built here (busybox-static, the static workload, the init script,
the probe lines) booted under qemu with a hard timeout; its results come back framed on the
second serial port."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gzip
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rmapscope.errors import LabError

from .kernels import cache_dir, fetch_busybox

__all__ = ["GuestResult", "build_initramfs", "compile_static", "run_guest"]

#: arch -> (qemu binary, C compiler, console, data port, machine options). qemu's arm64
#: ``virt`` machine has one UART: the data goes on the console there (printk silenced first).
ARCHES = {
    "x86_64": ("qemu-system-x86_64", "gcc", "ttyS0", "/dev/ttyS1", []),
    "aarch64": (
        "qemu-system-aarch64",
        "aarch64-linux-gnu-gcc",
        "ttyAMA0",
        "/dev/ttyAMA0",
        ["-machine", "virt"],
    ),
}
_BUSYBOX = ("/usr/bin/busybox", "/bin/busybox")


def _data(name: str) -> bytes:
    return (resources.files("rmapscope.data") / "lab" / name).read_bytes()


def compile_static(arch: str, source: str) -> Path:
    """The C program ``data/lab/<source>`` built ``-static`` for ``arch`` (cached by source
    hash)."""
    cc = ARCHES[arch][1]
    if shutil.which(cc) is None:
        raise LabError(
            f"no C compiler: {cc} not found (apt-get install "
            f"{'gcc' if arch == 'x86_64' else 'gcc-aarch64-linux-gnu'})"
        )
    src = _data(source)
    stem = source.removesuffix(".c")
    out = cache_dir() / "lab" / f"{stem}-{arch}-{hashlib.sha256(src).hexdigest()[:12]}"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        c = Path(tmp) / source
        c.write_bytes(src)
        r = subprocess.run(
            [cc, "-static", "-O2", "-o", str(Path(tmp) / "w"), str(c)],
            capture_output=True,
            text=True,
        )
        if r.returncode:
            raise LabError(
                f"{cc} -static failed on data/lab/{source}: "
                f"{(r.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        shutil.move(str(Path(tmp) / "w"), out)
    return out


def _busybox(arch: str) -> Path:
    if arch == "x86_64":
        for p in _BUSYBOX:
            if Path(p).is_file():
                return Path(p)
        raise LabError("busybox-static not found (apt-get install busybox-static)")
    return fetch_busybox(arch)


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (name, mode, data) entries (directories: mode 0o040755)."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}" for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        )
        out += hdr.encode() + nb
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_initramfs(
    arch: str, conf: dict[str, str], probes: list[str], events: list[str], dest: Path
) -> Path:
    """Write the guest's initramfs (gzip'd newc cpio) to ``dest``."""
    entries = [(d, 0o040755, b"") for d in ("bin", "proc", "sys", "dev", "tmp")]
    entries += [
        ("bin/busybox", 0o100755, _busybox(arch).read_bytes()),
        ("init", 0o100755, _data("init.sh")),
        ("workload", 0o100755, compile_static(arch, "workload.c").read_bytes()),
        ("rawdump", 0o100755, compile_static(arch, "rawdump.c").read_bytes()),
        ("lab.conf", 0o100644, "".join(f"{k}='{v}'\n" for k, v in conf.items()).encode()),
        ("probes.txt", 0o100644, ("\n".join(probes) + "\n").encode()),
        ("events.txt", 0o100644, ("\n".join(events) + "\n").encode()),
    ]
    dest.write_bytes(gzip.compress(_cpio(entries), 6))
    return dest


@dataclass
class GuestResult:
    """What came back: the files the guest sent, its console, timings, the accelerator."""

    files: dict[str, bytes]
    console: str
    status: str  # "ok" or "refused"
    seconds: float
    accel: str


_KVM_OK: dict[str, bool] = {}


def kvm_boots(arch: str, image: Path, initrd: Path) -> bool:
    """Whether a KVM guest gets past early boot here (a short probe, remembered)."""
    if arch != os.uname().machine or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    if arch in _KVM_OK:
        return _KVM_OK[arch]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "c.log"
        cmd = [
            ARCHES[arch][0],
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-smp",
            "1",
            "-kernel",
            str(image),
            "-initrd",
            str(initrd),
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{log}",
            "-monitor",
            "none",
            "-append",
            "console=ttyS0 rdinit=/bin/busybox panic=-1",
        ]
        ok = False
        try:
            p = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and p.poll() is None:
                if b"Freeing unused kernel" in log.read_bytes() if log.exists() else False:
                    ok = True
                    break
                time.sleep(0.5)
        finally:
            _kill(p)
    _KVM_OK[arch] = ok
    return ok


def _die_with_parent() -> None:
    """In the qemu child: start a session (killed as a group) and die when we die."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    p.wait()


_FRAME = re.compile(rb"@@BEGIN (\S+)\r?\n(.*?)@@END \1\r?\n", re.S)


def _frames(raw: bytes) -> tuple[dict[str, bytes], str | None]:
    files = {}
    for m in _FRAME.finditer(raw):
        files[m.group(1).decode()] = gzip.decompress(base64.b64decode(m.group(2)))
    done = re.search(rb"@@DONE (\w+)", raw)
    return files, done.group(1).decode() if done else None


def run_guest(
    arch: str,
    image: Path,
    initrd: Path,
    *,
    cpus: int,
    nodes: int,
    memory: int,
    timeout: float,
    accel: str = "auto",
    cmdline: str = "",
) -> GuestResult:
    """Boot ``image`` with ``initrd`` and wait for its results (at most ``timeout`` s; the
    qemu process group is killed in every case)."""
    qemu, _, console, port, machine = ARCHES[arch]
    shared = port == f"/dev/{console}"  # the data goes on the console
    if shutil.which(qemu) is None:
        raise LabError(
            f"no qemu: {qemu} not found (apt-get install "
            f"{'qemu-system-x86' if arch == 'x86_64' else 'qemu-system-arm'})"
        )
    if accel == "auto":
        accel = "kvm" if kvm_boots(arch, image, initrd) else "tcg"
    cpu = ["-cpu", "host"] if accel == "kvm" else ["-cpu", "max"]
    numa: list[str] = []
    per = memory // nodes
    for n in range(nodes):
        cpu_opts = "".join(f",cpus={c}" for c in range(cpus) if c % nodes == n)
        numa += [
            "-object",
            f"memory-backend-ram,id=m{n},size={per}M",
            "-numa",
            f"node,nodeid={n},memdev=m{n}{cpu_opts}",
        ]
    with tempfile.TemporaryDirectory(prefix="rmapscope-lab-") as tmp:
        con, data = Path(tmp) / "console.log", Path(tmp) / "data.out"
        append = (
            f"console={console} rdinit=/init panic=-1 loglevel=6 "
            f"transparent_hugepage=madvise {cmdline}"
        ).strip()
        cmd = [
            qemu,
            *machine,
            "-accel",
            accel,
            *cpu,
            "-smp",
            f"{cpus},sockets={nodes},cores={max(1, cpus // nodes)}"
            if cpus % nodes == 0
            else str(cpus),
            "-m",
            f"{per * nodes}M",
            *numa,
            "-kernel",
            str(image),
            "-initrd",
            str(initrd),
            "-append",
            append,
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
            "-nodefaults",
            "-serial",
            f"file:{con}",
            *(["-serial", f"file:{data}"] if shared is False else []),
        ]
        t0 = time.monotonic()
        errlog = Path(tmp) / "qemu.err"
        with errlog.open("wb") as errf:
            p = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=errf, preexec_fn=_die_with_parent
            )
            try:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout)
            finally:
                _kill(p)
        seconds = time.monotonic() - t0
        stderr = errlog.read_text(errors="replace")
        raw = (con if shared else data).read_bytes() if (con if shared else data).exists() else b""
        console_text = con.read_text(errors="replace") if con.exists() else ""
    files, status = _frames(raw)
    if status is None:
        if seconds >= timeout:
            raise LabError(
                f"guest timeout: no results after {timeout:g} s ({accel}); last "
                f"console line: {_last(console_text)}"
            )
        raise LabError(f"{qemu} ended without results: {_last(stderr) or _last(console_text)}")
    return GuestResult(files, console_text, status, seconds, accel)


def _last(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
