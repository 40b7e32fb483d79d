"""Replay's old -> new pfn pairs against a ground truth (the lab guest's pagemap).

The truth is one row per page move the workload saw (``old_pfn``, ``new_pfn``: the page's
pfn before and after, from ``/proc/self/pagemap``). Replay's pairs are the pages of every
folio migration it found ``migrated`` (page ``i`` of a folio of order ``k`` moved from
``old_pfn + i`` to ``new_pfn + i``). Pfns are reused across rounds, so both sides are
multisets of pairs.

>>> import polars as pl
>>> migs = pl.DataFrame(
...     {"old_pfn": [16, 32, 48], "new_pfn": [64, 80, None], "order": [0, 1, 0],
...      "outcome": ["migrated", "migrated", "inconclusive"], "why": [None, None, "exit"]}
... )
>>> truth = pl.DataFrame({"old_pfn": [16, 32, 33, 48, 96], "new_pfn": [64, 80, 81, 99, 97]})
>>> c = compare_pairs(migs, truth)
>>> c.pages, c.matched, c.wrong, c.unpaired, c.extra
(5, 3, 0, 2, 0)
>>> c.unpaired_why
{'exit': 1, 'none': 1}
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

__all__ = ["PairCheck", "compare_pairs", "page_pairs"]

_PAIR: pl.Schema = pl.Schema({"old_pfn": pl.UInt64(), "new_pfn": pl.UInt64()})


@dataclass
class PairCheck:
    """How replay's page pairs compare with the truth's."""

    #: page moves in the truth
    pages: int
    #: of them, paired by replay exactly so (old and new pfn)
    matched: int
    #: of them, whose old pfn replay paired with another new pfn
    wrong: int
    #: of them, whose old pfn replay did not pair as migrated at all
    unpaired: int
    #: replay's migrated pages the truth does not have
    extra: int
    #: the unpaired ones by replay's verdict on their old page: the ``why`` of an
    #: inconclusive migration, ``leaked``/``restored``, or ``none`` (no migration of it)
    unpaired_why: dict[str, int]
    #: the truth's pairs replay did not give (``old_pfn``, ``new_pfn``, ``replay_new_pfn``)
    misses: pl.DataFrame

    @property
    def ok(self) -> bool:
        """Whether every page move of the truth is paired right."""
        return self.matched == self.pages

    def line(self) -> str:
        """One line for a report or an assertion message."""
        why = ", ".join(f"{k}: {v}" for k, v in sorted(self.unpaired_why.items()))
        return (
            f"{self.matched}/{self.pages} pages paired as the truth says, {self.wrong} "
            f"wrong, {self.unpaired} unpaired"
            + (f" ({why})" if why else "")
            + f", {self.extra} extra"
        )


def page_pairs(migrations: pl.DataFrame) -> pl.DataFrame:
    """``old_pfn``, ``new_pfn`` of every page of replay's ``migrated`` folio migrations.

    A folio mapped by a pmd in some processes and by ptes in others (a THP whose pmd was
    split in one of them) has one migration row per kind in its batch: its pages count once.
    """
    m = migrations.filter((pl.col("outcome") == "migrated") & pl.col("new_pfn").is_not_null())
    if m.is_empty():
        return pl.DataFrame(schema=_PAIR)
    size = pl.lit(2, pl.UInt64).pow(pl.col("order").cast(pl.UInt64))
    batch = pl.col("batch_id") if "batch_id" in m.columns else pl.lit(None, pl.Int64)
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    return (
        m.select(
            # one attempt per batch and folio (rows outside any batch count on their own)
            pl.coalesce(batch, -1 - row).alias("_attempt"),
            "old_pfn",
            "new_pfn",
            pl.int_ranges(0, size, dtype=pl.UInt64).alias("_i"),
        )
        .explode("_i")
        .select(
            "_attempt",
            (pl.col("old_pfn") + pl.col("_i")).alias("old_pfn"),
            (pl.col("new_pfn") + pl.col("_i")).alias("new_pfn"),
        )
        .unique(maintain_order=True)
        .drop("_attempt")
        .cast(_PAIR)
    )


def compare_pairs(migrations: pl.DataFrame, truth: pl.DataFrame) -> PairCheck:
    """Compare replay's ``migrations`` table with ``truth`` (``old_pfn``, ``new_pfn`` per page
    move; rows whose pfn did not change are no move and are left out)."""
    t = (
        truth.select("old_pfn", "new_pfn")
        .cast(_PAIR)
        .filter(pl.col("old_pfn") != pl.col("new_pfn"))
    )
    r = page_pairs(migrations)
    tc = t.group_by("old_pfn", "new_pfn").agg(pl.len().alias("t"))
    rc = r.group_by("old_pfn", "new_pfn").agg(pl.len().alias("r"))
    both = tc.join(rc, on=["old_pfn", "new_pfn"], how="full", coalesce=True).with_columns(
        pl.col("t").fill_null(0), pl.col("r").fill_null(0)
    )
    both = both.with_columns(pl.min_horizontal("t", "r").alias("hit"))
    matched = int(both["hit"].sum() or 0)
    extra = int((both["r"] - both["hit"]).sum() or 0)
    left = both.filter(pl.col("t") > pl.col("hit")).select(
        "old_pfn", "new_pfn", (pl.col("t") - pl.col("hit")).alias("n")
    )
    # what replay said of those old pages: another new pfn, or a verdict without one
    other = r.group_by("old_pfn").agg(pl.col("new_pfn").first().alias("replay_new_pfn"))
    verdict = _page_verdicts(migrations)
    misses = (
        left.join(other, on="old_pfn", how="left")
        .join(verdict, on="old_pfn", how="left")
        .with_columns(pl.col("n").cast(pl.Int64))
        .sort("old_pfn")
    )
    wrong = int(misses.filter(pl.col("replay_new_pfn").is_not_null())["n"].sum() or 0)
    un = misses.filter(pl.col("replay_new_pfn").is_null())
    why = un.group_by(pl.col("verdict").fill_null("none")).agg(pl.col("n").sum()).rows()
    return PairCheck(
        pages=t.height,
        matched=matched,
        wrong=wrong,
        unpaired=int(un["n"].sum() or 0),
        extra=extra,
        unpaired_why={k: int(v) for k, v in sorted(why)},
        misses=misses.select("old_pfn", "new_pfn", "replay_new_pfn", "verdict", "n"),
    )


def _page_verdicts(migrations: pl.DataFrame) -> pl.DataFrame:
    """Per old page of a migration replay did not find ``migrated``: its ``why`` (or
    outcome); the last attempt's when there are several."""
    m = migrations.filter(pl.col("outcome") != "migrated")
    if m.is_empty():
        return pl.DataFrame(schema={"old_pfn": pl.UInt64, "verdict": pl.String})
    size = pl.lit(2, pl.UInt64).pow(pl.col("order").cast(pl.UInt64))
    return (
        m.select(
            "old_pfn",
            pl.coalesce("why", "outcome").alias("verdict"),
            pl.int_ranges(0, size, dtype=pl.UInt64).alias("_i"),
        )
        .explode("_i")
        .select((pl.col("old_pfn") + pl.col("_i")).cast(pl.UInt64).alias("old_pfn"), "verdict")
        .group_by("old_pfn")
        .agg(pl.col("verdict").last())
    )
