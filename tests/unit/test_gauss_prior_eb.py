"""Empirical Bayes for the default covariance prior's scale (diag and spherical VB).

docs/math.md §4: after each full VB global step, Psi0 is set to its ELBO maximiser given q and q
is updated under it, to a fixed point. These tests check that the result is the maximiser (any
other fixed scale scores lower on the same statistics), that the fit stays monotone, and where
the scale stays fixed (a given covariance_prior, the full types, soVB steps, birth pieces).
"""

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream.alloc import DPAlloc
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs


def tight_clusters(n=1200, d=6, k=4, seed=3):
    """Clusters much narrower than the data (a fixed 0.3 x the data's variance is too wide)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=10.0, size=(k, d))
    labels = rng.integers(k, size=n)
    sd = rng.uniform(0.3, 1.0, size=(k, d))
    return means[labels] + rng.normal(size=(n, d)) * sd[labels], labels


def fitted_model(ctype, X, labels, **kw):
    obs = GaussObs(ctype, inference="vb", **kw)
    model = Model(DPAlloc(alpha=1.0, inference="vb"), obs)
    obs.set_prior_from_data(X)
    K = int(labels.max()) + 1
    model.uids = model.new_uids(K)
    resp = np.eye(K)[labels]
    SS = model.summarize(X, {"resp": resp, "log_norm": np.zeros(len(X))})
    model.global_step(SS)
    return model, SS


@pytest.mark.parametrize("ctype", ["diag", "spherical", "tied_diag", "tied_spherical"])
def test_the_fitted_scale_maximises_the_elbo(ctype):
    X, labels = tight_clusters()
    model, SS = fitted_model(ctype, X, labels)
    best = model.elbo(SS)
    psi0 = np.asarray(model.obs.covariance_prior_, float).copy()
    assert model.obs.empirical_prior
    for f in (0.5, 0.9, 1.1, 2.0):
        fixed = model.copy()
        fixed.obs.empirical_prior = False
        fixed.obs.covariance_prior_ = psi0 * f
        fixed.global_step(SS)
        assert fixed.elbo(SS) < best, f  # the fitted Psi0 beats every other scale
    # and it moved well below the data-based start: 0.3 x the data's variance is too wide here
    fresh = GaussObs(ctype, inference="vb")
    fresh.set_prior_from_data(X)
    assert psi0.sum() < 0.5 * np.asarray(fresh.covariance_prior_).sum()


def test_the_fitted_scale_is_the_harmonic_mean_of_the_variances():
    """diag: Psi0 / nu0 = G / sum_g E[lambda_g] per feature, at the fixed point."""
    X, labels = tight_clusters()
    model, _ = fitted_model("diag", X, labels)
    obs = model.obs
    e_lam = obs.nu[:, None] / obs.psi
    want = obs.nu.shape[0] / e_lam.sum(axis=0)
    got = obs.covariance_prior_ / obs.degrees_of_freedom_prior_
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_a_given_prior_and_the_full_types_keep_their_scale():
    X, labels = tight_clusters()
    given = np.full(X.shape[1], 2.0)
    model, _ = fitted_model("diag", X, labels, covariance_prior=given)
    assert not model.obs.empirical_prior
    np.testing.assert_array_equal(model.obs.covariance_prior_, given)
    full, _ = fitted_model("full", X, labels)
    fresh = GaussObs("full", inference="vb")
    fresh.set_prior_from_data(X)
    np.testing.assert_array_equal(full.obs.covariance_prior_, fresh.covariance_prior_)


def test_birth_pieces_and_sovb_steps_keep_the_scale():
    X, labels = tight_clusters()
    model, SS = fitted_model("diag", X, labels)
    psi0 = np.asarray(model.obs.covariance_prior_).copy()
    piece = model.copy()
    piece.obs = piece.obs.for_proposal()
    piece.global_step(SS.scale(3.0))
    np.testing.assert_array_equal(piece.obs.covariance_prior_, psi0)
    assert model.obs.empirical_prior  # for_proposal changed the copy only
    blended = model.copy()
    blended.obs.update(SS.scale(2.0), rho=0.5)
    np.testing.assert_array_equal(blended.obs.covariance_prior_, psi0)


@pytest.mark.parametrize("ctype", ["diag", "spherical"])
def test_dp_movb_with_moves_stays_monotone(ctype):
    X, _ = tight_clusters(n=2000, seed=5)
    est = MixtureModel(
        1,
        allocation="dp",
        algorithm="movb",
        covariance_type=ctype,
        batch_size=500,
        max_laps=25,
        random_state=0,
    ).fit(X)
    bounds = np.array(est.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:])), np.diff(bounds).min()
    assert est.n_components_ >= 4
