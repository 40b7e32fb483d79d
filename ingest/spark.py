"""Many trace files ingested in parallel by Spark executors, published in one commit.

Each executor task stages one file with :func:`rmapscope.ingest.stage` into its own
directory under a staging directory that the driver owns; the driver then publishes every
file that ingested (the ``traces`` manifest rows with them) in one atomic commit of the
dataset. A file that fails is reported with its error and the others still land. Paths are
opened by the executors: on a cluster they must name the same file there (a shared
filesystem), so give absolute paths.
"""

from __future__ import annotations

import glob
import pickle
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from rmapscope.dataset import Dataset
from rmapscope.errors import InputError, RmapscopeError, UsageError

from . import IngestResult, _check_options, _commit, stage

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_OUT = pa.schema(
    [
        ("i", pa.int64()),
        ("error", pa.string()),
        ("exit_code", pa.int32()),
        ("result", pa.binary()),
    ]
)


@dataclass
class FailedIngest:
    """A file that did not ingest: its path, the one-line error and the CLI exit code."""

    source: str
    error: str
    exit_code: int


def expand(patterns: list[str]) -> list[str]:
    """File arguments with shell-style globs expanded (sorted); a glob matching nothing is
    an error, a plain path is kept as is (a missing file is reported when it is read)."""
    files: list[str] = []
    for p in patterns:
        if p == "-":
            raise UsageError("Spark ingest reads files, not stdin (-)")
        if glob.has_magic(p):
            matches = sorted(glob.glob(p))
            if not matches:
                raise UsageError(f"{p}: no file matches")
            files.extend(matches)
        else:
            files.append(p)
    return files


def ingest_spark(
    patterns: list[str],
    dataset: Dataset,
    spark: SparkSession,
    *,
    host: str | None = None,
    fmt: str | None = None,
    arch: str | None = None,
    force: bool = False,
) -> list[IngestResult | FailedIngest]:
    """Ingest every file of ``patterns`` on Spark; one result per file, in order.

    Re-ingesting content already in the dataset (or twice in the list) is skipped unless
    ``force``, as with the local engine.
    """
    _check_options(fmt, arch, host)
    files = expand(patterns)
    dataset.create()
    staging = dataset.new_staging()
    try:
        base = str(staging.path.resolve())

        def job(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                rows = [
                    _stage_one(i, files[i], base, host, fmt, arch)
                    for i in batch.column("id").to_pylist()
                ]
                yield pa.RecordBatch.from_pylist(rows, schema=_OUT)

        ids = spark.range(len(files), numPartitions=max(len(files), 1))
        rows = sorted(
            ids.mapInArrow(job, "i long, error string, exit_code int, result binary").collect(),
            key=lambda r: r["i"],
        )
        out: list[IngestResult | FailedIngest] = [
            FailedIngest(files[r["i"]], r["error"], r["exit_code"])
            if r["error"] is not None
            else pickle.loads(r["result"])
            for r in rows
        ]
        staged = [(f"{i:06d}", r) for i, r in enumerate(out) if not isinstance(r, FailedIngest)]
        _commit(dataset, staging, staged, force)
        return out
    finally:
        staging.release()


def _stage_one(
    i: int, path: str, base: str, host: str | None, fmt: str | None, arch: str | None
) -> dict:
    """Stage file ``i`` into ``<base>/<i>`` (runs on an executor)."""
    root = Path(base) / f"{i:06d}"

    def target() -> Path:
        shutil.rmtree(root, ignore_errors=True)  # what a failed attempt of this task left
        root.mkdir()
        return root

    try:
        result = stage(path, target, host=host, fmt=fmt, arch=arch)
    except RmapscopeError as e:
        shutil.rmtree(root, ignore_errors=True)
        return {"i": i, "error": str(e), "exit_code": e.exit_code, "result": None}
    except Exception as e:  # a bug: reported for this file, the others go on
        shutil.rmtree(root, ignore_errors=True)
        error = InputError(f"{path}: unexpected {type(e).__name__}: {e}")
        return {"i": i, "error": str(error), "exit_code": 1, "result": None}
    return {"i": i, "error": None, "exit_code": 0, "result": pickle.dumps(result)}
