"""Allocation models: updates, expected weights and ELBO terms against direct formulas."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.suffstats import SuffStats


def _ss(N):
    return SuffStats({"N": np.asarray(N, float)})


def test_dp_posterior_matches_stick_breaking_formulas():
    N = np.array([50.0, 30.0, 0.0, 20.0])
    alloc = DPAlloc(alpha=2.0)
    alloc.update(_ss(N))
    np.testing.assert_allclose(alloc.eta1, 1 + N)
    np.testing.assert_allclose(alloc.eta0, 2.0 + np.array([50.0, 20.0, 20.0, 0.0]))
    e1, e0 = alloc.eta1, alloc.eta0
    elogv = digamma(e1) - digamma(e1 + e0)
    elog1mv = digamma(e0) - digamma(e1 + e0)
    expect = elogv + np.concatenate([[0], np.cumsum(elog1mv)[:-1]])
    np.testing.assert_allclose(alloc.log_weights(), expect)
    assert alloc.expected_weights().sum() < 1.0  # mass is left for unrepresented components


def test_dp_elbo_equals_monte_carlo():
    rng = np.random.default_rng(0)
    alloc = DPAlloc(alpha=1.5)
    alloc.update(_ss([40.0, 25.0, 5.0]))
    N = np.array([30.0, 35.0, 2.0])  # q is not the optimum for these counts: the general form
    # sum_k N_k E[log pi_k] + E[log p(v)] - E[log q(v)], estimated by sampling v ~ q
    v = rng.beta(alloc.eta1, alloc.eta0, size=(400_000, 3))
    log_pi = np.log(v) + np.concatenate(
        [np.zeros((v.shape[0], 1)), np.cumsum(np.log1p(-v), 1)[:, :-1]], 1
    )
    mc = (
        log_pi @ N
        + stats.beta.logpdf(v, 1, 1.5).sum(1)
        - stats.beta.logpdf(v, alloc.eta1, alloc.eta0).sum(1)
    )
    assert alloc.elbo_term(_ss(N)) == pytest.approx(mc.mean(), abs=5 * mc.std() / np.sqrt(mc.size))


def test_finite_vb_elbo_equals_monte_carlo():
    rng = np.random.default_rng(1)
    alloc = FiniteAlloc(alpha=3.0)
    alloc.update(_ss([10.0, 3.0, 0.5]))
    N = np.array([4.0, 8.0, 1.5])
    pi = rng.dirichlet(alloc.theta, size=400_000)
    mc = (
        np.log(pi) @ N
        + stats.dirichlet.logpdf(pi.T, np.ones(3))
        - stats.dirichlet.logpdf(pi.T, alloc.theta)
    )
    assert alloc.elbo_term(_ss(N)) == pytest.approx(mc.mean(), abs=5 * mc.std() / np.sqrt(mc.size))


def test_finite_em_weights_ml_below_one_and_map_above():
    N = np.array([6.0, 3.0, 1.0])
    ml = FiniteAlloc(alpha=1.0, inference="em")
    ml.update(_ss(N))
    np.testing.assert_allclose(ml.expected_weights(), N / N.sum())
    mp = FiniteAlloc(alpha=9.0, inference="em")  # a = 3 per component
    mp.update(_ss(N))
    np.testing.assert_allclose(mp.expected_weights(), (N + 2) / (N.sum() + 6))


def test_dp_map_sticks_and_requirements():
    N = np.array([60.0, 30.0, 10.0])
    alloc = DPAlloc(alpha=1.0, inference="em")
    alloc.update(_ss(N))
    np.testing.assert_allclose(alloc.sticks, [60 / 100, 30 / 40, 1.0])
    np.testing.assert_allclose(alloc.expected_weights(), N / N.sum())
    with pytest.raises(ValueError, match="alpha >= 1"):
        DPAlloc(alpha=0.5, inference="em")


def test_rho_blends_natural_parameters():
    a = DPAlloc(alpha=1.0)
    a.update(_ss([10.0, 5.0]))
    e1 = a.eta1.copy()
    a.update(_ss([20.0, 1.0]), rho=0.25)
    np.testing.assert_allclose(a.eta1, 0.75 * e1 + 0.25 * (1 + np.array([20.0, 1.0])))


@pytest.mark.parametrize("bad", [0.0, -1.0, np.inf, np.nan])
def test_bad_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        FiniteAlloc(alpha=bad)
