"""Record tracepoints on this machine into a compressed ``trace_pipe`` stream.

No trace-cmd needed (``trace-cmd record`` cannot run on kernels that refuse
``set_ftrace_pid``). By default the recording runs in its own tracefs instance
(``instances/rmapscope-<pid>``), so another user of the top-level buffer is never disturbed;
every tracefs setting changed is written back on exit, including after Ctrl-C, SIGTERM and
SIGHUP, and the instance is removed. The output is the text ``trace_pipe`` prints, compressed
with zstd (or gzip for ``.gz``) in frames flushed every second, so the file on disk is always a
valid stream that :func:`rmapscope.ingest.ingest` reads; metadata (kernel, clock, events, host,
lost events) goes to a JSON sidecar ``<output>.meta.json``.

Recording needs root and a writable tracefs, so this example is not run as a doctest:

>>> from rmapscope.record import record  # doctest: +SKIP
>>> r = record("box1.trace.zst", duration=10)  # doctest: +SKIP
>>> r.lines, r.lost_events  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fnmatch
import json
import math
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import zstandard

from rmapscope import __version__
from rmapscope.errors import RmapscopeError, UsageError

__all__ = [
    "PRESETS",
    "RecordPlan",
    "RecordProgress",
    "RecordResult",
    "default_output",
    "equivalent_commands",
    "expand_events",
    "find_tracefs",
    "record",
]

_MIGRATION = (
    "sched:sched_process_fork",
    "sched:sched_process_exec",
    "sched:sched_process_exit",
    "sched:sched_process_free",
    "task:task_newtask",
    "mmap:exit_mmap",  # ends an exit's silent zap of migration entries (see replay)
    "migrate:*",
    "thp:*",
    "compaction:*",
)

#: Event sets by name; ``--event`` adds to the chosen one.
PRESETS: dict[str, tuple[str, ...]] = {
    "migration": _MIGRATION,
    "full": (
        *_MIGRATION,
        "task:task_rename",
        "kmem:mm_page_alloc",
        "kmem:mm_page_free",
        "kmem:mm_page_free_batched",
        "huge_memory:*",
        "ksm:*",
    ),
    "none": (),
}

DEFAULT_BUFFER_KB = 8192
_INSTANCE_PREFIX = "rmapscope-"
_FLUSH_EVERY = 1.0  # seconds between zstd/gzip frame ends (the file is valid up to there)
_STATS_EVERY = 1.0
_PROGRESS_EVERY = 0.5
_POLL = 0.1
_CHILD_GRACE = 5.0  # after a stop signal, how long to wait for the command to exit
_DRAIN_LIMIT = 30.0  # seconds to drain the buffer after tracing stops


@dataclass
class RecordPlan:
    """What a recording is about to do (given to ``on_start`` once tracing is armed)."""

    output: Path
    tracefs: Path
    instance: str | None  # None: the top-level buffer
    events: list[str]  # "system:event", as enabled
    skipped: list[str]  # requested but absent on this kernel
    buffer_kb: int
    clock: str
    compression: str
    trace_cmd: str  # equivalent command lines
    perf: str


@dataclass
class RecordProgress:
    """Counters passed to the ``progress`` callback about twice a second."""

    elapsed: float
    lines: int
    bytes_text: int
    bytes_written: int
    lost_events: int


@dataclass
class RecordResult:
    """What one recording did."""

    output: Path
    meta: Path
    host: str
    instance: str | None  # None: the top-level buffer
    instance_created: bool  # and removed again at the end
    events: list[str]
    skipped: list[str]
    buffer_kb: int
    clock: str
    compression: str
    started_at: str  # ISO 8601 UTC
    seconds: float
    stop_reason: str  # "duration", "command", "SIGINT", "SIGTERM", "SIGHUP"
    lines: int = 0  # text lines written (events and lost-event markers)
    bytes_text: int = 0
    bytes_written: int = 0
    lost_markers: int = 0  # "CPU:N [LOST n EVENTS]" lines in the stream
    lost_in_stream: int = 0  # sum of their n
    overrun: int = 0  # per_cpu stats: events overwritten before they were read
    dropped: int = 0  # per_cpu stats: events dropped (buffer full, overwrite off)
    command: list[str] | None = None
    command_pid: int | None = None
    command_status: int | None = None  # exit status; -N for signal N; None if still running
    trace_cmd: str = ""
    perf: str = ""
    warnings: list[str] = field(default_factory=list)
    restore_errors: list[str] = field(default_factory=list)

    @property
    def lost_events(self) -> int:
        """Events the kernel could not hand over (overruns and drops, per the ring buffer)."""
        return max(self.overrun + self.dropped, self.lost_in_stream)


# --------------------------------------------------------------------------------------------
# tracefs


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def find_tracefs(mount: bool = True) -> tuple[Path, bool]:
    """The tracefs root, and whether this call mounted it.

    Looks in ``/proc/mounts`` for a tracefs mount, then at ``/sys/kernel/tracing``; mounts
    tracefs there when ``mount`` and it is missing. Raises :class:`RmapscopeError` when there
    is none and it cannot be mounted.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "tracefs":
                root = Path(parts[1].replace("\\040", " "))
                if (root / "trace_pipe").exists():
                    return root, False
    default = Path("/sys/kernel/tracing")
    if (default / "trace_pipe").exists():
        return default, False
    legacy = Path("/sys/kernel/debug/tracing")
    if (legacy / "trace_pipe").exists():
        return legacy, False
    if not mount:
        raise RmapscopeError("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")
    if not default.is_dir():
        raise RmapscopeError(
            f"cannot mount tracefs: {default} does not exist (kernel without CONFIG_TRACING?)"
        )
    libc = _libc()
    if libc.mount(b"nodev", bytes(default), b"tracefs", 0, None) != 0:
        e = ctypes.get_errno()
        raise RmapscopeError(f"cannot mount tracefs on {default}: {os.strerror(e)}")
    if not (default / "trace_pipe").exists():
        libc.umount2(bytes(default), 0)
        raise RmapscopeError(f"mounted tracefs on {default} but it has no trace_pipe")
    return default, True


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        raise RmapscopeError(f"{path}: permission denied (tracefs needs root)") from None
    except OSError as e:
        raise RmapscopeError(f"{path}: cannot read: {e.strerror}") from None


def _write(path: Path, value: str) -> None:
    """Write ``value`` to a tracefs file (OSError on failure, with the path in it)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)


def _bracketed(text: str) -> str:
    m = re.search(r"\[(\S+)\]", text)
    return m.group(1) if m else text.split()[0]


def _buffer_kb(text: str) -> str:
    """``7 (expanded: 1408)`` -> ``1408``: the size the buffer has once tracing uses it."""
    m = re.search(r"expanded:\s*(\d+)", text)
    return m.group(1) if m else text.split()[0]


def _cpu_stats(base: Path) -> dict[int, dict[str, str]]:
    out = {}
    percpu = base / "per_cpu"
    with contextlib.suppress(OSError):
        for d in percpu.iterdir():
            if not d.name.startswith("cpu") or not d.name[3:].isdigit():
                continue
            stats = {}
            with contextlib.suppress(OSError):
                for line in (d / "stats").read_text().splitlines():
                    key, _, value = line.partition(":")
                    stats[key.strip()] = value.strip()
            out[int(d.name[3:])] = stats
    return dict(sorted(out.items()))


def _counter(stats: dict[str, str], key: str) -> int:
    try:
        return int(stats.get(key, "0").split()[0])
    except (ValueError, IndexError):
        return 0


class _Journal:
    """Every tracefs change with the value to write back; undone in reverse order."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def set(self, path: Path, value: str, previous: str | None = None) -> None:
        """Write ``value`` to ``path`` unless it already holds it; remember the old value."""
        if previous is None:
            previous = _read(path)
        if previous == value:
            return
        try:
            _write(path, value)
        except OSError as e:
            raise RmapscopeError(
                f"cannot write {value!r} to {path}: {e.strerror or e}"
                + (" (tracefs needs root)" if e.errno in (errno.EPERM, errno.EACCES) else "")
            ) from None
        self._undo.append((f"{path} = {previous!r}", lambda: _write(path, previous)))

    def action(self, what: str, undo: Callable[[], None]) -> None:
        """Remember an undo step that is not a file write (rmdir, umount)."""
        self._undo.append((what, undo))

    def restore(self) -> list[str]:
        """Undo everything, newest first; keep going past failures and return them."""
        errors = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except OSError as e:
                errors.append(f"could not restore {what}: {e.strerror or e}")
        return errors


def _rmdir_retry(path: Path) -> None:
    for attempt in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or attempt == 19:
                raise
            time.sleep(0.05)


def _umount(path: Path) -> None:
    if _libc().umount2(bytes(path), 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"umount {path}: {os.strerror(e)}")


# --------------------------------------------------------------------------------------------
# events


def expand_events(preset: str, extra: Sequence[str] = ()) -> list[str]:
    """The event specs of ``preset`` plus ``extra`` (comma lists allowed), in order, unique.

    A spec is ``system:event`` (globs allowed: ``migrate:*``), ``system`` or ``event``.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    specs: list[str] = []
    for spec in (*PRESETS[preset], *extra):
        for part in spec.split(","):
            part = part.strip().replace("/", ":")
            if not part:
                continue
            if part.count(":") > 1 or part.startswith(":"):
                raise UsageError(f"bad event {part!r}: expected system:event, system or event")
            if part not in specs:
                specs.append(part)
    return specs


def _resolve(events_dir: Path, specs: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(enabled "sys:event" list, compact specs for other tools, specs that matched nothing)."""
    systems = sorted(d.name for d in events_dir.iterdir() if d.is_dir())

    def events_of(system: str) -> list[str]:
        d = events_dir / system
        return sorted(e.name for e in d.iterdir() if (e / "enable").exists() and e.is_dir())

    found: list[str] = []
    compact: list[str] = []
    missing: list[str] = []
    for spec in specs:
        if ":" in spec:
            sys_pat, ev_pat = spec.split(":")
        elif spec in systems and not (events_dir / spec / "format").exists():
            sys_pat, ev_pat = spec, "*"
        else:
            sys_pat, ev_pat = "*", spec
        hits = [
            f"{s}:{e}"
            for s in systems
            if fnmatch.fnmatchcase(s, sys_pat)
            for e in events_of(s)
            if fnmatch.fnmatchcase(e, ev_pat)
        ]
        if not hits:
            missing.append(spec)
            continue
        new = [h for h in hits if h not in found]
        found.extend(new)
        if not new:
            continue
        whole = {h.split(":")[0] for h in new}
        if len(whole) == 1 and ev_pat == "*" and "*" not in sys_pat:
            compact.append(f"{sys_pat}:*")
        else:
            compact.extend(new)
    return found, compact, missing


def equivalent_commands(
    events: Sequence[str],
    *,
    buffer_kb: int | None,
    clock: str,
    output: str | Path,
    command: Sequence[str] | None = None,
    duration: float | None = None,
) -> tuple[str, str]:
    """The ``trace-cmd record`` and ``perf record`` command lines recording the same events.

    ``events`` are ``system:event`` or ``system:*`` specs.
    """
    stem = str(output)
    for ext in (".zst", ".zstd", ".gz", ".txt", ".trace"):
        stem = stem.removesuffix(ext)
    if command:
        tail = ["--", *command]
    elif duration:
        tail = ["--", "sleep", f"{duration:g}"]
    else:
        tail = []
    tc = ["trace-cmd", "record"]
    for ev in events:
        tc += ["-e", ev[:-2] if ev.endswith(":*") else ev]
    if buffer_kb:
        tc += ["-b", str(buffer_kb)]
    tc += ["-C", clock, "-o", f"{stem}.dat", *tail]
    perf = ["perf", "record", "-e", ",".join(events), "-a", "-o", f"{stem}.perf.data", *tail]
    return shlex.join(tc), shlex.join(perf)


# --------------------------------------------------------------------------------------------
# output


def _compression_for(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith((".txt", ".log")):
        return "none"
    return "zstd"


class _Compressor(Protocol):
    """A streaming compressor: zstandard's compressobj or zlib's."""

    def compress(self, data: bytes, /) -> bytes:
        """Compress ``data``; returns what is ready of the output."""
        ...

    def flush(self, mode: int, /) -> bytes:
        """The rest of the output (``mode`` ends the frame or stream)."""
        ...


class _Sink:
    """Compressed output in independent frames (zstd) or members (gzip), one per flush."""

    def __init__(self, path: Path, compression: str, force: bool) -> None:
        self.path = path
        self.compression = compression
        self.file = open(path, "wb" if force else "xb")  # noqa: SIM115 - closed in close()
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.bytes_text = 0
        self.bytes_written = 0
        self._zstd = zstandard.ZstdCompressor(level=3)
        self._cobj: _Compressor | None = None

    def write(self, chunk: bytes) -> None:
        self.pending.append(chunk)
        self.pending_bytes += len(chunk)
        self.bytes_text += len(chunk)
        if self.pending_bytes >= 4 << 20:
            self._compress()

    def _compress(self) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        if self.compression == "none":
            self._out(data)
            return
        if self._cobj is None:
            if self.compression == "zstd":
                self._cobj = self._zstd.compressobj()
            else:
                self._cobj = zlib.compressobj(6, zlib.DEFLATED, 31)
        self._out(self._cobj.compress(data))

    def _out(self, data: bytes) -> None:
        if data:
            self.file.write(data)
            self.bytes_written += len(data)

    def flush(self) -> None:
        """End the current frame and push it to disk: the file is complete up to here."""
        self._compress()
        if self._cobj is not None:
            if self.compression == "zstd":
                self._out(self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
            else:
                self._out(self._cobj.flush(zlib.Z_FINISH))
            self._cobj = None
        self.file.flush()

    def close(self) -> None:
        try:
            self.flush()
            os.fsync(self.file.fileno())
        finally:
            self.file.close()


# --------------------------------------------------------------------------------------------
# signals


class _Stop:
    """Set by SIGINT/SIGTERM/SIGHUP; the recording loop polls it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self._old: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def _handler(self, signum, frame) -> None:
        self.signum = self.signum or signum
        self.count += 1

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are delivered to the main thread only; the caller handles them
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handler)

    def uninstall(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()


# --------------------------------------------------------------------------------------------
# the recording


def default_output() -> Path:
    """``rmapscope-<host>-<YYYYmmdd-HHMMSS>.trace.zst`` in the current directory."""
    host = socket.gethostname().split(".")[0] or "localhost"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(f"rmapscope-{host}-{stamp}.trace.zst")


def _default_buffer_kb(ncpus: int) -> int:
    """8192 KB per CPU, less where the whole buffer would exceed 1/16 of available memory."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return DEFAULT_BUFFER_KB
    m = re.search(r"MemAvailable:\s+(\d+)", meminfo)
    if m is None:
        return DEFAULT_BUFFER_KB
    avail = int(m.group(1))
    return max(1024, min(DEFAULT_BUFFER_KB, avail // 16 // max(ncpus, 1)))


def record(
    output: str | Path | None = None,
    *,
    preset: str = "migration",
    events: Sequence[str] = (),
    buffer_kb: int | None = None,
    duration: float | None = None,
    command: Sequence[str] | None = None,
    instance: str | None = None,
    top_level: bool = False,
    clock: str = "local",
    force: bool = False,
    tracefs: str | Path | None = None,
    progress: Callable[[RecordProgress], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_start: Callable[[RecordPlan], None] | None = None,
) -> RecordResult:
    """Record ``preset`` + ``events`` into ``output`` while ``command`` runs or for ``duration``.

    Without either, records until SIGINT/SIGTERM/SIGHUP (in the main thread; from another
    thread, ``duration`` or ``command`` is required). A stop signal ends the recording
    normally: the file is complete and the result says which signal stopped it. Uses the
    tracefs instance ``instance`` (created and removed if missing; default
    ``rmapscope-<pid>``) or, with ``top_level``, the top-level buffer (whose current
    contents are discarded). Every tracefs setting changed is restored before returning
    (failures are listed in ``restore_errors``). Raises :class:`UsageError` for bad
    arguments, :class:`RmapscopeError` when not root or tracefs is unusable.
    """
    warn_list: list[str] = []

    def warn(msg: str) -> None:
        warn_list.append(msg)
        if on_warning is not None:
            on_warning(msg)

    # -- arguments -------------------------------------------------------------------------
    specs = expand_events(preset, events)
    if not specs:
        raise UsageError(
            "no events to record: give `events` or a preset other than 'none'", params=("events",)
        )
    if duration is not None and not duration > 0:
        raise UsageError(f"`duration` must be positive, not {duration}", params=("duration",))
    if buffer_kb is not None and buffer_kb < 4:
        raise UsageError(f"`buffer_kb` must be at least 4, not {buffer_kb}", params=("buffer_kb",))
    if top_level and instance:
        raise UsageError(
            "`instance` and `top_level` exclude each other", params=("instance", "top_level")
        )
    if instance is not None and (
        not instance or "/" in instance or instance in (".", "..") or "\0" in instance
    ):
        raise UsageError(f"bad instance name {instance!r}")
    command = list(command) if command else None
    if command and os.sep not in command[0] and shutil.which(command[0]) is None:
        raise UsageError(f"{command[0]}: command not found")
    in_main = threading.current_thread() is threading.main_thread()
    if duration is None and not command and not in_main:
        raise UsageError("outside the main thread a recording needs a duration or a command")
    out = Path(output) if output is not None else default_output()
    if out.exists() and not force:
        raise UsageError(
            f"{out}: already exists (use `force=True` to overwrite)", params=("force",)
        )
    if out.is_dir():
        raise UsageError(f"{out}: is a directory")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: no such directory")
    compression = _compression_for(out)
    meta_path = out.with_name(out.name + ".meta.json")

    if os.geteuid() != 0:
        raise RmapscopeError(
            f"recording needs root (tracefs is writable by root only; running as uid "
            f"{os.geteuid()}): run it with sudo"
        )

    # -- tracefs ---------------------------------------------------------------------------
    journal = _Journal()
    stop = _Stop()
    sink: _Sink | None = None
    fd: int | None = None
    child: subprocess.Popen | None = None
    result: RecordResult | None = None
    stop.install()
    try:
        if tracefs is not None:
            root = Path(tracefs)
            if not (root / "trace_pipe").exists() or not (root / "events").is_dir():
                raise RmapscopeError(f"{root}: not a tracefs mount (no trace_pipe or events/)")
        else:
            root, mounted = find_tracefs(mount=True)
            if mounted:
                journal.action(f"umount {root}", lambda: _umount(root))
        available_clocks = _read(root / "trace_clock").replace("[", "").replace("]", "").split()
        if clock not in available_clocks:
            raise UsageError(
                f"unknown trace clock {clock!r}; this kernel has: {', '.join(available_clocks)}"
            )
        _warn_stale_instances(root, warn)

        if top_level:
            base, inst_name, created = root, None, False
        else:
            inst_name, base, created = _open_instance(root, instance, journal)
        ncpus = len(_cpu_stats(base)) or os.cpu_count() or 1
        kb = buffer_kb or _default_buffer_kb(ncpus)

        found, compact, missing = _resolve(base / "events", specs)
        for spec in missing:
            warn(f"event {spec} does not exist on this kernel; skipped")
        if not found:
            raise RmapscopeError(
                f"none of the events exist on this kernel ({', '.join(specs)}); "
                f"see {root}/available_events"
            )
        trace_cmd, perf = equivalent_commands(
            compact, buffer_kb=kb, clock=clock, output=out, command=command, duration=duration
        )

        # -- arm: tracing off, tracer nop, buffer, clock, events, empty buffer ------------
        journal.set(base / "tracing_on", "0")
        tracer = base / "current_tracer"
        if tracer.exists():
            journal.set(tracer, "nop")
        _set_buffer_size(base, kb, journal)
        journal.set(base / "trace_clock", clock, _bracketed(_read(base / "trace_clock")))
        enabled_before = set(_read(base / "set_event").split())
        others = sorted(enabled_before - set(found))
        if others:
            warn(
                f"{len(others)} other events are already enabled in this buffer and will be "
                f"recorded too ({', '.join(others[:5])}{', ...' if len(others) > 5 else ''})"
            )
        enabled: list[str] = []
        for ev in found:
            sysname, name = ev.split(":")
            path = base / "events" / sysname / name / "enable"
            try:
                journal.set(path, "1", "1" if ev in enabled_before else "0")
                enabled.append(ev)
            except RmapscopeError as e:
                warn(f"event {ev} cannot be enabled; skipped ({e})")
        if not enabled:
            raise RmapscopeError("no event could be enabled")
        missing += [ev for ev in found if ev not in enabled]
        _write(base / "trace", "")  # empty the buffer (a new instance is empty already)

        sink = _Sink(out, compression, force)
        fd = os.open(base / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        plan = RecordPlan(
            output=out,
            tracefs=root,
            instance=inst_name,
            events=enabled,
            skipped=missing,
            buffer_kb=kb,
            clock=clock,
            compression=compression,
            trace_cmd=trace_cmd,
            perf=perf,
        )
        started_at = dt.datetime.now(dt.UTC)
        stats0 = _cpu_stats(base)
        samples = [_clock_sample(stats0, "start")]
        meta = _meta_base(plan, command, duration, started_at, samples)
        _write_json(meta_path, {**meta, "complete": False})
        if on_start is not None:
            on_start(plan)

        # -- record ------------------------------------------------------------------------
        journal.set(base / "tracing_on", "1", "0")
        t0 = time.monotonic()
        if command:
            try:
                child = subprocess.Popen(command)
            except OSError as e:
                raise UsageError(f"{command[0]}: cannot run: {e.strerror or e}") from None
        loop = _Loop(fd, sink, base, stats0, warn, progress, t0)
        stop_reason = loop.run(stop, child, duration)
        _write(base / "tracing_on", "0")  # the journal turns it back to what it was
        loop.drain_all()
        os.close(fd)
        fd = None
        samples.append(_clock_sample(_cpu_stats(base), "end"))
        seconds = time.monotonic() - t0
        sink.close()
        result = RecordResult(
            output=out,
            meta=meta_path,
            host=socket.gethostname(),
            instance=inst_name,
            instance_created=created,
            events=enabled,
            skipped=missing,
            buffer_kb=kb,
            clock=clock,
            compression=compression,
            started_at=started_at.isoformat(),
            seconds=seconds,
            stop_reason=stop_reason,
            lines=loop.lines,
            bytes_text=sink.bytes_text,
            bytes_written=sink.bytes_written,
            lost_markers=loop.lost_markers,
            lost_in_stream=loop.lost_in_stream,
            overrun=loop.overrun,
            dropped=loop.dropped,
            command=command,
            command_pid=child.pid if child else None,
            command_status=child.poll() if child else None,
            trace_cmd=trace_cmd,
            perf=perf,
        )
        if child is not None and result.command_status is None:
            warn(f"the command is still running (pid {child.pid}); it was not killed")
        if loop.lines == 0:
            warn("no events were recorded (the output file is empty)")
    except OSError as e:  # tracefs or the output file failed under us: one clear line
        where = f"{e.filename}: " if e.filename else ""
        raise RmapscopeError(f"{where}{e.strerror or e}") from None
    finally:
        if fd is not None:
            os.close(fd)
        if sink is not None and not sink.file.closed:
            with contextlib.suppress(OSError):
                sink.close()
        restore_errors = journal.restore()
        stop.uninstall()
        if result is not None:
            result.restore_errors = restore_errors
            result.warnings = warn_list
            try:
                _write_json(meta_path, _meta_end(meta, result, samples))
            except OSError as e:
                warn(f"{meta_path}: cannot write the metadata: {e.strerror or e}")
        else:
            for msg in restore_errors:
                warn(msg)
            if sink is not None and sink.bytes_written == 0:  # nothing recorded: no files
                for p in (out, meta_path):
                    with contextlib.suppress(OSError):
                        p.unlink()
    return result


def _open_instance(root: Path, name: str | None, journal: _Journal) -> tuple[str, Path, bool]:
    instances = root / "instances"
    if not instances.is_dir():
        raise RmapscopeError(
            f"{root}: no instances/ directory (kernel too old? use `top_level=True`)",
            params=("top_level",),
        )
    if name is not None and (instances / name).is_dir():
        return name, instances / name, False
    default = f"{_INSTANCE_PREFIX}{os.getpid()}"
    candidates = [name] if name else [default, *(f"{default}-{i}" for i in range(2, 10))]
    for cand in candidates:
        path = instances / cand
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise RmapscopeError(f"cannot create tracefs instance {path}: {e.strerror}") from None
        journal.action(f"rmdir {path}", partial(_rmdir_retry, path))
        return cand, path, True
    raise RmapscopeError(f"cannot create a tracefs instance under {instances}: names taken")


def _set_buffer_size(base: Path, kb: int, journal: _Journal) -> None:
    text = _read(base / "buffer_size_kb")
    if text.split()[0] == "X":  # per-CPU sizes differ: restore each CPU's own
        for d in sorted((base / "per_cpu").glob("cpu*")):
            f = d / "buffer_size_kb"
            journal.set(f, str(kb), _buffer_kb(_read(f)))
        return
    journal.set(base / "buffer_size_kb", str(kb), _buffer_kb(text))


def _warn_stale_instances(root: Path, warn: Callable[[str], None]) -> None:
    with contextlib.suppress(OSError):
        for d in (root / "instances").iterdir():
            m = re.fullmatch(rf"{_INSTANCE_PREFIX}(\d+)(?:-\d+)?", d.name)
            if m and not Path(f"/proc/{m.group(1)}").exists():
                warn(
                    f"stale tracefs instance {d} from a recording that was killed; "
                    f"remove it with: rmdir {d}"
                )


def _clock_sample(stats: dict[int, dict[str, str]], when: str) -> dict:
    first = next(iter(stats.values()), {})
    return {
        "when": when,
        "trace_now": first.get("now ts"),
        "monotonic_ns": time.clock_gettime_ns(time.CLOCK_MONOTONIC),
        "realtime_ns": time.time_ns(),
    }


class _Loop:
    """Reads trace_pipe into the sink; polls ring-buffer stats for lost events."""

    _LOST = re.compile(rb"\[LOST (\d+) EVENTS\]")

    def __init__(self, fd, sink, base, stats0, warn, progress, t0) -> None:
        self.fd = fd
        self.sink = sink
        self.base = base
        self.warn = warn
        self.progress = progress
        self.t0 = t0
        self.lines = 0
        self.lost_markers = 0
        self.lost_in_stream = 0
        self.last = {cpu: self._counts(s) for cpu, s in stats0.items()}
        self.first = dict(self.last)
        self.overrun = 0
        self.dropped = 0
        self.eof = False

    @staticmethod
    def _counts(stats: dict[str, str]) -> tuple[int, int]:
        return _counter(stats, "overrun"), _counter(stats, "dropped events")

    def drain(self, budget: float = 0.25) -> bool:
        """Read what trace_pipe has (up to ``budget`` seconds); True if it ran dry."""
        end = time.monotonic() + budget
        while time.monotonic() < end:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            if not chunk:
                self.eof = True
                return True
            self.sink.write(chunk)
            self.lines += chunk.count(b"\n")
            if b"[LOST " in chunk:
                for m in self._LOST.finditer(chunk):
                    self.lost_markers += 1
                    self.lost_in_stream += int(m.group(1))
        return False

    def drain_all(self) -> None:
        end = time.monotonic() + _DRAIN_LIMIT
        while not self.drain():
            if time.monotonic() > end:
                self.warn(f"gave up draining the buffer after {_DRAIN_LIMIT:.0f} s")
                return
        self.poll_stats()

    def poll_stats(self) -> None:
        for cpu, stats in _cpu_stats(self.base).items():
            overrun, dropped = self._counts(stats)
            o0, d0 = self.last.get(cpu, (0, 0))
            if overrun > o0 or dropped > d0:
                what = []
                if overrun > o0:
                    what.append(f"{overrun - o0:,} events overwritten before they were read")
                if dropped > d0:
                    what.append(f"{dropped - d0:,} events dropped (buffer full)")
                self.warn(
                    f"cpu{cpu}: {' and '.join(what)} (lost events; raise --buffer-kb "
                    f"or record fewer events)"
                )
            self.last[cpu] = (overrun, dropped)
        self.overrun = sum(o - self.first.get(c, (0, 0))[0] for c, (o, _) in self.last.items())
        self.dropped = sum(d - self.first.get(c, (0, 0))[1] for c, (_, d) in self.last.items())

    def run(self, stop: _Stop, child: subprocess.Popen | None, duration: float | None) -> str:
        """Record until the duration ends, the command exits, or a stop signal; say which."""
        next_stats = self.t0 + _STATS_EVERY
        next_flush = self.t0 + _FLUSH_EVERY
        next_progress = self.t0 + _PROGRESS_EVERY
        deadline = self.t0 + duration if duration else None
        reason: str | None = None
        child_deadline = math.inf  # set with reason, when a stop signal leaves a child running
        sigint_forward: float | None = None
        while True:
            dry = self.drain()
            now = time.monotonic()
            if now >= next_flush:
                self.sink.flush()
                next_flush = now + _FLUSH_EVERY
            if now >= next_stats:
                self.poll_stats()
                next_stats = now + _STATS_EVERY
            if self.progress is not None and now >= next_progress:
                self.progress(
                    RecordProgress(
                        now - self.t0,
                        self.lines,
                        self.sink.bytes_text,
                        self.sink.bytes_written,
                        max(self.overrun + self.dropped, self.lost_in_stream),
                    )
                )
                next_progress = now + _PROGRESS_EVERY
            if stop.signum is not None and reason is None:
                reason = signal.Signals(stop.signum).name
                if child is None:
                    return reason
                child_deadline = now + _CHILD_GRACE
                if stop.signum == signal.SIGINT:
                    sigint_forward = now + 1.0  # a terminal's Ctrl-C reached the child too
                else:
                    _signal_child(child, stop.signum)
            if child is not None and child.poll() is not None:
                return reason or "command"
            if reason is not None:
                if stop.count > 1 or now >= child_deadline:
                    return reason
                if child is not None and sigint_forward is not None and now >= sigint_forward:
                    _signal_child(child, signal.SIGINT)
                    sigint_forward = None
            if deadline is not None and now >= deadline:
                return "duration"
            if dry and self.eof:
                time.sleep(_POLL)
            elif dry:
                with contextlib.suppress(InterruptedError):
                    select.select([self.fd], [], [], _POLL)


def _signal_child(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(OSError):
        child.send_signal(signum)


def _meta_base(plan: RecordPlan, command, duration, started_at, samples) -> dict:
    u = os.uname()
    return {
        "tool": "rmapscope record",
        "tool_version": __version__,
        "format": "trace_pipe",
        "output": plan.output.name,
        "compression": plan.compression,
        "host": socket.gethostname(),
        "kernel_release": u.release,
        "kernel_version": u.version,
        "machine": u.machine,
        "python_platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tracefs": str(plan.tracefs),
        "instance": plan.instance,
        "clock": plan.clock,
        "buffer_kb_per_cpu": plan.buffer_kb,
        "events": plan.events,
        "skipped_events": plan.skipped,
        "command": command,
        "duration_requested": duration,
        "started_at": started_at.isoformat(),
        "clock_samples": samples,
        "equivalent": {"trace_cmd": plan.trace_cmd, "perf": plan.perf},
    }


def _meta_end(meta: dict, result: RecordResult, samples: list[dict]) -> dict:
    r = asdict(result)
    keep = (
        *("seconds", "stop_reason", "lines", "bytes_text", "bytes_written", "lost_markers"),
        *("lost_in_stream", "overrun", "dropped", "command_pid", "command_status"),
        *("warnings", "restore_errors"),
    )
    return {
        **meta,
        **{k: r[k] for k in keep},
        "lost_events": result.lost_events,
        "clock_samples": samples,
        "complete": True,
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
