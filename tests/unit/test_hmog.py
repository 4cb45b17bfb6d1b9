"""The hierarchical mixture of Gaussians (likelihood="hmog"): oracles, monotonicity, verbs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA, FactorAnalysis

from mixstream import MixtureModel

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

P, D = 8, 2


def _low_rank(n: int, seed: int, k: int = 1, sep: float = 0.0) -> np.ndarray:
    """n rows in R^8 from 2-D latent factors (k clusters ``sep`` apart) and diagonal noise."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(P, D))
    centres = sep * rng.normal(size=(k, D))
    Y = rng.normal(size=(n, D)) * (0.3 if k > 1 else 1.0) + centres[rng.integers(k, size=n)]
    return Y @ W.T + rng.normal(size=(n, P)) * rng.uniform(0.3, 1.5, P) + 2.0


def _hmog(K: int, ctype: str = "diag", **kw) -> MixtureModel:
    base = dict(likelihood="hmog", latent_dim=D, covariance_type=ctype, random_state=0)
    return MixtureModel(K, **{**base, **kw})


def test_k1_diag_noise_equals_factor_analysis():
    X = _low_rank(1500, 1)
    ours = _hmog(1, algorithm="em", allocation="finite", max_laps=500, tol=1e-10).fit(X)
    fa = FactorAnalysis(D, tol=1e-12, max_iter=10_000).fit(X)
    assert abs(ours.score(X) - fa.score(X)) < 1e-4


def test_k1_spherical_noise_equals_probabilistic_pca():
    X = _low_rank(1500, 2)
    ours = _hmog(1, "spherical", algorithm="em", allocation="finite", max_laps=500, tol=1e-11)
    ours.fit(X)
    assert abs(ours.score(X) - PCA(D).fit(X).score(X)) < 1e-4


@pytest.mark.parametrize("ctype", ["spherical", "diag", "full"])
def test_score_samples_is_the_explicit_x_space_mixture(ctype):
    X = _low_rank(600, 3, k=3, sep=4.0)
    m = _hmog(3, ctype, algorithm="em", allocation="finite", max_laps=5).fit(X)
    dens = sum(
        w * multivariate_normal(mu, c).pdf(X)
        for w, mu, c in zip(m.weights_, m.means_, m.covariances_)
    )
    np.testing.assert_allclose(m.score_samples(X), np.log(dens), rtol=0, atol=1e-10)
    assert m.means_.shape == (3, P) and m.covariances_.shape == (3, P, P)
    assert m.latent_means_.shape == (3, D) and m.latent_covariances_.shape == (3, D, D)


@pytest.mark.parametrize("ctype", ["spherical", "diag", "full"])
def test_em_never_decreases_the_log_likelihood(ctype):
    X = _low_rank(800, 4, k=3, sep=3.0)
    m = _hmog(3, ctype, algorithm="em", allocation="finite", max_laps=60, tol=0.0).fit(X)
    lb = np.array(m.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))
    # after whitening the latent mixture has mean 0 and covariance I (weights N_k / N)
    w, m_k, S_k = m.weights_, m.latent_means_, m.latent_covariances_
    mean = w @ m_k
    cov = np.einsum("k,kij->ij", w, S_k + m_k[:, :, None] * m_k[:, None, :]) - np.outer(mean, mean)
    np.testing.assert_allclose(mean, 0.0, atol=1e-6)
    np.testing.assert_allclose(cov, np.eye(D), atol=1e-6)


@pytest.mark.parametrize("allocation", ["finite", "dp"])
def test_vb_never_decreases_its_bound(allocation):
    X = _low_rank(800, 5, k=3, sep=3.0)
    m = _hmog(4, algorithm="vb", allocation=allocation, max_laps=60, tol=0.0).fit(X)
    lb = np.array(m.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))


def test_transform_inverse_transform_sample_bic(tmp_path):
    X = _low_rank(600, 6, k=3, sep=4.0)
    m = _hmog(3, algorithm="em", allocation="finite", max_laps=30).fit(X)
    obs = m.model_.obs
    Y = m.transform(X)
    assert Y.shape == (600, D)
    # component 0's posterior mean by hand: (S^-1 + W'Psi^-1 W)^-1 (S^-1 m + W'Psi^-1 (x - mu))
    resp = m.predict_proba(X)
    Pk = np.linalg.inv(m.latent_covariances_[0]) + obs.W.T @ (obs.W / obs.psi[:, None])
    b = np.linalg.solve(m.latent_covariances_[0], m.latent_means_[0])
    b = b + (X - m.mean_) @ (obs.W / obs.psi[:, None])
    own0 = np.linalg.solve(Pk, b.T).T
    assert np.allclose(obs.latent_means(X, np.eye(3)[np.zeros(600, int)]), own0)
    assert np.allclose(Y, obs.latent_means(X, resp))
    np.testing.assert_allclose(m.inverse_transform(m.latent_means_), m.means_, atol=1e-10)
    Xs, labels = m.sample(400)
    assert Xs.shape == (400, P) and labels.shape == (400,)
    # W p d + mu p + Psi p + K (d + d(d+1)/2) - d - d^2, plus K - 1 weights
    n_par = P * D + 2 * P + 3 * (D + D * (D + 1) // 2) - D - D * D + 2
    assert m._n_parameters() == n_par
    assert np.isclose(m.bic(X), -2 * m.score(X) * 600 + n_par * np.log(600))
    path = m.save(tmp_path / "hmog.msm")
    loaded = MixtureModel.load(path)
    np.testing.assert_allclose(loaded.score_samples(X), m.score_samples(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(loaded.transform(X), Y, atol=1e-12)


def test_partial_fit_runs_stochastic_steps():
    X = _low_rank(900, 7, k=3, sep=4.0)
    m = _hmog(3, algorithm="sovb", allocation="finite", random_state=0)
    for part in np.array_split(X, 3):
        m.partial_fit(part)
    assert np.isfinite(m.score(X)) and m.n_components_ == 3


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(latent_dim=0), "latent_dim must be a positive integer"),
        (dict(latent_dim=P), f"latent_dim must be smaller than n_features = {P}"),
        (dict(covariance_type="tied"), "names the noise structure Psi"),
        (dict(latent_dim=None), "likelihood='hmog' needs latent_dim"),
        (dict(likelihood="gauss"), "latent_dim applies to likelihood='hmog'"),
        (dict(n_components=500), "n_components"),
    ],
)
def test_bad_input_gives_one_clear_error(kw, message):
    X = _low_rank(100, 8)
    K = kw.pop("n_components", 2)
    with pytest.raises(ValueError, match=message) as err:
        _hmog(K, **kw).fit(X)
    assert "\n" not in str(err.value)
