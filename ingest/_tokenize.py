"""Fast path of stage 2: split ftrace event lines into header fields without a regex.

Every tracefs / trace_pipe / trace-cmd event line reads
``<comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <secs>[.<frac>]: <event>: <payload>``.
A regex with captures costs about a microsecond per line; cutting the line at its
delimiters with polars' literal string kernels (split at the first two ``": "``, find
``[``/``]``/``(``, strip the pid digits off the end of ``comm-pid``) costs a fraction of
that. Lines that do not come out clean (odd comms, other layouts, markers, comments) are
left to the regex path.
"""

from __future__ import annotations

import polars as pl

# A syscall tracepoint line's body as tracefs prints it (``print_syscall_enter/exit``):
# ``sys_mbind(start: 0x7f.., len: 0x400000, mode: 2)`` and ``sys_mbind -> 0xffffffffffffffea``.
SYSCALL_ENTER = r"^sys_(\w+)\((.*)\)$"
SYSCALL_EXIT = r"^sys_(\w+) -> (\S+)$"


def split_syscalls(events: pl.DataFrame) -> pl.DataFrame:
    """Rename tracefs's syscall lines to their tracepoints and keep only the arguments as
    payload: ``sys_mbind(a: 1, b: 0x2)`` is ``sys_enter_mbind`` with ``a: 1, b: 0x2``, and
    ``sys_mbind -> 0x0`` is ``sys_exit_mbind`` with ``0x0``. ``events`` has string columns
    ``event`` and ``rest`` (null where the line had no second ``": "``), as split at the
    first ``": "`` after the header; other rows are returned as they are.
    """
    ev, rest = pl.col("event"), pl.col("rest")
    cand = ev.str.starts_with("sys_")
    if not events.select(cand.any()).item():
        return events
    body = pl.when(rest.is_null()).then(ev).otherwise(pl.concat_str(ev, pl.lit(": "), rest))
    enter = body.str.extract_groups(SYSCALL_ENTER)
    exit_ = body.str.extract_groups(SYSCALL_EXIT)
    return (
        events.with_columns(
            pl.when(cand).then(enter).alias("_en"), pl.when(cand).then(exit_).alias("_ex")
        )
        .with_columns(
            pl.when(pl.col("_en").struct.field("1").is_not_null())
            .then(pl.concat_str(pl.lit("sys_enter_"), pl.col("_en").struct.field("1")))
            .when(pl.col("_ex").struct.field("1").is_not_null())
            .then(pl.concat_str(pl.lit("sys_exit_"), pl.col("_ex").struct.field("1")))
            .otherwise(ev)
            .alias("event"),
            pl.coalesce(
                pl.col("_en").struct.field("2"), pl.col("_ex").struct.field("2"), rest
            ).alias("rest"),
        )
        .drop("_en", "_ex")
    )


def split_events(lines: pl.DataFrame, padded_names: bool) -> pl.DataFrame:
    """Split ``lines`` (columns ``lineno``, ``line``; every line ends with a newline) into
    header fields and the payload.

    Returns string columns lineno, comm, pid, tgid, cpu, flags, secs, frac, event, rest and
    ``ok``: whether the line fits the layout. ``padded_names``: trace-cmd pads event names.
    """
    parts = pl.col("line").str.head(-1).str.splitn(": ", 3)
    head, event, rest = (parts.struct.field(f"field_{i}") for i in range(3))
    if padded_names:
        rest = rest.str.strip_chars_start(" ")
    df = lines.lazy().select("lineno", head.alias("head"), event.alias("event"), rest.alias("rest"))
    h = pl.col("head")
    df = df.with_columns(
        h.str.find("[", literal=True).alias("_lb"), h.str.find("]", literal=True).alias("_rb")
    )
    lb, rb = pl.col("_lb"), pl.col("_rb")
    # Every tool prints the task as "%16s-%-Nd": comm right-aligned in 16 columns, a dash,
    # then the pid. Comms can hold dashes, spaces and digits, so the columns are what counts.
    left = h.str.slice(0, lb)
    pid_on = left.str.slice(17)
    pid_end = pid_on.str.find(" ", literal=True)
    df = df.with_columns(
        left.str.slice(0, 16).str.strip_chars_start(" ").alias("comm"),
        (left.str.slice(16, 1) == "-").alias("_dash"),
        pid_on.str.slice(0, pid_end).alias("pid"),
        # what follows the pid: nothing or "(tgid)". Anything else means the 16 columns
        # did not hold the comm (one that is wider once escaped, or holds "-<digits> "):
        # then the regex path finds the real "-<pid>"
        pid_on.str.slice(pid_end).str.strip_chars(" ").alias("_tail"),
        h.str.slice(lb + 1, rb - lb - 1).alias("cpu"),
        h.str.slice(rb + 1).str.strip_chars(" ").alias("_right"),
    )
    right, tail = pl.col("_right"), pl.col("_tail")
    sp = right.str.find(" ", literal=True)
    has_tgid = tail.str.starts_with("(") & tail.str.ends_with(")")
    ts = (
        pl.when(sp.is_null())
        .then(right)
        .otherwise(right.str.slice(sp + 1).str.strip_chars_start(" "))
    )
    df = df.with_columns(
        pl.when(has_tgid).then(tail.str.strip_chars("( )")).alias("tgid"),
        ((tail == "") | has_tgid).alias("_tail_ok"),
        pl.when(sp.is_not_null()).then(right.str.slice(0, sp)).alias("flags"),
        ts.alias("_ts"),
    )
    ts = pl.col("_ts")
    dot = ts.str.find(".", literal=True)
    df = df.with_columns(
        pl.when(dot.is_null()).then(ts).otherwise(ts.str.slice(0, dot)).alias("secs"),
        pl.when(dot.is_not_null()).then(ts.str.slice(dot + 1)).alias("frac"),
    )

    def is_int(col: str) -> pl.Expr:
        return pl.col(col).str.to_integer(strict=False).is_not_null()

    ok = (
        pl.col("_dash")
        & pl.col("_tail_ok")
        & is_int("pid")
        & is_int("cpu")
        & is_int("secs")
        & (pl.col("frac").is_null() | is_int("frac"))
        # no space in the event name, except a syscall exit's "sys_mbind -> 0x0"
        & (
            ~pl.col("event").str.contains(" ", literal=True)
            | (pl.col("rest").is_null() & pl.col("event").str.contains(SYSCALL_EXIT))
        )
        & (
            pl.col("rest").is_not_null()
            | pl.col("event").str.contains(SYSCALL_ENTER)
            | pl.col("event").str.contains(SYSCALL_EXIT)
        )
    ).fill_null(False)
    return df.select(
        "lineno",
        "comm",
        "pid",
        "tgid",
        "cpu",
        "flags",
        "secs",
        "frac",
        "event",
        "rest",
        ok.alias("ok"),
    ).collect()
