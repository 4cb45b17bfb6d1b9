"""The covariance strategies of mixstream.obs.gauss: one interface, asked instead of shapes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream.obs.gauss import (
    COVARIANCE_TYPES,
    CovarianceStructure,
    GaussObs,
    covariance_shape,
    covariance_strategy,
)
from mixstream.report import covariance_type_of, project_covariances


def _user_covariances(ctype: str, K: int, D: int, rng: np.random.Generator) -> np.ndarray:
    """Random valid covariances in scikit-learn's shape for ``ctype``."""
    structure = covariance_strategy(ctype)
    G = 1 if structure.tied else K
    if structure.structure == "full":
        A = rng.normal(size=(G, D, D))
        C = A @ A.transpose(0, 2, 1) + D * np.eye(D)
    elif structure.structure == "diag":
        C = rng.uniform(0.5, 2.0, size=(G, D))
    else:
        C = rng.uniform(0.5, 2.0, size=(G,))
    return C[0] if structure.tied else C


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_strategy_names_shapes_and_pickling(ctype):
    structure = covariance_strategy(ctype)
    assert isinstance(structure, CovarianceStructure)
    assert structure.name == ctype
    assert structure.tied == ctype.startswith("tied_")
    assert structure.user_shape(3, 5) == covariance_shape(ctype, 3, 5)
    # Dask ships the observation model, strategy included, to its workers
    assert pickle.loads(pickle.dumps(structure)) == structure
    assert covariance_strategy("tied") == covariance_strategy("tied_full")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        covariance_strategy("banded")


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_full_matrices_and_projections_agree(ctype):
    K, D = 3, 4
    rng = np.random.default_rng(0)
    structure = covariance_strategy(ctype)
    C = _user_covariances(ctype, K, D, rng)
    full = structure.to_full(C, K, D)
    assert full.shape == (K, D, D)
    np.testing.assert_allclose(full, full.transpose(0, 2, 1))
    assert np.all(np.linalg.eigvalsh(full) > 0)
    B = np.linalg.qr(rng.normal(size=(D, 2)))[0]
    want = np.einsum("di,kde,ej->kij", B, full, B)
    np.testing.assert_allclose(structure.project(C, B, K), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(project_covariances(C, ctype, B, K), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="must have shape"):
        structure.to_full(np.zeros((K + 1, D + 1)), K, D)


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_model_and_report_ask_the_strategy(ctype):
    # K == D: diag (K, D) and tied_full (D, D) have one shape; the type still comes out right
    X = np.random.default_rng(1).normal(size=(300, 3))
    est = MixtureModel(n_components=3, covariance_type=ctype, random_state=0, max_laps=5)
    with pytest.warns(Warning):  # five laps: not converged
        est.fit(X)
    assert isinstance(est.model_.obs, GaussObs)
    assert est.model_.obs.covariance_structure is covariance_strategy(ctype)
    assert covariance_type_of(est) == ctype
    draws, _ = est.sample(50, confidence=0.9)
    assert draws.shape == (50, 3)


def test_report_type_of_other_likelihoods():
    X = np.random.default_rng(2).normal(size=(200, 3))
    est = MixtureModel(n_components=2, likelihood="zero_mean_gauss", random_state=0, max_laps=5)
    with pytest.warns(Warning):
        est.fit(X)
    assert covariance_type_of(est) == "full"
