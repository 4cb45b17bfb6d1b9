"""Open whatever a user passes as data (array, dask array, zarr.Array, store path) as a source."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from mixstream.data.array_source import ArraySource
from mixstream.data.validate import check_finite, check_matrix


def _is_dask_array(X: Any) -> bool:
    return type(X).__module__.startswith("dask.array")


def _is_zarr_array(X: Any) -> bool:
    return type(X).__module__.startswith("zarr")


def open_source(X: Any, batch_size: int | None = None, sample_weight: Any = None) -> Any:
    """A BatchSource over X.

    Parameters
    ----------
    X : array (N, D), dask array, zarr.Array, or str / PathLike of a Zarr store (path or URL)
    batch_size : int, optional
    sample_weight : array (N,), optional (in-memory data only)
    """
    if isinstance(X, str | os.PathLike) or _is_zarr_array(X):
        from mixstream.data.zarr_source import ZarrSource

        if sample_weight is not None:
            raise ValueError("sample_weight applies to in-memory data; store weights in the store")
        return ZarrSource(X, batch_size=batch_size)
    if _is_dask_array(X):
        from mixstream.data.dask_source import DaskArraySource

        if sample_weight is not None:
            raise ValueError("sample_weight applies to in-memory data, not dask arrays")
        return DaskArraySource(X, batch_size=batch_size)
    X = check_matrix(X, "X")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    check_finite(X, "X")
    weights = _check_weights(sample_weight, X.shape[0])
    source = ArraySource(X, batch_size, weights)
    source.validated = True
    return source


def _check_weights(sample_weight: Any, n_rows: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != n_rows:
        raise ValueError(f"sample_weight has {w.shape[0]} entries; X has {n_rows} rows")
    check_finite(w, "sample_weight")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not (w > 0).any():
        raise ValueError("Sample weights must contain at least one non-zero number")
    return w
