"""Every environment variable rmapscope reads, read here (one function each).

Each is read when its function is called, not at import, so a test or a caller may set it
at any time. The README's "Environment variables" table lists these and the test-only
variables the test suite reads (``tests/conftest.py``); a test checks that the two agree.

>>> import os
>>> os.environ["RMAPSCOPE_REPLAY_PARTITION_ROWS"] = "1000"
>>> replay_partition_rows()
1000
>>> del os.environ["RMAPSCOPE_REPLAY_PARTITION_ROWS"]
>>> replay_partition_rows()
20000000
"""

from __future__ import annotations

import os

#: The variables of the library, name -> what it sets (the README's table lists them).
VARIABLES = {
    "RMAPSCOPE_DATASET": "dataset directory when none is given",
    "RMAPSCOPE_REPLAY_PARTITION_ROWS": "migration events above which replay partitions a trace",
    "RMAPSCOPE_PERF": "the perf binary that reads perf.data files",
    "RMAPSCOPE_LAB_CACHE": "where `rmapscope lab` caches kernel images and initramfs files",
    "JAVA_HOME": "the Java runtime Spark starts (Spark's own variable)",
    "PYSPARK_PYTHON": "the Python of Spark's workers (Spark's own variable)",
}

_DEFAULT_PARTITION_ROWS = 20_000_000


def dataset() -> str | None:
    """``$RMAPSCOPE_DATASET``: the dataset directory when none is given (else None)."""
    return os.environ.get("RMAPSCOPE_DATASET") or None


def replay_partition_rows() -> int:
    """``$RMAPSCOPE_REPLAY_PARTITION_ROWS``: migration events above which a trace is replayed
    in address partitions (default 20,000,000)."""
    return int(os.environ.get("RMAPSCOPE_REPLAY_PARTITION_ROWS", _DEFAULT_PARTITION_ROWS))


def perf() -> str | None:
    """``$RMAPSCOPE_PERF``: the ``perf`` binary to read ``perf.data`` with (else None: the
    one on ``PATH``)."""
    return os.environ.get("RMAPSCOPE_PERF") or None


def lab_cache() -> str | None:
    """``$RMAPSCOPE_LAB_CACHE``: the lab's cache directory (else None: ``~/.cache/rmapscope``)."""
    return os.environ.get("RMAPSCOPE_LAB_CACHE") or None


def java_home() -> str | None:
    """``$JAVA_HOME`` (Spark's own variable): where the Java runtime Spark needs lives."""
    return os.environ.get("JAVA_HOME") or None


def pyspark_python() -> str | None:
    """``$PYSPARK_PYTHON`` (Spark's own variable): the interpreter of Spark's Python workers;
    when unset, local mode uses this interpreter."""
    return os.environ.get("PYSPARK_PYTHON") or None
