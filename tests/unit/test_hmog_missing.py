"""HMoG with missing values marginalised (likelihood="hmog", missing="marginalize"): oracles
against scipy's densities on the observed coordinates, monotone EM, statistics that add up,
fits close to the complete-data fit, and the errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.stats import multivariate_normal

from mixstream import MixtureModel
from mixstream.learn.init import fill_missing

P, D = 8, 2
NOISES = ("spherical", "diag", "full")


def planted(n: int, seed: int, k: int = 3, sep: float = 4.0) -> np.ndarray:
    """n rows in R^8 from k clusters in a 2-D latent space, diagonal noise."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(P, D))
    centres = sep * rng.normal(size=(k, D))
    Y = 0.5 * rng.normal(size=(n, D)) + centres[rng.integers(k, size=n)]
    return Y @ W.T + rng.normal(size=(n, P)) * rng.uniform(0.3, 1.0, P) + 2.0


def with_holes(X: np.ndarray, rate: float, seed: int = 1) -> np.ndarray:
    """X with each entry NaN with probability ``rate`` (every row keeps one value)."""
    rng = np.random.default_rng(seed)
    miss = rng.uniform(size=X.shape) < rate
    miss[miss.all(axis=1), 0] = False
    out = X.copy()
    out[miss] = np.nan
    return out


def hmog(K: int, ctype: str, **kw) -> MixtureModel:
    base = dict(
        likelihood="hmog",
        latent_dim=D,
        covariance_type=ctype,
        random_state=0,
        algorithm="em",
        allocation="finite",
    )
    return MixtureModel(K, **{**base, **kw})


def fit(est: MixtureModel, X: np.ndarray) -> MixtureModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X)


# ---------------------------------------------------------------------- (a) no NaN: unchanged
@pytest.mark.parametrize("ctype", NOISES)
@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_no_nan_fit_is_identical(ctype: str, algorithm: str) -> None:
    X = planted(400, 0)
    kw = dict(algorithm=algorithm, max_laps=15, tol=0.0)
    a = fit(hmog(3, ctype, **kw), X)
    b = fit(hmog(3, ctype, missing="marginalize", **kw), X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------- (b) the oracle
@pytest.mark.parametrize("ctype", NOISES)
def test_score_samples_is_the_marginal_of_the_x_space_mixture(ctype: str) -> None:
    X = with_holes(planted(500, 3), 0.1)
    X[0, 1:] = np.nan  # one observed value
    X[1, :3] = np.nan
    m = fit(hmog(3, ctype, max_laps=8, missing="marginalize"), X)
    ref = np.empty(X.shape[0])
    for i, x in enumerate(X):
        o = ~np.isnan(x)
        dens = sum(
            w * multivariate_normal(mu[o], c[np.ix_(o, o)]).pdf(x[o])
            for w, mu, c in zip(m.weights_, m.means_, m.covariances_)
        )
        ref[i] = np.log(dens)
    assert np.isnan(X).any(axis=1).mean() > 0.4  # most rows have holes
    np.testing.assert_allclose(m.score_samples(X), ref, rtol=0, atol=1e-10)
    resp = m.predict_proba(X)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(m.predict(X), resp.argmax(axis=1))


@pytest.mark.parametrize("ctype", NOISES)
def test_transform_is_the_latent_posterior_mean_given_the_observed_values(ctype: str) -> None:
    """E[y | x_o] from the joint Gaussian of (y, x_o) per component, weighted by resp."""
    X = with_holes(planted(300, 4), 0.2)
    m = fit(hmog(2, ctype, max_laps=8, missing="marginalize"), X)
    obs = m.model_.obs
    W, mu = obs.W, obs.shift + obs.mu
    S, Psi = obs.latent_covariances(), obs.noise_matrix()
    got = m.transform(X)
    resp = m.predict_proba(X)
    for i in (0, 1, 2, 5, 8):
        o = ~np.isnan(X[i])
        mean = 0.0
        for k in range(2):
            Cxo = (W[o] @ S[k] @ W[o].T) + Psi[np.ix_(o, o)]
            gain = S[k] @ W[o].T @ np.linalg.inv(Cxo)
            mk = obs.inner.m[k]
            mean = mean + resp[i, k] * (mk + gain @ (X[i, o] - W[o] @ mk - mu[o]))
        np.testing.assert_allclose(got[i], mean, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------- (c) monotone
@pytest.mark.parametrize("ctype", NOISES)
def test_em_is_monotone_with_nan(ctype: str) -> None:
    X = with_holes(planted(600, 5, sep=3.0), 0.1)
    m = fit(hmog(3, ctype, max_laps=40, tol=0.0, missing="marginalize"), X)
    lb = np.array(m.lower_bounds_)
    assert len(lb) == 40
    assert np.diff(lb).min() >= -1e-10 * np.abs(lb).max()


@pytest.mark.parametrize("ctype", NOISES)
def test_vb_is_monotone_with_nan(ctype: str) -> None:
    X = with_holes(planted(600, 6, sep=3.0), 0.1)
    m = fit(hmog(4, ctype, algorithm="vb", max_laps=40, tol=0.0, missing="marginalize"), X)
    lb = np.array(m.lower_bounds_)
    assert np.diff(lb).min() >= -1e-10 * np.abs(lb).max()


@pytest.mark.parametrize("ctype", NOISES)
def test_em_objective_after_a_local_step_is_the_observed_log_likelihood(ctype: str) -> None:
    """The entropy of q(x_m | y, x_o) in "Hy" makes the objective from statistics equal to
    sum_n log p(x_o) right after a local step (whitening off: it maps the statistics of the
    last update into the new coordinates, not those computed here)."""
    X = with_holes(planted(300, 7), 0.25)
    est = hmog(3, ctype, max_laps=5, missing="marginalize", obs_prior={"whiten": False})
    m = fit(est, X)
    model = m.model_
    LP = model.local_step(X)
    SS = model.summarize(X, LP)
    loglik = float(m.score_samples(X).sum())
    assert abs(model.elbo(SS) - loglik) < 1e-9 * abs(loglik)


# ---------------------------------------------------------------------- (d) close to complete
def _errors(m: MixtureModel, ref: MixtureModel) -> tuple[float, float]:
    """(largest mean error, largest relative Frobenius covariance error), components matched."""
    cost = ((m.means_[:, None] - ref.means_[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    mean_err = np.abs(m.means_[rows] - ref.means_[cols]).max()
    cov_err = max(
        np.linalg.norm(m.covariances_[r] - ref.covariances_[c])
        / np.linalg.norm(ref.covariances_[c])
        for r, c in zip(rows, cols)
    )
    return float(mean_err), float(cov_err)


@pytest.mark.parametrize("ctype", NOISES)
def test_fit_with_10_percent_missing_is_close_to_the_complete_fit(ctype: str) -> None:
    """Measured (seed 0): mean error 0.020 / 0.021 / 0.022 and covariance error 0.022 / 0.009 /
    0.015 (spherical / diag / full) against 0.59 and 1.1 for mean imputation."""
    X = planted(3000, 0)
    Xm = with_holes(X, 0.1, seed=10)
    kw = dict(max_laps=200, tol=1e-8)
    ref = fit(hmog(3, ctype, **kw), X)
    marg = fit(hmog(3, ctype, missing="marginalize", **kw), Xm)
    imputed = fit(hmog(3, ctype, **kw), fill_missing(Xm))
    mean_err, cov_err = _errors(marg, ref)
    imp_mean, imp_cov = _errors(imputed, ref)
    assert mean_err < 0.05 and cov_err < 0.05
    assert imp_mean > 5 * mean_err and imp_cov > 5 * cov_err


# ---------------------------------------------------------------------- (e) batches
@pytest.mark.parametrize("ctype", NOISES)
@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_streamed_fit_equals_the_one_batch_fit(ctype: str, algorithm: str) -> None:
    X = with_holes(planted(600, 8), 0.1)
    kw = dict(algorithm=algorithm, max_laps=10, tol=0.0, missing="marginalize")
    one = fit(hmog(3, ctype, **kw), X)
    streamed = fit(hmog(3, ctype, batch_size=150, **kw), X)
    np.testing.assert_allclose(streamed.lower_bounds_, one.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(streamed.means_, one.means_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(streamed.covariances_, one.covariances_, rtol=0, atol=1e-8)


@pytest.mark.parametrize("ctype", NOISES)
@pytest.mark.parametrize("split_rows", (True, False))
def test_statistics_add_over_blocks_and_split_rows_keeps_the_totals(ctype, split_rows) -> None:
    """Statistics of a block are the sums of its halves' (with and without log_prob's cache);
    per-component layer statistics (split_rows) and the mass split have the same totals (the
    mass split divides each batch's sums by that batch's N_k: only their totals add)."""
    X = with_holes(planted(300, 9), 0.15)
    X[:40] = planted(40, 10)  # some complete rows
    m = fit(hmog(3, ctype, max_laps=4, missing="marginalize"), X)
    model, obs = m.model_, m.model_.obs
    resp = m.predict_proba(X)
    obs.split_rows = split_rows
    whole = obs.calc_stats(X, resp)
    LP = model.local_step(X)
    cached = obs.calc_stats(X, LP["resp"], LP["cache"])
    halves = [obs.calc_stats(X[s], resp[s]) for s in (slice(0, 170), slice(170, None))]
    obs.split_rows = not split_rows
    other = obs.calc_stats(X, resp)
    for key, value in whole.items():
        np.testing.assert_allclose(cached[key], value, rtol=1e-10, atol=1e-9)
        added = halves[0][key] + halves[1][key]
        if not split_rows and key in ("sx", "sxy", "sxx"):
            added, value = added.sum(axis=0), value.sum(axis=0)
        np.testing.assert_allclose(added, value, rtol=1e-10, atol=1e-9)
        total = whole[key].sum(axis=0)
        np.testing.assert_allclose(other[key].sum(axis=0), total, rtol=1e-10, atol=1e-9)


def test_memoized_vb_with_births_on_nan_is_monotone() -> None:
    X = with_holes(planted(900, 11, k=4), 0.1)
    kw = dict(algorithm="movb", allocation="dp", batch_size=300, max_laps=12, tol=0.0)
    m = fit(hmog(1, "diag", missing="marginalize", **kw), X)
    lb = np.array(m.lower_bounds_)
    assert np.diff(lb).min() >= -1e-9 * np.abs(lb).max()
    assert m.n_components_ >= 2


# ---------------------------------------------------------------------- (f) errors
def test_a_row_with_every_value_missing_is_named() -> None:
    X = with_holes(planted(100, 12), 0.1)
    X[7] = np.nan
    with pytest.raises(ValueError, match=r"every value missing.*\[7\]"):
        hmog(2, "diag", missing="marginalize").fit(X)
    m = fit(hmog(2, "diag", max_laps=3, missing="marginalize"), with_holes(planted(100, 12), 0.1))
    Y = planted(5, 13)
    Y[2] = np.nan
    for verb in (m.score_samples, m.predict, m.predict_proba, m.transform):
        with pytest.raises(ValueError, match=r"every value missing.*\[2\]"):
            verb(Y)


def test_default_still_refuses_nan() -> None:
    X = with_holes(planted(100, 14), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        hmog(2, "diag").fit(X)
    with pytest.raises(ValueError, match="missing must be one of"):
        from mixstream.obs.hmog import HMoGObs

        HMoGObs(latent_dim=2, missing="impute")


@pytest.mark.parametrize("ctype", NOISES)
@pytest.mark.parametrize("split_rows", (True, False))
def test_numba_and_numpy_paths_agree(ctype: str, split_rows: bool, monkeypatch) -> None:
    """The kernels (obs/hmog/_missing_numba.py) and the numpy version: same log-probabilities,
    latent means and statistics (per component, and pooled for the mass split), rows with up
    to 7 holes of 8 included."""
    from mixstream import _kernels

    if not _kernels.enabled():
        pytest.skip("numba kernels are off")
    X = with_holes(planted(200, 15), 0.4)
    m = fit(hmog(3, ctype, max_laps=3, missing="marginalize"), X)
    obs = m.model_.obs
    obs.split_rows = split_rows
    resp = np.random.default_rng(7).dirichlet(np.ones(3), size=X.shape[0])
    fast = (obs.log_prob(X), obs.latent_means(X, resp), obs.calc_stats(X, resp))
    monkeypatch.setattr(_kernels, "_kernels", False)
    slow = (obs.log_prob(X), obs.latent_means(X, resp), obs.calc_stats(X, resp))
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-12, atol=1e-11)
    for name, value in slow[2].items():
        np.testing.assert_allclose(fast[2][name], value, rtol=1e-11, atol=1e-10)


def test_save_load_and_other_algorithms_marginalise(tmp_path) -> None:
    """A saved model scores rows with NaN as before; soVB and CEM fit data with NaN."""
    X = with_holes(planted(300, 16), 0.1)
    m = fit(hmog(3, "full", max_laps=5, missing="marginalize"), X)
    back = MixtureModel.load(m.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.score_samples(X), m.score_samples(X))
    np.testing.assert_array_equal(back.transform(X), m.transform(X))
    for algorithm, kw in (("sovb", dict(batch_size=100, allocation="dp")), ("cem", {})):
        est = hmog(3, "diag", algorithm=algorithm, max_laps=5, missing="marginalize", **kw)
        other = fit(est, X)
        assert np.isfinite(other.score_samples(X)).all()


def test_a_block_too_large_to_cache_recomputes_its_posteriors(monkeypatch) -> None:
    from mixstream.obs.hmog import missing

    X = with_holes(planted(300, 17), 0.2)
    m = fit(hmog(3, "diag", max_laps=3, missing="marginalize"), X)
    model = m.model_
    kept = model.summarize(X, model.local_step(X))
    monkeypatch.setattr(missing, "_CACHE_FLOATS", 0)
    monkeypatch.setattr(missing, "_CHUNK_FLOATS", 1)  # chunks of 64 rows
    LP = model.local_step(X)
    assert LP["cache"][missing.MISSING_KEY][2] is None
    again = model.summarize(X, LP)
    for name in kept.fields:
        np.testing.assert_allclose(again[name], kept[name], rtol=1e-12, atol=1e-10)
