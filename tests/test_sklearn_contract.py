"""The scikit-learn contract: estimator checks, sample weights, sampling, bic/aic."""

import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks

from mixstream import MixtureModel

CONFIGS = [
    MixtureModel(),
    MixtureModel(n_components=3, allocation="finite", algorithm="em"),
    MixtureModel(n_components=1, algorithm="movb", moves=("birth", "merge", "delete")),
    MixtureModel(n_components=3, algorithm="sovb"),
    MixtureModel(n_components=3, covariance_type="diag"),
]


@parametrize_with_checks(CONFIGS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def blobs(n=600, seed=0, d=2):
    rng = np.random.default_rng(seed)
    means = np.array([[0.0] * d, [8.0] * d, [-8.0] + [8.0] * (d - 1)])
    labels = rng.integers(3, size=n)
    return means[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("algorithm", ["em", "vb"])
def test_integer_weights_equal_repeated_rows(algorithm):
    X, _ = blobs(300)
    w = np.random.default_rng(1).integers(0, 4, size=X.shape[0])
    opts = dict(n_components=3, algorithm=algorithm, allocation="finite", tol=0.0, max_laps=10)
    init = np.array([[0, 0], [8, 8], [-8, 8.0]])
    a = MixtureModel(**opts, init=init).fit(X, sample_weight=w)
    b = MixtureModel(**opts, init=init).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-9)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-9)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-9)


def test_zero_weights_equal_dropping_rows():
    X, _ = blobs(300)
    w = (np.arange(X.shape[0]) % 3 != 0).astype(float)
    init = np.array([[0, 0], [8, 8], [-8, 8.0]])
    opts = dict(n_components=3, algorithm="vb", tol=0.0, max_laps=10, init=init)
    a = MixtureModel(**opts).fit(X, sample_weight=w)
    b = MixtureModel(**opts).fit(X[w > 0])
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-9)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-9)


def fitted(cov="full", seed=0):
    X, _ = blobs(2000, seed=seed, d=3)
    return MixtureModel(
        3, covariance_type=cov, algorithm="em", allocation="finite", random_state=seed
    ).fit(X)


def test_sample_moments_match_the_model():
    m = fitted()
    X, labels = m.sample(60_000)
    counts = np.bincount(labels, minlength=3) / labels.size
    # multinomial proportions: 5 standard errors
    assert np.all(np.abs(counts - m.weights_) < 5 * np.sqrt(m.weights_ / labels.size))
    for k in range(3):
        Xk = X[labels == k]
        se = np.sqrt(np.diag(m.covariances_[k]) / len(Xk))
        assert np.all(np.abs(Xk.mean(0) - m.means_[k]) < 5 * se)
        np.testing.assert_allclose(np.cov(Xk.T), m.covariances_[k], atol=0.1, rtol=0.05)


def test_sample_one_component_only():
    m = fitted()
    X, labels = m.sample(500, component=1)
    assert np.all(labels == 1)
    se = np.sqrt(np.diag(m.covariances_[1]) / len(X))
    assert np.all(np.abs(X.mean(0) - m.means_[1]) < 5 * se)
    with pytest.raises(ValueError, match="component"):
        m.sample(5, component=7)


def _mahalanobis(m, X, labels):
    d = np.empty(len(X))
    for k in np.unique(labels):
        P = np.linalg.inv(m.covariances_[k])
        diff = X[labels == k] - m.means_[k]
        d[labels == k] = np.sqrt(np.einsum("nd,de,ne->n", diff, P, diff))
    return d


@pytest.mark.parametrize("conf", [0.5, 0.9])
def test_sample_inside_confidence_ellipsoid(conf):
    m = fitted()
    X, labels = m.sample(20_000, confidence=conf)
    d = _mahalanobis(m, X, labels)
    radius = np.sqrt(stats.chi2.ppf(conf, 3))
    assert d.max() <= radius * (1 + 1e-9)
    # within the ellipsoid the draws follow the conditioned Gaussian: the half-mass radius
    inner = np.sqrt(stats.chi2.ppf(conf / 2, 3))
    frac = np.mean(d < inner)
    assert abs(frac - 0.5) < 5 * np.sqrt(0.25 / len(d))


def test_sample_std_range_for_outliers():
    m = fitted()
    X, labels = m.sample(5000, std_range=(3.0, 4.0))
    d = _mahalanobis(m, X, labels)
    assert d.min() >= 3.0 - 1e-9 and d.max() < 4.0 + 1e-9
    with pytest.raises(ValueError, match="std_range"):
        m.sample(5, std_range=(2.0, 1.0))


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
