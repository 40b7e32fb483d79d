"""Ingest traces into a dataset: read bytes -> split records -> parse fields -> store.

>>> import tempfile
>>> from rmapscope.data import sample_trace
>>> from rmapscope.dataset import Dataset
>>> from rmapscope.ingest import ingest
>>> ds = Dataset(tempfile.mkdtemp())
>>> result = ingest(str(sample_trace()), ds, host="box1")
>>> result.format, result.host, result.events == sum(result.event_counts.values())
('tracefs', 'box1', True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa

from rmapscope import __version__, kernels
from rmapscope.catalog import GENERIC_DIR, STACK_FRAME, TRACES
from rmapscope.dataset import Dataset, StagedTrace, Staging
from rmapscope.errors import InputError, UsageError
from rmapscope.schema import (
    DECODED,
    ERRORS_COLUMNS,
    GAPS_COLUMNS,
    GENERIC_COLUMNS,
    Registry,
    arrow_schema,
    default_registry,
)

from . import probes
from . import pte as ptemod
from ._batch import Assembler, ErrorLog, HeaderInfo
from ._columns import rows_table
from ._source import Source, open_source, read_blocks
from ._writer import (
    StagingWriter,
    fill_migration_kinds,
    swap_collapse_file_args,
    write_side_table,
)
from .detect import detect_format
from .readers import READERS, Reader, ReaderOptions, open_reader

__all__ = ["FORMATS", "IngestResult", "ingest", "stage"]

#: The ``tool`` of the sidecars ingest reads: ``rmapscope record``'s and ``rmapscope lab``'s
#: (whose ``config`` or ``kernel_config``, CONFIG_X -> value, places the migration swap types).
SIDECAR_TOOLS = ("rmapscope record", "rmapscope lab")

#: Values accepted by ``--format``.
FORMATS = tuple(READERS)


@dataclass
class IngestResult:
    """What one ingest did."""

    trace_id: str
    host: str
    source: str
    format: str
    events: int = 0  # events as the source counts them: stack frames are not events
    stack_frames: int = 0  # stack_frame rows (text stacks, perf callchains)
    lines: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    lost_events: int = 0
    errors: ErrorLog = field(default_factory=ErrorLog)
    skipped: bool = False  # the same content was already in the dataset
    #: where skipped: the host(s) the dataset already files that content under
    existing_hosts: list[str] = field(default_factory=list)
    replaced: bool = False
    ts_first: int | None = None
    ts_last: int | None = None
    arch: str = "x86_64"  # the traced machine's (see the manifest's arch_from)
    #: one line each: a valid trace with no events, ptes of an arch not decoded
    warnings: list[str] = field(default_factory=list)


def ingest(
    path: str,
    dataset: Dataset,
    *,
    host: str | None = None,
    fmt: str | None = None,
    arch: str | None = None,
    force: bool = False,
    registry: Registry | None = None,
    progress: Callable[[int, int | None, int], None] | None = None,
) -> IngestResult:
    """Ingest one trace file (``-`` for stdin) into ``dataset``; ``arch`` (None: what the
    trace says, else x86_64) names the traced machine when the trace does not.

    ``progress(bytes_done, bytes_total, events)`` is called after each batch. Re-ingesting
    the same content is a no-op unless ``force``. Raises :class:`InputError` for input that
    is not a trace; then nothing is written.
    """
    staged: list[Staging] = []

    def new_staging() -> Path:  # only once the input has proved to be a trace
        dataset.create()
        staged.append(dataset.new_staging())
        return staged[0].path

    try:
        result = stage(
            path, new_staging, host=host, fmt=fmt, arch=arch, registry=registry, progress=progress
        )
        _commit(dataset, staged[0], [("", result)], force)
        return result
    finally:
        for staging in staged:
            staging.release()


def stage(
    path: str,
    target: Callable[[], Path],
    *,
    host: str | None = None,
    fmt: str | None = None,
    arch: str | None = None,
    registry: Registry | None = None,
    progress: Callable[[int, int | None, int], None] | None = None,
) -> IngestResult:
    """Read one trace file and write its tables into the directory ``target()`` returns (one
    directory per table, ``<table>/part-00000.parquet``), without publishing anything.

    The trace is read by the reader of format ``fmt`` (see :mod:`.readers`), or of the
    format detected from its content when ``fmt`` is None; a forced ``fmt`` runs no
    detection. ``target`` is called once the input is known to be a trace, so bad input
    creates nothing. :func:`ingest` stages into a private directory of the dataset and
    commits it; the Spark engine stages many files on the executors and commits them all
    at once.
    """
    _check_options(fmt, arch, host)
    registry = registry or default_registry()
    with contextlib.closing(open_source(path)) as src:
        blocks = read_blocks(src)
        first = next(blocks, b"")
        fmt = fmt or detect_format(first, src.name)
        sidecar = _sidecar(path)
        said = sidecar.get("machine")
        said = said if isinstance(said, str) and said else None
        options = ReaderOptions(arch=ptemod.resolve_arch(arch, said))
        arch_from = "sidecar" if said else "option" if arch else "default"
        with open_reader(fmt, src, first, blocks, registry.copy(), options) as reader:
            return _stage(
                src, reader, fmt, path, target, host, sidecar, (options.arch, arch_from), progress
            )


def _stage(
    src: Source,
    reader: Reader,
    fmt: str,
    path: str,
    target: Callable[[], Path],
    host: str | None,
    sidecar: dict,
    arch: tuple[str, str],
    progress: Callable[[int, int | None, int], None] | None,
) -> IngestResult:
    """Stage what ``reader`` reads of ``src`` into ``target()`` (see :func:`stage`);
    ``arch`` is the arch the reader was given and where it came from."""
    writer = None
    try:
        root = target()
        writer = out = StagingWriter(root)
        job = Assembler()
        schemas: dict[str, pa.Schema] = {}

        def stage(table: str, frame: pl.DataFrame | pa.Table) -> None:
            if table not in schemas:
                name = table[len("event=") :]
                if table == GENERIC_DIR:
                    schemas[table] = arrow_schema(GENERIC_COLUMNS)
                elif name.startswith(probes.PREFIX):
                    schemas[table] = probes.probe_schema(name[len(probes.PREFIX) :])
                else:
                    schema = reader.registry.get(name)
                    if schema is None:  # a reader emits typed tables of registered events only
                        raise RuntimeError(f"{src.name}: event {name} has no schema")
                    schemas[table] = schema.arrow_schema()
            out.add(table, frame, schemas[table])

        for batch in reader.batches():
            job.consume(batch, stage)
            if progress:
                progress(src.compressed_position(), src.size, job.seq)
        header = _with_sidecar(reader.header, sidecar)
        empty = job.seq == 0 and not job.gaps and not job.pending_gaps
        if empty and not (sidecar or _says_trace(header)):
            raise InputError(
                f"{src.name}: no trace events found ({job.errors.total} lines not understood)"
            )
        config = kernels.parse_config(sidecar.get("config") or sidecar.get("kernel_config"))
        kinds, how = job.calibration(header.kernel, config, header.arch or arch[0])
        writer.close()
        writer = None
        fill_migration_kinds(root, kinds)
        said = ""  # mm_khugepaged_collapse_file of 6.2-6.11 swapped two of its fields
        if job.counts.get("mm_khugepaged_collapse_file"):
            swapped = kernels.collapse_file_args_swapped(kernels.parse_release(header.kernel))
            fixed = bool(swapped) and swap_collapse_file_args(root)
            said = kernels.collapse_file_warning(header.kernel, fixed)
        arch_from = "trace" if header.arch else arch[1]
        machine = header.arch or arch[0]
        gaps = job.gap_rows(header)
        result = IngestResult(
            trace_id=src.hexdigest()[:16],
            host=host or _safe_host(header.host) or "unknown",
            source=src.name,
            format=fmt,
            events=job.seq - job.counts.get(STACK_FRAME, 0),
            stack_frames=job.counts.get(STACK_FRAME, 0),
            lines=job.lines,
            event_counts=dict(sorted(job.counts.items())),
            gaps=len(gaps),
            lost_events=sum(g["count"] or 0 for g in gaps),
            errors=job.errors,
            ts_first=job.ts_first,
            ts_last=job.ts_last,
            arch=machine,
        )
        if empty:
            result.warnings.append(f"{src.name}: a valid trace with no events")
        if said:
            result.warnings.append(f"{src.name}: {said}")
        if machine not in ptemod.ARCHES and any(job.counts.get(e) for e in DECODED):
            result.warnings.append(
                f"{src.name}: pte/pmd values of arch {machine} are not decoded (pfn columns "
                f"null); rmapscope decodes {', '.join(ptemod.ARCHES)}"
            )
        write_side_table(root, "gaps", rows_table(gaps, arrow_schema(GAPS_COLUMNS)))
        write_side_table(
            root, "ingest_errors", job.errors.table().cast(arrow_schema(ERRORS_COLUMNS))
        )
        manifest = _manifest(result, header, arch_from, header.clock or job.clock, src, kinds, how)
        write_side_table(root, "traces", manifest)
        return result
    finally:
        if writer is not None:
            writer.abort()


def _check_options(fmt: str | None, arch: str | None, host: str | None) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if arch is not None and arch not in ptemod.ARCHES:
        raise UsageError(f"unknown arch {arch!r}; known: {', '.join(ptemod.ARCHES)}")
    if host is not None and not valid_host(host):
        raise UsageError(
            f"host name {host!r} cannot name a partition: no '/', '=', '\\', control "
            "characters, '.' or '..'"
        )


def _sidecar(path: str) -> dict:
    """The ``<file>.meta.json`` that ``rmapscope record`` (or ``lab``) writes next to its
    recordings (a trace_pipe stream says nothing of its kernel, clock, CPUs, host or machine);
    ``{}`` when there is none or it cannot be read."""
    if path == "-":
        return {}
    try:
        meta = json.loads(Path(path + ".meta.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or meta.get("tool") not in SIDECAR_TOOLS:
        return {}
    return meta


def _says_trace(header: HeaderInfo) -> bool:
    """Whether a reader recognised a real trace header (so 0 events is an empty trace)."""
    return header.format == "trace_dat" or any(
        v is not None
        for v in (header.kernel, header.cpus, header.empty_cpus, header.entries_in_buffer)
    )


def _with_sidecar(header: HeaderInfo, meta: dict) -> HeaderInfo:
    """``header`` completed from the sidecar (see :func:`_sidecar`); what the trace
    itself says wins."""
    if not meta:
        return header
    cpus = meta.get("cpus")
    return dataclasses.replace(
        header,
        kernel=header.kernel or meta.get("kernel_release"),
        cpus=header.cpus or (cpus if isinstance(cpus, int) else None),
        clock=header.clock or meta.get("clock"),
        host=header.host or meta.get("host"),
    )


def valid_host(host: str) -> bool:
    """Whether ``host`` can be a Hive partition value (a directory name DuckDB parses)."""
    return (
        bool(host)
        and host not in (".", "..")
        and not any(c in "/=\\" or ord(c) < 32 or ord(c) == 127 for c in host)
    )


def _safe_host(host: str | None) -> str | None:
    """A host name read from a trace, made fit for a partition directory."""
    if not host:
        return None
    fixed = "".join("_" if c in "/=\\" or ord(c) < 32 or ord(c) == 127 else c for c in host)
    return fixed if valid_host(fixed) else None


def _commit(
    dataset: Dataset, staging: Staging, staged: list[tuple[str, IngestResult]], force: bool
) -> None:
    """Publish staged traces in one commit: (directory in ``staging``, "" for its root;
    result) pairs. A trace already in the dataset (or earlier in ``staged``) is skipped
    unless ``force``; the result says which."""
    traces = [StagedTrace(r.host, r.trace_id, sub) for sub, r in staged]
    dataset.publish(staging, traces, keep_existing=not force)
    for t, (_, r) in zip(traces, staged, strict=True):
        r.skipped, r.replaced = t.skipped, t.replaced
        if r.skipped:
            r.existing_hosts = dataset.trace_hosts(r.trace_id) or [r.host]


def _manifest(
    result: IngestResult,
    header: HeaderInfo,
    arch_from: str,
    clock: str | None,
    src: Source,
    kinds: dict[int, str],
    how: str,
) -> pa.Table:
    row = {
        "trace_id": result.trace_id,
        "host": result.host,
        "source": result.source,
        "format": result.format,
        "kernel": header.kernel,
        "arch": result.arch,
        "arch_from": arch_from,
        "clock": clock,
        "cpus": header.cpus,
        "empty_cpus": header.empty_cpus,
        "ts_first": result.ts_first,
        "ts_last": result.ts_last,
        "events": result.events,
        "stack_frames": result.stack_frames,
        "lines": result.lines,
        "gaps": result.gaps,
        "lost_events": result.lost_events,
        "errors": result.errors.total,
        "event_counts": list(result.event_counts.items()),
        "bytes": src.bytes_read,
        "sha256": src.hexdigest(),
        "migration_types": json.dumps({"types": {str(k): v for k, v in kinds.items()}, "how": how}),
        "ingested_at": dt.datetime.now(dt.UTC),
        "tool_version": __version__,
    }
    return rows_table([row], TRACES.arrow_schema())
