"""MixtureModel: fitting end to end, fitted attributes, and clear errors for bad input."""

from itertools import pairwise

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mixstream import MixtureModel


def blobs(n=1500, d=3, k=3, seed=0, scale=8.0):
    rng = np.random.default_rng(seed)
    # means on a scaled simplex-like grid: every pair at least `scale` apart
    means = scale * np.eye(max(k, d))[:k, :d] * np.sqrt(2) + rng.normal(scale=0.1, size=(k, d))
    labels = rng.integers(k, size=n)
    return means[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("algorithm", ["em", "vb", "kmeans", "cem"])
@pytest.mark.parametrize("allocation", ["finite", "dp"])
def test_algorithms_recover_blobs(algorithm, allocation):
    X, labels = blobs()
    m = MixtureModel(3, allocation=allocation, algorithm=algorithm, random_state=0, n_init=2)
    m.fit(X)
    assert adjusted_rand_score(labels, m.predict(X)) > 0.99
    assert m.weights_.shape == (3,) and np.isclose(m.weights_.sum(), 1.0)
    assert m.means_.shape == (3, 3) and m.covariances_.shape == (3, 3, 3)
    assert m.n_iter_ >= 1 and len(m.history_) >= 1
    assert np.isfinite(m.lower_bound_)
    proba = m.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert m.score_samples(X).shape == (X.shape[0],)
    assert np.isclose(m.score(X), m.score_samples(X).mean())


def test_history_records_per_lap_bound_and_k():
    X, _ = blobs()
    m = MixtureModel(5, algorithm="vb", random_state=1, tol=1e-8, max_laps=30).fit(X)
    assert [h["lap"] for h in m.history_] == list(range(1, m.n_iter_ + 1))
    elbos = [h["elbo"] for h in m.history_]
    assert all(b >= a - 1e-9 * abs(a) for a, b in pairwise(elbos))
    assert all(h["K"] == 5 for h in m.history_)
    assert m.lower_bound_ == elbos[-1]


def test_n_init_keeps_best_bound():
    X, _ = blobs(k=4, seed=3, scale=4.0)
    one = MixtureModel(4, algorithm="em", allocation="finite", random_state=5, n_init=1).fit(X)
    many = MixtureModel(4, algorithm="em", allocation="finite", random_state=5, n_init=4).fit(X)
    assert many.lower_bound_ >= one.lower_bound_ - 1e-12


def test_batches_give_the_same_fit_as_one_batch():
    X, _ = blobs(n=1000)
    a = MixtureModel(3, algorithm="vb", random_state=0, max_laps=5, tol=0).fit(X)
    b = MixtureModel(3, algorithm="vb", random_state=0, max_laps=5, tol=0, batch_size=97).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-10)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), r"NaN or infinite.*\[0\]"),
        (np.array([[1.0, 2.0], [0.0, 1.0], [np.inf, 2.0]]), r"first rows: \[2\]"),
        (np.zeros(5), "2-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.array([["a", "b"], ["c", "d"]]), "numbers"),
        (np.zeros((0, 3)), "empty"),
    ],
)
def test_bad_data_is_refused_clearly(X, match):
    with pytest.raises(ValueError, match=match):
        MixtureModel(2).fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_components": 0}, "n_components"),
        ({"allocation": "pitman-yor"}, "allocation"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"covariance_type": "banded"}, "covariance_type"),
        ({"algorithm": "gibbs"}, "algorithm"),
        ({"init": "magic"}, "init"),
        ({"alpha": -1.0}, "alpha"),
        ({"tol": -1.0}, "tol"),
        ({"max_laps": 0}, "max_laps"),
    ],
)
def test_bad_parameters_are_refused_in_fit(params, match):
    X, _ = blobs(n=50)
    model = MixtureModel(**{"n_components": 2, **params})  # nothing checked in __init__
    with pytest.raises(ValueError, match=match):
        model.fit(X)


def test_more_components_than_rows_for_finite_mixture():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        MixtureModel(10, allocation="finite").fit(np.random.default_rng(0).normal(size=(5, 2)))


def test_likelihood_specific_values_are_checked():
    bad_bits = np.array([[0, 1], [1, 2], [0, 0.5]], dtype=float)
    with pytest.raises(ValueError, match="bernoulli"):
        MixtureModel(2, likelihood="bernoulli").fit(bad_bits)
    counts = np.array([[1, 2], [3, -1], [0, 4]], dtype=float)
    with pytest.raises(ValueError, match="negative"):
        MixtureModel(2, likelihood="multinomial").fit(counts)


def test_predict_checks_feature_count():
    X, _ = blobs(n=200)
    m = MixtureModel(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])


def test_warm_start_continues_from_the_fitted_parameters():
    X, _ = blobs()
    cold = MixtureModel(3, algorithm="vb", random_state=0, max_laps=4, tol=0.0).fit(X)
    warm = MixtureModel(3, algorithm="vb", random_state=0, max_laps=2, tol=0.0, warm_start=True)
    warm.fit(X).fit(X)  # 2 laps, then 2 more from where it stopped
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-10)
    np.testing.assert_allclose(warm.lower_bound_, cold.lower_bound_, rtol=1e-10)


def test_tags_are_declared():
    tags = MixtureModel(likelihood="multinomial").__sklearn_tags__()
    assert tags.input_tags.sparse is False and tags.input_tags.allow_nan is False
    assert tags.input_tags.positive_only is True
    assert MixtureModel().__sklearn_tags__().input_tags.positive_only is False
