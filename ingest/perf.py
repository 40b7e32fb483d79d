"""perf.data: decoded by ``perf script`` in a subprocess, its text parsed as ``perf_script``.

perf.data has no stable documented layout of its own that would be worth re-implementing:
perf's sample format depends on each event's ``sample_type``, and the tracepoint payloads
need the format files it embeds. So we run the ``perf`` that is installed::

    perf script -f -i FILE --header --ns -F comm,pid,tid,cpu,time,event,period,trace,ip,...

(``pid`` gives tgids, ``--ns`` nanoseconds, ``--header`` host, kernel and clock.) ``cpu`` and
``period`` only when every event's ``sample_type`` has them: a per-task ``perf record`` of a
command records no CPU, and perf refuses a field its samples lack, so ``cpu`` is then null.
``ip,sym,symoff,dso`` only when the file has callchains or no tracepoint, because without a
callchain perf prints the ip at the end of a tracepoint's payload line. Its stdout is read in
blocks as it comes, never held whole. The trace id is the sha256 of the perf.data bytes, like
every other input; a compressed or piped perf.data is first copied (decompressed) to a
temporary file, because perf needs to seek.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Self

from rmapscope import config
from rmapscope.errors import InputError
from rmapscope.schema import Registry

from ._batch import Batch
from ._source import Source, read_blocks
from .text import TextReader

#: How a perf.data file starts (version 2; the older "PERFFILE").
MAGIC = (b"PERFILE2", b"PERFFILE")
FIELDS = "comm,pid,tid,cpu,time,event,period,trace"
CALLCHAIN_FIELDS = ",ip,sym,symoff,dso"
# "name: type: 1, ..., sample_type: IP|TID|TIME|CPU|PERIOD, ..." in `perf evlist -v`
_SAMPLE_TYPE = re.compile(rb"^(\S+): .*?\bsample_type: ([A-Z_|]+)", re.MULTILINE)
_TRACEPOINT = re.compile(rb"\btype: 2\b")  # PERF_TYPE_TRACEPOINT
#: -F fields perf refuses unless the samples carry them: field -> sample_type bit
_OPTIONAL = {"cpu": b"CPU", "period": b"PERIOD"}

_MISSING = (
    "{name}: perf.data needs `perf` to read it: install linux-perf (Debian) / perf, "
    "or convert it with `perf script > perf.txt`"
)


def perf_binary() -> str | None:
    """The ``perf`` to run (``$RMAPSCOPE_PERF`` or the one on ``PATH``), or None."""
    return config.perf() or shutil.which("perf")


class PerfDataReader:
    """Reads a perf.data file through ``perf script`` (its output read by a ``perf_script``
    :class:`TextReader`). Implements :class:`~rmapscope.ingest.readers.Reader`; rows are in
    time order (perf script sorts them)."""

    time_ordered = True

    def __init__(
        self, src: Source, first: bytes, rest: Iterator[bytes], arch: str, registry: Registry
    ) -> None:
        self.src = src
        if not first.startswith(MAGIC):
            raise InputError(f"{src.name}: not a perf.data file (no PERFILE2 magic at byte 0)")
        perf = perf_binary()
        if perf is None:
            raise InputError(_MISSING.format(name=src.name))
        self._spool: str | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pipe: Source | None = None
        try:
            path = self._local_file(first, rest)
            cmd = [perf, "script", "-f", "-i", path, "--header", "--ns", "-F"]
            cmd.append(script_fields(self._evlist(perf, path)))
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env={**os.environ, "LC_ALL": "C", "PAGER": "cat"},
            )
            assert self.proc.stdout is not None  # stdout=PIPE
            self.pipe = Source(
                name=src.name,
                compression=None,
                size=None,
                raw=self.proc.stdout,
                reader=self.proc.stdout,
            )
            blocks = read_blocks(self.pipe)
            head = next(blocks, b"")
            if not head.strip():
                self._check_exit()
            self.text = TextReader(self.pipe, head, blocks, "perf_script", arch, registry)
        except BaseException:
            self.close()
            raise
        self.registry = self.text.registry
        self.header = self.text.header

    def _local_file(self, first: bytes, rest: Iterator[bytes]) -> str:
        """A path perf can open holding the input's bytes; reads (and hashes) all of it."""
        plain = self.src.compression is None and self.src.size is not None
        if plain:  # a regular file: perf reads it itself; we only hash it
            for _ in rest:
                pass
            return self.src.name
        fd, self._spool = tempfile.mkstemp(prefix="rmapscope-", suffix=".perf.data")
        written = 0
        with os.fdopen(fd, "wb") as out:
            for block in _chain(first, rest):
                out.write(block)
                written += len(block)
            if written > self.src.bytes_read:
                # read_blocks ends the last block with a newline the input may not have
                out.truncate(self.src.bytes_read)
        return self._spool

    @staticmethod
    def _evlist(perf: str, path: str) -> bytes:
        """``perf evlist -v`` of the file: each event's attributes (empty if it fails)."""
        try:
            out = subprocess.run(
                [perf, "evlist", "-f", "-v", "-i", path],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
                check=False,
                env={**os.environ, "LC_ALL": "C"},
            )
        except (OSError, subprocess.TimeoutExpired):
            return b""
        return out.stdout

    def batches(self) -> Iterator[Batch]:
        """Parsed blocks of perf's output in order; then perf must have exited cleanly."""
        yield from self.text.batches()
        self._check_exit()

    def _check_exit(self) -> None:
        assert self.proc is not None
        rc = self.proc.wait()
        if rc != 0:
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace")
            lines = [ln for ln in err.splitlines() if ln.strip() and "not valid for" not in ln]
            why = "; ".join(lines[-3:]) or f"exit status {rc}"
            raise InputError(f"{self.src.name}: `perf script` could not read it: {why}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop perf if it still runs; remove the temporary copy (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.pipe is not None:
            self.pipe.close()
        self._stderr.close()
        if self._spool is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._spool)
            self._spool = None


def script_fields(evlist: bytes) -> str:
    """The ``perf script -F`` list for a file whose ``perf evlist -v`` is ``evlist``.

    ``cpu`` and ``period`` are left out when an event's ``sample_type`` lacks them (the
    ``dummy`` event, which has no samples, does not count); ``ip,sym,symoff,dso`` are added
    when an event recorded callchains, or when there is no tracepoint (a profile: the ip and
    symbol are then printed after the event name). Without a readable evlist, the full list
    (without ``ip``).

    >>> script_fields(b"sched:sched_switch: type: 2, sample_type: IP|TID|TIME|PERIOD, inherit: 1")
    'comm,pid,tid,time,event,period,trace'
    """
    types = [t for name, t in _SAMPLE_TYPE.findall(evlist) if not name.startswith(b"dummy")]
    fields = [
        f
        for f in FIELDS.split(",")
        if f not in _OPTIONAL or all(_OPTIONAL[f] in t.split(b"|") for t in types)
    ]
    out = ",".join(fields)
    if b"CALLCHAIN" in evlist or (types and not _TRACEPOINT.search(evlist)):
        out += CALLCHAIN_FIELDS
    return out


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
