"""Missing values marginalised (missing="marginalize"): oracles against scipy's densities,
the expected statistics, the ELBO bookkeeping and the checks on data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import with_holes
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, multivariate_t

from mixstream import MixtureModel
from mixstream.data.validate import check_finite
from mixstream.model import Model
from mixstream.obs.gauss.model import GaussObs
from mixstream.obs.gauss.types import covariance_strategy
from mixstream.suffstats import SuffStats

COVS = ("full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical")


def _data(n: int = 120, D: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(D, D))
    return rng.normal(size=(n, D)) @ A + 3.0


def _obs(ctype: str, inference: str, X: np.ndarray, K: int = 3) -> GaussObs:
    """A GaussObs with parameters from random responsibilities on complete rows X."""
    rng = np.random.default_rng(2)
    obs = GaussObs(ctype, inference, missing="marginalize")
    obs.set_prior_from_data(X)
    resp = rng.dirichlet(np.ones(K), size=X.shape[0])
    stats = obs.calc_stats(X, resp)
    stats["N"] = resp.sum(axis=0)
    obs.update(SuffStats(stats))
    return obs


@pytest.mark.parametrize("ctype", COVS)
def test_em_log_prob_is_the_marginal_density(ctype: str) -> None:
    X = _data()
    obs = _obs(ctype, "em", X)
    Xm = with_holes(X, 0.35)
    lp = obs.log_prob(Xm)
    est = obs.point_estimates()
    K, D = est["means"].shape
    C = covariance_strategy(ctype).to_full(est["covariances"], K, D)
    worst = 0.0
    for i in range(0, Xm.shape[0], 3):
        o = ~np.isnan(Xm[i])
        for k in range(K):
            ref = multivariate_normal(est["means"][k][o], C[k][np.ix_(o, o)]).logpdf(Xm[i][o])
            worst = max(worst, abs(ref - lp[i, k]))
    assert worst < 1e-10


@pytest.mark.parametrize("ctype", ("full", "diag", "tied_full"))
def test_score_samples_is_the_mixture_marginal(ctype: str) -> None:
    X = _data(200)
    est = MixtureModel(
        3,
        allocation="finite",
        algorithm="em",
        covariance_type=ctype,
        random_state=0,
        missing="marginalize",
        max_laps=20,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(with_holes(X, 0.2))
    Xm = with_holes(X[:40], 0.4, seed=5)
    got = est.score_samples(Xm)
    K, D = est.means_.shape
    C = covariance_strategy(ctype).to_full(est.covariances_, K, D)
    for i in range(Xm.shape[0]):
        o = ~np.isnan(Xm[i])
        terms = [
            np.log(est.weights_[k])
            + multivariate_normal(est.means_[k][o], C[k][np.ix_(o, o)]).logpdf(Xm[i][o])
            for k in range(K)
        ]
        assert abs(logsumexp(terms) - got[i]) < 1e-10
    proba = est.predict_proba(Xm)
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_vb_predictive_is_the_marginal_student_t() -> None:
    X = _data(200)
    obs = _obs("full", "vb", X)
    Xm = with_holes(X[:30], 0.4, seed=3)
    got = obs.log_predictive(Xm)
    D = X.shape[1]
    for i in range(Xm.shape[0]):
        o = ~np.isnan(Xm[i])
        for k in range(obs.K):
            kappa, nu = obs.kappa[k], obs.nu[k]
            v = nu - D + 1.0
            scale = obs.psi[k] * (1.0 + kappa) / (kappa * v)
            mean = obs.m[k] + obs.shift
            ref = multivariate_t(mean[o], scale[np.ix_(o, o)], df=v).logpdf(Xm[i][o])
            assert abs(ref - got[i, k]) < 1e-10


@pytest.mark.parametrize("ctype", COVS)
def test_expected_statistics_are_the_conditional_moments(ctype: str) -> None:
    """sum_n r_nk E[y], sum_n r_nk E[y y^T] of incomplete rows, against the covariance-form
    conditional mean mu_m + S_mo S_oo^{-1}(y_o - mu_o) and covariance S_mm - S_mo S_oo^{-1}
    S_om computed row by row."""
    X = _data(60)
    obs = _obs(ctype, "em", X)
    Xm = with_holes(X, 0.4)
    rng = np.random.default_rng(4)
    resp = rng.dirichlet(np.ones(obs.K), size=Xm.shape[0])
    got = obs.calc_stats(Xm, resp)
    K, D = obs.K, obs.n_features
    C = covariance_strategy(ctype).to_full(obs.point_estimates()["covariances"], K, D)
    x = np.zeros((K, D))
    xx = np.zeros((K, D, D))
    for i in range(Xm.shape[0]):
        y = Xm[i] - obs.shift
        o = ~np.isnan(y)
        m = ~o
        for k in range(K):
            mu, S = obs.m[k], C[k]
            e = y.copy()
            V = np.zeros((D, D))
            if m.any():
                Soo_inv = np.linalg.inv(S[np.ix_(o, o)])
                e[m] = mu[m] + S[np.ix_(m, o)] @ Soo_inv @ (y[o] - mu[o])
                V[np.ix_(m, m)] = S[np.ix_(m, m)] - S[np.ix_(m, o)] @ Soo_inv @ S[np.ix_(o, m)]
            x[k] += resp[i, k] * e
            xx[k] += resp[i, k] * (np.outer(e, e) + V)
    assert np.allclose(got["x"], x, rtol=1e-10, atol=1e-9)
    assert np.allclose(
        got["xx"],
        obs._pack(xx)
        if obs.structure == "full"
        else (
            np.diagonal(xx, axis1=1, axis2=2)
            if obs.structure == "diag"
            else np.trace(xx, axis1=1, axis2=2)
        ),
        rtol=1e-10,
        atol=1e-9,
    )
    assert np.allclose(got["N"], resp.sum(axis=0))


@pytest.mark.parametrize("ctype", ("full", "diag", "tied_spherical"))
def test_em_objective_after_a_local_step_is_the_observed_log_likelihood(ctype: str) -> None:
    """With the entropy of q(y_m) (Hmiss) the objective from statistics equals the observed-
    data log-likelihood right after a local step, as for complete data."""
    from mixstream.alloc.finite import FiniteAlloc

    X = _data(80)
    obs = _obs(ctype, "em", X)
    alloc = FiniteAlloc(alpha=1.0, inference="em")
    model = Model(alloc, obs)
    model.uids = model.new_uids(obs.K)
    alloc.update(SuffStats({"N": np.array([30.0, 25.0, 25.0])}))
    Xm = with_holes(X, 0.3)
    LP = model.local_step(Xm)
    SS = model.summarize(Xm, LP)
    assert SS["Hmiss"].shape == (obs.K,) and SS["Hmiss"].sum() > 0
    assert abs(model.elbo(SS) - float(LP["log_norm"].sum())) < 1e-9 * abs(model.elbo(SS))


@pytest.mark.parametrize("ctype", ("full", "diag", "spherical", "tied_full"))
@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_no_nan_fit_is_unchanged(ctype: str, algorithm: str) -> None:
    X = _data(300)
    kw = dict(covariance_type=ctype, algorithm=algorithm, random_state=0, max_laps=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MixtureModel(3, **kw).fit(X)
        b = MixtureModel(3, missing="marginalize", **kw).fit(X)
    assert np.allclose(a.means_, b.means_, rtol=0, atol=1e-12)
    assert np.allclose(a.covariances_, b.covariances_, rtol=0, atol=1e-12)
    assert abs(a.lower_bound_ - b.lower_bound_) < 1e-12


@pytest.mark.parametrize("ctype", COVS)
def test_em_is_monotone_with_nan(ctype: str) -> None:
    X = with_holes(_data(300), 0.3)
    est = MixtureModel(
        4,
        allocation="finite",
        algorithm="em",
        covariance_type=ctype,
        random_state=0,
        max_laps=30,
        tol=0.0,
        missing="marginalize",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    elbo = np.array([r["elbo"] for r in est.history_])
    assert len(elbo) > 5
    assert np.diff(elbo).min() > -1e-10 * np.abs(elbo).max()


# ---------------------------------------------------------------------- checks on data
def test_default_refuses_nan_naming_rows() -> None:
    X = _data(50)
    X[[3, 17], 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite.*\[3, 17\]"):
        MixtureModel(2).fit(X)


def test_marginalize_still_refuses_inf_and_empty_rows() -> None:
    X = _data(50)
    X[4, 2] = np.nan
    check_finite(X, "X", allow_nan=True)
    Y = X.copy()
    Y[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"infinite values in 1 row\(s\); first rows: \[7\]"):
        check_finite(Y, "X", allow_nan=True)
    Y = X.copy()
    Y[9] = np.nan
    with pytest.raises(ValueError, match=r"every value missing.*\[9\]"):
        MixtureModel(2, missing="marginalize").fit(Y)


def test_predict_on_a_row_with_every_value_missing_names_it() -> None:
    X = _data(100)
    est = MixtureModel(2, algorithm="em", missing="marginalize", random_state=0, max_laps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X)
    Y = X[:5].copy()
    Y[2] = np.nan
    with pytest.raises(ValueError, match=r"every value missing.*\[2\]"):
        est.predict(Y)
    Y[2, 0] = 1.0
    assert est.predict(Y).shape == (5,)


def test_unknown_missing_word_is_refused() -> None:
    with pytest.raises(ValueError, match="missing must be one of"):
        MixtureModel(2, missing="impute").fit(_data(20))


# ---------------------------------------------------------------------- other likelihoods
def _bernoulli_data(n: int = 1500, D: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    P = rng.uniform(0.05, 0.95, size=(3, D))
    z = rng.integers(0, 3, n)
    return (rng.random((n, D)) < P[z]).astype(np.float64)


@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_bernoulli_without_nan_is_unchanged_and_with_nan_drops_entries(algorithm: str) -> None:
    X = _bernoulli_data()
    kw = dict(allocation="finite", likelihood="bernoulli", algorithm=algorithm, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MixtureModel(3, **kw, max_laps=40).fit(X)
        b = MixtureModel(3, missing="marginalize", **kw, max_laps=40).fit(X)
        assert np.array_equal(a.means_, b.means_) and a.lower_bound_ == b.lower_bound_
        Xm = with_holes(X, 0.3)
        c = MixtureModel(3, missing="marginalize", **kw, max_laps=40, tol=0.0).fit(Xm)
    elbo = np.diff([r["elbo"] for r in c.history_])
    assert elbo.min() > -1e-9
    # a row's log-likelihood is the product of the observed features' Bernoullis only
    if algorithm == "em":
        p, w = c.means_, c.weights_
        for i in range(20):
            o = ~np.isnan(Xm[i])
            x = Xm[i][o]
            terms = np.log(w) + (x * np.log(p[:, o]) + (1 - x) * np.log1p(-p[:, o])).sum(1)
            assert abs(logsumexp(terms) - c.score_samples(Xm[i : i + 1])[0]) < 1e-10


def test_bernoulli_per_feature_counts() -> None:
    """ "nobs" counts each feature's observed mass; the EM estimate is x1 / nobs."""
    from mixstream.obs.bernoulli import BernoulliObs

    X = with_holes(_bernoulli_data(200), 0.4)
    obs = BernoulliObs("em", missing="marginalize")
    obs.set_prior_from_data(np.nan_to_num(X))
    resp = np.random.default_rng(0).dirichlet(np.ones(2), size=X.shape[0])
    stats = obs.calc_stats(X, resp)
    seen = ~np.isnan(X)
    assert np.allclose(stats["nobs"], resp.T @ seen)
    assert np.allclose(stats["x1"], resp.T @ np.where(seen, X, 0.0))
    obs.update(SuffStats({"N": resp.sum(axis=0), **stats}))
    assert np.allclose(obs.p, stats["x1"] / stats["nobs"])


@pytest.mark.parametrize("algorithm", ("em", "vb"))
def test_zero_mean_gauss_marginal(algorithm: str) -> None:
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(600, 4)) @ rng.normal(size=(4, 4))
    kw = dict(allocation="finite", likelihood="zero_mean_gauss", algorithm=algorithm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MixtureModel(2, **kw, random_state=0, max_laps=30).fit(Z)
        b = MixtureModel(2, **kw, random_state=0, max_laps=30, missing="marginalize").fit(Z)
        assert np.array_equal(a.covariances_, b.covariances_)
        Zm = with_holes(Z, 0.25)
        c = MixtureModel(2, **kw, random_state=0, max_laps=30, tol=0.0, missing="marginalize")
        c.fit(Zm)
    assert np.diff([r["elbo"] for r in c.history_]).min() > -1e-9
    if algorithm == "em":
        got = c.score_samples(Zm[:30])
        for i in range(30):
            o = ~np.isnan(Zm[i])
            terms = [
                np.log(c.weights_[k])
                + multivariate_normal(np.zeros(o.sum()), c.covariances_[k][np.ix_(o, o)]).logpdf(
                    Zm[i][o]
                )
                for k in range(2)
            ]
            # covariances of condition ~2e4: the marginal is f(y_m = 0) plus a Schur correction,
            # which cancels to ~eps * cond * |f(0)|: 1.6e-9 here, asserted at 1e-8
            assert abs(logsumexp(terms) - got[i]) < 1e-8


def test_multinomial_takes_marginalize() -> None:
    """The options no longer refuse it (tests/unit/test_missing_multinomial.py has the maths)."""
    X = np.random.default_rng(0).integers(0, 5, size=(40, 3)).astype(np.float64)
    X[3, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MixtureModel(2, likelihood="multinomial", missing="marginalize", max_laps=5)
        assert est.fit(X).predict(X).shape == (40,)


def test_command_line_flag() -> None:
    from mixstream.cli.commands import options_of
    from mixstream.cli.parser import build_parser

    args = build_parser().parse_args(["fit", "s.zarr", "--out", "o", "--missing", "marginalize"])
    assert options_of(args)["missing"] == "marginalize"
    default = build_parser().parse_args(["fit", "s.zarr", "--out", "o"])
    assert options_of(default)["missing"] == "error"


@pytest.mark.parametrize("ctype", ("full", "tied_full"))
def test_numba_and_numpy_paths_agree(ctype: str, monkeypatch) -> None:
    """The fused kernels (obs/gauss/_missing_numba.py) and the numpy version: same marginal
    log-likelihoods and expected statistics, including rows with up to 4 holes of 5."""
    from mixstream import _kernels

    if not _kernels.enabled():
        pytest.skip("numba kernels are off")
    X = _data(150)
    obs = _obs(ctype, "vb", X)
    Xm = with_holes(X, 0.5)
    resp = np.random.default_rng(7).dirichlet(np.ones(obs.K), size=Xm.shape[0])
    fast = (obs.log_prob(Xm), obs.calc_stats(Xm, resp))
    monkeypatch.setattr(_kernels, "_kernels", False)
    slow = (obs.log_prob(Xm), obs.calc_stats(Xm, resp))
    assert np.allclose(fast[0], slow[0], rtol=1e-12, atol=1e-12)
    for name in ("N", "x", "xx", "Hmiss"):
        assert np.allclose(fast[1][name], slow[1][name], rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("ctype", ("full", "tied_full"))
def test_every_hole_count_of_the_kernels(ctype: str, monkeypatch) -> None:
    """Rows with 1 to 8 holes of 9 (each count has its own code in the numba kernel: closed
    forms up to 4, a Cholesky factor above): the marginal density (scipy, 1e-10) and the
    numpy path's statistics (1e-12)."""
    from mixstream import _kernels

    if not _kernels.enabled():
        pytest.skip("numba kernels are off")
    X = _data(300, D=9, seed=4)
    obs = _obs(ctype, "em", X)
    Xm = with_holes(X, 0.55, seed=2)
    counts = np.isnan(Xm).sum(axis=1)
    assert set(range(1, 9)) <= set(counts.tolist())
    lp = obs.log_prob(Xm)
    est = obs.point_estimates()
    K, D = est["means"].shape
    C = covariance_strategy(ctype).to_full(est["covariances"], K, D)
    for c in range(1, 9):
        i = int(np.flatnonzero(counts == c)[0])
        o = ~np.isnan(Xm[i])
        for k in range(K):
            ref = multivariate_normal(est["means"][k][o], C[k][np.ix_(o, o)]).logpdf(Xm[i][o])
            assert abs(ref - lp[i, k]) < 1e-10
    resp = np.random.default_rng(7).dirichlet(np.ones(K), size=Xm.shape[0])
    fast = obs.calc_stats(Xm, resp)
    monkeypatch.setattr(_kernels, "_kernels", False)
    slow = obs.calc_stats(Xm, resp)
    for name in ("x", "xx", "Hmiss"):
        assert np.allclose(fast[name], slow[name], rtol=1e-12, atol=1e-10)


def test_checkpoint_fingerprint_keeps_older_runs_resumable() -> None:
    """missing="error" (the default) leaves the fingerprint as it was before the option
    existed; "marginalize" is part of it (a checkpoint of the other mode is not resumed)."""
    from types import SimpleNamespace

    from mixstream.fitted import fingerprint
    from mixstream.options import FitOptions

    source = SimpleNamespace(n_rows=10, n_features=2, batches=[(0, 10)])
    params = FitOptions().params()
    assert "param missing" not in fingerprint(params, source)
    marg = fingerprint({**params, "missing": "marginalize"}, source)
    assert marg["param missing"] == "marginalize"


def test_kmeans_refuses_marginalize_and_cem_marginalizes() -> None:
    with pytest.raises(ValueError, match="does not apply to algorithm='kmeans'"):
        MixtureModel(2, algorithm="kmeans", missing="marginalize").fit(_data(20))
    X = with_holes(_data(300), 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MixtureModel(
            3, algorithm="cem", allocation="finite", random_state=0, missing="marginalize"
        ).fit(X)
    assert np.isfinite(est.means_).all() and est.predict(X).shape == (300,)
