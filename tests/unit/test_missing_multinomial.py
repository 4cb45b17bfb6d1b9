"""Missing counts in the multinomial model (missing="marginalize"): a NaN count drops out of
the row's log-likelihood (coefficient included) and of the statistics (obs/multinomial.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import with_holes
from scipy.special import gammaln, logsumexp

from mixstream import MixtureModel
from mixstream.obs.multinomial import MultinomialObs
from mixstream.suffstats import SuffStats


def _counts(n: int = 1500, D: int = 12, K: int = 3, seed: int = 0) -> tuple:
    """Counts of a planted mixture (50 trials per row) and its category probabilities."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(D, 0.5), size=K)
    z = rng.integers(0, K, n)
    X = np.stack([rng.multinomial(50, probs[k]) for k in z]).astype(np.float64)
    return X, probs


def _fit(X: np.ndarray, algorithm: str = "em", **kw) -> MixtureModel:
    options = dict(allocation="finite", likelihood="multinomial", algorithm=algorithm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MixtureModel(3, **options, random_state=0, max_laps=40, **kw).fit(X)


def _probs(est: MixtureModel) -> np.ndarray:
    return est.means_ / est.means_.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_without_nan_marginalize_changes_nothing(algorithm: str) -> None:
    X, _ = _counts()
    a = _fit(X, algorithm)
    b = _fit(X, algorithm, missing="marginalize")
    assert np.allclose(a.means_, b.means_, rtol=0, atol=1e-12)
    assert np.allclose(a.weights_, b.weights_, rtol=0, atol=1e-12)
    assert abs(a.lower_bound_ - b.lower_bound_) < 1e-12 * abs(a.lower_bound_)
    assert np.allclose(a.score_samples(X), b.score_samples(X), rtol=0, atol=1e-12)


def test_a_rows_log_likelihood_is_over_its_observed_counts() -> None:
    X, _ = _counts(600)
    Xm = with_holes(X, 0.3)
    obs = MultinomialObs("em", missing="marginalize")
    obs.set_prior_from_data(X)
    resp = np.random.default_rng(3).dirichlet(np.ones(3), size=X.shape[0])
    obs.update(SuffStats({"N": resp.sum(axis=0), **obs.calc_stats(X, resp)}))
    lp = obs.log_prob(Xm)
    phi = obs.point_estimates()["probs"]
    for i in range(40):
        o = ~np.isnan(Xm[i])
        x = Xm[i][o]
        # the multinomial of the observed counts: their total, their coefficient, phi unchanged
        coef = gammaln(x.sum() + 1.0) - gammaln(x + 1.0).sum()
        ref = coef + (x * np.log(phi[:, o])).sum(axis=1)
        assert np.allclose(lp[i], ref, rtol=0, atol=1e-10)
    # and the statistics count observed entries only
    stats = obs.calc_stats(Xm, resp)
    assert np.allclose(stats["counts"], resp.T @ np.nan_to_num(Xm, nan=0.0))


def test_score_samples_of_rows_with_nan() -> None:
    X, _ = _counts()
    Xm = with_holes(X, 0.1)
    est = _fit(Xm, missing="marginalize")
    phi, w = _probs(est), est.weights_
    got = est.score_samples(Xm[:20])
    for i in range(20):
        o = ~np.isnan(Xm[i])
        x = Xm[i][o]
        coef = gammaln(x.sum() + 1.0) - gammaln(x + 1.0).sum()
        terms = np.log(w) + coef + (x * np.log(phi[:, o])).sum(axis=1)
        assert abs(logsumexp(terms) - got[i]) < 1e-9


@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_objective_is_monotone_with_nan(algorithm: str) -> None:
    X, _ = _counts()
    est = _fit(with_holes(X, 0.1), algorithm, missing="marginalize", tol=0.0)
    steps = np.diff([r["elbo"] for r in est.history_])
    assert len(steps) >= 10 and steps.min() > -1e-9


def test_fit_with_ten_percent_nan_is_close_to_the_complete_fit() -> None:
    X, planted = _counts(3000)
    full = _fit(X)
    holes = _fit(with_holes(X, 0.1), missing="marginalize")
    # the same components up to order: match each to the nearest complete-data component
    P, Q = _probs(full), _probs(holes)
    order = [int(np.argmin(np.abs(P - q).sum(axis=1))) for q in Q]
    assert sorted(order) == [0, 1, 2]
    gap = np.abs(P[order] - Q).max()
    # a category probability from ~1000 rows x 45 observed counts has sampling noise ~2e-3;
    # 0.004 seen (weights 0.004: ~13 of 3000 rows change component)
    assert gap < 0.01
    assert np.abs(full.weights_[order] - holes.weights_).max() < 0.01
    assert np.abs(np.sort(P, axis=0) - np.sort(planted, axis=0)).max() < 0.02


def test_a_row_with_every_count_missing_is_refused() -> None:
    X, _ = _counts(200)
    Y = X.copy()
    Y[9] = np.nan
    with pytest.raises(ValueError, match=r"every value missing.*\[9\]"):
        _fit(Y, missing="marginalize")
    est = _fit(with_holes(X, 0.1), missing="marginalize")
    Z = X[:5].copy()
    Z[2] = np.nan
    with pytest.raises(ValueError, match=r"every value missing.*\[2\]"):
        est.predict(Z)
    obs = est.model_.obs
    with pytest.raises(ValueError, match=r"every value missing.*\[2\]"):
        obs.log_prob(Z)


def test_without_marginalize_nan_is_refused() -> None:
    X, _ = _counts(200)
    with pytest.raises(ValueError, match="NaN"):
        _fit(with_holes(X, 0.1))
