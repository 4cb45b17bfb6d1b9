"""K-means (Lloyd) over batches, k-means++ seeding, and classification EM.

K-means here serves two roles: an algorithm of its own (``algorithm="kmeans"``: Lloyd's
iterations on the means, then one hard M-step for the chosen likelihood) and an initialiser.
Classification EM (``algorithm="cem"``) is the full-batch loop with one-hot responsibilities.
"""

from __future__ import annotations

import numpy as np

from mixstream.learn.executor import Executor, kmeans_batch
from mixstream.learn.history import FitResult
from mixstream.learn.vb import LapCallback, fit_full_batch
from mixstream.model import Model


def kmeans_plusplus(
    X: np.ndarray, K: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """k-means++ seeding with 2 + log K greedy trials per centre.

    Parameters
    ----------
    X : array (n, D)
    K : int
    rng : numpy Generator
    weights : array (n,), optional

    Returns
    -------
    centers : array (K, D)
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    n_trials = 2 + int(np.log(max(K, 1)))
    sq = (X * X).sum(1)
    first = rng.choice(n, p=w / w.sum())
    centers = [X[first]]
    closest = np.maximum(sq - 2 * X @ X[first] + sq[first], 0.0)
    for _ in range(1, K):
        pot = closest * w
        total = pot.sum()
        if total <= 0:  # fewer distinct points than K: repeat a random point
            cand = rng.choice(n, size=1)
        else:
            cand = np.searchsorted(np.cumsum(pot), rng.uniform(size=n_trials) * total)
            cand = np.minimum(cand, n - 1)
        d_cand = np.maximum(sq[None, :] - 2 * X[cand] @ X.T + sq[cand][:, None], 0.0)
        d_cand = np.minimum(d_cand, closest[None, :])
        best = int(np.argmin((d_cand * w).sum(1)))
        centers.append(X[cand[best]])
        closest = d_cand[best]
    return np.array(centers)


def nearest(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row, shape (n,)."""
    X = np.asarray(X, dtype=np.float64)
    d2 = -2.0 * X @ centers.T + (centers * centers).sum(1)[None, :]
    return d2.argmin(axis=1)


def lloyd(
    executor: Executor, centers: np.ndarray, max_iter: int = 100, tol: float = 1e-4
) -> tuple[np.ndarray, float, int]:
    """Lloyd's iterations over all batches.

    Stops when the centres move by less than ``tol`` times the data's mean variance.

    Returns
    -------
    centers : array (K, D)
    inertia : float, the weighted sum of squared distances at the last assignment
    n_iter : int
    """
    centers = np.array(centers, dtype=np.float64)
    scale = None
    inertia = np.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is returned
        SS = executor.map_sum(kmeans_batch, centers)
        inertia = SS.scalars["inertia"]
        if scale is None:
            scale = max(inertia / max(SS.n_total, 1.0) / centers.shape[1], 1e-300)
        occupied = SS.N > 0
        new = centers.copy()
        new[occupied] = SS["sum_x"][occupied] / SS.N[occupied, None]
        shift = float(((new - centers) ** 2).sum(1).max())
        centers = new
        if shift <= tol * scale:
            break
    return centers, inertia, n_iter


def fit_cem(
    model: Model,
    executor: Executor,
    max_laps: int = 100,
    tol: float = 1e-3,
    on_lap: LapCallback | None = None,
    result: FitResult | None = None,
) -> FitResult:
    """Classification EM: hard assignments to the most probable component, then an M-step."""
    return fit_full_batch(model, executor, max_laps, tol, hard=True, on_lap=on_lap, result=result)
