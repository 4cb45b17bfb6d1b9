"""Small dense linear algebra shared by the Gaussian covariance structures (host numpy)."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cholesky, eigh
from scipy.special import digamma

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)


def is_pd(A: np.ndarray) -> bool:
    """True when the symmetric matrix A (D, D) has a Cholesky factor (is positive definite)."""
    try:
        cholesky(A, lower=True, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        return False
    return True


def chol_stack(M: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of a stack (G, D, D) of symmetric matrices.

    A matrix that rounding made indefinite gets its eigenvalues clipped to at least ``floor``
    (and 1e-12 of the largest); returns the factors and the (possibly repaired) matrices.
    """
    try:
        return np.linalg.cholesky(M), M
    except np.linalg.LinAlgError:
        pass
    M = M.copy()
    L = np.empty_like(M)
    for g in range(M.shape[0]):
        try:
            L[g] = cholesky(M[g], lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            w, V = eigh(M[g])
            top = max(float(np.abs(w).max()), 1e-300)
            w = np.maximum(w, max(floor, 1e-12 * top))
            M[g] = (V * w) @ V.T
            M[g] = 0.5 * (M[g] + M[g].T)
            L[g] = cholesky(M[g], lower=True, check_finite=False)
    return L, M


def wishart_expected_logdet(nu: np.ndarray, logdet_psi: np.ndarray, D: int) -> np.ndarray:
    """E log|Lambda| (G,) under Wishart(nu, Psi^{-1}).

    sum_{d<D} digamma((nu - d) / 2) + D log 2 - log|Psi|.
    """
    d = np.arange(D)
    return digamma(0.5 * (nu[:, None] - d[None, :])).sum(axis=1) + D * LOG_2 - logdet_psi
