"""In-memory arrays as a BatchSource."""

from __future__ import annotations

import numpy as np

from mixstream.data.validate import check_finite


def plan_batches(n_rows: int, batch_size: int | None) -> list[tuple[int, int]]:
    """Contiguous (start, stop) ranges of at most ``batch_size`` rows (one batch if None)."""
    if batch_size is None or batch_size >= n_rows:
        return [(0, n_rows)]
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    return [(s, min(s + batch_size, n_rows)) for s in range(0, n_rows, batch_size)]


class ArraySource:
    """Batches of an in-memory array (numpy, or anything np.asarray accepts).

    Parameters
    ----------
    X : array (N, D)
    batch_size : int, optional
        Rows per batch; one batch when None.
    sample_weight : array (N,), optional
    name : str
        How errors refer to this data.
    """

    def __init__(
        self,
        X: np.ndarray,
        batch_size: int | None = None,
        sample_weight: np.ndarray | None = None,
        name: str = "X",
    ) -> None:
        self.X = X
        self.n_rows, self.n_features = X.shape
        self.dtype = X.dtype
        self.batches = plan_batches(self.n_rows, batch_size)
        self.sample_weight = sample_weight
        self.name = name
        self.validated = False
        #: NaN marks a missing value (missing="marginalize"); inf is refused all the same
        self.allow_nan = False

    def read(self, i: int) -> np.ndarray:
        start, stop = self.batches[i]
        Xb = self.X[start:stop]
        if not self.validated:
            check_finite(Xb, f"{self.name} batch {i}", row_offset=start, allow_nan=self.allow_nan)
        return Xb

    def read_weights(self, i: int) -> np.ndarray | None:
        if self.sample_weight is None:
            return None
        start, stop = self.batches[i]
        return self.sample_weight[start:stop]
