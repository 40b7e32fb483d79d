"""The dataset: a directory of Hive-partitioned Parquet that DuckDB, polars and Spark read as is.

Layout (one typed table per event, plus side tables)::

    <root>/event=<name>/host=<host>/trace=<id>/part-00000.parquet
    <root>/other_events/host=<host>/trace=<id>/part-00000.parquet   (generic table)
    <root>/traces/host=<host>/trace=<id>/part-00000.parquet         (manifest, one row)
    <root>/gaps/...   <root>/ingest_errors/...
    <root>/migrations/...  migration_batches/  page_states/  fork_windows/  violations/
                                                                     (replay tables)

Writes are atomic: an ingest writes into ``<root>/.staging/<txn>/`` (same filesystem), then
commits under the dataset lock by writing a journal and renaming each staged directory into
place. A commit cut short (kill -9) is rolled forward by the next process that takes the
lock; a staging directory without a journal whose owner is gone is simply deleted. So an
interrupted ingest leaves the dataset as it was, and readers never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rmapscope import config
from rmapscope.errors import DatasetError

MARKER = ".rmapscope-dataset"
ENV = "RMAPSCOPE_DATASET"
DEFAULT = "rmapscope-data"
GENERIC_DIR = "other_events"
SIDE_TABLES = ("traces", "gaps", "ingest_errors")
#: Tables written by replay, partitioned like the event tables.
REPLAY_TABLES = ("migrations", "migration_batches", "page_states", "fork_windows", "violations")


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
            if p.name.startswith("event=") and p.is_dir():
                out[p.name[len("event=") :]] = p
            elif p.name in (GENERIC_DIR, *SIDE_TABLES, *REPLAY_TABLES) and p.is_dir():
                out[p.name] = p
        return out

    def trace_dirs(self, trace_id: str) -> list[Path]:
        """All partition directories of one trace, in every table."""
        return sorted(self.root.glob(f"*/host=*/trace={trace_id}"))

    def has_trace(self, trace_id: str) -> bool:
        """Whether a trace with this id is committed (its manifest row exists)."""
        return any(self.root.glob(f"traces/host=*/trace={trace_id}"))

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

    def commit(self, staging: Staging, moves: list[tuple[str, str]], replace: list[str]) -> None:
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
        files = sorted(self.root.glob("traces/host=*/trace=*/*.parquet"))
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
