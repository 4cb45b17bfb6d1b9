"""The three structures of the observation noise Psi of the HMoG's linear-Gaussian layer.

Psi is kept as its own representation: a scalar (spherical, probabilistic PCA), a vector
(diag, factor analysis) or a (p, p) matrix (full). The statistics of x x^T that Psi's update
and the bound need are kept on the same structure, so a diagonal model never forms p x p.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# the noise structures, by the names ``covariance_type`` takes for likelihood="hmog"
from mixstream.vocabulary import HMOG_NOISE_STRUCTURES as NOISE_STRUCTURES

#: least noise variance (relative to the mean data variance) an update may give
NOISE_FLOOR = 1e-6


def check_structure(name: Any) -> str:
    if name not in NOISE_STRUCTURES:
        raise ValueError(
            f"covariance_type for likelihood='hmog' names the noise structure Psi and must be "
            f"one of {NOISE_STRUCTURES}, got {name!r}"
        )
    return str(name)


def xx_stat(structure: str, X: Any, xp: Any) -> Any:
    """sum_n x_n x_n^T on the structure: scalar (trace), (p,) diagonal or (p, p)."""
    if structure == "spherical":
        return (X * X).sum()
    if structure == "diag":
        return (X * X).sum(axis=0)
    return X.T @ X


def reduce(structure: str, M: np.ndarray) -> np.ndarray:
    """A (p, p) matrix on the structure (trace / diagonal / itself)."""
    if structure == "spherical":
        return np.asarray(np.trace(M))
    if structure == "diag":
        return np.diagonal(M).copy()
    return 0.5 * (M + M.T)


def estimate(structure: str, resid: np.ndarray, n: float, p: int, floor: float) -> np.ndarray:
    """ML Psi from the expected residual scatter ``resid`` (on the structure) of n rows."""
    if structure == "spherical":
        return np.asarray(max(float(resid) / (n * p), floor))
    if structure == "diag":
        return np.maximum(resid / n, floor)
    S = resid / n
    w, V = np.linalg.eigh(0.5 * (S + S.T))
    return (V * np.maximum(w, floor)) @ V.T


def factor(structure: str, psi: np.ndarray, p: int) -> tuple[Any, float]:
    """(the inverse in a form ``solve`` takes, log|Psi|)."""
    if structure == "spherical":
        return 1.0 / float(psi), p * float(np.log(psi))
    if structure == "diag":
        return 1.0 / psi, float(np.log(psi).sum())
    L = np.linalg.cholesky(psi)
    inv = np.linalg.inv(psi)
    return 0.5 * (inv + inv.T), 2.0 * float(np.log(np.diagonal(L)).sum())


def times_inv(structure: str, inv: Any, A: Any) -> Any:
    """Psi^{-1} A for A (p, ...)."""
    if structure == "full":
        return inv @ A
    if structure == "diag":
        return inv[:, None] * A if A.ndim == 2 else inv * A
    return inv * A


def trace_inv(structure: str, inv: Any, M: np.ndarray) -> float:
    """tr(Psi^{-1} M) for M on the structure."""
    if structure == "spherical":
        return float(inv * M)
    if structure == "diag":
        return float((inv * M).sum())
    return float((inv * M).sum())


def quad_rows(structure: str, inv: Any, Xc: Any, xp: Any) -> Any:
    """(x_n - mu)^T Psi^{-1} (x_n - mu) per row (N,) for centred rows Xc."""
    if structure == "full":
        return ((Xc @ xp.asarray(inv)) * Xc).sum(axis=1)
    if structure == "diag":
        return (Xc * Xc) @ xp.asarray(inv)
    return inv * (Xc * Xc).sum(axis=1)


def as_matrix(structure: str, psi: np.ndarray, p: int) -> np.ndarray:
    if structure == "spherical":
        return float(psi) * np.eye(p)
    if structure == "diag":
        return np.diag(psi)
    return np.array(psi)


def n_params(structure: str, p: int) -> int:
    return {"spherical": 1, "diag": p, "full": p * (p + 1) // 2}[structure]


def sample(structure: str, psi: np.ndarray, n: int, p: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.standard_normal((n, p))
    if structure == "spherical":
        return z * np.sqrt(float(psi))
    if structure == "diag":
        return z * np.sqrt(psi)
    return z @ np.linalg.cholesky(psi).T
