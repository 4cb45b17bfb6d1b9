"""K-means (Lloyd) over batches, k-means++ seeding, and classification EM.

K-means here serves two roles: an algorithm of its own (``algorithm="kmeans"``: Lloyd's
iterations on the means, then one hard M-step for the chosen likelihood) and an initialiser.
Classification EM (``algorithm="cem"``) is the full-batch loop with one-hot responsibilities;
its memoized form is ``fit_movb(hard=True)``.

Memoized Lloyd (``memo_lloyd``) is to Lloyd what moVB is to VB: a cache of each batch's
nearest-centre statistics (counts, coordinate sums, squared norms) and centres recomputed from
the cached total after every batch. Each visit is a coordinate descent step on the inertia of
(cached assignments, centres): reassigning a batch's rows to their nearest centres cannot raise
it, nor can moving the centres to the means of the cached assignments. So the inertia never
increases from lap to lap, and with one batch it is Lloyd's algorithm step for step.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mixstream.backend import get_namespace, to_device, to_host
from mixstream.learn.executor import Executor, kmeans_batch
from mixstream.learn.history import FitResult, lap_record
from mixstream.learn.vb import LapCallback, fit_full_batch
from mixstream.model import Model
from mixstream.suffstats import SuffStats


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
    centers : array (K, D), on the device of ``X`` (the random draws are made on the host)
    """
    xp = get_namespace(X)
    X = xp.asarray(X, dtype=xp.float64)
    n = X.shape[0]
    w = xp.ones(n) if weights is None else xp.asarray(weights, xp.float64)
    w_host = to_host(w)  # the draws are made on the host, from the seeded numpy Generator
    n_trials = 2 + int(np.log(max(K, 1)))
    sq = (X * X).sum(1)
    first = rng.choice(n, p=w_host / w_host.sum())
    centers = [X[first]]
    closest = xp.maximum(sq - 2 * X @ X[first] + sq[first], 0.0)
    for _ in range(1, K):
        pot = closest * w
        total = pot.sum() if xp is np else float(to_host(pot.sum()))
        if total <= 0:  # fewer distinct points than K: repeat a random point
            cand = rng.choice(n, size=1)
        else:
            cumulative = to_host(xp.cumsum(pot))
            cand = np.searchsorted(cumulative, rng.uniform(size=n_trials) * total)
            cand = np.minimum(cand, n - 1)
        rows = to_device(cand, xp)
        d_cand = xp.maximum(sq[None, :] - 2 * X[rows] @ X.T + sq[rows][:, None], 0.0)
        d_cand = xp.minimum(d_cand, closest[None, :])
        best = int(xp.argmin((d_cand * w).sum(1)))
        centers.append(X[int(cand[best])])
        closest = d_cand[best]
    return xp.stack(centers)


def nearest(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row, shape (n,), on the device of ``X`` (numpy or
    cupy; the centres are moved there)."""
    xp = get_namespace(X, centers)
    X = xp.asarray(X, dtype=xp.float64)
    C = to_device(centers, xp)
    d2 = -2.0 * X @ C.T + (C * C).sum(1)[None, :]
    return d2.argmin(axis=1)


def weighted_lloyd(
    X: np.ndarray, w: np.ndarray, centers: np.ndarray, n_iter: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Lloyd iterations on rows in memory (no executor), until no label changes.

    Returns the centres (K, D) and each row's nearest one (n,); a centre no row takes stays
    where it is.
    """
    centers = np.array(centers, np.float64)
    labels = nearest(X, centers)
    for _ in range(n_iter):
        mass = np.bincount(labels, weights=w, minlength=len(centers))
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, X * w[:, None])
        hit = mass > 0
        centers[hit] = sums[hit] / mass[hit, None]
        new = nearest(X, centers)
        if np.array_equal(new, labels):
            break
        labels = new
    return centers, labels


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


def memo_lloyd(
    executor: Executor,
    centers: np.ndarray,
    max_laps: int = 100,
    tol: float = 1e-4,
    rng: Any = None,
    shuffle: bool = True,
) -> tuple[np.ndarray, list[dict[str, Any]], bool]:
    """Memoized Lloyd: one batch at a time, centres from the cached statistics of all batches.

    The first lap is a full pass at the starting centres (the cache must cover the data before
    its means describe it); after it, every visit swaps the batch's statistics into the total
    and moves the centres. Stops as ``lloyd`` does: when no centre moved over a lap by more than
    ``tol`` times the data's mean variance.

    Parameters
    ----------
    executor : Executor
    centers : array (K, D)
        Starting centres.
    max_laps : int
    tol : float
    rng : numpy Generator, int or None
        Batch order of each lap (``shuffle=True``).
    shuffle : bool

    Returns
    -------
    centers : array (K, D)
    history : list of dict
        One record per lap: "lap", "elbo" (nan: Lloyd has no ELBO), "K", "seconds" and
        "inertia", the per-point inertia of the cached assignments at the lap's final centres.
    converged : bool
    """
    centers = np.array(centers, dtype=np.float64)
    rng = np.random.default_rng(rng)
    n_batches = len(executor.source.batches)
    cache: dict[int, SuffStats] = {}
    total: SuffStats | None = None
    scale, history, converged = None, [], False
    for lap in range(1, max_laps + 1):
        t0 = time.perf_counter()
        start = centers.copy()
        order = [int(b) for b in (rng.permutation(n_batches) if shuffle else range(n_batches))]
        if total is None:  # the first pass: every batch at the starting centres, in parallel
            cache = dict(zip(order, executor.map(kmeans_batch, centers, batch_ids=order)))
        else:
            for b in order:
                new = executor.map(kmeans_batch, centers, batch_ids=[b])[0]
                total = total - cache[b] + new
                cache[b] = new
                centers = _means(total, centers)
        total = SuffStats.sum(cache[b] for b in range(n_batches))  # exact, no running rounding
        if scale is None:  # the first lap's assignments were all made at the starting centres
            per_point = total.scalars["inertia"] / max(total.n_total, 1.0)
            scale = max(per_point / centers.shape[1], 1e-300)
        centers = _means(total, centers)
        inertia = memo_inertia(total, centers) / max(total.n_total, 1e-300)
        record = lap_record(lap, float("nan"), centers.shape[0], time.perf_counter() - t0)
        record["inertia"] = inertia
        history.append(record)
        if float(((centers - start) ** 2).sum(1).max()) <= tol * scale:
            converged = True
            break
    return centers, history, converged


def _means(total: SuffStats, centers: np.ndarray) -> np.ndarray:
    """Means of the cached assignments; an empty cluster keeps its centre."""
    occupied = total.N > 0
    new = centers.copy()
    new[occupied] = total["sum_x"][occupied] / total.N[occupied, None]
    return new


def memo_inertia(total: SuffStats, centers: np.ndarray) -> float:
    """sum_k sum_{n in k} w_n ||x_n - c_k||^2 of the assignments summarized in ``total``
    (from kmeans_batch statistics), at the centres ``centers``."""
    sx = total["sum_x"]
    quad = total.N * (centers * centers).sum(1)
    return float((total["sum_sq"] - 2.0 * (sx * centers).sum(1) + quad).sum())


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
