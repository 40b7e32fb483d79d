"""Data shipped with rmapscope: event formats (Linux 6.18 tracefs) and sample traces."""
