"""rarl.stats against independent implementations: scipy (binomial test, bootstrap), scikit-learn (kappa),
statsmodels (Fleiss' kappa) and the krippendorff package (Krippendorff's alpha)."""

from __future__ import annotations

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")
sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("successes,n", [(0, 10), (1, 10), (7, 12), (150, 192), (192, 192), (3, 6761)])
def test_wilson_interval_matches_scipy(successes, n):
    from rarl.stats import wilson_interval

    expected = scipy_stats.binomtest(successes, n).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_interval_edge_cases():
    from rarl.stats import wilson_interval

    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@pytest.mark.parametrize("a_only,b_only", [(0, 0), (0, 5), (3, 9), (6, 0), (20, 21), (130, 170), (900, 1000)])
def test_mcnemar_exact_p_is_scipys_binomial_test_on_discordant_pairs(a_only, b_only):
    from rarl.stats import mcnemar_exact_p

    discordant = a_only + b_only
    expected = 1.0 if discordant == 0 else scipy_stats.binomtest(a_only, discordant, 0.5).pvalue
    assert mcnemar_exact_p(a_only, b_only) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_bootstrap_mean_interval_agrees_with_scipy_percentile_bootstrap():
    from rarl.stats import bootstrap_mean_interval

    rng = np.random.default_rng(7)
    values = rng.beta(2, 5, size=300)  # a skewed, non-0/1 score such as BERTScore
    low, high = bootstrap_mean_interval(values, resamples=4000, seed=1)
    oracle = scipy_stats.bootstrap(
        (values,), np.mean, n_resamples=4000, method="percentile", random_state=2
    ).confidence_interval
    # Two independent Monte Carlo runs: the ends agree to Monte Carlo error (~0.1 SE), far below the width.
    width = oracle.high - oracle.low
    assert low == pytest.approx(oracle.low, abs=0.05 * width)
    assert high == pytest.approx(oracle.high, abs=0.05 * width)
    # and it is seeded: the same call gives the same digits
    assert bootstrap_mean_interval(values, resamples=4000, seed=1) == (low, high)


def test_paired_difference_interval_and_mcnemar_against_scipy():
    from rarl.stats import paired_difference

    rng = np.random.default_rng(3)
    a = (rng.random(400) < 0.6).astype(float)
    flip = rng.random(400) < 0.2
    b = np.where(flip, 1.0 - a, a)
    b[rng.random(400) < 0.1] = 1.0  # model B fixes some items
    result = paired_difference(list(a), list(b), resamples=4000)
    assert result.n == 400
    assert result.difference == pytest.approx(b.mean() - a.mean())
    oracle = scipy_stats.bootstrap(
        (a, b),
        lambda x, y: np.mean(y - x),
        paired=True,
        n_resamples=4000,
        method="percentile",
        random_state=5,
    ).confidence_interval
    width = oracle.high - oracle.low
    assert result.interval[0] == pytest.approx(oracle.low, abs=0.05 * width)
    assert result.interval[1] == pytest.approx(oracle.high, abs=0.05 * width)
    a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert (result.a_only, result.b_only) == (a_only, b_only)
    assert result.mcnemar_p == pytest.approx(scipy_stats.binomtest(a_only, a_only + b_only).pvalue)


def test_paired_difference_of_continuous_scores_has_no_mcnemar():
    from rarl.stats import paired_difference

    result = paired_difference([0.2, 0.5, 0.9], [0.3, 0.5, 1.0])
    assert result.mcnemar_p is None and result.a_only is None
    assert result.difference == pytest.approx(0.2 / 3)
    assert paired_difference([], []) is None
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 0.0])


def test_cohen_kappa_and_its_bootstrap_interval_against_sklearn():
    from rarl.stats import cohen_kappa, kappa_interval

    rng = np.random.default_rng(11)
    truth = rng.random(250) < 0.5
    rater_a = np.where(rng.random(250) < 0.85, truth, ~truth).astype(int)
    rater_b = np.where(rng.random(250) < 0.8, truth, ~truth).astype(int)
    assert cohen_kappa(list(rater_a), list(rater_b)) == pytest.approx(
        sklearn_metrics.cohen_kappa_score(rater_a, rater_b)
    )
    low, high = kappa_interval(list(rater_a), list(rater_b), resamples=3000)
    oracle = scipy_stats.bootstrap(
        (rater_a, rater_b),
        sklearn_metrics.cohen_kappa_score,
        paired=True,
        vectorized=False,
        n_resamples=3000,
        method="percentile",
        random_state=9,
    ).confidence_interval
    width = oracle.high - oracle.low
    assert low == pytest.approx(oracle.low, abs=0.06 * width)
    assert high == pytest.approx(oracle.high, abs=0.06 * width)
    assert low < cohen_kappa(list(rater_a), list(rater_b)) < high


def test_kappa_interval_undefined_when_raters_are_constant():
    from rarl.stats import kappa_interval

    assert kappa_interval([1, 1, 1], [1, 1, 1]) is None


def test_estimate_picks_wilson_for_binary_and_bootstrap_otherwise():
    from rarl.stats import BOOTSTRAP, WILSON, estimate, estimate_interval, wilson_interval

    assert estimate_interval([1.0, 0.0, 1.0])[1] == WILSON
    assert estimate([1.0, 0.0, 1.0]).low == wilson_interval(2, 3)[0]
    assert estimate_interval([0.5, 0.25])[1] == BOOTSTRAP
    empty = estimate([])
    assert empty.value is None and empty.n == 0
    assert estimate([1.0] * 5).small and not estimate([1.0] * 20).small


def test_summary_spread_matches_numpy():
    from rarl.stats import summary_spread

    values = [0.78, 0.81, 0.8, 0.74]
    spread = summary_spread(values)
    assert spread["mean"] == pytest.approx(np.mean(values))
    assert spread["sd"] == pytest.approx(np.std(values, ddof=1))
    assert (spread["min"], spread["max"]) == (0.74, 0.81)
    assert summary_spread([0.5])["sd"] is None


def test_independent_bootstrap_difference_agrees_with_scipy():
    from rarl.stats import bootstrap_difference_interval

    rng = np.random.default_rng(2)
    first, second = rng.normal(2.70, 0.1, size=50), rng.normal(2.76, 0.1, size=60)
    low, high = bootstrap_difference_interval(first, second, resamples=4000)
    oracle = scipy_stats.bootstrap(
        (first, second),
        lambda x, y, axis=-1: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        n_resamples=4000,
        method="percentile",
        random_state=4,
    ).confidence_interval
    width = oracle.high - oracle.low
    assert low == pytest.approx(oracle.low, abs=0.06 * width)
    assert high == pytest.approx(oracle.high, abs=0.06 * width)
    assert bootstrap_difference_interval([], [1.0]) is None


# --------------------------------------------------------------------------------------------------
# three or more raters: Fleiss' kappa (statsmodels) and Krippendorff's alpha (the krippendorff package)


def _random_ratings(seed, items, raters, missing=0.0):
    rng = np.random.default_rng(seed)
    truth = rng.random(items) < 0.55
    table = np.where(rng.random((items, raters)) < 0.75, truth[:, None], ~truth[:, None]).astype(float)
    table[rng.random(table.shape) < missing] = np.nan
    return table


def _as_rows(table):
    return [[None if np.isnan(v) else int(v) for v in row] for row in table]


@pytest.mark.parametrize("seed,items,raters", [(0, 12, 3), (1, 40, 3), (2, 25, 4), (3, 200, 5), (4, 7, 6)])
def test_fleiss_kappa_matches_statsmodels(seed, items, raters):
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

    from rarl.stats import fleiss_kappa

    table = _random_ratings(seed, items, raters)
    expected = statsmodels_fleiss(aggregate_raters(table.astype(int), n_cat=2)[0], method="fleiss")
    assert fleiss_kappa(_as_rows(table)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "seed,items,raters,missing", [(0, 12, 3, 0.0), (1, 40, 3, 0.2), (2, 60, 4, 0.35), (3, 9, 5, 0.5)]
)
def test_krippendorff_alpha_matches_the_krippendorff_package(seed, items, raters, missing):
    import krippendorff

    from rarl.stats import krippendorff_alpha

    table = _random_ratings(seed, items, raters, missing)
    expected = krippendorff.alpha(reliability_data=table.T, level_of_measurement="nominal")
    assert krippendorff_alpha(_as_rows(table)) == pytest.approx(expected, abs=1e-12)


def test_multi_rater_agreement_hand_worked_cases():
    from rarl.stats import fleiss_kappa, krippendorff_alpha

    # 3 raters: P_i = 1, 1, 1/3, 1/3 -> P̄ = 2/3; p1 = 6/12 -> Pe = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3
    ratings = [[1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert fleiss_kappa(ratings) == pytest.approx(1 / 3)
    # n = 12, n0 = n1 = 6, o01 = 0 + 0 + 2*1/2 + 1*2/2 = 2 -> alpha = 1 - 11*2/36 = 7/18
    assert krippendorff_alpha(ratings) == pytest.approx(7 / 18)
    # a missing rating: the unpaired item drops out; pairable [1,1], [1,0]: n=4, n1=3, n0=1, o01=1 -> 0
    assert krippendorff_alpha([[1, 1, None], [0, None, None], [1, 0, None]]) == pytest.approx(0.0)
    assert fleiss_kappa([[1, 1, 1], [0, 0, 0]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1, 1, 1], [0, 0, None]]) == pytest.approx(1.0)
    assert fleiss_kappa([[1, 1, 1], [1, 1, 1]]) is None  # one label only: undefined, not 0 or 1
    assert krippendorff_alpha([[0, 0], [0, None]]) is None
    with pytest.raises(ValueError, match="every item rated by every rater"):
        fleiss_kappa([[1, None, 1]])


def test_multi_rater_intervals_are_the_library_statistics_over_bootstrap_resamples_of_items():
    """The vectorised bootstrap against the libraries evaluated on each resample (same resampled items)."""
    import krippendorff
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

    from rarl.stats import SEED, fleiss_kappa_interval, krippendorff_alpha_interval

    resamples = 300
    complete = _random_ratings(5, 30, 3)
    rows = np.random.default_rng(SEED).integers(0, 30, size=(resamples, 30))
    values = [statsmodels_fleiss(aggregate_raters(complete[r].astype(int), n_cat=2)[0]) for r in rows]
    values = [v for v in values if np.isfinite(v)]
    expected = np.quantile(values, [0.025, 0.975])
    assert fleiss_kappa_interval(_as_rows(complete), resamples=resamples) == pytest.approx(tuple(expected))

    missing = _random_ratings(6, 30, 4, 0.25)
    pairable = missing[(~np.isnan(missing)).sum(axis=1) >= 2]
    rows = np.random.default_rng(SEED).integers(0, len(pairable), size=(resamples, len(pairable)))
    alphas = [
        krippendorff.alpha(reliability_data=pairable[r].T, level_of_measurement="nominal")
        for r in rows
    ]
    expected = np.quantile([a for a in alphas if np.isfinite(a)], [0.025, 0.975])
    interval = krippendorff_alpha_interval(_as_rows(missing), resamples=resamples)
    assert interval == pytest.approx(tuple(expected))
