"""GaussObs: EM and VB against scikit-learn, ELBO identities, merges, blending, robustness."""

import warnings
from itertools import pairwise

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma, gammaln, multigammaln
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.model import Model
from mixstream.obs import gauss as gauss_module
from mixstream.obs.gauss import COVARIANCE_TYPES, GaussObs, covariance_shape

SK_TYPES = ("full", "diag", "spherical", "tied")
LOG_2PI = np.log(2 * np.pi)


def blobs(n=3000, d=3, k=3, seed=0, offset=50.0):
    """Anisotropic clusters far from the origin (the shift must keep them accurate)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d)) + offset
    A = rng.normal(size=(k, d, d)) * 0.4 + np.eye(d)
    labels = rng.integers(k, size=n)
    return means[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), A[labels])


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def make_model(ctype, inference="vb", alloc="dp", alpha=1.0, **kw):
    obs = GaussObs(ctype, inference=inference, **kw)
    cls = DPAlloc if alloc == "dp" else FiniteAlloc
    return Model(cls(alpha=alpha, inference=inference), obs)


def init_from_resp(model, X, resp):
    """Prior from X, then one global step from the given responsibilities."""
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(resp.shape[1])
    SS = model.summarize(X, {"resp": resp, "log_norm": np.zeros(len(X))})
    model.global_step(SS)
    return SS


def run(model, X, n_iter):
    """n local + global steps; the objective after each."""
    out = []
    for _ in range(n_iter):
        SS = model.local_summarize(X)
        model.global_step(SS)
        out.append(model.elbo(SS))
    return out


def assert_monotone(values, slack=1e-9):
    for a, b in pairwise(values):
        assert b >= a - slack * abs(a), (a, b, b - a)


# ---------------------------------------------------------------------- 1. EM vs scikit-learn
def _sk_precisions(ctype, K, D, rng):
    A = rng.normal(size=(K, D, D)) * 0.3 + np.eye(D)
    full = np.einsum("kij,klj->kil", A, A) * 0.5
    return {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(axis=1),
    }[ctype]


@pytest.mark.parametrize("ctype", SK_TYPES)
def test_em_matches_sklearn_gaussian_mixture(ctype):
    X = blobs()
    N, D, K, n_iter = X.shape[0], X.shape[1], 3, 20
    rng = np.random.default_rng(1)
    weights = np.array([0.2, 0.3, 0.5])
    means = X[rng.choice(N, K, replace=False)]
    precisions = _sk_precisions(ctype, K, D, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(
            K,
            covariance_type=ctype,
            tol=0.0,
            max_iter=n_iter,
            reg_covar=1e-4,
            weights_init=weights,
            means_init=means,
            precisions_init=precisions,
        ).fit(X)
    # sklearn: e-step with the given parameters, m-step, ... n_iter m-steps, then a final e-step
    # that does not change the parameters; we do the same n_iter local + global steps.
    model = make_model(ctype, "em", alloc="finite", alpha=1.0, reg_covar=1e-4)
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(K)
    model.alloc.set_weights(weights)
    model.obs.set_point_params(means, precisions=precisions)
    run(model, X, n_iter)
    pe = model.obs.point_estimates()
    assert rel_err(model.alloc.expected_weights(), gm.weights_) < 1e-8
    assert rel_err(pe["means"], gm.means_) < 1e-8
    assert rel_err(pe["covariances"], gm.covariances_) < 1e-8
    assert rel_err(pe["precisions"], gm.precisions_) < 1e-8
    assert rel_err(pe["precisions_cholesky"], gm.precisions_cholesky_) < 1e-8
    SS = model.local_summarize(X)
    assert abs(SS.scalars["log_norm"] / N - gm.score(X)) < 1e-8 * abs(gm.score(X))
    # the EM objective right after a local step is the log-likelihood itself
    assert model.elbo(SS) == pytest.approx(SS.scalars["log_norm"], rel=1e-10)


# ---------------------------------------------------------------------- 2. VB vs scikit-learn
class _BGMFromResp(BayesianGaussianMixture):
    """BayesianGaussianMixture started from given responsibilities."""

    resp0 = None

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.resp0)


def _explicit_priors(X, ctype):
    D = X.shape[1]
    cov = np.cov(X.T)
    return {
        "mean_prior": X.mean(axis=0) + 0.5,
        "mean_precision_prior": 0.5,
        "degrees_of_freedom_prior": D + 1.5,
        "covariance_prior": {
            "full": 0.7 * cov,
            "tied": 0.7 * cov,
            "diag": 0.7 * np.diag(cov),
            "spherical": 0.7 * np.diag(cov).mean(),
        }[ctype],
    }


@pytest.mark.parametrize(("ctype", "K"), [("full", 4), ("tied", 1)])
def test_vb_matches_sklearn_bayesian_mixture(ctype, K):
    """full: the same model and family; tied coincides with ours at K = 1. (diag and spherical
    differ by design: their precisions are Gammas, see test_diag_vb_is_independent_1d_models.)"""
    X = blobs(n=2000, seed=3)
    N, n_iter, gamma = X.shape[0], 15, 2.0
    resp0 = np.random.default_rng(2).dirichlet(np.ones(K), size=N)
    priors = _explicit_priors(X, ctype)
    bgm = _BGMFromResp(
        n_components=K,
        covariance_type=ctype,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=gamma,
        tol=0.0,
        max_iter=n_iter,
        reg_covar=1e-5,
        **priors,
    )
    bgm.resp0 = resp0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgm.fit(X)
    model = make_model(ctype, "vb", alloc="dp", alpha=gamma, reg_covar=1e-5, **priors)
    init_from_resp(model, X, resp0)
    elbos = run(model, X, n_iter)
    assert_monotone(elbos)
    w = model.alloc.expected_weights()
    pe = model.obs.point_estimates()
    assert rel_err(w / w.sum(), bgm.weights_) < 1e-6  # sklearn renormalises the DP weights
    assert rel_err(model.alloc.eta1, bgm.weight_concentration_[0]) < 1e-6
    assert rel_err(pe["means"], bgm.means_) < 1e-6
    assert rel_err(pe["covariances"], bgm.covariances_) < 1e-6
    assert rel_err(pe["precisions_cholesky"], bgm.precisions_cholesky_) < 1e-6
    assert rel_err(pe["mean_precision"], bgm.mean_precision_) < 1e-6
    assert rel_err(pe["degrees_of_freedom"], bgm.degrees_of_freedom_) < 1e-6


def test_diag_vb_is_independent_1d_models():
    """diag VB is D independent one-feature Normal-Gamma models sharing the responsibilities:
    its posterior, expected log-likelihood and ELBO term are the sums of those of D "full"
    models on one column each (a one-feature Wishart is a Gamma). scikit-learn's diag VB uses
    the D-dimensional Wishart's E log|Lambda| instead, which needs nu0 > D - 1 and is not the
    expectation under its own posterior."""
    X = blobs(n=800, d=4, seed=6)
    N, D, K = X.shape[0], X.shape[1], 3
    resp = np.random.default_rng(7).dirichlet(np.ones(K), size=N)
    priors = _explicit_priors(X, "diag")
    priors["degrees_of_freedom_prior"] = 1.5  # allowed for diag: any nu0 > 0
    diag = make_model("diag", "vb", **priors)
    SS = init_from_resp(diag, X, resp)
    logp = diag.obs.log_prob(X)
    term = diag.obs.elbo_term(SS)
    parts_logp, parts_term = 0.0, 0.0
    for d in range(D):
        one = make_model(
            "full",
            "vb",
            mean_prior=priors["mean_prior"][d : d + 1],
            mean_precision_prior=priors["mean_precision_prior"],
            degrees_of_freedom_prior=1.5,
            covariance_prior=priors["covariance_prior"][d : d + 1, None],
        )
        SS_d = init_from_resp(one, X[:, d : d + 1], resp)
        np.testing.assert_allclose(one.obs.psi[:, 0, 0], diag.obs.psi[:, d], rtol=1e-12)
        np.testing.assert_allclose(one.obs.nu, diag.obs.nu, rtol=1e-12)
        parts_logp = parts_logp + one.obs.log_prob(X[:, d : d + 1])
        parts_term += one.obs.elbo_term(SS_d)
    # log_prob carries the -D/2 log(2 pi) constant once per feature in both
    np.testing.assert_allclose(logp, parts_logp, rtol=1e-10)
    assert term == pytest.approx(parts_term, rel=1e-10)
    assert_monotone(run(diag, X, 15))


def test_spherical_vb_precision_is_one_gamma():
    """spherical VB: one Gamma precision per component, shape D nu / 2 and rate D psi / 2, so
    E log|Lambda| = D (digamma(D nu / 2) - log(D psi / 2)) and the bound rises monotonically."""
    X = blobs(n=800, d=4, seed=8)
    K = 3
    resp = np.random.default_rng(9).dirichlet(np.ones(K), size=X.shape[0])
    priors = _explicit_priors(X, "spherical")
    priors["degrees_of_freedom_prior"] = 0.5
    model = make_model("spherical", "vb", **priors)
    init_from_resp(model, X, resp)
    obs, D = model.obs, X.shape[1]
    psi = np.asarray(obs.psi).reshape(K)
    want = D * (digamma(0.5 * D * obs.nu) - np.log(0.5 * D * psi))
    got = obs._expected_logdet(obs.nu, D * np.log(psi))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert_monotone(run(model, X, 15))


def test_tied_vb_is_the_exact_tied_posterior_and_ignores_empty_components():
    """Ours differs from sklearn's tied VB by design: one Wishart with nu = nu0 + N (sklearn:
    nu0 + N / K), so an empty component (a DP truncation level) changes nothing."""
    X = blobs(n=1500, seed=4)
    N, K = X.shape[0], 3
    resp = np.random.default_rng(5).dirichlet(np.ones(K), size=N)
    a = make_model("tied_full", "vb")
    init_from_resp(a, X, resp)
    assert a.obs.nu.shape == (1,)
    assert a.obs.nu[0] == pytest.approx(a.obs.degrees_of_freedom_prior_ + N)
    b = make_model("tied_full", "vb")
    init_from_resp(b, X, np.hstack([resp, np.zeros((N, 1))]))
    np.testing.assert_allclose(b.obs.psi, a.obs.psi, rtol=1e-12)
    np.testing.assert_allclose(b.obs.nu, a.obs.nu, rtol=1e-12)
    np.testing.assert_allclose(b.obs.m[:K], a.obs.m, rtol=1e-12)
    # and it is a valid VB: the bound rises monotonically under the same loop
    assert_monotone(run(a, X, 20))


# ---------------------------------------------------------------------- 3. monotone objectives
@pytest.mark.parametrize("alloc", ["finite", "dp"])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_vb_elbo_never_decreases(ctype, alloc):
    X = blobs(n=1500, d=3, k=4, seed=6)
    resp = np.random.default_rng(7).dirichlet(np.ones(6), size=X.shape[0])
    model = make_model(ctype, "vb", alloc=alloc, alpha=1.5)
    init_from_resp(model, X, resp)
    elbos = run(model, X, 25)
    assert np.all(np.isfinite(elbos))
    assert_monotone(elbos)


@pytest.mark.parametrize("map_prior", [False, True])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_em_objective_never_decreases(ctype, map_prior):
    X = blobs(n=1500, d=3, k=4, seed=8)
    resp = np.random.default_rng(9).dirichlet(np.ones(5), size=X.shape[0])
    model = make_model(ctype, "em", alloc="finite", alpha=1.0, map_prior=map_prior)
    init_from_resp(model, X, resp)
    objs = run(model, X, 25)
    assert np.all(np.isfinite(objs))
    assert_monotone(objs)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_map_estimate_is_a_maximum_of_the_map_objective(ctype):
    X = blobs(n=400, seed=10)
    resp = np.random.default_rng(11).dirichlet(np.ones(3), size=X.shape[0])
    model = make_model(ctype, "em", map_prior=True, reg_covar=0.0)
    SS = init_from_resp(model, X, resp)
    best = model.obs.elbo_term(SS)
    state = model.obs.get_state()
    for field, factor in [("cov", 1.01), ("cov", 0.99), ("m", 1.001)]:
        moved = dict(state, **{field: state[field] * factor + (field == "m") * 1e-3})
        model.obs.set_state(moved)
        assert model.obs.elbo_term(SS) < best
    model.obs.set_state(state)
    assert model.obs.elbo_term(SS) == best


# ---------------------------------------------------------------------- 4. the general-form ELBO
def _log_z(kappa, nu, psi, D, structure):
    """log normaliser of the Normal-Wishart (full) or Normal-Gamma kernels: diag has one
    Gamma(nu / 2, rate psi_d / 2) per feature (a one-feature Wishart), spherical one
    Gamma(D nu / 2, rate D psi / 2); kappa (K,), nu (G,), psi in the model's layout."""
    psi = np.asarray(psi, np.float64)
    if structure == "full":
        logdet = np.linalg.slogdet(psi)[1]
        prec = 0.5 * nu * D * np.log(2) + multigammaln(0.5 * nu, D) - 0.5 * nu * logdet
    elif structure == "diag":
        log_psi = np.log(psi).reshape(len(nu), D).sum(axis=1)
        prec = 0.5 * nu * D * np.log(2) + D * gammaln(0.5 * nu) - 0.5 * nu * log_psi
    else:
        a = 0.5 * D * nu
        prec = gammaln(a) - a * np.log(0.5 * D * psi.reshape(len(nu)))
    return float(np.sum(prec) + np.sum(0.5 * D * (LOG_2PI - np.log(kappa))))


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_elbo_at_optimum_equals_log_evidence_closed_form(ctype):
    """At q = the update of SS, the bound is log Z(post) - log Z(prior) - N D / 2 log(2 pi),
    the exact log evidence of the conjugate model (Normal-Wishart or Normal-Gamma)."""
    X = blobs(n=500, seed=12)
    N, D, K = X.shape[0], X.shape[1], 3
    resp = np.random.default_rng(13).dirichlet(np.ones(K), size=N)
    model = make_model(ctype, "vb", reg_covar=0.0)
    SS = init_from_resp(model, X, resp)
    obs = model.obs
    k0, nu0, psi0 = obs.mean_precision_prior_, obs.degrees_of_freedom_prior_, obs.covariance_prior_
    G = 1 if obs.tied else K

    post = _log_z(obs.kappa, obs.nu, obs.psi, D, obs.structure)
    psi0_g = np.broadcast_to(psi0, (G, *np.shape(psi0)))
    prior = _log_z(np.full(K, k0), np.full(G, nu0), psi0_g, D, obs.structure)
    expect = post - prior - 0.5 * N * D * LOG_2PI
    assert obs.elbo_term(SS) == pytest.approx(expect, rel=1e-10)


class _DiagGamma:
    """Independent precisions lambda_d ~ Gamma(nu / 2, rate psi_d / 2), as diagonal matrices."""

    def __init__(self, nu, psi):
        self.parts = [stats.gamma(a=0.5 * nu, scale=2.0 / p) for p in np.asarray(psi)]

    def rvs(self, size, random_state):
        lam = np.stack([g.rvs(size=size, random_state=random_state) for g in self.parts], 1)
        return np.einsum("sd,de->sde", lam, np.eye(len(self.parts)))

    def logpdf(self, lam):
        return sum(g.logpdf(lam[d, d]) for d, g in enumerate(self.parts))


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_elbo_general_form_matches_monte_carlo_for_a_mismatched_q(ctype):
    """After a rho = 0.5 step q is not the update of SS; the bound from statistics must still be
    E_q log p(X | theta) + E_q log p(theta) - E_q log q(theta), here by Monte Carlo on the data."""
    X = blobs(n=40, d=2, k=2, seed=14, offset=3.0)
    N, K = X.shape[0], 2
    rng = np.random.default_rng(15)
    model = make_model(ctype, "vb", reg_covar=0.0)
    init_from_resp(model, X, rng.dirichlet(np.ones(K), size=N))
    resp = rng.dirichlet(np.ones(K), size=N)
    SS = model.summarize(X, {"resp": resp, "log_norm": np.zeros(N)})
    model.obs.update(SS, rho=0.5)
    obs = model.obs
    value = obs.elbo_term(SS)
    m0 = obs.mean_prior_
    psi0 = obs.covariance_prior_ if ctype == "full" else np.diag(obs.covariance_prior_)
    k0, nu0 = obs.mean_precision_prior_, obs.degrees_of_freedom_prior_
    S = 4000
    draws = np.zeros(S)
    for k in range(K):
        m = obs.m[k] + obs.shift
        if ctype == "full":
            q_lam = stats.wishart(df=obs.nu[k], scale=np.linalg.inv(obs.psi[k]))
            p_lam = stats.wishart(df=nu0, scale=np.linalg.inv(psi0))
        else:
            q_lam = _DiagGamma(obs.nu[k], obs.psi[k])
            p_lam = _DiagGamma(nu0, np.diag(psi0))
        lams = q_lam.rvs(size=S, random_state=rng)
        for s in range(S):
            cov = np.linalg.inv(lams[s])
            mu = rng.multivariate_normal(m, cov / obs.kappa[k])
            loglik = resp[:, k] @ stats.multivariate_normal(mu, cov).logpdf(X)
            log_p = p_lam.logpdf(lams[s]) + stats.multivariate_normal(m0, cov / k0).logpdf(mu)
            log_q = q_lam.logpdf(lams[s]) + stats.multivariate_normal(m, cov / obs.kappa[k]).logpdf(
                mu
            )
            draws[s] += loglik + log_p - log_q
    se = draws.std() / np.sqrt(S)
    assert abs(draws.mean() - value) < 4 * se + 1e-9, (draws.mean(), value, se)


# ---------------------------------------------------------------------- 5. merges are exact
@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied_full"])
def test_merge_from_statistics_equals_summarizing_merged_responsibilities(ctype):
    X = blobs(n=1200, seed=16)
    N, K = X.shape[0], 4
    model = make_model(ctype, "vb", alpha=2.0)
    init_from_resp(model, X, np.random.default_rng(17).dirichlet(np.ones(K), size=N))
    run(model, X, 3)
    j, k = 1, 3
    uj, uk = model.uids[j], model.uids[k]
    LP = model.local_step(X)
    SS = model.summarize(X, LP, merge_pairs=[(uj, uk)])
    model2 = model.copy()
    SSm = SS.merge_pair(j, k)
    model2.global_step(SSm)
    merged_elbo = model2.elbo(SSm)
    resp = LP["resp"].copy()
    resp[:, j] += resp[:, k]
    resp = np.delete(resp, k, axis=1)
    SS2 = model2.summarize(X, {"resp": resp, "log_norm": LP["log_norm"]})
    assert merged_elbo == pytest.approx(model2.elbo(SS2), rel=1e-10)


# ---------------------------------------------------------------------- 6. robustness
def _check_finite_fit(model, X):
    LP = model.local_step(X)
    assert np.all(np.isfinite(LP["resp"]))
    np.testing.assert_allclose(LP["resp"].sum(axis=1), 1.0, rtol=1e-12)
    for name, value in model.obs.point_estimates().items():
        assert np.all(np.isfinite(value)), name
    assert np.isfinite(model.elbo(model.summarize(X, LP)))


@pytest.mark.parametrize("inference", ["em", "vb"])
@pytest.mark.parametrize("ctype", ["full", "diag", "spherical", "tied_full"])
def test_far_outliers(ctype, inference):
    rng = np.random.default_rng(18)
    X = rng.normal(size=(1000, 3))
    X[:3] = 1e6 * np.array([[1, -1, 1], [-1, 1, 1], [1, 1, -1]])
    model = make_model(ctype, inference, alloc="finite", alpha=1.0)
    init_from_resp(model, X, rng.dirichlet(np.ones(4), size=len(X)))
    objs = run(model, X, 8)
    assert np.all(np.isfinite(objs))
    _check_finite_fit(model, X)


@pytest.mark.parametrize("inference", ["em", "vb"])
def test_high_dimension_many_components(inference):
    rng = np.random.default_rng(19)
    X = rng.normal(size=(1000, 100)) + 10 * rng.normal(size=(10, 100))[rng.integers(10, size=1000)]
    model = make_model("full", inference, alloc="dp", alpha=1.0)
    init_from_resp(model, X, rng.dirichlet(np.ones(200), size=len(X)))
    run(model, X, 2)
    _check_finite_fit(model, X)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_float32_statistics_are_float64_and_exact(ctype):
    X32 = blobs(n=800, seed=20).astype(np.float32)
    resp = np.random.default_rng(21).dirichlet(np.ones(3), size=len(X32))
    a, b = make_model(ctype, "vb"), make_model(ctype, "vb")
    init_from_resp(a, X32, resp)
    init_from_resp(b, X32.astype(np.float64), resp)
    sa, sb = a.local_summarize(X32), b.local_summarize(X32.astype(np.float64))
    for name in ("x", "xx"):
        assert sa[name].dtype == np.float64
        np.testing.assert_allclose(sa[name], sb[name], rtol=1e-12, atol=1e-9)
    lp = a.obs.log_prob(X32)
    assert lp.dtype == np.float64
    np.testing.assert_allclose(lp, b.obs.log_prob(X32.astype(np.float64)), rtol=1e-12)


@pytest.mark.parametrize("inference", ["em", "vb"])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_emptied_component_stays_finite(ctype, inference):
    X = blobs(n=600, seed=22)
    rng = np.random.default_rng(23)
    model = make_model(ctype, inference, alloc="finite", alpha=1.0)
    resp = np.zeros((len(X), 3))
    resp[:, :2] = rng.dirichlet(np.ones(2), size=len(X))  # the third component has no mass
    init_from_resp(model, X, resp)
    assert model.obs.point_estimates()["means"].shape == (3, 3)
    objs = run(model, X, 5)
    assert np.all(np.isfinite(objs))
    _check_finite_fit(model, X)
    if inference == "em" and not model.obs.tied:  # it keeps its (prior) covariance
        cov = model.obs.point_estimates()["covariances"][2]
        prior = model.obs.covariance_prior_ + 1e-6 * model.obs._eye()
        np.testing.assert_allclose(cov, prior, rtol=1e-12)


def test_cancellation_in_a_far_tight_component_is_repaired():
    """Three points 1e-3 apart, 1e6 from the rest: the uncentred scatter loses its digits to
    rounding and may come out indefinite; the covariance is repaired, never NaN."""
    rng = np.random.default_rng(37)
    X = rng.normal(size=(500, 3))
    X[0] = [1e6, -1e6, 3e5]
    X[1] = X[0] + [1e-3, 3e-3, -2e-3]
    X[2] = X[0] + [-1e-3, 1e-3, 1e-3]
    resp = np.zeros((500, 2))
    resp[:3, 1] = 1.0
    resp[3:, 0] = 1.0
    for inference in ("em", "vb"):
        model = make_model("full", inference, alloc="finite")
        init_from_resp(model, X, resp)
        cov = model.obs.point_estimates()["covariances"]
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        _check_finite_fit(model, X)


# ---------------------------------------------------------------------- 7. rho blending
@pytest.mark.parametrize("inference", ["vb", "em"])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_rho_blending(ctype, inference):
    X = blobs(n=600, seed=24)
    N, K = X.shape[0], 3
    rng = np.random.default_rng(25)
    model = make_model(ctype, inference, alloc="finite", alpha=1.0)
    # blended (soVB) steps keep the prior fixed; so must the full step they are checked against
    model.obs.empirical_prior = False
    init_from_resp(model, X, rng.dirichlet(np.ones(K), size=N))
    SS = model.summarize(X, {"resp": rng.dirichlet(np.ones(K), size=N), "log_norm": np.zeros(N)})
    start = model.obs.get_state()

    def params(obs):
        if inference == "em":
            return np.concatenate([obs.m.ravel(), np.ravel(obs.cov)])
        h3 = obs.psi + obs._gsum(obs._col(obs.kappa) * obs._outer(obs.m, obs.m))
        return np.concatenate([obs.kappa, (obs.kappa[:, None] * obs.m).ravel(), h3.ravel(), obs.nu])

    plain = model.obs.copy()
    plain.update(SS)
    one = model.obs.copy()
    one.update(SS, rho=1.0)
    np.testing.assert_allclose(params(one), params(plain), rtol=1e-12)

    half = model.obs.copy()
    gaps = [np.abs(params(half) - params(plain)).max()]
    for _ in range(2):
        half.update(SS, rho=0.5)
        gaps.append(np.abs(params(half) - params(plain)).max())
    assert gaps[2] < gaps[1] < gaps[0]
    if inference == "vb":  # natural parameters move exactly rho of the way
        target = 0.75 * params(plain) + 0.25 * params(model.obs)
        np.testing.assert_allclose(params(half), target, rtol=1e-9)
    else:  # stepwise EM blends the statistics
        blended = {k: 0.75 * v for k, v in plain._stats.items()}
        for k, v in model.obs._stats.items():
            blended[k] = blended[k] + 0.25 * v
        for k, v in blended.items():
            np.testing.assert_allclose(half._stats[k], v, rtol=1e-12)
    # a K change ignores rho
    model.obs.set_state(start)
    SS2 = SS.remove(2)
    model.obs.update(SS2, rho=0.5)
    fresh = half.copy()
    fresh.update(SS2)
    np.testing.assert_allclose(params(model.obs), params(fresh), rtol=1e-12)


# ---------------------------------------------------------------------- the local step itself
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_em_log_prob_matches_scipy(ctype):
    X = blobs(n=300, seed=26)
    model = make_model(ctype, "em")
    init_from_resp(model, X, np.random.default_rng(27).dirichlet(np.ones(3), size=len(X)))
    pe = model.obs.point_estimates()
    lp = model.obs.log_prob(X)
    D = X.shape[1]
    for k in range(3):
        cov = pe["covariances"] if model.obs.tied else pe["covariances"][k]
        cov = {"full": cov, "diag": np.diag(cov) if cov.ndim == 1 else cov}.get(
            model.obs.structure, cov * np.eye(D)
        )
        expect = stats.multivariate_normal(pe["means"][k], cov).logpdf(X)
        np.testing.assert_allclose(lp[:, k], expect, rtol=1e-10)


def test_vb_log_prob_is_the_expected_log_density():
    X = blobs(n=300, seed=28)
    model = make_model("full", "vb")
    init_from_resp(model, X, np.random.default_rng(29).dirichlet(np.ones(3), size=len(X)))
    obs = model.obs
    D = X.shape[1]
    lp = obs.log_prob(X)
    for k in range(3):
        W = np.linalg.inv(obs.psi[k])
        diff = X - obs.shift - obs.m[k]
        elogdet = sum(digamma((obs.nu[k] - d) / 2) for d in range(D))
        elogdet += D * np.log(2) - np.linalg.slogdet(obs.psi[k])[1]
        expect = 0.5 * elogdet - 0.5 * D * LOG_2PI - 0.5 * D / obs.kappa[k]
        expect = expect - 0.5 * obs.nu[k] * np.einsum("nd,de,ne->n", diff, W, diff)
        np.testing.assert_allclose(lp[:, k], expect, rtol=1e-10)


@pytest.mark.parametrize("ctype", ["full", "spherical", "tied_full"])
def test_sub_blocks_and_uncached_statistics_agree(ctype, monkeypatch):
    X = blobs(n=700, seed=30)
    model = make_model(ctype, "vb")
    init_from_resp(model, X, np.random.default_rng(31).dirichlet(np.ones(3), size=len(X)))
    cache = {}
    lp = model.obs.log_prob(X, cache)
    resp = np.exp(lp - lp.max(axis=1, keepdims=True))
    cached = model.obs.calc_stats(X, resp, cache)
    monkeypatch.setattr(gauss_module, "_FEATURE_BUDGET", 1000)
    np.testing.assert_allclose(model.obs.log_prob(X), lp, rtol=1e-13)
    fresh = model.obs.calc_stats(X, resp, None)
    for name in cached:
        np.testing.assert_allclose(fresh[name], cached[name], rtol=1e-12)


# ---------------------------------------------------------------------- parameters and errors
@pytest.mark.parametrize("inference", ["em", "vb"])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_point_estimates_shapes_state_roundtrip_and_sampling(ctype, inference, tmp_path):
    X = blobs(n=900, d=3, k=3, seed=32)
    K, D = 3, 3
    model = make_model(ctype, inference)
    init_from_resp(model, X, np.random.default_rng(33).dirichlet(np.ones(K), size=len(X)))
    run(model, X, 3)
    pe = model.obs.point_estimates()
    shape = {
        "full": (K, D, D),
        "diag": (K, D),
        "spherical": (K,),
        "tied_full": (D, D),
        "tied_diag": (D,),
        "tied_spherical": (),
    }[ctype]
    assert pe["means"].shape == (K, D)
    assert covariance_shape(ctype, K, D) == shape  # the table the estimator and report use
    for name in ("covariances", "precisions", "precisions_cholesky"):
        assert pe[name].shape == shape, name
    if ctype in ("full", "tied_full"):
        P = pe["precisions"].reshape(-1, D, D)
        U = pe["precisions_cholesky"].reshape(-1, D, D)
        C = pe["covariances"].reshape(-1, D, D)
        np.testing.assert_allclose(U @ U.transpose(0, 2, 1), P, rtol=1e-10)
        np.testing.assert_allclose(P @ C, np.broadcast_to(np.eye(D), P.shape), atol=1e-10)
        assert np.allclose(np.tril(U, -1), 0.0)
    else:
        np.testing.assert_allclose(pe["precisions"] * pe["covariances"], 1.0, rtol=1e-12)
    # state: plain arrays that survive np.savez / np.load without pickle
    path = tmp_path / "state.npz"
    np.savez(path, **model.obs.get_state())
    with np.load(path, allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    other = GaussObs(inference=inference)
    other.set_state(state)
    assert other.covariance_type == ctype
    np.testing.assert_allclose(other.log_prob(X), model.obs.log_prob(X), rtol=1e-14)
    SS = model.local_summarize(X)
    assert other.elbo_term(SS) == pytest.approx(model.obs.elbo_term(SS), rel=1e-14)
    # samples from component 0 have its mean and covariance
    draws = model.obs.sample(0, 20000, np.random.default_rng(34))
    assert draws.shape == (20000, D)
    cov = pe["covariances"] if model.obs.tied else pe["covariances"][0]
    cov = np.asarray(cov)
    full_cov = cov if cov.ndim == 2 else (np.diag(cov) if cov.ndim == 1 else cov * np.eye(D))
    sd = np.sqrt(np.diag(full_cov))
    assert np.all(np.abs(draws.mean(axis=0) - pe["means"][0]) < 5 * sd / np.sqrt(20000))
    np.testing.assert_allclose(np.cov(draws.T), full_cov, atol=0.05 * sd.max() ** 2)


@pytest.mark.parametrize("ctype", SK_TYPES)
def test_default_priors_are_weak_and_scale_aware_and_weights_count_as_repeated_rows(ctype):
    """Defaults: scikit-learn's mean prior and kappa0, nu0 = D + 2 (full types) or 2, and
    Psi0 = nu0 * PRIOR_SCALE * scikit-learn's covariance prior (the empirical covariance), so
    the prior's point covariance Psi0 / nu0 is PRIOR_SCALE times the data's in every unit."""
    X = blobs(n=200, seed=38)
    bgm = BayesianGaussianMixture(n_components=2, covariance_type=ctype)
    bgm._check_parameters(X)
    obs = GaussObs(ctype)
    obs.set_prior_from_data(X)
    D = X.shape[1]
    nu0 = D + 2.0 if ctype in ("full", "tied") else 2.0
    np.testing.assert_allclose(obs.mean_prior_, bgm.mean_prior_, rtol=1e-12)
    assert obs.degrees_of_freedom_prior_ == nu0
    want = nu0 * gauss_module.PRIOR_SCALE * np.asarray(bgm.covariance_prior_)
    np.testing.assert_allclose(obs.covariance_prior_, want, rtol=1e-12)
    assert obs.mean_precision_prior_ == bgm.mean_precision_prior_
    scaled = GaussObs(ctype)
    scaled.set_prior_from_data(X * 10.0)
    np.testing.assert_allclose(scaled.covariance_prior_, 100.0 * want, rtol=1e-12)
    counts = np.random.default_rng(39).integers(0, 4, size=len(X))
    weighted, repeated = GaussObs(ctype), GaussObs(ctype)
    weighted.set_prior_from_data(X, weights=counts)
    repeated.set_prior_from_data(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(weighted.mean_prior_, repeated.mean_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.covariance_prior_, repeated.covariance_prior_, rtol=1e-12)
    with pytest.raises(ValueError, match="weights must be"):
        GaussObs(ctype).set_prior_from_data(X, weights=-np.ones(len(X)))


@pytest.mark.parametrize("inference", ["em", "vb"])
@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_set_point_params_round_trips_through_point_estimates(ctype, inference):
    X = blobs(n=300, seed=40)
    obs = GaussObs(ctype, inference=inference)
    obs.set_prior_from_data(X)
    K, D = 3, X.shape[1]
    rng = np.random.default_rng(41)
    A = rng.normal(size=(K, D, D)) * 0.3 + np.eye(D)
    full = np.einsum("kij,klj->kil", A, A)
    given = {
        "full": full,
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.array([1.0, 2.0, 3.0]),
        "tied_full": full[0],
        "tied_diag": np.diagonal(full[0]).copy(),
        "tied_spherical": np.array(2.5),
    }[ctype]
    means = rng.normal(size=(K, D)) + 50
    obs.set_point_params(means, covariances=given)
    pe = obs.point_estimates()
    np.testing.assert_allclose(pe["means"], means, rtol=1e-13)
    np.testing.assert_allclose(pe["covariances"], given, rtol=1e-12)
    obs.set_point_params(means, precisions=pe["precisions"])
    np.testing.assert_allclose(obs.point_estimates()["covariances"], given, rtol=1e-10)


@pytest.mark.parametrize("ctype", SK_TYPES)
def test_n_free_params_match_sklearn(ctype):
    X = blobs(n=300, seed=35)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(4, covariance_type=ctype, max_iter=1).fit(X)
    model = make_model(ctype, "em")
    init_from_resp(model, X, np.random.default_rng(36).dirichlet(np.ones(4), size=len(X)))
    assert model.obs.n_free_params() == gm._n_parameters() - 3
    assert model.obs.covariance_type == ("tied_full" if ctype == "tied" else ctype)


def test_extra_tied_types_count_parameters():
    for ctype, per in [("tied_diag", 3), ("tied_spherical", 1)]:
        model = make_model(ctype, "em")
        X = blobs(n=200)
        init_from_resp(model, X, np.random.default_rng(0).dirichlet(np.ones(4), size=len(X)))
        assert model.obs.n_free_params() == 4 * 3 + per


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(
        ValueError, match=r"covariance_type must be one of .*'tied_spherical', 'tied'"
    ):
        GaussObs("banded")
    with pytest.raises(ValueError, match="reg_covar"):
        GaussObs(reg_covar=-1.0)
    X = blobs(n=100)
    bad_priors = [
        ({"mean_prior": np.zeros(2)}, "mean_prior"),
        ({"mean_precision_prior": 0.0}, "mean_precision_prior"),
        ({"degrees_of_freedom_prior": 1.5}, "greater than n_features - 1 = 2"),
        ({"covariance_prior": np.eye(2)}, r"full covariance_prior must have shape \(3, 3\)"),
        ({"covariance_prior": -np.eye(3)}, "symmetric positive definite"),
    ]
    for kwargs, message in bad_priors:
        with pytest.raises(ValueError, match=message):
            GaussObs("full", **kwargs).set_prior_from_data(X)
    with pytest.raises(ValueError, match=r"diag covariance_prior must have shape \(3,\)"):
        GaussObs("diag", covariance_prior=np.eye(3)).set_prior_from_data(X)
    with pytest.raises(ValueError, match="must be positive"):
        GaussObs("spherical", covariance_prior=0.0).set_prior_from_data(X)
    obs = GaussObs("diag", inference="em")
    obs.set_prior_from_data(X)
    with pytest.raises(ValueError, match=r"diag covariances must have shape \(2, 3\)"):
        obs.set_point_params(np.zeros((2, 3)), covariances=np.ones((3, 3)))
    with pytest.raises(ValueError, match="not both"):
        obs.set_point_params(
            np.zeros((2, 3)), covariances=np.ones((2, 3)), precisions=np.ones((2, 3))
        )
    with pytest.raises(ValueError, match="2-D"):
        obs.validate(np.zeros(3), "batch 7")
    with pytest.raises(ValueError, match="batch 7 has 4 features"):
        obs.validate(np.zeros((2, 4)), "batch 7")
    with pytest.raises(ValueError, match="real numbers"):
        obs.validate(np.zeros((2, 3), complex), "X")
