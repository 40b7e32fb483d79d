"""rmapscope: ingest ftrace/perf traces of fork, migration and rmap walks, replay them, query them.

The CLI (``rmapscope``) is a thin layer over this package: :mod:`rmapscope.ingest` turns
traces into a Parquet dataset (:mod:`rmapscope.dataset`), whose tables follow
:mod:`rmapscope.schema`.
"""

__version__ = "0.1.0"
