"""Bernoulli and multinomial observation models driven through Model: recovery of planted
parameters, monotone objectives, exact merges, additive statistics, input errors, the
general-form ELBO and float32 input."""

from itertools import pairwise

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment
from scipy.special import betaln, digamma, gammaln

from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.model import Model
from mixstream.obs import BernoulliObs, MultinomialObs
from mixstream.suffstats import SuffStats

ALLOCS = {"finite": FiniteAlloc, "dp": DPAlloc}
KINDS = ("bernoulli", "multinomial")


# ---------------------------------------------------------------------- data and drivers
def bernoulli_data(seed=0, N=2000, K=3, D=30):
    rng = np.random.default_rng(seed)
    # each coordinate is "mostly off" or "mostly on", so components differ in ~half of them
    p = np.where(
        rng.random((K, D)) < 0.5, rng.uniform(0.05, 0.3, (K, D)), rng.uniform(0.7, 0.95, (K, D))
    )
    weights = np.array([0.5, 0.3, 0.2])[:K]
    z = rng.choice(K, size=N, p=weights / weights.sum())
    X = (rng.random((N, D)) < p[z]).astype(np.float64)
    return X, z, p


def multinomial_data(seed=0, N=600, K=3, D=25, mean_total=60):
    rng = np.random.default_rng(seed)
    phi = rng.dirichlet(np.ones(D), K)
    weights = np.array([0.5, 0.3, 0.2])[:K]
    z = rng.choice(K, size=N, p=weights / weights.sum())
    totals = rng.poisson(mean_total, N)
    X = np.stack([rng.multinomial(t, phi[k]) for t, k in zip(totals, z)]).astype(np.float64)
    return X, z, phi


def make(kind, inference="vb", allocation="finite", alpha=1.0, **obs_kw):
    X, z, truth = (bernoulli_data if kind == "bernoulli" else multinomial_data)()
    obs = (BernoulliObs if kind == "bernoulli" else MultinomialObs)(inference, **obs_kw)
    model = Model(ALLOCS[allocation](alpha, inference), obs)
    model.obs.set_prior_from_data(X)
    return model, X, z, truth


def init_from_resp(model, X, resp0):
    """Initialise from given responsibilities (fresh uids, one global step)."""
    model.uids = model.new_uids(resp0.shape[1])
    # Model.summarize reads LP["log_norm"]; a hand-made LP has none, so pass zeros
    SS = model.summarize(X, {"resp": resp0, "log_norm": np.zeros(X.shape[0])})
    model.global_step(SS)


def random_resp(N, K, seed):
    return np.eye(K)[np.random.default_rng(seed).integers(K, size=N)]


def perturbed_truth_resp(z, K, frac, seed):
    """One-hot of the true labels with a fraction ``frac`` reassigned at random."""
    rng = np.random.default_rng(seed)
    labels = z.copy()
    flip = rng.random(z.size) < frac
    labels[flip] = rng.integers(K, size=int(flip.sum()))
    return np.eye(K)[labels]


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


# ---------------------------------------------------------------------- (a) recovery
def _match(est, truth):
    cost = np.abs(est[:, None, :] - truth[None, :, :]).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return rows[np.argsort(cols)]  # est index matched to each true component


def test_bernoulli_vb_recovers_planted_probabilities():
    model, X, z, p_true = make("bernoulli")
    init_from_resp(model, X, perturbed_truth_resp(z, 3, 0.3, seed=1))
    run(model, X, 200, tol=1e-12)
    order = _match(model.obs.point_estimates()["probs"], p_true)
    a, b = model.obs.a[order], model.obs.b[order]
    mean = a / (a + b)
    sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    # The posterior sd is the sampling sd of p_hat given the assignments (~0.01-0.02 here);
    # the components differ strongly in ~15 of 30 coordinates, so misassignments are
    # negligible and every one of the 90 estimates lies within 5 posterior sd of the truth.
    assert np.all(np.abs(mean - p_true) <= 5 * sd), np.abs(mean - p_true).max()
    w = model.alloc.expected_weights()[order]
    np.testing.assert_allclose(w, np.bincount(z) / z.size, atol=0.005)
    labels = model.local_step(X)["resp"].argmax(1)
    assert np.mean(order[z] == labels) > 0.995


def test_multinomial_vb_recovers_planted_probabilities():
    model, X, z, phi_true = make("multinomial")
    init_from_resp(model, X, perturbed_truth_resp(z, 3, 0.3, seed=1))
    run(model, X, 200, tol=1e-12)
    order = _match(model.obs.point_estimates()["probs"], phi_true)
    conc = model.obs.conc[order]
    total = conc.sum(1, keepdims=True)
    mean = conc / total
    sd = np.sqrt(conc * (total - conc) / (total**2 * (total + 1)))
    # Given the assignments the Dirichlet posterior sd is the sampling sd of the category
    # frequencies; rows of ~60 words from well separated phi are assigned without error, so
    # every estimate lies within 5 posterior sd of the planted value.
    assert np.all(np.abs(mean - phi_true) <= 5 * sd), (np.abs(mean - phi_true) / sd).max()
    labels = model.local_step(X)["resp"].argmax(1)
    assert np.mean(order[z] == labels) == 1.0
    # means = E[x | k] = average row total * probs
    est = model.obs.point_estimates()
    np.testing.assert_allclose(est["means"], X.sum(1).mean() * est["probs"])


# ---------------------------------------------------------------------- (b) monotone objectives
@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("kind", KINDS)
def test_vb_elbo_never_decreases(kind, allocation):
    model, X, _, _ = make(kind, "vb", allocation)
    init_from_resp(model, X, random_resp(X.shape[0], 6, seed=2))
    assert_monotone(run(model, X, 60))


@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("map_prior", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_em_objective_never_decreases(kind, map_prior, allocation):
    kw = {}
    if map_prior:
        kw = {"lam1": 2.0, "lam0": 1.5} if kind == "bernoulli" else {"lam": 1.5}
    model, X, _, _ = make(kind, "em", allocation, map_prior=map_prior, **kw)
    init_from_resp(model, X, random_resp(X.shape[0], 6, seed=3))
    assert_monotone(run(model, X, 60))


@pytest.mark.parametrize("map_prior", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_em_objective_is_loglik_plus_log_prior(kind, map_prior):
    """Right after a local step the EM objective is sum_n log p(x_n) (+ log prior), and the
    observation term is sum_nk r_nk log p(x_n | theta_k) (+ log prior) by scipy's pmfs."""
    kw = {}
    if map_prior:
        kw = {"lam1": 2.0, "lam0": 1.5} if kind == "bernoulli" else {"lam": 1.5}
    model, X, _, _ = make(kind, "em", map_prior=map_prior, **kw)
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=4))
    run(model, X, 5)
    LP = model.local_step(X)
    SS = model.summarize(X, LP)
    obs = model.obs
    if kind == "bernoulli":
        p = obs.point_estimates()["probs"]
        logpmf = stats.bernoulli.logpmf(X[:, None, :], p[None]).sum(-1)
        log_prior = stats.beta.logpdf(p, obs.lam1, obs.lam0).sum() if map_prior else 0.0
        smoothing = 0.0
    else:
        phi = obs.point_estimates()["probs"]
        n = X.sum(1)
        logpmf = np.stack([stats.multinomial.logpmf(X, n, phi[k]) for k in range(obs.K)], 1)
        log_prior = sum(stats.dirichlet.logpdf(phi[k], obs.lam) for k in range(obs.K))
        log_prior = log_prior if map_prior else 0.0
        smoothing = obs.eps * np.log(phi).sum()  # the reported objective includes it
    np.testing.assert_allclose(obs.log_prob(X), logpmf, rtol=1e-10)
    expected = (LP["resp"] * logpmf).sum() + log_prior + smoothing
    assert obs.elbo_term(SS) == pytest.approx(expected, rel=1e-10)
    assert model.elbo(SS) == pytest.approx(
        LP["log_norm"].sum() + log_prior + smoothing + _alloc_log_prior(model), rel=1e-10
    )


def _alloc_log_prior(model):
    a = model.alloc.prior_conc(model.K)
    if a < 1.0:  # FiniteAlloc EM is maximum likelihood for alpha / K < 1
        return 0.0
    return stats.dirichlet.logpdf(model.alloc.weights, np.full(model.K, a))


@pytest.mark.parametrize("kind", KINDS)
def test_vb_log_prob_matches_expected_log_likelihood(kind):
    model, X, _, _ = make(kind, "vb")
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=5))
    obs = model.obs
    if kind == "bernoulli":
        total = digamma(obs.a + obs.b)
        elogp, elog1mp = digamma(obs.a) - total, digamma(obs.b) - total
        expected = X @ elogp.T + (1 - X) @ elog1mp.T
    else:
        elog = digamma(obs.conc) - digamma(obs.conc.sum(1, keepdims=True))
        coef = gammaln(X.sum(1) + 1) - gammaln(X + 1).sum(1)
        expected = X @ elog.T + coef[:, None]
    np.testing.assert_allclose(obs.log_prob(X), expected, rtol=1e-12)


# ---------------------------------------------------------------------- (c) merges
@pytest.mark.parametrize("allocation", ["finite", "dp"])
@pytest.mark.parametrize("inference", ["vb", "em"])
@pytest.mark.parametrize("kind", KINDS)
def test_merge_from_tracked_stats_is_exact(kind, inference, allocation):
    model, X, _, _ = make(kind, inference, allocation)
    init_from_resp(model, X, random_resp(X.shape[0], 5, seed=6))
    run(model, X, 3)
    j, k = 1, 3
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
        np.testing.assert_allclose(SSm[name], SSd[name], rtol=1e-12, atol=1e-9)
    assert merged.elbo(SSm) == pytest.approx(direct.elbo(SSd), rel=1e-10)


# ---------------------------------------------------------------------- (d) additivity
@pytest.mark.parametrize("kind", KINDS)
def test_batches_sum_to_whole(kind):
    model, X, _, _ = make(kind, "vb")
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=7))
    pairs = [(int(model.uids[0]), int(model.uids[2]))]
    whole = model.local_summarize(X, merge_pairs=pairs)
    rng = np.random.default_rng(8)
    cuts = np.sort(rng.choice(np.arange(1, X.shape[0]), size=6, replace=False))
    cuts = np.concatenate([[0, 1], cuts, [X.shape[0]]])  # includes a one-row batch
    parts = [model.local_summarize(X[a:b], merge_pairs=pairs) for a, b in pairwise(cuts)]
    for total in (SuffStats.sum(parts), sum(parts[1:], parts[0])):
        for name in whole.fields:
            scale = np.abs(whole[name]).max()
            np.testing.assert_allclose(total[name], whole[name], rtol=1e-12, atol=1e-12 * scale)
        for name, v in whole.scalars.items():
            assert total.scalars[name] == pytest.approx(v, rel=1e-12)
        np.testing.assert_allclose(total.merge_Hresp, whole.merge_Hresp, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_stats_are_weighted_sums(kind):
    model, X, _, _ = make(kind, "vb")
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=9))
    resp = model.local_step(X)["resp"]
    stats_ = model.obs.calc_stats(X, resp)
    assert "N" not in stats_ and "Hresp" not in stats_
    if kind == "bernoulli":
        np.testing.assert_allclose(stats_["x1"], resp.T @ X, rtol=1e-12)
    else:
        np.testing.assert_allclose(stats_["counts"], resp.T @ X, rtol=1e-12)
        coef = gammaln(X.sum(1) + 1) - gammaln(X + 1).sum(1)
        np.testing.assert_allclose(stats_["logcoef"], resp.T @ coef, rtol=1e-12)
    # the per-block cache filled by log_prob gives the same statistics
    cache = {}
    model.obs.log_prob(X, cache)
    for name, v in model.obs.calc_stats(X, resp, cache).items():
        np.testing.assert_allclose(v, stats_[name], rtol=1e-14)


# ---------------------------------------------------------------------- (e) input errors
def test_bernoulli_rejects_values_outside_0_1_naming_rows():
    X, _, _ = bernoulli_data()
    obs = BernoulliObs()
    obs.validate(X)  # clean data passes
    bad = X.copy()
    bad[3, 2] = 0.5
    bad[17, 0] = 2.0
    with pytest.raises(ValueError, match=r"bernoulli data must be 0 or 1: X rows \[3, 17\]"):
        obs.validate(bad)
    bad[:30, 1] = -1.0
    with pytest.raises(ValueError, match=r"X_test rows \[0, 1, 2, .*, 9, \.\.\.\] \(30 rows\)"):
        obs.validate(bad, "X_test")


def test_multinomial_rejects_negative_counts_naming_rows():
    X, _, _ = multinomial_data()
    obs = MultinomialObs()
    obs.validate(X)
    obs.validate(X + 0.25)  # fractional counts are allowed
    bad = X.copy()
    bad[5, 1] = -1.0
    bad[9, 3] = -0.5
    with pytest.raises(ValueError, match=r"non-negative counts: X rows \[5, 9\] hold negative"):
        obs.validate(bad)


def test_prior_shape_and_value_errors():
    X, _, _ = bernoulli_data()
    with pytest.raises(ValueError, match=r"lam1 must be a scalar or an array of shape .*\(30,\)"):
        BernoulliObs(lam1=np.ones(3)).set_prior_from_data(X)
    with pytest.raises(ValueError, match="lam0 must be positive"):
        BernoulliObs(lam0=0.0)
    with pytest.raises(ValueError, match="map_prior=True needs lam1 >= 1"):
        BernoulliObs("em", lam1=0.5, map_prior=True)
    obs = BernoulliObs(lam1=np.linspace(1, 2, 30))
    obs.set_prior_from_data(X)
    np.testing.assert_allclose(obs.lam1, np.linspace(1, 2, 30))
    Xm, _, _ = multinomial_data()
    with pytest.raises(ValueError, match=r"lam must be a scalar or an array of shape .*\(25,\)"):
        MultinomialObs(lam=np.ones(4)).set_prior_from_data(Xm)
    with pytest.raises(ValueError, match="map_prior=True needs lam >= 1"):
        MultinomialObs("em", map_prior=True)  # default lam = 0.1
    with pytest.raises(ValueError, match="eps must be"):
        MultinomialObs(eps=0.0)
    with pytest.raises(ValueError, match="inference must be one of"):
        MultinomialObs("gibbs")


# ---------------------------------------------------------------------- (f) general-form ELBO
def _kl_beta(a, b, a2, b2):
    """KL(Beta(a, b) || Beta(a2, b2)) = -H(q) - E_q log q2, entropy from scipy."""
    e_log_p = digamma(a) - digamma(a + b)
    e_log_1mp = digamma(b) - digamma(a + b)
    cross = (a2 - 1) * e_log_p + (b2 - 1) * e_log_1mp - betaln(a2, b2)
    return float((-stats.beta(a, b).entropy() - cross).sum())


def _kl_dirichlet(c, c2):
    total = 0.0
    for row, row2 in zip(c, c2):
        elog = digamma(row) - digamma(row.sum())
        cross = gammaln(row2.sum()) - gammaln(row2).sum() + ((row2 - 1) * elog).sum()
        total += -stats.dirichlet(row).entropy() - cross
    return float(total)


@pytest.mark.parametrize("kind", KINDS)
def test_elbo_term_is_general_form(kind):
    """With q moved only half way (rho=0.5) the observation term is finite, below the full
    update's, and equal to it minus KL(q_half || q_full): the full update is the exact
    maximiser and elbo_term is E_q log p(X, theta) - E_q log q for any q."""
    model, X, _, _ = make(kind, "vb")
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=10))
    run(model, X, 2)
    SS = model.local_summarize(X)
    half, full = model.obs.copy(), model.obs.copy()
    half.update(SS, rho=0.5)
    full.update(SS)
    L_half, L_full = half.elbo_term(SS), full.elbo_term(SS)
    assert np.isfinite(L_half)
    assert L_half < L_full
    if kind == "bernoulli":
        kl = _kl_beta(half.a, half.b, full.a, full.b)
    else:
        kl = _kl_dirichlet(half.conc, full.conc)
    assert kl > 0
    assert L_half == pytest.approx(L_full - kl, rel=1e-10)
    # a K change ignores rho: the result is the plain update
    other = model.obs.copy()
    SS3 = SS.remove(0)
    other.update(SS3, rho=0.5)
    plain = model.obs.copy()
    plain.update(SS3)
    assert other.elbo_term(SS3) == pytest.approx(plain.elbo_term(SS3), rel=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_em_rho_blends_statistics(kind):
    model, X, _, _ = make(kind, "em")
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=11))
    SS1 = model.local_summarize(X)
    model.global_step(SS1)
    SS2 = model.local_summarize(X)
    blended = model.obs.copy()
    blended.update(SS2, rho=0.25)
    mix = SS1.scale(0.75) + SS2.scale(0.25)
    direct = model.obs.copy()
    direct.update(mix)
    np.testing.assert_allclose(
        blended.point_estimates()["probs"], direct.point_estimates()["probs"], rtol=1e-12
    )


# ---------------------------------------------------------------------- (g) float32
@pytest.mark.parametrize("inference", ["vb", "em"])
@pytest.mark.parametrize("kind", KINDS)
def test_float32_input_gives_float64_stats(kind, inference):
    model, X, _, _ = make(kind, inference)
    init_from_resp(model, X, random_resp(X.shape[0], 4, seed=12))
    lp32 = model.obs.log_prob(X.astype(np.float32))
    assert lp32.dtype == np.float64
    np.testing.assert_allclose(lp32, model.obs.log_prob(X), rtol=1e-12)
    SS64 = model.local_summarize(X)
    SS32 = model.local_summarize(X.astype(np.float32))
    for name in SS64.fields:
        assert SS32[name].dtype == np.float64
        np.testing.assert_allclose(SS32[name], SS64[name], rtol=1e-6)
    stats32 = model.obs.calc_stats(X.astype(np.float32), np.ones((X.shape[0], 1), np.float32))
    assert all(v.dtype == np.float64 for v in stats32.values())


# ---------------------------------------------------------------------- empty components, state
@pytest.mark.parametrize(("inference", "map_prior"), [("vb", False), ("em", False), ("em", True)])
@pytest.mark.parametrize("kind", KINDS)
def test_empty_component_gives_no_nan(kind, inference, map_prior):
    kw = {}
    if map_prior:  # lam = 1 makes the MAP denominator of an empty component zero
        kw = {"lam1": 1.0, "lam0": 1.0} if kind == "bernoulli" else {"lam": 1.0}
    model, X, _, _ = make(kind, inference, map_prior=map_prior, **kw)
    resp0 = np.concatenate([random_resp(X.shape[0], 3, seed=13), np.zeros((X.shape[0], 1))], 1)
    init_from_resp(model, X, resp0)
    assert np.all(np.isfinite(model.obs.log_prob(X)))
    SS = model.local_summarize(X)
    assert np.isfinite(model.elbo(SS))
    for v in model.obs.point_estimates().values():
        assert np.all(np.isfinite(v))


@pytest.mark.parametrize("inference", ["vb", "em"])
@pytest.mark.parametrize("kind", KINDS)
def test_state_roundtrip_sample_and_point_params(kind, inference):
    model, X, _, truth = make(kind, inference)
    init_from_resp(model, X, random_resp(X.shape[0], 3, seed=14))
    run(model, X, 3)
    state = model.obs.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    fresh = (BernoulliObs if kind == "bernoulli" else MultinomialObs)(inference)
    fresh.set_state({k: v.copy() for k, v in state.items()})
    np.testing.assert_array_equal(fresh.log_prob(X), model.obs.log_prob(X))
    SS = model.local_summarize(X)
    assert fresh.elbo_term(SS) == model.obs.elbo_term(SS)
    D = X.shape[1]
    assert model.obs.n_free_params() == 3 * (D if kind == "bernoulli" else D - 1)

    rng = np.random.default_rng(15)
    draws = model.obs.sample(1, 4000, rng)
    assert draws.shape == (4000, D)
    model.obs.validate(draws)
    probs = model.obs.point_estimates()["probs"][1]
    if kind == "bernoulli":
        np.testing.assert_allclose(draws.mean(0), probs, atol=0.03)
    else:
        assert draws.sum(1).mean() == pytest.approx(X.sum(1).mean(), rel=0.01)
        np.testing.assert_allclose(draws.sum(0) / draws.sum(), probs, atol=0.005)

    # set_point_params from the planted parameters: a local step then labels as the truth
    model.obs.set_point_params(probs=truth, counts=1e4)
    np.testing.assert_allclose(model.obs.point_estimates()["probs"], truth, atol=1e-3)
    if inference == "em":  # point estimates in, the same point estimates out
        again = model.obs.copy()
        again.set_point_params(model.obs.point_estimates()["means"])
        np.testing.assert_allclose(
            again.point_estimates()["probs"], model.obs.point_estimates()["probs"], rtol=1e-12
        )
