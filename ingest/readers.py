"""The reader contract, and the registry from format name to reader.

Every input format is read by a :class:`Reader`: built from an opened input (its
:class:`~rmapscope.ingest._source.Source`, the first block of decompressed bytes and an
iterator over the rest), it says what the trace's header told it (``header``), which event
layouts it types rows with (``registry``) and whether its rows come in time order
(``time_ordered``), yields :class:`~rmapscope.ingest._batch.Batch` es from :meth:`batches`
and releases what it holds (a subprocess, a spooled copy, threads) in :meth:`close`; it is
a context manager that closes on exit. A reader that is handed bytes it cannot read raises
its own one-line :class:`~rmapscope.errors.InputError` naming the file and a line or byte
offset, from its constructor where the first block tells (so nothing is staged).

:data:`READERS` maps each format name (the values of ``--format``) to a
:class:`ReaderFactory`; every factory takes the same arguments, and :func:`open_reader`
picks one by name. Detection (:mod:`.detect`) only names a format; it never reads.
The model is Perfetto's ``ChunkedTraceReader`` and ``TraceReaderRegistry``.

>>> from rmapscope.ingest.readers import READERS
>>> list(READERS)  # doctest: +NORMALIZE_WHITESPACE
['tracefs', 'trace_pipe', 'tracefs_latency', 'tcreport', 'tcreport_latency',
 'perf_script', 'bpftrace', 'perf_data', 'trace_dat']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from rmapscope.errors import UsageError
from rmapscope.schema import Registry

from ._batch import Batch, HeaderInfo
from ._source import Source
from .perf import PerfDataReader
from .text import TEXT_FORMATS, TextReader
from .tracedat import TraceDatReader

__all__ = ["READERS", "Reader", "ReaderFactory", "ReaderOptions", "open_reader"]


@runtime_checkable
class Reader(Protocol):
    """What every trace reader offers (see the module docstring)."""

    @property
    def header(self) -> HeaderInfo:
        """What the trace says of itself: kernel, CPUs, clock, host, arch, buffer counts."""
        ...

    @property
    def registry(self) -> Registry:
        """The event layouts rows are typed with (a trace.dat adds its own formats)."""
        ...

    @property
    def time_ordered(self) -> bool:
        """Whether rows come in time order (bpftrace's do not: replay sorts by ``ts``)."""
        ...

    def batches(self) -> Iterator[Batch]:
        """The trace's rows, batch by batch, in the order the input holds them."""
        ...

    def close(self) -> None:
        """Release what the reader holds; safe to call more than once."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@dataclass(frozen=True)
class ReaderOptions:
    """Settings every reader gets: the architecture whose pte encoding decodes swap entries
    (a trace.dat that names its machine overrides it)."""

    arch: str = "x86_64"


class ReaderFactory(Protocol):
    """Builds the reader of one format from an opened input: ``src``, its first block
    ``head`` and the blocks after it, the event ``registry`` (the reader's own copy) and
    the options."""

    def __call__(
        self,
        src: Source,
        head: bytes,
        rest: Iterator[bytes],
        registry: Registry,
        options: ReaderOptions,
    ) -> Reader: ...


def _text_reader(fmt: str) -> ReaderFactory:
    def factory(
        src: Source, head: bytes, rest: Iterator[bytes], registry: Registry, options: ReaderOptions
    ) -> Reader:
        return TextReader(src, head, rest, fmt, options.arch, registry)

    factory.__doc__ = f"The {fmt} text reader."
    return factory


def _perf_data(
    src: Source, head: bytes, rest: Iterator[bytes], registry: Registry, options: ReaderOptions
) -> Reader:
    """perf.data, through ``perf script``."""
    return PerfDataReader(src, head, rest, options.arch, registry)


def _trace_dat(
    src: Source, head: bytes, rest: Iterator[bytes], registry: Registry, options: ReaderOptions
) -> Reader:
    """trace-cmd's trace.dat."""
    return TraceDatReader(src, head, rest, options.arch, registry)


#: Format name (the values of ``--format``) -> the factory of its reader.
READERS: dict[str, ReaderFactory] = {
    **{fmt: _text_reader(fmt) for fmt in TEXT_FORMATS},
    "perf_data": _perf_data,
    "trace_dat": _trace_dat,
}


def open_reader(
    fmt: str,
    src: Source,
    head: bytes,
    rest: Iterator[bytes],
    registry: Registry,
    options: ReaderOptions | None = None,
) -> Reader:
    """The reader of format ``fmt`` over an opened input (no detection: ``fmt`` is used as
    given). Raises :class:`UsageError` for an unknown format name, :class:`InputError` when
    the input is not ``fmt`` at all."""
    factory = READERS.get(fmt)
    if factory is None:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(READERS)}")
    return factory(src, head, rest, registry, options or ReaderOptions())
