"""Uncertainty for every reported number: intervals, paired differences, McNemar, kappa.

Why: benchmark test sets of 150-6,761 items leave percentages several points wide, so a table of bare
percentages invites reading noise as progress. Every score rarl reports carries a 95% interval and its n;
two models are compared on the items both answered, with a paired interval of the difference and, for 0/1
outcomes, McNemar's exact test. The methods are textbook and take a few lines each, so the package does not
depend on scipy/statsmodels (the tests check these functions against them):

* proportions (accuracy, judge pass rates): the Wilson score interval, which keeps its coverage near 0% and
  100% and at small n, where the normal-approximation (Wald) interval fails;
* means of non-0/1 per-item scores (token F1, BERTScore, mean human ratings) and Cohen's kappa: the
  percentile bootstrap over items, ``RESAMPLES`` resamples from a fixed seed (reproducible to the digit);
* paired differences: the percentile bootstrap of the mean per-item difference (items resampled jointly);
* McNemar's exact test: the two-sided binomial test on the discordant pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
SMALL_N = 20  # cells with fewer items are flagged in tables: their interval is wide and coverage shaky

WILSON = "Wilson score interval"
BOOTSTRAP = f"percentile bootstrap over items ({RESAMPLES:,} resamples, seed {SEED})"

Interval = tuple[float, float]


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: float, n: int, confidence: float = CONFIDENCE) -> Interval | None:
    """Wilson score interval of a proportion ``successes / n``; ``None`` when ``n == 0``."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _rng(seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed)


def _resample_indices(n: int, resamples: int, seed: int) -> Iterator[Any]:
    """Bootstrap index rows ``(k, n)`` in chunks of at most ~2M entries (memory stays small for big n)."""
    rng = _rng(seed)
    chunk = max(1, min(resamples, 2_000_000 // max(1, n)))
    for start in range(0, resamples, chunk):
        yield rng.integers(0, n, size=(min(chunk, resamples - start), n))


def _bootstrap_means(values: Any, resamples: int, seed: int) -> Any:
    import numpy as np

    return np.concatenate(
        [values[rows].mean(axis=1) for rows in _resample_indices(values.size, resamples, seed)]
    )


def _percentile(values: Any, confidence: float) -> Interval:
    import numpy as np

    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_mean_interval(
    values: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Interval | None:
    """Percentile-bootstrap interval of the mean of per-item ``values``; ``None`` for no items."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    return _percentile(_bootstrap_means(data, resamples, seed), confidence)


def bootstrap_difference_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Interval | None:
    """Percentile-bootstrap interval of ``mean(b) - mean(a)`` for two *independent* samples.

    Each sample is resampled on its own (use :func:`paired_difference` when items are matched).
    """
    import numpy as np

    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.size == 0 or second.size == 0:
        return None
    diffs = _bootstrap_means(second, resamples, seed + 1) - _bootstrap_means(first, resamples, seed)
    return _percentile(diffs, confidence)


def stratified_bootstrap_interval(
    strata: Sequence[Sequence[float]],
    combine: Callable[[list[Any]], Any],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Interval | None:
    """Percentile-bootstrap interval of a score built from the means of several item groups.

    Each stratum (e.g. a CV-Bench task or source subset) is resampled on its own, so every resample keeps
    the groups' sizes; ``combine`` maps the list of per-stratum mean arrays to the score's array.
    """
    import numpy as np

    arrays = [np.asarray(values, dtype=float) for values in strata]
    if not arrays or any(a.size == 0 for a in arrays):
        return None
    means = [_bootstrap_means(a, resamples, seed + index) for index, a in enumerate(arrays)]
    return _percentile(np.asarray(combine(means), dtype=float), confidence)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``b - a`` over matched items, its paired-bootstrap interval, and McNemar for 0/1 outcomes."""

    n: int
    mean_a: float
    mean_b: float
    difference: float
    interval: Interval
    mcnemar_p: float | None  # None unless both outcomes are 0/1
    a_only: int | None = None  # items right under A only (0/1 outcomes)
    b_only: int | None = None


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> PairedDifference | None:
    """Compare two models' per-item scores on the same items (``a[i]`` and ``b[i]`` are one item)."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired scores must cover the same items")
    if not a:
        return None
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = second - first
    interval = _percentile(_bootstrap_means(diffs, resamples, seed), confidence)
    binary = bool(np.isin(first, (0.0, 1.0)).all() and np.isin(second, (0.0, 1.0)).all())
    a_only = int(((first == 1) & (second == 0)).sum()) if binary else None
    b_only = int(((first == 0) & (second == 1)).sum()) if binary else None
    return PairedDifference(
        n=int(diffs.size),
        mean_a=float(first.mean()),
        mean_b=float(second.mean()),
        difference=float(diffs.mean()),
        interval=interval,
        mcnemar_p=mcnemar_exact_p(a_only, b_only) if binary else None,
        a_only=a_only,
        b_only=b_only,
    )


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of ``a_only`` of the discordant pairs at 1/2.

    Only items the two models disagree on carry information; under "no difference" each of the
    ``a_only + b_only`` discordant items is equally likely to favour either model.
    """
    discordant = a_only + b_only
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**discordant)  # exact integers: no overflow for thousands of items


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two binary raters on the same items; ``None`` when chance agreement is 1.

    (po - pe) / (1 - pe): agreement beyond what the raters' base rates alone would give. When both raters
    give one constant label, kappa is undefined (pe = 1) and reported as such instead of as 0 or 1.
    """
    if len(a) != len(b):
        raise ValueError("raters must score the same items")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def kappa_interval(
    a: Sequence[int],
    b: Sequence[int],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> Interval | None:
    """Percentile-bootstrap interval of Cohen's kappa, resampling items (pairs of ratings) jointly.

    Resamples where kappa is undefined (both raters constant) are left out; ``None`` when kappa itself
    is undefined or too few resamples are defined to form an interval.
    """
    import numpy as np

    if cohen_kappa(a, b) is None:
        return None
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    agree = (first == second).astype(float)
    parts = [
        (agree[rows].mean(axis=1), first[rows].mean(axis=1), second[rows].mean(axis=1))
        for rows in _resample_indices(first.size, resamples, seed)
    ]
    po, pa, pb = (np.concatenate(column) for column in zip(*parts, strict=True))
    pe = pa * pb + (1 - pa) * (1 - pb)
    defined = pe < 1.0
    if defined.sum() < resamples / 2:
        return None
    kappas = (po[defined] - pe[defined]) / (1 - pe[defined])
    return _percentile(kappas, confidence)


# --------------------------------------------------------------------------------------------------
# agreement among more than two raters (binary 0/1 ratings; rows = items, columns = raters, None = missing)

Ratings = Sequence[Sequence[int | None]]


def _fleiss_parts(ratings: Ratings) -> tuple[Any, int]:
    """Per item the number of 1-ratings, and the number of raters (every item must have all of them)."""
    import numpy as np

    table = np.asarray([[np.nan if r is None else r for r in row] for row in ratings], dtype=float)
    if table.ndim != 2 or np.isnan(table).any():
        raise ValueError("Fleiss' kappa needs every item rated by every rater (no missing ratings)")
    return table.sum(axis=1), table.shape[1]


def _fleiss_from_counts(ones: Any, raters: int) -> Any:
    """Fleiss' kappa along the last axis of ``ones`` (items), vectorised for the bootstrap; NaN where the
    raters' pooled base rate is 0 or 1 (chance agreement 1: undefined)."""
    import numpy as np

    agreement = (ones**2 + (raters - ones) ** 2 - raters) / (raters * (raters - 1))  # P_i per item
    p_bar = agreement.mean(axis=-1)
    p_one = ones.mean(axis=-1) / raters
    p_e = p_one**2 + (1 - p_one) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_e < 1.0, (p_bar - p_e) / (1 - p_e), np.nan)


def fleiss_kappa(ratings: Ratings) -> float | None:
    """Fleiss' kappa of m ≥ 2 raters who each rated every item 0 or 1; ``None`` when undefined.

    (P̄ − Pₑ) / (1 − Pₑ): P̄ the mean share of agreeing rater pairs per item, Pₑ = p₀² + p₁² from the
    pooled base rates. Undefined (``None``) when every rating is the same label (Pₑ = 1).
    """
    if not ratings:
        return None
    ones, raters = _fleiss_parts(ratings)
    if raters < 2:
        raise ValueError("Fleiss' kappa needs at least two raters")
    value = float(_fleiss_from_counts(ones, raters))
    return None if value != value else value  # NaN: undefined


def _alpha_parts(ratings: Ratings) -> tuple[Any, Any]:
    """Per pairable item (two or more ratings): the number of ratings and of 1-ratings."""
    import numpy as np

    given = [[r for r in row if r is not None] for row in ratings]
    given = [row for row in given if len(row) >= 2]
    counts = np.asarray([len(row) for row in given], dtype=float)
    ones = np.asarray([sum(row) for row in given], dtype=float)
    return counts, ones


def _alpha_from_parts(counts: Any, ones: Any) -> Any:
    """Krippendorff's nominal alpha of binary ratings along the last axis (items), vectorised; NaN where
    undefined (one label only)."""
    import numpy as np

    disagreeing = (ones * (counts - ones) / (counts - 1)).sum(axis=-1)  # o₀₁ of the coincidence matrix
    n = counts.sum(axis=-1)
    n_one = ones.sum(axis=-1)
    n_zero = n - n_one
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_one * n_zero > 0, 1 - (n - 1) * disagreeing / (n_one * n_zero), np.nan)


def krippendorff_alpha(ratings: Ratings) -> float | None:
    """Krippendorff's alpha (nominal) of binary ratings with missing ones (``None``); ``None`` when undefined.

    1 − D₀/Dₑ over the coincidence matrix of the pairable items (those with two or more ratings; the
    others carry no agreement information): for two labels, 1 − (n − 1)·o₀₁ / (n₀·n₁), where o₀₁ sums
    k(m − k)/(m − 1) over items with m ratings of which k are 1, and n₀, n₁ count the pairable ratings.
    Undefined (``None``) when all pairable ratings are one label or no item is pairable.
    """
    counts, ones = _alpha_parts(ratings)
    if counts.size == 0:
        return None
    value = float(_alpha_from_parts(counts, ones))
    return None if value != value else value


def _bootstrap_statistic(
    columns: Sequence[Any], statistic: Any, resamples: int, confidence: float, seed: int
) -> Interval | None:
    """Percentile interval of ``statistic(*resampled columns)`` with items (rows) resampled jointly;
    undefined resamples (NaN) are left out, ``None`` when fewer than half are defined."""
    import numpy as np

    chunks = _resample_indices(columns[0].size, resamples, seed)
    values = np.concatenate([statistic(*(column[rows] for column in columns)) for rows in chunks])
    defined = values[~np.isnan(values)]
    if defined.size < resamples / 2:
        return None
    return _percentile(defined, confidence)


def fleiss_kappa_interval(
    ratings: Ratings, *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = SEED
) -> Interval | None:
    """Percentile-bootstrap interval of :func:`fleiss_kappa`, resampling items (all their ratings)."""
    if fleiss_kappa(ratings) is None:
        return None
    ones, raters = _fleiss_parts(ratings)
    return _bootstrap_statistic([ones], lambda o: _fleiss_from_counts(o, raters), resamples, confidence, seed)


def krippendorff_alpha_interval(
    ratings: Ratings, *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = SEED
) -> Interval | None:
    """Percentile-bootstrap interval of :func:`krippendorff_alpha`, resampling the pairable items."""
    if krippendorff_alpha(ratings) is None:
        return None
    counts, ones = _alpha_parts(ratings)
    return _bootstrap_statistic([counts, ones], _alpha_from_parts, resamples, confidence, seed)


def estimate_interval(values: Sequence[float], **kwargs: Any) -> tuple[Interval | None, str]:
    """Interval of a mean, with the method used: Wilson when every value is 0/1, else the bootstrap."""
    if all(v in (0.0, 1.0) for v in values):
        return wilson_interval(sum(values), len(values)), WILSON
    return bootstrap_mean_interval(values, **kwargs), BOOTSTRAP


@dataclass(frozen=True)
class Estimate:
    """One reported number: the value, its 95% interval and the n behind it (rendered by the tables)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units (fractions to percent)."""

        def scale(x: float | None) -> float | None:
            return None if x is None else factor * x

        return Estimate(scale(self.value), scale(self.low), scale(self.high), self.n)

    @property
    def small(self) -> bool:
        return self.n is not None and self.n < SMALL_N


def estimate(values: Sequence[float], **kwargs: Any) -> Estimate:
    """Mean of per-item ``values`` with its interval (see :func:`estimate_interval`) and n."""
    if not values:
        return Estimate(None, n=0)
    interval, _ = estimate_interval(values, **kwargs)
    low, high = interval if interval else (None, None)
    return Estimate(sum(values) / len(values), low, high, len(values))


def mean_or_none(values: Iterable[float]) -> float | None:
    """The mean, or ``None`` for no values (a metric that has no items is missing, never 0)."""
    values = list(values)
    return sum(values) / len(values) if values else None


def put_mean_with_interval(block: dict[str, Any], name: str, values: Sequence[float]) -> None:
    """Set ``block[name]`` to the mean of ``values`` and ``block[name + '_ci']`` to its 95% interval.

    How results.json stores a mean: Wilson for 0/1 values (accuracy, exact match), the seeded percentile
    bootstrap otherwise (token recall, F1, BERTScore); the ``_ci`` key only when an interval exists.
    """
    block[name] = mean_or_none(values)
    interval, _ = estimate_interval(list(values))
    if interval is not None:
        block[f"{name}_ci"] = list(interval)


def summary_spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation, min and max over repeated runs (e.g. seeds)."""
    n = len(values)
    mean = sum(values) / n if n else None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 and mean is not None else None
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "min": min(values) if n else None,
        "max": max(values) if n else None,
    }


__all__ = [
    "BOOTSTRAP",
    "CONFIDENCE",
    "RESAMPLES",
    "SMALL_N",
    "WILSON",
    "Estimate",
    "PairedDifference",
    "bootstrap_difference_interval",
    "bootstrap_mean_interval",
    "cohen_kappa",
    "estimate",
    "estimate_interval",
    "fleiss_kappa",
    "fleiss_kappa_interval",
    "kappa_interval",
    "krippendorff_alpha",
    "krippendorff_alpha_interval",
    "mcnemar_exact_p",
    "mean_or_none",
    "paired_difference",
    "put_mean_with_interval",
    "stratified_bootstrap_interval",
    "summary_spread",
    "wilson_interval",
]
