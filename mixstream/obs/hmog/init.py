"""The starting linear-Gaussian layer of an HMoG: probabilistic PCA of a sample of the data."""

from __future__ import annotations

import numpy as np


def pca_layer(
    X: np.ndarray, w: np.ndarray, d: int, structure: str, floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W (p, d), mu (p,), Psi) of the probabilistic-PCA optimum of the weighted sample.

    W = U_d (Lambda_d - sigma^2 I)^{1/2}, sigma^2 the mean of the discarded eigenvalues
    (Tipping & Bishop); Psi is sigma^2 on the structure (diag: the residual variances).
    """
    total = float(w.sum())
    mu = (w @ X) / total
    Xc = X - mu
    cov = (Xc * w[:, None]).T @ Xc / total
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    vals, vecs = vals[::-1], vecs[:, ::-1]
    p = X.shape[1]
    sigma2 = max(float(vals[d:].mean()) if d < p else 0.0, floor)
    W = vecs[:, :d] * np.sqrt(np.maximum(vals[:d] - sigma2, floor))
    if structure == "diag":
        psi = np.maximum(np.diagonal(cov) - (W * W).sum(axis=1), floor)
    else:
        psi = np.asarray(sigma2) if structure == "spherical" else sigma2 * np.eye(p)
    return W, mu, psi
