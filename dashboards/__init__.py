"""The HTML report: one self-contained file of plotly charts and tables over a dataset.

:func:`build_report` runs one named query per panel (the report's chart queries of
:mod:`rmapscope.analysis.charts`, and the ``migration-latency`` canned query) over the views
of :func:`rmapscope.analysis.connect` (see :mod:`rmapscope.dashboards.panels`), draws each
result with a pure function of :mod:`rmapscope.dashboards.figures`, and writes a single HTML
file with plotly.js embedded (or referenced from its CDN, pinned by an SRI hash, with
``embed_plotly=False``). Every chart shows the SQL behind it, headed by the ``rmapscope
query`` command that gives the same rows; every string that came from a trace is escaped;
a Content-Security-Policy only lets the page's own scripts run.

Layout: :mod:`._panel` (the Panel and Section model, a leaf), :mod:`.panels` (queries ->
panels), :mod:`.figures` (frames -> figures and tables), :mod:`._html` (panels -> page).
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from rmapscope import __version__
from rmapscope.dataset import Dataset
from rmapscope.errors import DatasetError, UsageError

from . import _html
from ._panel import Panel
from .panels import SECTIONS, Ctx

__all__ = ["Panel", "build_panels", "build_report", "resolve_traces"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resolve_traces(manifest: pl.DataFrame, trace_ids: list[str] | None) -> list[str] | None:
    """Check ``trace_ids`` against the manifest (a unique prefix of 4+ digits is enough)."""
    if trace_ids is None:
        return None
    known = manifest["trace_id"].to_list()
    out: list[str] = []
    for t in trace_ids:
        match = [t] if t in known else [k for k in known if len(t) >= 4 and k.startswith(t)]
        if len(match) != 1:
            why = "matches several traces" if match else "is not in the dataset"
            raise UsageError(f"trace {t!r} {why} (see `rmapscope traces`)")
        if match[0] not in out:
            out.append(match[0])
    return out


def build_panels(
    dataset: Dataset | str | os.PathLike[str] | None, trace_ids: Iterable[str] | None = None
) -> tuple[list[tuple[str, str, list[Panel]]], Ctx]:
    """The report's sections as ``[(id, title, [Panel, ...]), ...]`` and the scope."""
    from rmapscope.analysis import connect

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    con = connect(ds)
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if "traces" not in views:
        raise DatasetError(f"{ds.root}: no traces yet (run `rmapscope ingest` first)")
    manifest = con.sql(
        "SELECT trace_id, host, ts_first, ts_last, cpus, kernel, event_counts FROM traces "
        "ORDER BY host, ts_first"
    ).pl()
    ids = resolve_traces(manifest, list(trace_ids) if trace_ids is not None else None)
    scope = manifest if ids is None else manifest.filter(pl.col("trace_id").is_in(ids))
    ctx = Ctx(con, ids, scope)
    sections = [(sid, title, [fn(ctx) for fn in fns]) for sid, title, fns in SECTIONS]
    return sections, ctx


def build_report(
    dataset: Dataset | str | os.PathLike[str] | None,
    trace_ids: list[str] | None = None,
    output: str | os.PathLike[str] = "report.html",
    embed_plotly: bool = True,
    *,
    csp: bool = True,
) -> Path:
    """Write the HTML report of ``trace_ids`` (all traces when None) to ``output``.

    ``embed_plotly=False`` references plotly.js from its CDN instead of embedding it
    (about 4.8 MB smaller; the page then needs network access to draw). ``csp=False``
    leaves out the Content-Security-Policy (only to test that escaping alone is safe).
    Raises :class:`DatasetError` for a missing dataset, :class:`UsageError` for an
    unknown trace or an output that cannot be written. Returns the output path.
    """
    out = Path(output)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory; give a file name such as report.html")
    if not out.parent.is_dir():
        raise UsageError(f"{out}: directory {out.parent} does not exist")
    sections, ctx = build_panels(dataset, trace_ids)
    ds_root = dataset.root if isinstance(dataset, Dataset) else Dataset(dataset).root
    hosts = sorted({h for h in ctx.traces["host"].to_list() if h is not None})
    meta = [
        ("dataset", str(ds_root)),
        ("traces", f"{ctx.traces.height}"),
        ("hosts", ", ".join(hosts) or "-"),
        ("generated", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("rmapscope", __version__),
    ]
    text = _html.page(
        title="rmapscope report",
        meta=meta,
        sections=[_html.Section(sid, title, panels) for sid, title, panels in sections],
        embed_plotly=embed_plotly,
        with_csp=csp,
        footer="Made by rmapscope "
        + __version__
        + ". Every chart's SQL runs as is in `rmapscope sql` on the same dataset, and the "
        "`rmapscope query` command on its first line gives the same rows. Times are "
        "seconds since each trace's first event.",
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
