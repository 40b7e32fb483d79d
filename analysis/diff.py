"""Compare two sides of a dataset (``rmapscope diff``): did a kernel patch make it better?

A side is a SQL predicate over ``traces`` (:func:`side_predicate` turns a trace id or
``host:NAME`` into one), so a side may be many traces. Every table a metric needs is read
through a :class:`~rmapscope.analysis.session.SqlSession` with the same SQL on DuckDB and
Spark, and the statistics are computed here with scipy/numpy, so both engines give the same
numbers. :func:`diff` returns one row per metric (:data:`COLUMNS`): both values, the change,
an interval, a p-value corrected for multiple comparisons, and a verdict:

* ``better`` / ``worse``: significant (corrected p < alpha, beyond ``min_effect``) in the
  metric's stated better-direction (``lower`` or ``higher``);
* ``changed``: significant, for a metric with no better-direction (workload descriptors);
* ``no change``: not significant;
* ``not comparable``: too few samples, an event set enabled on one side only, or kernels
  whose semantics differ (migration-entry tracepoints exist from Linux 5.19).

Tests: rates (per second, per CPU-second) by the exact conditional test of two Poisson
rates (``scipy.stats.binomtest``, with its Clopper-Pearson interval turned into a rate-ratio
interval); proportions by Fisher's exact test (odds-ratio interval); distributions by
Mann-Whitney U with the rank-biserial correlation (Cliff's delta) as effect size;
percentiles by a seeded bootstrap interval of the difference (``scipy.stats.bootstrap``,
resampling clusters). Holm's correction (or Benjamini-Hochberg) over every test of the
diff.

Distributions are tested on clusters, not single samples: the migrations of one
``mm_migrate_pages`` batch start and end together, and a machine's state drifts between
recordings, so single migrations are not independent. Latency has three designs:

* **the same recording on both sides** (every migration of one side has its partner on the
  other: same reason, first-set time, old pfn and task; a trace against itself, a copy
  whose removes a test shifted, a recording re-replayed): a paired test, Wilcoxon's
  signed rank of each batch's median difference, with the median's relative change as
  effect, and a paired bootstrap over batches;
* **5+ recordings a side** (:data:`MIN_CLUSTERS`): the trace is the cluster, Welch's t of
  the traces' log(1 + median);
* **fewer recordings a side**: ``not comparable``. The run-to-run drift, which only several
  recordings a side measure, is as large as the changes a test would report: consecutive
  re-recordings of one workload here differ by 30% at equal batch size and up to 10x in
  median (README, diff calibration). Given the machine's drift factor (``drift``), their
  batch medians are compared by Mann-Whitney U, and only a change beyond it counts.

The bootstrap resamples whole clusters (each with all its samples).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
from scipy import stats

from rmapscope.catalog import MIGRATION_REMOVES, MIGRATION_SETS
from rmapscope.errors import UsageError

if TYPE_CHECKING:
    from .session import SqlSession

__all__ = [
    "COLUMNS",
    "VERDICTS",
    "DiffResult",
    "Side",
    "diff",
    "regressions",
    "resolve_side",
    "side_predicate",
    "summary",
]

BETTER, WORSE, SAME, CHANGED, NOT_COMPARABLE = (
    "better",
    "worse",
    "no change",
    "changed",
    "not comparable",
)
#: Every verdict, from the most to the least telling.
VERDICTS = (WORSE, BETTER, CHANGED, SAME, NOT_COMPARABLE)

#: The columns of :attr:`DiffResult.metrics`.
COLUMNS = (
    "metric",
    "group",
    "unit",
    "better_when",
    "a",
    "b",
    "change",
    "effect",
    "ci_low",
    "ci_high",
    "ci_of",
    "n_a",
    "n_b",
    "test",
    "p",
    "p_adj",
    "verdict",
    "note",
)

#: Fewest samples per side for a distribution (latency, pages per batch) to be compared.
MIN_SAMPLES = 20
#: Fewest clusters (batches, or traces) per side for a distribution to be compared; also
#: the fewest traces per side for the trace to be the cluster.
MIN_CLUSTERS = 5
#: Bootstrap resamples (seeded: the same inputs give the same intervals).
RESAMPLES = 2000
_PERCENTILES = (0.5, 0.9, 0.99)
_HEX = re.compile(r"[0-9a-f]{4,64}")


def side_predicate(spec: str) -> str:
    """The predicate over ``traces`` of a trace id (or a unique prefix) or ``host:NAME``.

    >>> side_predicate("host:lab's"), side_predicate("B792FB79")
    ("host = 'lab''s'", "trace_id LIKE 'b792fb79%'")
    """
    if spec.startswith("host:"):
        return "host = '" + spec[5:].replace("'", "''") + "'"
    tid = spec.strip().lower()
    if not _HEX.fullmatch(tid):
        raise UsageError(f"{spec!r} is neither a trace id (hex) nor host:NAME")
    return f"trace_id LIKE '{tid}%'"


@dataclass
class Side:
    """One side of a diff: its label, predicate and traces (the ``traces`` rows)."""

    label: str
    predicate: str
    traces: pl.DataFrame

    @property
    def ids(self) -> list[str]:
        """The trace ids of the side."""
        return self.traces["trace_id"].to_list()

    @property
    def seconds(self) -> float:
        """Traced time: the sum of the traces' durations."""
        return float(self.traces["duration_s"].sum())

    @property
    def cpu_seconds(self) -> float:
        """Traced CPU time: each trace's duration times its CPUs (1 when unknown)."""
        return float((self.traces["duration_s"] * self.traces["cpus"].fill_null(1)).sum())

    def in_clause(self) -> str:
        """The side's partitions as a predicate over ``host`` and ``trace`` (a trace id may
        be in the dataset under several hosts)."""

        def q(v: str) -> str:
            return "'" + v.replace("'", "''") + "'"

        parts = [
            f"(host = {q(h)} AND trace IN ({', '.join(q(t) for t in g['trace_id'])}))"
            for (h,), g in self.traces.group_by("host", maintain_order=True)
        ]
        return "(" + " OR ".join(parts) + ")"


_TRACES_SQL = """SELECT trace_id, host, kernel, cpus, ts_first, ts_last, events, lost_events,
       event_counts
FROM traces WHERE ({predicate}) ORDER BY trace_id"""


def resolve_side(session: SqlSession, label: str, predicate: str) -> Side:
    """The traces ``predicate`` selects; :class:`UsageError` when it selects none."""
    rows = session.run(_TRACES_SQL.format(predicate=predicate))
    if rows is None or rows.height == 0:
        raise UsageError(f"side {label} ({predicate}): no trace matches (see `rmapscope traces`)")
    rows = rows.with_columns(
        pl.col("cpus").cast(pl.Int64),
        ((pl.col("ts_last") - pl.col("ts_first")).cast(pl.Float64) / 1e9).alias("duration_s"),
    )
    return Side(label, predicate, rows)


@dataclass
class DiffResult:
    """The metrics of a diff, the data behind the charts, and the SQL that read it."""

    a: Side
    b: Side
    metrics: pl.DataFrame
    latencies: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    findings: pl.DataFrame = field(default_factory=pl.DataFrame)
    sql: dict[str, str] = field(default_factory=dict)
    alpha: float = 0.01
    min_effect: float = 0.0


# --------------------------------------------------------------------------- reading
_QUERIES = {
    "migrations": """SELECT trace, batch_id, reason, mode, outcome,
       CAST(t_last_remove - t_first_set AS DOUBLE) / 1e3 AS latency_us,
       CAST(t_first_set AS BIGINT) AS t_first_set, CAST(old_pfn AS BIGINT) AS old_pfn,
       CAST(pid AS BIGINT) AS pid
FROM migrations WHERE {side}""",
    "migration_batches": """SELECT trace, reason, mode,
       CAST(coalesce(succeeded, paired_migrated_pages) AS DOUBLE) AS pages
FROM migration_batches WHERE {side}""",
    "fork_windows": """SELECT trace, CAST(n_overlapping AS BIGINT) AS n_overlapping
FROM fork_windows WHERE NOT shares_vm AND {side}""",
    "violations": """SELECT rule, verdict, count(*) AS findings
FROM violations WHERE {side} GROUP BY rule, verdict""",
}
_EMPTY = {
    "migrations": {"trace": pl.String, "batch_id": pl.Int64, "reason": pl.String,
                   "mode": pl.String, "outcome": pl.String, "latency_us": pl.Float64,
                   "t_first_set": pl.Int64, "old_pfn": pl.Int64, "pid": pl.Int64},
    "migration_batches": {"trace": pl.String, "reason": pl.String, "mode": pl.String,
                          "pages": pl.Float64},
    "fork_windows": {"trace": pl.String, "n_overlapping": pl.Int64},
    "violations": {"rule": pl.String, "verdict": pl.String, "findings": pl.Int64},
}  # fmt: skip


def _views(session: SqlSession) -> set[str]:
    t = session.tables()
    col = "name" if "name" in t.columns else "viewName"
    return set(t[col].to_list()) if col in t.columns else set()


def _read(session: SqlSession, views: set[str], table: str, side: Side) -> pl.DataFrame:
    if table not in views:
        return pl.DataFrame(schema=_EMPTY[table])
    rows = session.run(_QUERIES[table].format(side=side.in_clause()))
    if rows is None:
        return pl.DataFrame(schema=_EMPTY[table])
    # in one order whatever the engine's, so a seeded bootstrap draws the same resamples
    rows = rows.cast(_EMPTY[table])  # type: ignore[arg-type]
    return rows.sort(rows.columns, nulls_last=True)


def _event_counts(side: Side) -> dict[str, int]:
    """Events per name over the side (the manifest's ``event_counts``, a map)."""
    arr = side.traces.select("event_counts").to_arrow().column(0).combine_chunks()
    if pa.types.is_map(arr.type):
        keys, values = arr.keys, arr.items
    else:  # a list of key/value structs
        flat = arr.flatten()
        keys, values = flat.field(0), flat.field(1)
    agg = (
        pl.DataFrame({"k": pl.Series(keys), "v": pl.Series(values)})
        .group_by("k")
        .agg(pl.col("v").sum())
    )
    return {k: int(v) for k, v in agg.iter_rows() if k is not None and v}


def _kernel(version: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


# --------------------------------------------------------------------------- statistics
@dataclass
class _Row:
    metric: str
    group: str
    unit: str
    better_when: str  # lower | higher | none
    a: float | None
    b: float | None
    n_a: int
    n_b: int
    test: str = ""
    p: float | None = None
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_of: str = ""
    note: str = ""
    # False: significant, but within the run-to-run drift the user allowed (``drift``)
    beyond_drift: bool = True
    # percentile rows: significant when their family's test is and the interval excludes 0
    follows: int | None = None
    p_adj: float | None = None
    verdict: str = ""

    @property
    def change(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


def _rel(a: float, b: float) -> float | None:
    if a == b:
        return 0.0
    return None if a == 0 else (b - a) / abs(a)


def _rate(metric: str, group: str, unit: str, better: str, ca: int, ta: float, cb: int,
          tb: float) -> _Row:  # fmt: skip
    """Two Poisson rates (count per exposure): exact conditional test, rate-ratio CI."""
    ra = ca / ta if ta > 0 else math.nan
    rb = cb / tb if tb > 0 else math.nan
    row = _Row(metric, group, unit, better, ra, rb, ca, cb, test="poisson-exact", ci_of="b/a")
    if not (ta > 0 and tb > 0):
        row.note = "a side has no traced time"
        return row
    n = ca + cb
    if n == 0:
        row.p, row.effect = 1.0, 0.0
        return row
    share = tb / (ta + tb)
    res = stats.binomtest(cb, n, share)
    row.p = float(res.pvalue)
    row.effect = _rel(ra, rb)
    ci = res.proportion_ci(0.95, method="exact")

    def ratio(pi: float) -> float:
        return math.inf if pi >= 1 else pi / (1 - pi) * ta / tb

    row.ci_low, row.ci_high = ratio(ci.low), ratio(ci.high)
    return row


def _proportion(metric: str, group: str, better: str, ka: int, na: int, kb: int,
                nb: int) -> _Row:  # fmt: skip
    """Two proportions ``k/n``: Fisher's exact test, odds-ratio CI."""
    row = _Row(metric, group, "ratio", better, None, None, na, nb, test="fisher-exact",
               ci_of="odds ratio")  # fmt: skip
    if na == 0 or nb == 0:
        row.note = "no samples on a side"
        return row
    row.a, row.b = ka / na, kb / nb
    table = np.array([[kb, nb - kb], [ka, na - ka]])
    row.p = float(stats.fisher_exact(table).pvalue)
    row.effect = _rel(row.a, row.b)
    if ka in (0, na) and kb in (0, nb):
        return row
    ci = stats.contingency.odds_ratio(table).confidence_interval(0.95)
    row.ci_low, row.ci_high = float(ci.low), float(ci.high)
    return row


def _cluster_medians(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """The median of ``x`` within each cluster (``k``: a cluster code per sample)."""
    frame = pl.DataFrame({"x": x, "k": k})
    return frame.group_by("k").agg(pl.col("x").median()).sort("k")["x"].to_numpy()


def _signed_rank_p(d: np.ndarray) -> float:
    """Wilcoxon's signed-rank test of paired differences ``d`` (b - a), two-sided; 1 when
    every difference is 0."""
    nz = d[d != 0]
    return float(stats.wilcoxon(nz).pvalue) if nz.size else 1.0


def _cluster_quantiles(x: np.ndarray, k: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """:data:`_PERCENTILES` of cluster resamples (inverted CDF), shape (3, resamples).

    ``drawn`` holds the clusters each resample drew (codes, one row per resample); each
    sample of a cluster weighs as often as its cluster was drawn, so a draw takes the
    whole cluster."""
    rows = drawn.reshape(-1, drawn.shape[-1])
    weights = np.zeros((rows.shape[0], int(k.max()) + 1))
    np.add.at(weights, (np.arange(rows.shape[0])[:, None], rows), 1)
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(weights[:, k[order]], axis=1)
    at = (cum[:, None, :] < np.asarray(_PERCENTILES)[:, None] * cum[:, None, -1:]).sum(axis=2)
    return x[order][np.minimum(at, x.size - 1)].T


def _distribution(metric: str, group: str, unit: str, better: str, xa: np.ndarray,
                  ka: np.ndarray, xb: np.ndarray, kb: np.ndarray, of: str, seed: int,
                  alpha: float, percentiles: bool, rows: list[_Row], design: str = "clusters",
                  drift: float | None = None, paired_of: tuple[int, int] = (0, 0),
                  ) -> None:  # fmt: skip
    """A rank test of the clusters' medians and the percentiles with a cluster-bootstrap
    interval of their difference, appended to ``rows``. ``ka``/``kb`` give each sample's
    cluster (codes 0..n-1); ``of`` names them. ``design``:

    * ``clusters``: Mann-Whitney U of the clusters' medians (effect: rank-biserial =
      Cliff's delta); trace clusters are compared by Welch's t of log(1 + median);
    * ``paired``: ``xa[i]`` and ``xb[i]`` are one migration on both sides (of
      ``paired_of`` migrations a side) and ``ka == kb`` its batch: Wilcoxon's signed
      rank of the batches' median differences (:func:`_signed_rank_p`; effect: the
      median's relative change), and a paired bootstrap of batches;
    * ``drift``: batches of fewer than :data:`MIN_CLUSTERS` recordings a side, not paired:
      not comparable (the run-to-run drift is not measured), unless the user gives the
      ``drift`` factor their machine's re-recordings differ by: then Mann-Whitney U of the
      batches' medians, significant only when the medians differ by more than that factor.
    """
    head = _Row(f"{metric} distribution", group, unit, better,
                float(np.median(xa)) if xa.size else None,
                float(np.median(xb)) if xb.size else None, xa.size, xb.size,
                test="mann-whitney-u", ci_of="")  # fmt: skip
    rows.append(head)
    ma, mb = _cluster_medians(xa, ka), _cluster_medians(xb, kb)
    paired = design == "paired"
    if min(xa.size, xb.size) < MIN_SAMPLES:
        head.note = f"fewer than {MIN_SAMPLES} samples on a side"
    elif min(ma.size, mb.size) < MIN_CLUSTERS:
        head.note = f"fewer than {MIN_CLUSTERS} {of} on a side ({ma.size}, {mb.size})"
    elif design == "drift" and drift is not None:
        u = stats.mannwhitneyu(mb, ma, alternative="two-sided")
        head.p = float(u.pvalue)
        head.effect = float(2 * u.statistic / (ma.size * mb.size) - 1)
        ratio = (float(np.median(mb)) + 1) / (float(np.median(ma)) + 1)
        head.beyond_drift = max(ratio, 1 / ratio) > drift
        head.ci_of = (
            f"effect: rank-biserial of {of}' medians (b > a), {ma.size} vs {mb.size}; counts "
            f"only beyond --drift {drift:g}x of their medians (B/A {ratio:.3g}x)"
        )
    elif design == "drift":
        head.note = (
            f"fewer than {MIN_CLUSTERS} recordings a side, and not the same recording: the "
            "run-to-run drift is as large as a change (README, diff); record "
            f"{MIN_CLUSTERS}+ runs a side, or give --drift"
        )
    elif paired:
        head.p = _signed_rank_p(_cluster_medians(xb - xa, ka))
        head.effect = _rel(float(np.median(xa)), float(np.median(xb)))
        head.test = "wilcoxon-signed-rank"
        head.ci_of = (
            f"the same recording on both sides: {xa.size} migrations paired (of "
            f"{paired_of[0]} and {paired_of[1]}), p over their {ma.size} {of}' median "
            "differences; effect: the median's relative change"
        )
    else:
        u = stats.mannwhitneyu(mb, ma, alternative="two-sided")
        head.p = float(u.pvalue)
        head.effect = float(2 * u.statistic / (ma.size * mb.size) - 1)
        head.ci_of = f"effect: rank-biserial of {of}' medians (b > a), {ma.size} vs {mb.size}"
        if of == "traces":
            # a handful of recordings a side: the exact rank test's smallest p (2/924 at
            # 6 vs 6) cannot pass a corrected alpha, so the traces' log medians are
            # compared by Welch's t-test (the summary-statistics analysis of clusters)
            la, lb = np.log1p(ma), np.log1p(mb)
            t = (
                stats.ttest_ind(lb, la, equal_var=False)
                if np.ptp(la) > 0 and np.ptp(lb) > 0  # (a side without spread: ranks only)
                else None
            )
            if t is not None and np.isfinite(t.pvalue):
                head.p = float(t.pvalue)
                head.test = "welch-t-log-medians"
                head.ci_of += "; p: Welch's t of their log(1 + median)"
    if not percentiles:
        return
    family = len(rows) - 1
    if not head.note:
        draws = (np.arange(ma.size),) if paired else (np.arange(ma.size), np.arange(mb.size))

        def diff_q(*drawn: np.ndarray, axis: int = -1) -> np.ndarray:
            ia, ib = (drawn[0], drawn[0]) if paired else drawn
            d = _cluster_quantiles(xb, kb, ib) - _cluster_quantiles(xa, ka, ia)
            return d[:, 0] if ia.ndim == 1 else d

        boot = stats.bootstrap(
            draws, diff_q, vectorized=True, paired=False,
            n_resamples=RESAMPLES, batch=max(1, 2_000_000 // (xa.size + xb.size)),
            method="percentile", confidence_level=1 - alpha, rng=np.random.default_rng(seed),
        )  # fmt: skip
        low = np.atleast_1d(boot.confidence_interval.low)
        high = np.atleast_1d(boot.confidence_interval.high)
    for i, q in enumerate(_PERCENTILES):
        qa = float(np.quantile(xa, q)) if xa.size else None
        qb = float(np.quantile(xb, q)) if xb.size else None
        row = _Row(f"{metric} p{round(q * 100)}", group, unit, better, qa, qb, xa.size,
                   xb.size, test="cluster-bootstrap", follows=family,
                   note=head.note)  # fmt: skip
        if not head.note and qa is not None and qb is not None:
            row.ci_low, row.ci_high = float(low[i]), float(high[i])
            drawn = f"{ma.size} {of}, paired" if paired else f"{ma.size} vs {mb.size} {of}"
            row.ci_of = f"b-a, {100 * (1 - alpha):g}% bootstrap of {drawn}"
            row.effect = _rel(qa, qb)
        rows.append(row)


#: What makes a migration the same one on both sides of a diff.
_MIGRATION_KEY = ["reason", "t_first_set", "old_pfn", "pid"]
#: The share of each side's migrations that must have a partner for the sides to be one
#: recording (a shifted remove may change a few migrations' outcome).
SAME_RECORDING = 0.95


def _same_recording(la: pl.DataFrame, lb: pl.DataFrame) -> pl.DataFrame | None:
    """``la``'s migrations joined to their partners in ``lb`` (``latency_us_b``) when the
    two sides hold the same recording: at least :data:`SAME_RECORDING` of each side's
    migrations have exactly one partner (:data:`_MIGRATION_KEY`) on the other; else None.
    A trace against itself, or against a copy whose removes were shifted, is one
    recording; two recordings never share first-set times to the nanosecond."""
    if la.height == 0 or lb.height == 0:
        return None
    keys = pl.struct(_MIGRATION_KEY)
    ua, ub = (f.filter(keys.is_unique()) for f in (la, lb))
    joined = ua.join(
        ub.select(*_MIGRATION_KEY, pl.col("latency_us").alias("latency_us_b")),
        on=_MIGRATION_KEY, how="inner", nulls_equal=True,
    )  # fmt: skip
    if joined.height < SAME_RECORDING * max(la.height, lb.height):
        return None
    return joined


def _clusters(frame: pl.DataFrame, level: str) -> np.ndarray:
    """Each row's cluster as a code 0..n-1: its trace, or its trace's batch (``batch_id``,
    or one cluster of the trace's rows outside any batch); ``row`` makes each row its own."""
    if level == "row":
        return np.arange(frame.height)
    key = pl.col("trace")
    if level == "batch":
        key = pl.concat_str([key, pl.col("batch_id").cast(pl.String).fill_null("-")], separator="/")
    codes = np.unique(frame.select(key).to_series().to_numpy(), return_inverse=True)[1]
    return codes.astype(np.int64)


def _correct(p: np.ndarray, method: str) -> np.ndarray:
    """Holm's step-down adjusted p-values, or Benjamini-Hochberg's (scipy)."""
    if p.size == 0:
        return p
    if method == "bh":
        return stats.false_discovery_control(p, method="bh")
    if method != "holm":
        raise UsageError(f"unknown correction {method!r}; known: holm, bh")
    order = np.argsort(p)
    steps = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(steps, 1.0)
    return out


def _verdicts(rows: list[_Row], alpha: float, min_effect: float, method: str) -> None:
    tested = [i for i, r in enumerate(rows) if r.p is not None and r.follows is None]
    adj = _correct(np.array([rows[i].p for i in tested], dtype=float), method)
    for i, v in zip(tested, adj, strict=True):
        rows[i].p_adj = float(v)
    for r in rows:
        if r.follows is not None:
            fam = rows[r.follows]
            r.p, r.p_adj = fam.p, fam.p_adj
            significant = (
                fam.beyond_drift and fam.p_adj is not None and fam.p_adj < alpha
                and r.ci_low is not None
                and r.ci_high is not None and (r.ci_low > 0 or r.ci_high < 0)
            )  # fmt: skip
        else:
            significant = r.beyond_drift and r.p_adj is not None and r.p_adj < alpha
        if r.note:
            r.verdict = NOT_COMPARABLE
        elif r.p_adj is None and r.follows is None:
            r.verdict = SAME if r.a == r.b else NOT_COMPARABLE
        elif not significant or (r.effect is not None and abs(r.effect) <= min_effect):
            r.verdict = SAME
        elif r.better_when == "none" or r.change is None:
            r.verdict = CHANGED
        else:
            dist = r.metric.endswith("distribution")
            up = (r.effect or 0) > 0 if dist else r.change > 0
            r.verdict = BETTER if up == (r.better_when == "higher") else WORSE


# --------------------------------------------------------------------------- metrics
def diff(
    session: SqlSession,
    a: str,
    b: str,
    *,
    alpha: float = 0.01,
    min_effect: float = 0.0,
    correction: str = "holm",
    seed: int = 0,
    labels: tuple[str, str] = ("A", "B"),
    drift: float | None = None,
) -> DiffResult:
    """Compare the traces predicate ``a`` selects with those ``b`` selects.

    ``alpha`` is the significance level after the correction (``holm`` or ``bh``);
    ``min_effect`` the smallest relative change (0.1 = 10%; for a distribution of two
    sets of recordings, the rank-biserial effect) that counts; ``seed`` seeds the bootstrap.
    ``drift``: the factor by which two recordings of one workload differ in median latency
    on the machine (from re-recordings); with it, fewer than :data:`MIN_CLUSTERS` different
    recordings a side are compared on latency, and only a change beyond it counts (without
    it, they are not comparable).
    """
    if not 0 < alpha < 1:
        raise UsageError(f"alpha must be in (0, 1), not {alpha}")
    if min_effect < 0:
        raise UsageError(f"min_effect must be >= 0, not {min_effect}")
    if drift is not None and not drift >= 1:
        raise UsageError(f"drift must be a factor >= 1, not {drift}")
    sa, sb = resolve_side(session, labels[0], a), resolve_side(session, labels[1], b)
    views = _views(session)
    data = {t: (_read(session, views, t, sa), _read(session, views, t, sb)) for t in _QUERIES}
    ea, eb = _event_counts(sa), _event_counts(sb)
    rows: list[_Row] = []
    why_not = _migration_comparable(sa, sb, ea, eb)

    def rate(metric: str, group: str, better: str, ca: int, cb: int, cpu: bool = False) -> _Row:
        ta, tb = (sa.cpu_seconds, sb.cpu_seconds) if cpu else (sa.seconds, sb.seconds)
        unit = "per CPU-second" if cpu else "per second"
        row = _rate(metric, group, unit, better, ca, ta, cb, tb)
        rows.append(row)
        return row

    # durations: context, one value per trace
    da, db = sa.traces["duration_s"].to_numpy(), sb.traces["duration_s"].to_numpy()
    dur = _Row("trace duration", "mean", "s", "none", float(da.mean()), float(db.mean()),
               da.size, db.size, test="mann-whitney-u")  # fmt: skip
    if min(da.size, db.size) >= 2:
        dur.p = float(stats.mannwhitneyu(db, da).pvalue)
    elif dur.a != dur.b:
        dur.note = "one trace on a side: no spread to test against"
    rows.append(dur)

    # migrations
    ma, mb = data["migrations"]
    n_before = len(rows)
    rate("migrations", "all", "none", ma.height, mb.height)
    for key, ca, cb in _pair_counts(ma, mb, ["reason", "mode"]):
        rate("migrations", key, "none", ca, cb)
    decided = ["migrated", "restored", "leaked"]
    da_, db_ = (
        ma.filter(pl.col("outcome").is_in(decided)),
        mb.filter(pl.col("outcome").is_in(decided)),
    )
    fa = da_.filter(pl.col("outcome") != "migrated").height
    fb = db_.filter(pl.col("outcome") != "migrated").height
    rows.append(_proportion("migration failure ratio", "restored+leaked of decided", "lower",
                            fa, da_.height, fb, db_.height))  # fmt: skip
    for key, ca, cb in _pair_counts(ma, mb, ["outcome"]):
        if key != "migrated":
            rows.append(_proportion("migration outcome share", key, "lower", ca, ma.height, cb,
                                    mb.height))  # fmt: skip
    la = ma.filter(
        pl.col("outcome").is_in(["migrated", "restored"]) & pl.col("latency_us").is_not_null()
    )
    lb = mb.filter(
        pl.col("outcome").is_in(["migrated", "restored"]) & pl.col("latency_us").is_not_null()
    )
    latencies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    level = "trace" if min(len(sa.ids), len(sb.ids)) >= MIN_CLUSTERS else "batch"
    of = "traces" if level == "trace" else "batches"
    pairs = _same_recording(la, lb) if level == "batch" else None
    reasons = sorted(set(la["reason"].fill_null("?")) | set(lb["reason"].fill_null("?")))
    for reason in reasons:
        ra, rb = (f.filter(pl.col("reason").fill_null("?") == reason) for f in (la, lb))
        in_a, in_b = ra.height, rb.height
        if pairs is not None:
            ra = rb = pairs.filter(pl.col("reason").fill_null("?") == reason)
            xa, xb = ra["latency_us"].to_numpy(), ra["latency_us_b"].to_numpy()
        else:
            xa, xb = ra["latency_us"].to_numpy(), rb["latency_us"].to_numpy()
        ka, kb = _clusters(ra, level), _clusters(rb, level)
        latencies[reason] = (xa, xb)
        design = "clusters" if level == "trace" else "paired" if pairs is not None else "drift"
        _distribution("migration latency", reason, "us", "lower", xa, ka, xb, kb, of, seed,
                      alpha, True, rows, design, drift, (in_a, in_b))  # fmt: skip
    ba, bb = (f.with_columns(pl.col("reason").fill_null("?")) for f in data["migration_batches"])
    per_batch = "trace" if level == "trace" else "row"  # a batch is its own sample
    for reason in sorted(set(ba["reason"]) | set(bb["reason"])):
        ra, rb = (
            f.filter((pl.col("reason") == reason) & pl.col("pages").is_not_null()) for f in (ba, bb)
        )
        _distribution("pages per batch", reason, "pages", "none", ra["pages"].to_numpy(),
                      _clusters(ra, per_batch), rb["pages"].to_numpy(), _clusters(rb, per_batch),
                      of, seed, alpha, False, rows)  # fmt: skip
    if why_not:
        for r in rows[n_before:]:
            r.note = why_not

    # forks during migrations
    fka, fkb = data["fork_windows"]
    rows.append(_proportion(
        "fork-during-migration overlap", "forks copying an mm", "lower",
        fka.filter(pl.col("n_overlapping") > 0).height, fka.height,
        fkb.filter(pl.col("n_overlapping") > 0).height, fkb.height,
    ))  # fmt: skip
    if why_not:
        rows[-1].note = why_not

    # findings: verdict values are data (violation, inconclusive, hazard, ...)
    va, vb = data["violations"]
    findings = _findings(va, vb)
    for rule, verdict, ca, cb in findings.iter_rows():
        rate("findings", f"{rule} / {verdict}", "lower", ca, cb)

    # lost events and event rates
    rate("lost events", "all", "lower", int(sa.traces["lost_events"].fill_null(0).sum()),
         int(sb.traces["lost_events"].fill_null(0).sum()), cpu=True)  # fmt: skip
    for name in sorted(set(ea) | set(eb)):
        row = rate("events", name, "none", ea.get(name, 0), eb.get(name, 0))
        if (name in ea) != (name in eb):
            row.note = f"recorded on side {labels[0] if name in ea else labels[1]} only"

    _verdicts(rows, alpha, min_effect, correction)
    metrics = pl.DataFrame(
        [{c: getattr(r, c) for c in COLUMNS} for r in rows],
        schema={c: (pl.Int64 if c.startswith("n_") else pl.Float64 if c in _FLOATS else pl.String)
                for c in COLUMNS},
        orient="row",
    )  # fmt: skip
    sql = {"traces": _TRACES_SQL}
    sql.update({t: q.format(side="{side}") for t, q in _QUERIES.items()})
    return DiffResult(sa, sb, metrics, latencies, findings, sql, alpha, min_effect)


_FLOATS = frozenset({"a", "b", "change", "effect", "ci_low", "ci_high", "p", "p_adj"})


def _pair_counts(fa: pl.DataFrame, fb: pl.DataFrame, keys: list[str]) -> list[tuple[str, int, int]]:
    """Rows per group (keys joined with ``/``) on each side, the union of the groups."""

    def counts(f: pl.DataFrame) -> dict[str, int]:
        g = f.select(pl.concat_str([pl.col(k).fill_null("?") for k in keys], separator=" / "))
        return {k: int(v) for k, v in g.to_series().value_counts().iter_rows()}

    a, b = counts(fa), counts(fb)
    return [(k, a.get(k, 0), b.get(k, 0)) for k in sorted(set(a) | set(b))]


def _findings(va: pl.DataFrame, vb: pl.DataFrame) -> pl.DataFrame:
    """Findings per rule and verdict on each side (columns rule, verdict, a, b)."""
    keys = ["rule", "verdict"]

    def agg(f: pl.DataFrame, name: str) -> pl.DataFrame:
        return f.group_by(keys).agg(pl.col("findings").sum().cast(pl.Int64).alias(name))

    out = agg(va, "a").join(agg(vb, "b"), on=keys, how="full", coalesce=True)
    return out.with_columns(pl.col("a", "b").fill_null(0)).sort(keys).select(*keys, "a", "b")


def _migration_comparable(sa: Side, sb: Side, ea: dict[str, int], eb: dict[str, int]) -> str:
    """Why the migration metrics cannot be compared ('' when they can)."""
    for side, counts in ((sa, ea), (sb, eb)):
        kernels = [_kernel(k) for k in side.traces["kernel"].to_list()]
        if any(k is not None and k < (5, 19) for k in kernels):
            return f"side {side.label} has a kernel < 5.19 (no migration-entry tracepoints)"
        if not any(counts.get(e) for e in MIGRATION_SETS) and not any(
            counts.get(e) for e in MIGRATION_REMOVES
        ):
            return f"side {side.label} recorded no set/remove_migration_pte events"
    return ""


def regressions(result: DiffResult) -> pl.DataFrame:
    """The metrics that are significantly worse (what ``--fail-on regression`` fails on)."""
    return result.metrics.filter(pl.col("verdict") == WORSE)


def summary(result: DiffResult) -> dict[str, int]:
    """How many metrics got each verdict."""
    counts = dict(result.metrics["verdict"].value_counts().iter_rows())
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


#: What ``better_when`` says, for the report and the README.
DIRECTIONS: dict[str, str] = {
    "lower": "lower is better",
    "higher": "higher is better",
    "none": "no better direction (a workload descriptor)",
}
