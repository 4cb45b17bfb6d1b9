"""Initialisation: starting responsibilities or parameters, from a sample of the data.

Every method produces statistics for a first global step. For data that does not fit in
memory, the starting point is computed on a sample of whole batches (chosen by the seeded RNG)
and its statistics are scaled up to the size of the data, so the first posterior has the
weight of the whole dataset; when the sample is the whole data the scaling is exactly 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mixstream.learn.executor import Executor, RowsExecutor, total_weight
from mixstream.learn.kmeans import kmeans_plusplus, lloyd, nearest
from mixstream.model import Model
from mixstream.vocabulary import INIT_METHODS

#: rows read for initialisation when the data is larger
DEFAULT_SAMPLE_ROWS = 200_000


def draw_sample(
    executor: Executor, n_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Whole batches in random order until at least ``n_rows`` rows are read, then (where
    that overshoots) ``n_rows`` of them drawn without replacement, in their order.

    The draw bounds what the start holds: an in-memory array is one batch of every row, and
    the de-duplication of the sample (``canonical_rows``) needs several copies of it.

    Returns
    -------
    X : array (n, D), w : array (n,) or None, scale : float
        n = min(n_rows, rows of the data); ``scale`` is (total weight of the data) / (weight
        of the sample), >= 1.
    """
    source = executor.source
    n_batches = len(source.batches)
    order = np.arange(n_batches) if source.n_rows <= n_rows else rng.permutation(n_batches)
    parts, weights, rows = [], [], 0
    for i in order:
        parts.append(np.asarray(source.read(int(i))))
        w = source.read_weights(int(i))
        weights.append(None if w is None else np.asarray(w))
        rows += parts[-1].shape[0]
        if rows >= n_rows:
            break
    X = np.concatenate(parts) if len(parts) > 1 else parts[0]
    W = None
    if any(w is not None for w in weights):
        ones = [np.ones(p.shape[0]) if w is None else w for p, w in zip(parts, weights)]
        W = np.concatenate(ones)
    if X.shape[0] > n_rows:
        keep = np.sort(rng.choice(X.shape[0], size=n_rows, replace=False))
        X = X[keep]
        W = None if W is None else W[keep]
    if W is None:
        return X, None, source.n_rows / X.shape[0]
    return X, W, total_weight(executor) / max(W.sum(), 1e-300)


def fill_missing(X: np.ndarray) -> np.ndarray:
    """X (n, D) with NaN (missing values, ``missing="marginalize"``) replaced by the mean of
    the feature's observed values (0 where none is observed).

    Only the starting point and the prior's data-dependent defaults are computed from these
    filled rows; every lap after it marginalises the missing values.
    """
    if X.dtype.kind not in "fc" or not np.isnan(X.sum()):
        return X
    miss = np.isnan(X)
    counts = (~miss).sum(axis=0)
    means = np.where(counts > 0, np.where(miss, 0.0, X).sum(axis=0) / np.maximum(counts, 1), 0.0)
    return np.where(miss, means.astype(X.dtype), X)


def canonical_rows(X: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in lexicographic order with their summed weights; zero weights dropped.

    Initialising from this makes the start a function of the weighted empirical distribution
    alone: the same for shuffled rows, for repeated rows and for integer weights. (The rows
    and sums of ``np.unique(X, axis=0)``, from one sorted copy of X: its structured sort held
    three to four.)

    Returns
    -------
    rows : array (m, D), weights : array (m,)
    """
    X = np.asarray(X)
    weights = np.ones(X.shape[0]) if w is None else np.asarray(w, np.float64)
    keep = weights > 0
    if not keep.all():
        X, weights = X[keep], weights[keep]
    # the first column is the primary key; without ties in it (continuous data) it is the
    # whole order, and a sort of every column (D passes) is not needed
    order = np.argsort(X[:, 0], kind="stable")
    head = X[order, 0]
    if (head[1:] == head[:-1]).any():
        order = np.lexsort(X.T[::-1])
    rows = X[order]
    first = np.ones(rows.shape[0], dtype=bool)
    if rows.shape[0] > 1:
        first[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    summed = np.bincount(np.cumsum(first) - 1, weights=weights[order], minlength=int(first.sum()))
    return (rows if first.all() else rows[first]), summed


def init_responsibilities(
    X: np.ndarray,
    K: int,
    method: str | np.ndarray,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Starting responsibilities (n, K) on the sample X by ``method`` (or given means (K, D))."""
    n = X.shape[0]
    if isinstance(method, np.ndarray):
        labels = nearest(X, method)
    elif method == "random":
        resp = rng.uniform(size=(n, K))
        return resp / resp.sum(1, keepdims=True)
    elif method == "random_from_data":
        labels = nearest(X, np.asarray(X[rng.choice(n, size=K, replace=n < K)], np.float64))
    elif method == "kmeans++":
        labels = nearest(X, kmeans_plusplus(X, K, rng, weights))
    elif method == "kmeans":
        centers = kmeans_plusplus(X, K, rng, weights)
        sample = RowsExecutor(X, sample_weight=weights)
        centers, _, _ = lloyd(sample, centers, max_iter=100)
        labels = nearest(X, centers)
    else:
        raise ValueError(f"init must be one of {INIT_METHODS}, an array of means or a dict")
    resp = np.zeros((n, K))
    resp[np.arange(n), labels] = 1.0
    return resp


def initialize(
    model: Model,
    executor: Executor,
    K: int,
    init: str | np.ndarray | Mapping[str, Any],
    rng: np.random.Generator,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
) -> None:
    """Set the model's priors from the data and its parameters to a starting point.

    Parameters
    ----------
    init : str, array (K, D) of means, or dict
        A method in INIT_METHODS; given means; or a dict with "resp" (N, K) for in-memory data,
        or point parameters ("weights", "means" and, for Gaussians, "precisions" or
        "covariances") that set an EM model directly.
    """
    X, w, scale = draw_sample(executor, sample_rows, rng)
    X = fill_missing(X)
    X, w = canonical_rows(X, w)
    model.obs.set_prior_from_data(X, weights=w)
    model.uids = model.new_uids(K)
    if isinstance(init, Mapping):
        _init_from_dict(model, executor, K, init)
        return
    # a latent-variable model (HMoG) clusters its initial responsibilities in its latent space
    space = X if isinstance(init, np.ndarray) else model.obs.init_space(X)
    resp = init_responsibilities(space, K, init, rng, w)
    SS = model.summarize(X, {"resp": resp}, sample_weight=w)
    model.global_step(SS.scale(scale) if scale != 1.0 else SS)


def _init_from_dict(model: Model, executor: Executor, K: int, init: Mapping[str, Any]) -> None:
    if "resp" in init:
        resp = np.asarray(init["resp"], np.float64)
        source = executor.source
        if resp.shape != (source.n_rows, K):
            raise ValueError(
                f"init['resp'] must have shape (n_samples, n_components) = "
                f"{(source.n_rows, K)}, got {resp.shape}"
            )
        parts = []
        for i, (a, b) in enumerate(source.batches):
            LP = {"resp": resp[a:b]}
            parts.append(model.summarize(source.read(i), LP, sample_weight=source.read_weights(i)))
        from mixstream.suffstats import SuffStats

        model.global_step(SuffStats.sum(parts))
        return
    if "means" not in init:
        raise ValueError("an init dict needs 'resp' or at least 'means' (and 'weights')")
    means = np.asarray(init["means"], np.float64)
    if means.shape[0] != K:
        raise ValueError(f"init['means'] has {means.shape[0]} rows; n_components is {K}")
    weights = np.asarray(init.get("weights", np.full(K, 1.0 / K)), np.float64)
    if model.inference != "em" or not hasattr(model.obs, "set_point_params"):
        raise ValueError("point-parameter init (weights/means/precisions) needs algorithm='em'")
    params = {k: init[k] for k in ("covariances", "precisions") if k in init}
    model.obs.set_point_params(means, **params)
    model.alloc.set_weights(weights)
