"""The dataset: a directory of Hive-partitioned Parquet that DuckDB, polars and Spark read as is.

Layout (every table of :mod:`rmapscope.catalog`, one partition per host and trace)::

    <root>/<table directory>/host=<host>/trace=<id>/part-00000.parquet

    <root>/event=<name>/...     one typed table per event (and probe_<name>)
    <root>/other_events/...     the generic table
    <root>/traces/...           the manifest, one row per trace
    <root>/gaps/...   <root>/ingest_errors/...
    <root>/migrations/...  migration_batches/  page_states/  fork_windows/  violations/
                                (replay tables)

:meth:`Dataset.partition`, :meth:`Dataset.files` and :meth:`Dataset.pattern` are the only
ways to a table's files.
Writes are atomic: ingest and replay write into ``<root>/.staging/<txn>/`` (same
filesystem), then :meth:`Dataset.publish` commits under the dataset lock by writing a
journal and renaming each staged directory into place. A commit cut short (kill -9) is
rolled forward by the next process that takes the lock; a staging directory without a
journal whose owner is gone is simply deleted. So an interrupted ingest leaves the dataset
as it was, and readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rmapscope import config
from rmapscope.catalog import EVENT_PREFIX, TABLES, directory
from rmapscope.errors import DatasetError

MARKER = ".rmapscope-dataset"
ENV = "RMAPSCOPE_DATASET"
DEFAULT = "rmapscope-data"


def default_path() -> Path:
    """``$RMAPSCOPE_DATASET`` or ``./rmapscope-data``."""
    return Path(config.dataset() or DEFAULT)


@dataclass
class Staging:
    """A private directory an ingest writes into before committing.

    Its owner file ``<path>.owner`` is locked by the writing process for the staging
    directory's whole life: it appears (already locked) before the directory and goes
    after it, so :meth:`Dataset.recover` can tell a live ingest from a dead one.
    """

    path: Path
    _lock_fd: int

    @property
    def owner(self) -> Path:
        return _owner_file(self.path)

    def release(self) -> None:
        """Delete the staging directory (after a commit or an abort)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.owner.unlink()
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)


def _owner_file(staging_dir: Path) -> Path:
    return staging_dir.with_name(staging_dir.name + ".owner")


@dataclass
class StagedTrace:
    """One trace's tables in a staging directory, for :meth:`Dataset.publish`.

    ``tables`` names the table directories staged under ``sub`` (``""``: the staging
    directory itself) to publish, each replacing that trace's earlier copy of it. None
    publishes the trace whole (an ingest): every directory under ``sub``, and every table of
    an earlier copy of the trace is retired; :meth:`Dataset.publish` then sets ``skipped``
    and ``replaced``.
    """

    host: str
    trace_id: str
    sub: str = ""
    tables: Sequence[str] | None = None
    skipped: bool = False  # not published: already in the dataset, or earlier in the list
    replaced: bool = False  # an earlier copy was retired


def _partition(table_dir: str, host: str, trace_id: str) -> str:
    """A table's partition directory under the dataset root (the one place it is made)."""
    return f"{table_dir}/host={host}/trace={trace_id}"


class Dataset:
    """A dataset directory. Created on first write; reading a missing one is an error."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_path()

    # -- layout -------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether ``root`` is an rmapscope dataset."""
        return (self.root / MARKER).is_file()

    def require(self) -> None:
        """Raise :class:`DatasetError` unless the dataset exists."""
        if not self.exists():
            if self.root.exists() and any(self.root.iterdir()):
                raise DatasetError(f"{self.root}: not an rmapscope dataset (no {MARKER})")
            raise DatasetError(f"{self.root}: no dataset here yet (run `rmapscope ingest` first)")

    def create(self) -> None:
        """Make ``root`` a dataset (idempotent, safe against concurrent creators).

        Refuses an existing file, or a non-empty directory that is not a dataset.
        """
        if self.exists():
            return
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root}: exists and is not a directory")
        self._refuse_foreign()  # before the lock, which would leave a .lock file behind
        with self.lock():
            if self.exists():
                return
            self._refuse_foreign()
            tmp = self.root / f"{MARKER}.tmp"
            tmp.write_text(json.dumps({"layout": 1}) + "\n")
            os.replace(tmp, self.root / MARKER)

    def _refuse_foreign(self) -> None:
        ours = (".lock", ".staging", f"{MARKER}.tmp")
        if self.root.is_dir() and any(p.name not in ours for p in self.root.iterdir()):
            raise DatasetError(f"{self.root}: directory is not empty and not an rmapscope dataset")

    def table_dirs(self) -> dict[str, Path]:
        """Every table present: event tables by event name, plus the generic/side tables."""
        out: dict[str, Path] = {}
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(EVENT_PREFIX) and p.is_dir():
                out[p.name[len(EVENT_PREFIX) :]] = p
            elif p.name in TABLES and p.is_dir():
                out[p.name] = p
        return out

    def table_dir(self, table: str) -> Path:
        """The directory of ``table`` (an event's name, or a table of the catalogue)."""
        return self.root / directory(table)

    def partition(self, table: str, host: str, trace_id: str) -> Path:
        """The directory holding one trace's files of ``table``."""
        return self.root / _partition(directory(table), host, trace_id)

    def pattern(self, table: str) -> str:
        """A glob of every Parquet file of ``table``, as DuckDB's ``read_parquet`` takes it."""
        return str(self.root / _partition(directory(table), "*", "*") / "*.parquet")

    def files(self, table: str, host: str | None = None, trace_id: str | None = None) -> list[Path]:
        """The Parquet files of ``table`` (of one host and trace, when given), sorted."""
        h = glob.escape(host) if host is not None else "*"
        t = glob.escape(trace_id) if trace_id is not None else "*"
        partition = _partition(glob.escape(directory(table)), h, t)
        return sorted(self.root.glob(f"{partition}/*.parquet"))

    def trace_dirs(self, trace_id: str) -> list[Path]:
        """All partition directories of one trace, in every table."""
        return sorted(self.root.glob(_partition("*", "*", glob.escape(trace_id))))

    def trace_hosts(self, trace_id: str) -> list[str]:
        """The hosts a committed trace is filed under (one, unless a dataset was edited by
        hand)."""
        parts = self.root.glob(_partition("traces", "*", glob.escape(trace_id)))
        return sorted({p.parent.name.removeprefix("host=") for p in parts})

    def has_trace(self, trace_id: str) -> bool:
        """Whether a trace with this id is committed (its manifest row exists)."""
        return any(self.root.glob(_partition("traces", "*", glob.escape(trace_id))))

    # -- locking ------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float = 600.0) -> Iterator[None]:
        """Hold the dataset's write lock; waits (saying so) while another process has it."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(
                    f"waiting for another rmapscope process writing to {self.root} ...",
                    file=sys.stderr,
                )
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise DatasetError(
                                f"{self.root}: still locked by another rmapscope process after "
                                f"{timeout:.0f} s; try again later"
                            ) from None
                        time.sleep(0.1)
            yield
        finally:
            os.close(fd)

    # -- staging and commit ---------------------------------------------------------------
    def new_staging(self) -> Staging:
        """A fresh staging directory, owned (locked) by this process while it lives."""
        base = self.root / ".staging"
        base.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        # The owner file is locked under a temporary name and renamed into place, so no
        # other process ever sees it unlocked while we live.
        tmp = base / f".{name}.owner.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(tmp, base / f"{name}.owner")
        path = base / name
        path.mkdir()
        return Staging(path, fd)

    def publish(
        self, staging: Staging, traces: Sequence[StagedTrace], *, keep_existing: bool = False
    ) -> None:
        """Atomically publish the staged tables of ``traces`` (the one way into a dataset).

        Takes the lock and recovers what dead processes left first. A trace published whole
        (``tables`` None) is skipped when it came earlier in ``traces``, or, with
        ``keep_existing``, when it is already in the dataset.
        """
        with self.lock():
            self.recover()
            moves: list[tuple[str, str]] = []
            retire: list[str] = []
            seen: set[str] = set()
            for t in traces:
                names = t.tables
                if names is None:
                    if t.trace_id in seen or (keep_existing and self.has_trace(t.trace_id)):
                        t.skipped = True
                        continue
                    seen.add(t.trace_id)
                    old = [str(p.relative_to(self.root)) for p in self.trace_dirs(t.trace_id)]
                    t.replaced = bool(old)
                    retire.extend(old)
                    staged = staging.path / t.sub
                    names = sorted(p.name for p in staged.iterdir() if p.is_dir())
                for name in names:
                    src = f"{t.sub}/{name}" if t.sub else name
                    moves.append((src, _partition(name, t.host, t.trace_id)))
            if moves:
                self._commit(staging, moves, retire)

    def _commit(self, staging: Staging, moves: list[tuple[str, str]], replace: list[str]) -> None:
        """Atomically publish staged directories. Call with the lock held.

        ``moves`` are (path in staging, path in dataset) pairs; ``replace`` lists dataset
        paths to retire first (an older copy of the same trace, with ``--force``).
        """
        journal = {"moves": moves, "remove": [r for r in replace if r not in {d for _, d in moves}]}
        tmp = staging.path / "COMMIT.json.tmp"
        with open(tmp, "w") as f:
            json.dump(journal, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, staging.path / "COMMIT.json")
        self._roll_forward(staging.path, journal)

    def _roll_forward(self, staging_path: Path, journal: dict) -> None:
        trash = staging_path / "trash"
        trash.mkdir(exist_ok=True)
        n = len(list(trash.iterdir()))
        for rel in journal["remove"]:
            target = self.root / rel
            if target.exists():
                os.replace(target, trash / str(n))
                n += 1
        for src_rel, dst_rel in journal["moves"]:
            src, dst = staging_path / src_rel, self.root / dst_rel
            if not src.exists():
                continue  # moved before the interruption
            if dst.exists():
                os.replace(dst, trash / str(n))
                n += 1
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        _fsync_dir(self.root)

    def recover(self) -> int:
        """Finish or discard staging left by dead processes. Call with the lock held.

        A staging directory whose owner file can be locked belongs to a dead process: its
        commit is rolled forward if its journal is complete, else it is deleted. Returns how
        many staging directories were cleaned up.
        """
        base = self.root / ".staging"
        if not base.is_dir():
            return 0
        cleaned = 0
        # (".<name>.owner.tmp" files are owners being born: never touched here.)
        for owner in sorted(base.glob("*.owner")):
            try:
                fd = os.open(owner, os.O_RDWR)
            except FileNotFoundError:
                continue  # released meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live ingest owns it
                path = base / owner.name.removesuffix(".owner")
                journal = path / "COMMIT.json"
                if journal.is_file():
                    self._roll_forward(path, json.loads(journal.read_text()))
                shutil.rmtree(path, ignore_errors=True)
                owner.unlink(missing_ok=True)
                cleaned += 1
            finally:
                os.close(fd)
        # A directory without an owner file is a leftover: owners appear before their
        # directory and go after it.
        for path in base.iterdir():
            if path.is_dir() and not _owner_file(path).exists():
                shutil.rmtree(path, ignore_errors=True)
                cleaned += 1
        return cleaned

    # -- reading ------------------------------------------------------------------------
    def traces(self) -> pl.DataFrame:
        """The ``traces`` manifest (one row per ingested trace), sorted by first timestamp."""
        files = self.files("traces")
        if not files:
            return pl.DataFrame()
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").sort(
            ["host", "ts_first"], nulls_last=True
        )


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
