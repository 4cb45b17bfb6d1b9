"""The scikit-learn contract: estimator checks, sample weights, sampling, bic/aic."""

import functools
import os
import unittest

import numpy as np
import pytest
from scipy import stats
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from mixstream import MixtureModel
from mixstream.estimator import COVARIANCE_TYPES
from mixstream.obs.gauss import covariance_shape

CONFIGS = [
    MixtureModel(),
    MixtureModel(n_components=3, allocation="finite", algorithm="em"),
    MixtureModel(n_components=1, algorithm="movb", moves=("birth", "merge", "delete")),
    MixtureModel(n_components=3, algorithm="sovb"),
    MixtureModel(n_components=3, covariance_type="diag"),
]


@parametrize_with_checks(CONFIGS)
def test_sklearn_estimator_checks(estimator, check):
    """Every check must run and pass: a check that skips itself (as check_array_api_input does
    without SCIPY_ARRAY_API=1) fails here instead of hiding."""
    try:
        check(estimator)
    except unittest.SkipTest as skip:
        pytest.fail(f"the scikit-learn check skipped itself instead of running: {skip}")


def test_scipy_array_api_support_is_on():
    """tests/conftest.py sets SCIPY_ARRAY_API=1 before scipy is imported; scipy reads it once."""
    import scipy._lib._array_api as scipy_array_api

    assert os.environ.get("SCIPY_ARRAY_API") == "1"
    assert scipy_array_api.SCIPY_ARRAY_API
    names = [getattr(c, "func", c).__name__ for _, c in estimator_checks_generator(CONFIGS[0])]
    assert "check_array_api_input" in names  # and test_sklearn_estimator_checks runs it


def blobs(n=600, seed=0, d=2):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0] * d, [8.0] * d, [-8.0] + [8.0] * (d - 1)])
    labels = rng.integers(3, size=n)
    return means[labels] + rng.normal(size=(n, d)), labels


INIT_MEANS = np.array([[0, 0], [8, 8], [-8, 8.0]])


def assert_same_fit(a, b, rtol=1e-9):
    """Two fits with the same parameters, objective and per-lap history."""
    assert a.n_components_ == b.n_components_
    np.testing.assert_allclose(a.means_, b.means_, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=rtol)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=rtol)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=rtol)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0: fixed laps
@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("algorithm", ["em", "vb"])
def test_integer_weights_equal_repeated_rows(algorithm, allocation):
    X, _ = blobs(300)
    w = np.random.default_rng(1).integers(0, 4, size=X.shape[0])
    assert (w == 0).any() and (w > 1).any()
    opts = dict(n_components=3, algorithm=algorithm, allocation=allocation, tol=0.0, max_laps=10)
    a = MixtureModel(**opts, init=INIT_MEANS).fit(X, sample_weight=w)
    b = MixtureModel(**opts, init=INIT_MEANS).fit(np.repeat(X, w, axis=0))
    assert_same_fit(a, b)
    # and the weights matter: the unweighted fit is a different one
    c = MixtureModel(**opts, init=INIT_MEANS).fit(X)
    assert np.abs(c.means_ - a.means_).max() > 1e-3


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0: fixed laps
@pytest.mark.parametrize("allocation", ["finite", "dp"])
def test_zero_weights_equal_dropping_rows(allocation):
    X, _ = blobs(300)
    w = (np.arange(X.shape[0]) % 3 != 0).astype(float)
    opts = dict(n_components=3, algorithm="vb", allocation=allocation, tol=0.0, max_laps=10)
    a = MixtureModel(**opts, init=INIT_MEANS).fit(X, sample_weight=w)
    b = MixtureModel(**opts, init=INIT_MEANS).fit(X[w > 0])
    assert_same_fit(a, b)


def block_weights(rng, n_blocks, rows, total):
    """Integer weights in [0, 3], n_blocks blocks of ``rows`` rows, each block summing to
    ``total``: weighted batches of ``rows`` rows then hold exactly the repeated rows of
    batches of ``total`` rows."""
    w = []
    while len(w) < n_blocks:
        block = rng.integers(0, 4, size=rows)
        rest = total - block[:-1].sum()
        if 0 <= rest <= 3:
            block[-1] = rest
            w.append(block)
    return np.concatenate(w)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0: fixed laps
@pytest.mark.parametrize("moves", [(), ("birth", "merge", "delete")])
def test_integer_weights_equal_repeated_rows_for_movb(moves):
    """Memoized VB over several batches, with DP moves, on weighted rows and on repeated rows.

    moVB's result depends on how the data is cut into batches, so the weights are drawn such
    that each weighted batch of 150 rows stands for exactly one batch of 225 repeated rows
    (np.repeat keeps a row's copies together). Merge and delete are judged on statistics
    alone, and birth seeds its proposals from the distinct weighted rows (``canonical_rows``)
    and splits them into fitting and judging halves by distinct row, so the fits agree to
    rounding. One caveat, why the batches here are this large: birth counts *rows*, not
    weight, where it requires ``min_rows`` target rows and caps them at ``max_rows``; here
    every birth target has enough and fewer than the cap.
    """
    rng = np.random.default_rng(3)
    X, _ = blobs(4 * 150, seed=3)
    w = block_weights(rng, 4, 150, 225)
    # with moves: two copies of one start, so a merge (or delete) must act besides the births
    init = np.array([[0.0, 4.0], [0.0, 4.0]]) if moves else INIT_MEANS
    opts = dict(
        n_components=len(init), algorithm="movb", moves=moves, tol=0.0, max_laps=8, init=init
    )
    a = MixtureModel(**opts, batch_size=150, random_state=0).fit(X, sample_weight=w)
    b = MixtureModel(**opts, batch_size=225, random_state=0).fit(np.repeat(X, w, axis=0))
    assert_same_fit(a, b)
    assert [h["K"] for h in a.history_] == [h["K"] for h in b.history_]
    if moves:  # the moves did act: births, and a merge or delete of the duplicate
        accepted = {m: sum(h["moves_accepted"][m] for h in a.history_) for m in moves}
        assert accepted["birth"] >= 1 and accepted["merge"] + accepted["delete"] >= 1
        assert a.n_components_ == 3


@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("algorithm", ["vb", "em"])
def test_partial_fit_integer_weights_equal_repeated_rows(algorithm, allocation):
    X, _ = blobs(400, seed=4)
    w = np.random.default_rng(5).integers(0, 4, size=X.shape[0])
    opts = dict(n_components=3, algorithm=algorithm, allocation=allocation, init=INIT_MEANS)
    a, b = MixtureModel(**opts, random_state=0), MixtureModel(**opts, random_state=0)
    for Xb, wb in zip(np.array_split(X, 4), np.array_split(w, 4), strict=True):
        a.partial_fit(Xb, sample_weight=wb)
        b.partial_fit(np.repeat(Xb, wb, axis=0))
        assert_same_fit(a, b)
    assert a.stream_state_.n_seen == w.sum() == b.stream_state_.n_seen


def test_partial_fit_zero_weights_equal_dropping_rows():
    X, _ = blobs(400, seed=6)
    w = (np.arange(X.shape[0]) % 4 != 1).astype(float)
    a = MixtureModel(3, init=INIT_MEANS, random_state=0)
    b = MixtureModel(3, init=INIT_MEANS, random_state=0)
    for Xb, wb in zip(np.array_split(X, 3), np.array_split(w, 3), strict=True):
        a.partial_fit(Xb, sample_weight=wb)
        b.partial_fit(Xb[wb > 0])
    assert_same_fit(a, b)
    with pytest.raises(ValueError, match="sample_weight"):
        a.partial_fit(X[:10], sample_weight=np.ones(9))
    with pytest.raises(ValueError, match="non-negative"):
        a.partial_fit(X[:10], sample_weight=-np.ones(10))


@pytest.mark.parametrize("algorithm", ["vb", "em"])
def test_active_cluster_probs_are_the_expected_weights(algorithm):
    """DP: E[pi_k] = E[v_k] prod_{l<k} (1 - E[v_l]), less than 1 in all (the rest belongs to
    components beyond the truncation); weights_ renormalises them. Finite: they are weights_."""
    X, _ = blobs(600, seed=7)
    dp = MixtureModel(5, algorithm=algorithm, random_state=0).fit(X)
    probs = dp.get_active_cluster_probs()
    assert probs.shape == (dp.n_components_,) and np.all(probs > 0)
    state = dp.model_.alloc.get_state()
    if algorithm == "vb":
        v = state["eta1"] / (state["eta1"] + state["eta0"])
        assert probs.sum() < 1
    else:
        v = state["sticks"]
        assert probs.sum() <= 1 + 1e-12
    expected = v * np.concatenate([[1.0], np.cumprod(1 - v)[:-1]])
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    np.testing.assert_allclose(probs.sum() + np.prod(1 - v), 1.0, rtol=1e-12)
    np.testing.assert_allclose(dp.weights_, probs / probs.sum(), rtol=1e-12)
    finite = MixtureModel(5, allocation="finite", algorithm=algorithm, random_state=0).fit(X)
    np.testing.assert_allclose(finite.get_active_cluster_probs().sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(finite.get_active_cluster_probs(), finite.weights_, rtol=1e-12)
    with pytest.raises(NotFittedError):
        MixtureModel().get_active_cluster_probs()


# ---------------------------------------------------------------------------- sampling
#: (likelihood, covariance_type, algorithm, n_components, n_features): every Gaussian
#: covariance type under the names the estimator takes ("tied" is "tied_full"), with K == D
#: (where a diag (K, D) array has the shape of a tied full (D, D) one, and a spherical (K,) that
#: of a tied diag (D,)) and K != D, for EM and VB; zero-mean Gaussians too
SAMPLING_CASES = [
    *[("gauss", cov, "em", 3, 3) for cov in COVARIANCE_TYPES],
    *[("gauss", cov, "em", 3, 2) for cov in COVARIANCE_TYPES],
    *[("gauss", cov, "vb", 3, 3) for cov in ("full", "diag", "spherical", "tied_diag")],
    ("zero_mean_gauss", "full", "em", 3, 3),
    ("zero_mean_gauss", "full", "vb", 2, 3),
]
CASE_IDS = ["-".join(map(str, c)) for c in SAMPLING_CASES]


@functools.cache
def fitted_case(likelihood, cov, algorithm, K, D):
    """A fitted finite mixture whose components differ in scale, shape and orientation."""
    rng = np.random.default_rng(K * 10 + D)
    n = 1500
    labels = rng.integers(K, size=n)
    scales = np.array([0.5, 1.0, 2.0])[:K]
    mix = np.linalg.qr(rng.normal(size=(D, D)))[0] * np.linspace(1.0, 2.0, D)
    Z = rng.normal(size=(n, D)) @ mix.T * scales[labels, None]
    if likelihood == "gauss":
        Z += 10.0 * np.eye(max(K, D))[:K, :D][labels]
    model = MixtureModel(
        K,
        likelihood=likelihood,
        covariance_type=cov,
        algorithm=algorithm,
        allocation="finite",
        random_state=0,
        tol=1e-6,
        max_laps=300,
    )
    return model.fit(Z)


def _covariance_type(m):
    ctype = "full" if m.likelihood == "zero_mean_gauss" else m.covariance_type
    return "tied_full" if ctype == "tied" else ctype


def as_full(m, values):
    """covariances_ or precisions_ as K full matrices (K, D, D), read by the covariance type's
    name (never guessed from the array's shape)."""
    K, D = m.n_components_, m.n_features_in_
    values = np.asarray(values, dtype=np.float64)
    ctype = _covariance_type(m)
    assert values.shape == covariance_shape(ctype, K, D), (ctype, values.shape)
    if ctype == "full":
        return values
    if ctype == "diag":
        return np.stack([np.diag(v) for v in values])
    if ctype == "spherical":
        return np.stack([v * np.eye(D) for v in values])
    if ctype == "tied_full":
        return np.stack([values] * K)
    if ctype == "tied_diag":
        return np.stack([np.diag(values)] * K)
    return np.stack([float(values) * np.eye(D)] * K)


def model_moments(m):
    """Means (K, D) and full covariances (K, D, D) of the fitted components."""
    cov = as_full(m, m.covariances_)
    # precisions_ come in the same layout and must invert the covariances
    eye = np.broadcast_to(np.eye(cov.shape[1]), cov.shape)
    np.testing.assert_allclose(cov @ as_full(m, m.precisions_), eye, atol=1e-8)
    return np.asarray(m.means_, dtype=np.float64), cov


def squared_mahalanobis(m, X, labels):
    """(x - mu_k)^T Sigma_k^{-1} (x - mu_k) of each draw under its own component."""
    means, cov = model_moments(m)
    d2 = np.empty(len(X))
    for k in np.unique(labels):
        diff = X[labels == k] - means[k]
        d2[labels == k] = np.einsum("nd,nd->n", diff, np.linalg.solve(cov[k], diff.T).T)
    return d2


def assert_gaussian_moments(X, mean, cov, n_se=5.0):
    """Sample mean and covariance of X within n_se standard errors of (mean, cov).

    Standard errors of a Gaussian sample: var(mean_d) = S_dd / n and
    var(S_de) = (S_dd S_ee + S_de^2) / n.
    """
    n = len(X)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(X.mean(0) - mean) < n_se * se_mean)
    var = np.diag(cov)
    se_cov = np.sqrt((np.outer(var, var) + cov**2) / n)
    assert np.all(np.abs(np.cov(X.T, bias=True) - cov) < n_se * se_cov)


@pytest.mark.parametrize("case", SAMPLING_CASES, ids=CASE_IDS)
def test_sample_moments_match_the_model(case):
    m = fitted_case(*case)
    means, cov = model_moments(m)
    X, labels = m.sample(60_000)
    assert X.shape == (60_000, m.n_features_in_) and labels.shape == (60_000,)
    counts = np.bincount(labels, minlength=m.n_components_) / labels.size
    # multinomial proportions: 5 standard errors
    se = np.sqrt(m.weights_ * (1 - m.weights_) / labels.size)
    assert np.all(np.abs(counts - m.weights_) < 5 * se)
    for k in range(m.n_components_):
        assert_gaussian_moments(X[labels == k], means[k], cov[k])


@pytest.mark.parametrize("case", SAMPLING_CASES, ids=CASE_IDS)
def test_sample_one_component_only(case):
    m = fitted_case(*case)
    means, cov = model_moments(m)
    for k in range(m.n_components_):
        X, labels = m.sample(20_000, component=k)
        assert np.all(labels == k)
        assert_gaussian_moments(X, means[k], cov[k])
    with pytest.raises(ValueError, match="component"):
        m.sample(5, component=m.n_components_)


@pytest.mark.parametrize("case", SAMPLING_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("conf", [0.5, 0.9])
def test_sample_inside_confidence_ellipsoid(case, conf):
    m = fitted_case(*case)
    D = m.n_features_in_
    r2 = stats.chi2.ppf(conf, D)
    # the c-mass ellipsoid really holds a fraction c of the model's own (unconditioned) draws
    X, labels = m.sample(40_000)
    inside = np.mean(squared_mahalanobis(m, X, labels) <= r2)
    assert abs(inside - conf) < 5 * np.sqrt(conf * (1 - conf) / len(X))
    # with confidence=c: every draw inside, and inside they follow the Gaussian conditioned on
    # the ellipsoid, so chi2_D.cdf(d^2) / c is uniform on [0, 1)
    X, labels = m.sample(20_000, confidence=conf)
    d2 = squared_mahalanobis(m, X, labels)
    assert d2.max() <= r2 * (1 + 1e-9)
    assert stats.kstest(stats.chi2.cdf(d2, D) / conf, "uniform").pvalue > 1e-3
    counts = np.bincount(labels, minlength=m.n_components_) / labels.size
    assert np.all(np.abs(counts - m.weights_) < 5 * np.sqrt(m.weights_ / labels.size))
    # the same for one component
    X, labels = m.sample(5_000, component=m.n_components_ - 1, confidence=conf)
    assert np.all(labels == m.n_components_ - 1)
    assert squared_mahalanobis(m, X, labels).max() <= r2 * (1 + 1e-9)


@pytest.mark.parametrize("case", SAMPLING_CASES, ids=CASE_IDS)
@pytest.mark.parametrize("std_range", [(0.0, 1.0), (3.0, 4.0)])
def test_sample_std_range_for_outliers(case, std_range):
    m = fitted_case(*case)
    D = m.n_features_in_
    a, b = std_range
    X, labels = m.sample(10_000, std_range=std_range)
    d = np.sqrt(squared_mahalanobis(m, X, labels))
    assert d.min() >= a * (1 - 1e-9) and d.max() < b * (1 + 1e-9)
    # within the shell the radius follows the Gaussian's: chi2 CDF uniform on [F(a^2), F(b^2))
    lo, hi = stats.chi2.cdf(a * a, D), stats.chi2.cdf(b * b, D)
    u = (stats.chi2.cdf(d**2, D) - lo) / (hi - lo)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    with pytest.raises(ValueError, match="std_range"):
        m.sample(5, std_range=(2.0, 1.0))


def test_confidence_and_std_range_are_for_gaussians_only():
    X = (np.random.default_rng(0).uniform(size=(200, 4)) < 0.3).astype(float)
    m = MixtureModel(2, likelihood="bernoulli", random_state=0).fit(X)
    assert m.sample(10)[0].shape == (10, 4)
    with pytest.raises(ValueError, match="Gaussian"):
        m.sample(10, confidence=0.5)
    with pytest.raises(ValueError, match="Gaussian"):
        m.sample(10, std_range=(1.0, 2.0))
    g = fitted_case("gauss", "full", "em", 3, 3)
    with pytest.raises(ValueError, match="not both"):
        g.sample(10, confidence=0.5, std_range=(1.0, 2.0))
    with pytest.raises(ValueError, match="confidence"):
        g.sample(10, confidence=1.5)


@pytest.mark.parametrize("cov", ["full", "diag", "spherical", "tied"])
def test_bic_aic_match_sklearn_on_the_same_parameters(cov):
    X, _ = blobs(1000, d=3)
    ours = MixtureModel(
        3, covariance_type=cov, algorithm="em", allocation="finite", random_state=0, tol=1e-8
    ).fit(X)
    theirs = GaussianMixture(3, covariance_type=cov).fit(X[:50])
    theirs.weights_, theirs.means_ = ours.weights_, ours.means_
    theirs.covariances_ = ours.covariances_
    theirs.precisions_cholesky_ = ours.precisions_cholesky_
    theirs.precisions_ = ours.precisions_
    np.testing.assert_allclose(ours.bic(X), theirs.bic(X), rtol=1e-10)
    np.testing.assert_allclose(ours.aic(X), theirs.aic(X), rtol=1e-10)


def test_partial_fit_over_a_stream_approaches_the_full_batch_fit():
    from mixstream.data.array_source import ArraySource
    from mixstream.engine.local import LocalExecutor
    from mixstream.learn.sovb import evaluate_elbo

    X, _ = blobs(6000, d=3)
    full = MixtureModel(3, algorithm="vb", random_state=0, tol=1e-8, max_laps=200).fit(X)
    stream = MixtureModel(3, algorithm="vb", random_state=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        for batch in np.array_split(rng.permutation(X), 12):
            stream.partial_fit(batch)
    whole = LocalExecutor(ArraySource(X))
    ours = evaluate_elbo(stream.model_, whole)
    best = evaluate_elbo(full.model_, whole)
    assert abs(ours - best) <= 0.01 * abs(best)
    assert stream.n_iter_ == 72 and len(stream.history_) == 72
    with pytest.raises(ValueError, match="features"):
        stream.partial_fit(X[:10, :2])
