"""What the algorithms need from an engine: a source of batches and a way to map over them.

The algorithms in ``mixstream.learn`` never import dask or prefect. They take an ``Executor``
whose ``map`` applies a module-level function ``fn(payload, X_b, w_b, **kwargs)`` to batches
(in-process, on a Dask cluster, or on GPUs) and returns the results in batch order, so every
sum is taken in the same order whichever worker answered first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mixstream.suffstats import SuffStats


@runtime_checkable
class BatchSource(Protocol):
    """Rows of a dataset, split into contiguous batches.

    Attributes
    ----------
    n_rows, n_features : int
    dtype : numpy dtype of the stored values
    batches : list of (start, stop) row ranges, covering 0..n_rows in order
    name : str, how error messages refer to the data (a store path, "X", ...)
    """

    n_rows: int
    n_features: int
    dtype: np.dtype
    batches: list[tuple[int, int]]
    name: str

    def read(self, i: int) -> np.ndarray:
        """Rows of batch i, shape (stop - start, n_features), validated finite."""

    def read_weights(self, i: int) -> np.ndarray | None:
        """Sample weights of batch i, shape (stop - start,), or None for unit weights."""


@runtime_checkable
class Executor(Protocol):
    """Maps batch functions over a BatchSource."""

    source: BatchSource

    def map(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> list[Any]:
        """[fn(payload, X_b, w_b, **kw) for b in batch_ids], in the order of batch_ids."""

    def map_sum(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> SuffStats:
        """The SuffStats results of ``map`` summed in the fixed tree of ``SuffStats.sum``."""

    def close(self) -> None:
        """Release what the executor started."""


class RowsExecutor:
    """Rows already in memory as one batch, mapped over in this process.

    For the work ``mixstream.learn`` does on a sample it holds itself (Lloyd's iterations of
    ``init="kmeans"``, on rows already read and validated): no threads, no progress events, no
    device move, so learn needs nothing from the engines above it.

    Parameters
    ----------
    X : array (n, D)
    sample_weight : array (n,), optional
    """

    def __init__(self, X: Any, sample_weight: Any = None) -> None:
        self.X = X
        self.sample_weight = sample_weight
        self.source = self  # the BatchSource: one batch of all the rows
        self.n_rows, self.n_features = X.shape
        self.dtype = X.dtype
        self.batches = [(0, self.n_rows)]
        self.name = "sample"

    def read(self, i: int) -> Any:
        return self.X

    def read_weights(self, i: int) -> Any:
        return self.sample_weight

    def map(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> list[Any]:
        ids = range(len(self.batches)) if batch_ids is None else batch_ids
        out = []
        for i in ids:
            if getattr(fn, "needs_rows", False):
                kw = {**kw, "rows": tuple(self.batches[i])}
            out.append(fn(payload, self.read(i), self.read_weights(i), **kw))
        return out

    def map_sum(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> SuffStats:
        return SuffStats.sum(self.map(fn, payload, batch_ids, **kw))

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- batch functions
# Module level so that Dask can ship them to workers by reference.


def total_weight(executor: Executor) -> float:
    """Rows of the executor's data, or the sum of its sample weights."""
    source = executor.source
    total = 0.0
    for i, (a, b) in enumerate(source.batches):
        w = source.read_weights(i)
        total += float(b - a) if w is None else float(np.sum(np.asarray(w, np.float64)))
    return total


def summarize_batch(
    model: Any,
    X: Any,
    w: Any,
    hard: bool = False,
    merge_pairs: Sequence[tuple[int, int]] | None = None,
) -> SuffStats:
    """Local step + summary of one batch: the unit of work of every algorithm."""
    return model.local_summarize(X, hard=hard, merge_pairs=merge_pairs, sample_weight=w)


def kmeans_batch(centers: np.ndarray, X: Any, w: Any) -> SuffStats:
    """Nearest-centre counts "N", coordinate sums "sum_x", squared norms "sum_sq" (K,) and the
    inertia (a scalar) of one batch (Lloyd's step; "sum_sq" gives the inertia of the cached
    assignment at any centres, for memoized Lloyd)."""
    from mixstream.backend import get_namespace, to_device, to_host

    xp = get_namespace(X)
    C = to_device(centers, xp)
    X = X.astype(xp.float64, copy=False)
    d2 = (X * X).sum(1)[:, None] - 2.0 * (X @ C.T) + (C * C).sum(1)[None, :]
    labels = d2.argmin(axis=1)
    K = C.shape[0]
    onehot = xp.zeros((X.shape[0], K))
    onehot[xp.arange(X.shape[0]), labels] = 1.0 if w is None else w
    inertia = xp.maximum(d2[xp.arange(X.shape[0]), labels], 0.0)
    if w is not None:
        inertia = inertia * w
    fields = {
        "N": to_host(onehot.sum(0)),
        "sum_x": to_host(onehot.T @ X),
        "sum_sq": to_host(onehot.T @ (X * X).sum(1)),
    }
    return SuffStats(fields, scalars={"inertia": float(to_host(inertia.sum()))})


def score_batch(model: Any, X: Any, w: Any) -> SuffStats:
    """Summed (weighted) log-density of one batch's rows (``Model.log_density``) and their
    number (weight), as the scalars "log_norm" and "n_rows"."""
    from mixstream.backend import to_host

    dens = model.log_density(X)
    if w is None:
        total, n_rows = dens.sum(), X.shape[0]
    else:
        total, n_rows = (dens * w).sum(), w.sum()
    scalars = {"log_norm": float(to_host(total)), "n_rows": float(to_host(n_rows))}
    return SuffStats({"N": np.zeros(model.K)}, model.uids, scalars)
