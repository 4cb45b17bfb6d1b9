"""Dask arrays as a BatchSource: batches follow the array's row chunks."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.data.validate import check_finite


class DaskArraySource:
    """Batches of a 2-D dask array, each one or more whole row chunks.

    Reading computes the slice with the synchronous scheduler, so it works the same inside a
    Dask worker (where the source is shipped with its graph) and in the coordinator.
    """

    def __init__(self, X: Any, batch_size: int | None = None, name: str = "dask array") -> None:
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {X.shape}")
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"{name} must hold numbers; its dtype is {X.dtype}")
        if 0 in X.shape:
            raise ValueError(f"{name} is empty: shape {X.shape}")
        self.X = X if X.chunks[1] == (X.shape[1],) else X.rechunk({1: -1})
        self.n_rows, self.n_features = X.shape
        self.dtype = np.dtype(X.dtype)
        self.name = name
        self.batches = _chunk_batches(self.X.chunks[0], batch_size)
        #: NaN marks a missing value (missing="marginalize"); inf is refused all the same
        self.allow_nan = False

    def read(self, i: int) -> np.ndarray:
        start, stop = self.batches[i]
        Xb = np.asarray(self.X[start:stop].compute(scheduler="sync"))
        if Xb.dtype != np.float32:
            Xb = Xb.astype(np.float64, copy=False)
        check_finite(Xb, f"{self.name} batch {i}", row_offset=start, allow_nan=self.allow_nan)
        return Xb

    def read_weights(self, i: int) -> None:
        return None


def _chunk_batches(row_chunks: tuple[int, ...], batch_size: int | None) -> list[tuple[int, int]]:
    """Group whole chunks into batches of at least ``batch_size`` rows (a chunk each if None)."""
    bounds = np.concatenate([[0], np.cumsum(row_chunks)]).astype(int)
    batch_size = batch_size or 1
    batches, start = [], 0
    for stop in bounds[1:]:
        if stop - start >= batch_size:
            batches.append((int(start), int(stop)))
            start = stop
    if start < bounds[-1]:
        batches.append((int(start), int(bounds[-1])))
    return batches
