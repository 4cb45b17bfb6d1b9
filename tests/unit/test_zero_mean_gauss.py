"""Zero-mean full-covariance Gaussian observation model driven through Model: priors,
recovery of planted covariances, monotone objectives, exact merges, additive statistics, the
general-form ELBO against scipy's Wishart, and float32 input."""

from itertools import pairwise

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import digamma

from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.model import Model
from mixstream.obs import ZeroMeanGaussObs
from mixstream.suffstats import SuffStats

ALLOCS = {"finite": FiniteAlloc, "dp": DPAlloc}
LOG_2PI = np.log(2 * np.pi)


# ---------------------------------------------------------------------- data and drivers
def zmg_data(seed=0, N=3000, D=3):
    """Three zero-mean components with different spectra and random orientations."""
    rng = np.random.default_rng(seed)
    eig = np.array([[9.0, 1.0, 0.05], [4.0, 0.5, 0.1], [1.0, 1.0, 1.0]])
    covs = []
    for k in range(3):
        Q = stats.special_ortho_group.rvs(D, random_state=rng)
        covs.append(Q @ np.diag(eig[k, :D]) @ Q.T)
    covs = np.array(covs)
    z = rng.choice(3, size=N, p=[0.4, 0.35, 0.25])
    X = np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[z], rng.standard_normal((N, D)))
    return X, z, covs


def make(inference="vb", allocation="finite", alpha=1.0, N=3000, **obs_kw):
    X, z, covs = zmg_data(N=N)
    model = Model(ALLOCS[allocation](alpha, inference), ZeroMeanGaussObs(inference, **obs_kw))
    model.obs.set_prior_from_data(X)
    return model, X, z, covs


def init_from_resp(model, X, resp0):
    model.uids = model.new_uids(resp0.shape[1])
    # Model.summarize reads LP["log_norm"]; a hand-made LP has none, so pass zeros
    SS = model.summarize(X, {"resp": resp0, "log_norm": np.zeros(X.shape[0])})
    model.global_step(SS)


def random_resp(N, K, seed):
    return np.eye(K)[np.random.default_rng(seed).integers(K, size=N)]


def run(model, X, n_iter, tol=None):
    elbos = []
    for _ in range(n_iter):
        SS = model.local_summarize(X)
        model.global_step(SS)
        elbos.append(model.elbo(SS))
        if tol is not None and len(elbos) > 1:
            if abs(elbos[-1] - elbos[-2]) <= tol * abs(elbos[-1]):
                break
    return np.array(elbos)


def assert_monotone(elbos, rel=1e-9):
    assert np.all(np.isfinite(elbos))
    drops = np.diff(elbos)
    assert drops.min() >= -rel * np.abs(elbos).max(), f"objective fell by {-drops.min():.3g}"


def wishart_log_norm(nu, B):
    """log normaliser of Wishart(nu, B^{-1}) read off scipy: logpdf(I) + tr(B) / 2."""
    W = stats.wishart(df=nu, scale=np.linalg.inv(B))
    return W.logpdf(np.eye(B.shape[0])) + 0.5 * np.trace(B)


def expected_logdet(nu, B):
    D = B.shape[0]
    return (
        digamma((nu + 1 - np.arange(1, D + 1)) / 2).sum() + D * np.log(2) - np.linalg.slogdet(B)[1]
    )


# ---------------------------------------------------------------------- prior
def test_default_prior_matches_second_moment_and_user_prior_is_checked():
    X, _, _ = zmg_data()
    D = X.shape[1]
    obs = ZeroMeanGaussObs()
    obs.set_prior_from_data(X)
    assert obs.n_features == D and obs.nu0 == D + 2
    np.testing.assert_allclose(obs.B0 / (obs.nu0 - D - 1), X.T @ X / X.shape[0], rtol=1e-12)

    user = ZeroMeanGaussObs(nu0=10.0, prior_cov=2 * np.eye(D))
    user.set_prior_from_data(X)
    np.testing.assert_allclose(user.B0, (10.0 - D - 1) * 2 * np.eye(D))
    with pytest.raises(ValueError, match=r"prior_cov must have shape .* \(3, 3\), got \(2, 2\)"):
        ZeroMeanGaussObs(prior_cov=np.eye(2)).set_prior_from_data(X)
    with pytest.raises(ValueError, match="symmetric positive definite"):
        ZeroMeanGaussObs(prior_cov=-np.eye(D)).set_prior_from_data(X)
    with pytest.raises(ValueError, match=r"nu0 must exceed n_features \+ 1 = 4"):
        ZeroMeanGaussObs(nu0=4.0).set_prior_from_data(X)
    # a column that is always zero still gives a positive definite prior
    Z = np.concatenate([X, np.zeros((X.shape[0], 1))], 1)
    obs = ZeroMeanGaussObs()
    obs.set_prior_from_data(Z)
    assert np.all(np.linalg.eigvalsh(obs.B0) > 0)


# ---------------------------------------------------------------------- (a) recovery
def test_vb_recovers_planted_covariances():
    model, X, z, covs = make("vb")
    rng = np.random.default_rng(1)
    labels = z.copy()
    flip = rng.random(z.size) < 0.3
    labels[flip] = rng.integers(3, size=int(flip.sum()))
    init_from_resp(model, X, np.eye(3)[labels])
    run(model, X, 400, tol=1e-12)
    est = model.obs.point_estimates()["covariances"]
    cost = np.abs(est[:, None] - covs[None]).sum((2, 3))
    rows, cols = linear_sum_assignment(cost)
    est = est[rows[np.argsort(cols)]]
    # Tolerance: 6 x the sampling sd of a second-moment entry from the N_k points of each
    # component, sqrt((S_ij^2 + S_ii S_jj) / N_k). Zero-mean components all overlap near the
    # origin, so even the exact posterior assigns ~25% of points ambiguously; over seeds the
    # worst entry lands at 2.4-3.5 sd (the estimate from the true labels at 1.5-2.4 sd).
    Nk = np.bincount(z)[:, None, None]
    sd_diag = np.sqrt(np.einsum("kii->ki", covs))
    sd = np.sqrt((covs**2 + (sd_diag[:, :, None] * sd_diag[:, None, :]) ** 2) / Nk)
    assert np.all(np.abs(est - covs) <= 6 * sd), (np.abs(est - covs) / sd).max()
    rel = np.linalg.norm(est - covs, axis=(1, 2)) / np.linalg.norm(covs, axis=(1, 2))
    assert rel.max() < 0.2
    w = model.alloc.expected_weights()[rows[np.argsort(cols)]]
    np.testing.assert_allclose(w, [0.4, 0.35, 0.25], atol=0.05)


# ---------------------------------------------------------------------- (b) monotone objectives
@pytest.mark.parametrize("allocation", ["finite", "dp"])
def test_vb_elbo_never_decreases(allocation):
    model, X, _, _ = make("vb", allocation, N=1500)
    init_from_resp(model, X, random_resp(X.shape[0], 5, seed=2))
    assert_monotone(run(model, X, 80))


@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("map_prior", [False, True])
def test_em_objective_never_decreases(map_prior, allocation):
    model, X, _, _ = make("em", allocation, N=1500, map_prior=map_prior)
    init_from_resp(model, X, random_resp(X.shape[0], 5, seed=3))
    assert_monotone(run(model, X, 80))


@pytest.mark.parametrize("map_prior", [False, True])
def test_em_log_prob_and_objective_match_scipy(map_prior):
    model, X, _, _ = make("em", N=1000, map_prior=map_prior)
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=4))
    run(model, X, 5)
    obs = model.obs
    cov = obs.point_estimates()["covariances"]
    logpdf = np.stack(
        [stats.multivariate_normal(np.zeros(3), cov[k]).logpdf(X) for k in range(3)], 1
    )
    np.testing.assert_allclose(obs.log_prob(X), logpdf, rtol=1e-10)
    LP = model.local_step(X)
    SS = model.summarize(X, LP)
    log_prior = 0.0
    if map_prior:
        W = stats.wishart(df=obs.nu0, scale=np.linalg.inv(obs.B0))
        log_prior = sum(W.logpdf(np.linalg.inv(cov[k])) for k in range(3))
    expected = (LP["resp"] * logpdf).sum() + log_prior
    assert obs.elbo_term(SS) == pytest.approx(expected, rel=1e-10)
    # and the MAP / ML covariance formulas
    N, S = SS.N[:, None, None], SS["xxT"]
    obs.update(SS)
    if map_prior:
        want = (obs.B0 + S) / (obs.nu0 + N - 3 - 1)
    else:
        want = S / N + obs.reg_covar * np.eye(3)
    np.testing.assert_allclose(obs.point_estimates()["covariances"], want, rtol=1e-12)


def test_vb_log_prob_and_expected_logdet():
    model, X, _, _ = make("vb", N=1000)
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=5))
    obs = model.obs
    k = 1
    nu, B = obs.nu[k], obs.B[k]
    # E[log |Lambda|] against a Monte Carlo average over scipy's Wishart draws
    draws = stats.wishart(df=nu, scale=np.linalg.inv(B)).rvs(20000, random_state=6)
    logdets = np.linalg.slogdet(draws)[1]
    mc, mc_se = logdets.mean(), logdets.std() / np.sqrt(logdets.size)
    assert abs(expected_logdet(nu, B) - mc) < 4 * mc_se
    E_lam = nu * np.linalg.inv(B)
    want = (
        -1.5 * LOG_2PI + 0.5 * expected_logdet(nu, B) - 0.5 * np.einsum("ni,ij,nj->n", X, E_lam, X)
    )
    np.testing.assert_allclose(obs.log_prob(X)[:, k], want, rtol=1e-10)


# ---------------------------------------------------------------------- (c) merges
@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("inference", ["vb", "em"])
def test_merge_from_tracked_stats_is_exact(inference, allocation):
    model, X, _, _ = make(inference, allocation, N=1500)
    init_from_resp(model, X, random_resp(X.shape[0], 5, seed=6))
    run(model, X, 3)
    j, k = 3, 0
    uj, uk = int(model.uids[j]), int(model.uids[k])
    LP = model.local_step(X)
    SS = model.summarize(X, LP, merge_pairs=[(uj, uk)])

    merged = model.copy()
    SSm = SS.merge_pair(j, k)
    merged.global_step(SSm)

    direct = model.copy()
    resp = LP["resp"].copy()
    resp[:, j] += resp[:, k]
    resp = np.delete(resp, k, axis=1)
    direct.uids = np.delete(model.uids, k)
    SSd = direct.summarize(X, {"resp": resp, "log_norm": LP["log_norm"]})
    direct.global_step(SSd)

    for name in SSd.fields:
        scale = np.abs(SSd[name]).max()
        np.testing.assert_allclose(SSm[name], SSd[name], rtol=1e-12, atol=1e-12 * scale)
    assert merged.elbo(SSm) == pytest.approx(direct.elbo(SSd), rel=1e-10)


# ---------------------------------------------------------------------- (d) additivity
def test_batches_sum_to_whole_and_stats_are_weighted_outer_products():
    model, X, _, _ = make("vb", N=1500)
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=7))
    pairs = [(int(model.uids[1]), int(model.uids[2]))]
    whole = model.local_summarize(X, merge_pairs=pairs)
    rng = np.random.default_rng(8)
    cuts = np.sort(rng.choice(np.arange(2, X.shape[0]), size=6, replace=False))
    cuts = np.concatenate([[0, 1], cuts, [X.shape[0]]])  # includes a one-row batch
    parts = [model.local_summarize(X[a:b], merge_pairs=pairs) for a, b in pairwise(cuts)]
    for total in (SuffStats.sum(parts), sum(parts[1:], parts[0])):
        for name in whole.fields:
            scale = np.abs(whole[name]).max()
            np.testing.assert_allclose(total[name], whole[name], rtol=1e-12, atol=1e-12 * scale)
        for name, v in whole.scalars.items():
            assert total.scalars[name] == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(total.merge_Hresp, whole.merge_Hresp, rtol=1e-12)

    resp = model.local_step(X)["resp"]
    plain = model.obs.calc_stats(X, resp)
    assert set(plain) == {"xxT"}
    np.testing.assert_allclose(plain["xxT"], np.einsum("nk,ni,nj->kij", resp, X, X), rtol=1e-10)
    cache = {}
    lp = model.obs.log_prob(X, cache)
    assert cache  # log_prob left phi(X) for calc_stats
    np.testing.assert_allclose(lp, model.obs.log_prob(X), rtol=1e-15)
    np.testing.assert_allclose(
        model.obs.calc_stats(X, resp, cache)["xxT"], plain["xxT"], rtol=1e-15
    )


# ---------------------------------------------------------------------- (f) general-form ELBO
def _kl_wishart(nu, B, nu2, B2):
    """KL(W(nu, B^{-1}) || W(nu2, B2^{-1})) = -H(q) - E_q log q2, entropy from scipy."""
    D = B.shape[0]
    E_lam = nu * np.linalg.inv(B)
    cross = (
        wishart_log_norm(nu2, B2)
        + 0.5 * (nu2 - D - 1) * expected_logdet(nu, B)
        - 0.5 * np.sum(B2 * E_lam)
    )
    return -stats.wishart(df=nu, scale=np.linalg.inv(B)).entropy() - cross


def test_elbo_term_is_general_form():
    """Half a step (rho=0.5) leaves q off the optimum for SS: elbo_term stays finite, below the
    full update's, and equals it minus KL(q_half || q_full) computed with scipy's Wishart."""
    model, X, _, _ = make("vb", N=1500)
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=9))
    run(model, X, 2)
    SS = model.local_summarize(X)
    half, full = model.obs.copy(), model.obs.copy()
    half.update(SS, rho=0.5)
    full.update(SS)
    L_half, L_full = half.elbo_term(SS), full.elbo_term(SS)
    assert np.isfinite(L_half)
    assert L_half < L_full
    kl = sum(_kl_wishart(half.nu[k], half.B[k], full.nu[k], full.B[k]) for k in range(SS.K))
    assert kl > 0
    assert L_half == pytest.approx(L_full - kl, rel=1e-10)
    # at the optimum the term equals the log evidence of the conjugate model
    obs = full
    D = 3
    evidence = sum(
        -0.5 * D * LOG_2PI * SS.N[k]
        + wishart_log_norm(obs.nu0, obs.B0)
        - wishart_log_norm(obs.nu[k], obs.B[k])
        for k in range(SS.K)
    )
    assert L_full == pytest.approx(evidence, rel=1e-10)


def test_em_rho_blends_statistics():
    model, X, _, _ = make("em", N=1000)
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=10))
    SS1 = model.local_summarize(X)
    model.global_step(SS1)
    SS2 = model.local_summarize(X)
    blended = model.obs.copy()
    blended.update(SS2, rho=0.25)
    direct = model.obs.copy()
    direct.update(SS1.scale(0.75) + SS2.scale(0.25))
    np.testing.assert_allclose(
        blended.point_estimates()["covariances"],
        direct.point_estimates()["covariances"],
        rtol=1e-12,
    )


# ---------------------------------------------------------------------- (g) float32
@pytest.mark.parametrize("inference", ["vb", "em"])
def test_float32_input_gives_float64_stats(inference):
    model, X, _, _ = make(inference, N=1500)
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=11))
    run(model, X, 3)
    X32 = X.astype(np.float32)
    assert model.obs.log_prob(X32).dtype == np.float64
    SS64 = model.local_summarize(X)
    SS32 = model.local_summarize(X32)
    for name in SS64.fields:
        assert SS32[name].dtype == np.float64
        scale = np.abs(SS64[name]).max()
        np.testing.assert_allclose(SS32[name], SS64[name], rtol=1e-6, atol=1e-6 * scale)
    resp = np.ones((X.shape[0], 1), np.float32)
    assert model.obs.calc_stats(X32, resp)["xxT"].dtype == np.float64


# ---------------------------------------------------------------------- empty components, state
@pytest.mark.parametrize(("inference", "map_prior"), [("vb", False), ("em", False), ("em", True)])
def test_empty_component_gives_no_nan(inference, map_prior):
    model, X, _, _ = make(inference, N=1000, map_prior=map_prior)
    resp0 = np.concatenate([random_resp(X.shape[0], 3, seed=12), np.zeros((X.shape[0], 1))], 1)
    init_from_resp(model, X, resp0)
    assert np.all(np.isfinite(model.obs.log_prob(X)))
    SS = model.local_summarize(X)
    assert np.isfinite(model.elbo(SS))
    for v in model.obs.point_estimates().values():
        assert np.all(np.isfinite(v))


@pytest.mark.parametrize("inference", ["vb", "em"])
def test_point_estimates_state_sample_and_point_params(inference):
    model, X, _, covs = make(inference, N=1000)
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=13))
    run(model, X, 3)
    est = model.obs.point_estimates()
    K, D = 3, 3
    assert est["means"].shape == (K, D) and not est["means"].any()
    np.testing.assert_allclose(est["precisions"], np.linalg.inv(est["covariances"]), rtol=1e-10)
    P = est["precisions_cholesky"]
    np.testing.assert_allclose(P @ P.transpose(0, 2, 1), est["precisions"], rtol=1e-10)
    assert np.allclose(np.tril(P, -1), 0.0)  # upper triangular, as in scikit-learn
    assert model.obs.n_free_params() == K * D * (D + 1) // 2

    state = model.obs.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    fresh = ZeroMeanGaussObs(inference)
    fresh.set_state({k: v.copy() for k, v in state.items()})
    np.testing.assert_array_equal(fresh.log_prob(X), model.obs.log_prob(X))
    SS = model.local_summarize(X)
    assert fresh.elbo_term(SS) == model.obs.elbo_term(SS)

    draws = model.obs.sample(2, 20000, np.random.default_rng(14))
    assert draws.shape == (20000, D)
    np.testing.assert_allclose(draws.T @ draws / 20000, est["covariances"][2], atol=0.1)

    model.obs.set_point_params(np.zeros((K, D)), covariances=covs)
    np.testing.assert_allclose(model.obs.point_estimates()["covariances"], covs, rtol=1e-10)
    model.obs.set_point_params(precisions=np.linalg.inv(covs))
    np.testing.assert_allclose(model.obs.point_estimates()["covariances"], covs, rtol=1e-10)
    with pytest.raises(ValueError, match="mean zero"):
        model.obs.set_point_params(np.ones((K, D)), covariances=covs)
