"""The posterior-predictive (Student-t) log-densities of VB Gaussians, against Monte Carlo over
q(mu, Lambda), and the held-out scores built on them."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import wishart

from mixstream import MixtureModel

TYPES = ["full", "tied", "diag", "spherical"]


def _small_fit(ct: str) -> MixtureModel:
    # 40 rows in 3-D: posteriors broad enough that predictive and plug-in differ clearly
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0, 1, (20, 3)), rng.normal(4, 0.7, (20, 3))])
    return MixtureModel(2, covariance_type=ct, algorithm="vb", random_state=0).fit(X)


def _mc_log_density(obs, k: int, Y: np.ndarray, n: int, rng) -> np.ndarray:
    """log E_q[N(y | mu_k, Lambda_k^{-1})] by drawing (mu, Lambda) from q; Y is shifted."""
    D = Y.shape[1]
    g = 0 if obs.tied else k
    nu, kappa, m = float(np.atleast_1d(obs.nu)[g]), float(obs.kappa[k]), obs.m[k]
    if obs.structure == "full":
        lam = wishart(df=nu, scale=np.linalg.inv(obs.psi[g])).rvs(n, random_state=rng)
    elif obs.structure == "diag":
        prec = rng.gamma(nu / 2, 2.0 / obs.psi[g], size=(n, D))
        lam = np.einsum("nd,de->nde", prec, np.eye(D))
    else:
        prec = rng.gamma(nu * D / 2, 2.0 / (float(obs.psi[g]) * D), size=n)
        lam = prec[:, None, None] * np.eye(D)
    L = np.linalg.cholesky(lam)  # Lambda = L L^T
    z = rng.standard_normal((n, D))
    # mu = m + (kappa Lambda)^{-1/2} z, via a triangular solve with L^T
    mu = m + np.linalg.solve(np.transpose(L, (0, 2, 1)), z[:, :, None])[:, :, 0] / np.sqrt(kappa)
    d = Y[None, :, :] - mu[:, None, :]  # (n, rows, D)
    q = np.einsum("nrd,nde,nre->nr", d, lam, d)
    logdet = 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    logp = 0.5 * logdet[:, None] - 0.5 * D * np.log(2 * np.pi) - 0.5 * q
    return logsumexp(logp, axis=0) - np.log(n)


@pytest.mark.parametrize("ct", TYPES)
def test_student_t_matches_monte_carlo_over_the_posterior(ct):
    est = _small_fit(ct)
    obs = est.model_.obs
    rng = np.random.default_rng(0)
    for k in range(obs.m.shape[0]):
        # rows within about two sd of the component: far in its tails a Monte Carlo log-mean
        # is ruled by rare draws and its error is no longer small
        rows = obs.shift + obs.m[k] + rng.normal(0, 1, (4, 3))
        exact = obs.log_predictive(rows)[:, k]
        mc = _mc_log_density(obs, k, rows - obs.shift, 200_000, rng)
        # 2e5 draws: the Monte Carlo log-mean has a standard error under 0.01 here
        np.testing.assert_allclose(exact, mc, atol=0.03)


@pytest.mark.parametrize("ct", TYPES)
def test_score_is_the_predictive_mixture_and_beats_the_expected_log_density(ct):
    est = _small_fit(ct)
    rows = np.random.default_rng(1).normal(2, 2, (50, 3))
    model = est.model_
    w = model.alloc.expected_weights()
    w = w / w.sum()
    want = logsumexp(model.obs.log_predictive(rows) + np.log(w), axis=1)
    # the DP's mass for new components aside (the next test has it)
    np.testing.assert_allclose(model.log_density(rows, new_components=False), want, rtol=1e-12)
    # Jensen, per component and for the mixture: the local step's normaliser is a lower bound
    lower = model.local_step(rows)["log_norm"]
    assert np.all(model.log_density(rows, new_components=False) > lower)
    assert np.all(est.score_samples(rows) > lower)


def test_one_dimensional_predictive_integrates_to_one():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (12, 1))
    for ct in ("full", "diag", "spherical"):
        est = MixtureModel(1, covariance_type=ct, algorithm="vb", random_state=0).fit(X)
        grid = np.linspace(-400, 400, 400_001)[:, None]  # heavy tails: a wide grid
        dens = np.exp(est.score_samples(grid))
        assert np.trapezoid(dens, grid[:, 0]) == pytest.approx(1.0, abs=2e-3)


def test_em_score_is_the_plug_in_density():
    X = np.random.default_rng(0).normal(0, 1, (200, 2))
    est = MixtureModel(2, algorithm="em", random_state=0).fit(X)
    np.testing.assert_allclose(
        est.score_samples(X), est.model_.local_step(X)["log_norm"], rtol=1e-12
    )


def test_dp_score_gives_its_leftover_mass_to_the_prior_predictive():
    """DP: log [sum_k E[pi_k] t_k(x) + (1 - sum_k E[pi_k]) t_0(x)], t_0 the Student-t of the
    prior (checked with scipy's multivariate t), and a density that integrates to one."""
    from scipy.stats import multivariate_t

    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(0, 1, (15, 2)), rng.normal(5, 0.5, (15, 2))])
    est = MixtureModel(2, allocation="dp", covariance_type="full", algorithm="vb").fit(X)
    model = est.model_
    w = model.alloc.expected_weights()
    rest = 1.0 - w.sum()
    assert rest > 1e-3  # 30 rows, alpha = 1: a visible share for new components
    obs, D = model.obs, 2
    m0, k0, nu0, psi0 = obs._prior()
    v = nu0 - D + 1
    t0 = multivariate_t(obs.shift + m0, psi0 * (1 + k0) / (k0 * v), df=v)
    rows = rng.normal(2, 4, (40, 2))
    mix = np.exp(obs.log_predictive(rows)) @ w + rest * t0.pdf(rows)
    np.testing.assert_allclose(est.score_samples(rows), np.log(mix), rtol=1e-10)
    # without the new components (what the birth judge uses): the weights renormalised
    alone = model.log_density(rows, new_components=False)
    want = logsumexp(obs.log_predictive(rows) + np.log(w / w.sum()), axis=1)
    np.testing.assert_allclose(alone, want, rtol=1e-12)

    X1 = rng.normal(0, 1, (12, 1))
    for ct in ("full", "diag", "spherical"):
        dp = MixtureModel(1, allocation="dp", covariance_type=ct, algorithm="vb").fit(X1)
        grid = np.linspace(-400, 400, 400_001)[:, None]
        dens = np.exp(dp.score_samples(grid))
        assert np.trapezoid(dens, grid[:, 0]) == pytest.approx(1.0, abs=2e-3)


def test_dp_prior_predictive_of_a_row_with_missing_values_is_its_observed_marginal():
    from scipy.stats import multivariate_t

    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (20, 3)), rng.normal(4, 0.5, (20, 3))])
    est = MixtureModel(
        2, allocation="dp", covariance_type="full", algorithm="vb", missing="marginalize"
    ).fit(X)
    model, obs = est.model_, est.model_.obs
    row = np.array([[1.0, np.nan, 2.0]])
    o = [0, 2]
    m0, k0, nu0, psi0 = obs._prior()
    v = nu0 - 3 + 1  # the marginal of a t keeps its degrees of freedom
    scale = (psi0 * (1 + k0) / (k0 * v))[np.ix_(o, o)]
    t0 = multivariate_t((obs.shift + m0)[o], scale, df=v).logpdf(row[0, o])
    np.testing.assert_allclose(obs.log_prior_predictive(row), [t0], rtol=1e-10)
    w = model.alloc.expected_weights()
    mix = np.exp(obs.log_predictive(row)[0]) @ w + (1 - w.sum()) * np.exp(t0)
    np.testing.assert_allclose(est.score_samples(row), [np.log(mix)], rtol=1e-10)
