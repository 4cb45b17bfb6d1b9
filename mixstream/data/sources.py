"""Open whatever a user passes as data (array, dask array, zarr.Array, store path) as a source.

``open_source`` is the one source factory; ``mixstream.engine.factory.as_source`` is its alias
with per-batch checks.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from mixstream.data.array_source import ArraySource
from mixstream.data.validate import check_finite, check_matrix

if TYPE_CHECKING:  # the protocol only: data/ imports nothing from the layers above it
    from mixstream.learn.executor import BatchSource


def _is_dask_array(X: Any) -> bool:
    return type(X).__module__.startswith("dask.array")


def _is_zarr_array(X: Any) -> bool:
    return type(X).__module__.startswith("zarr")


def _is_batch_source(data: Any) -> bool:
    return hasattr(data, "read") and hasattr(data, "batches")


def open_source(
    data: Any,
    batch_size: int | None = None,
    sample_weight: Any = None,
    check: bool = True,
    missing: str = "error",
    **source_kw: Any,
) -> BatchSource:
    """A BatchSource over ``data``: the one place that turns user data into a source.

    Parameters
    ----------
    data : BatchSource, array (N, D), dask array, zarr.Array, or str / PathLike of a Zarr
        store (path or URL)
        A BatchSource is returned as it is.
    batch_size : int, optional
        Rows per batch (not for a BatchSource).
    sample_weight : array (N,), optional
        In-memory data only.
    check : bool
        In-memory arrays: check finiteness and convert integer / bool data to float64 now
        (the source is then marked validated). False: keep the dtype and check each batch
        when it is read, so an error names the batch and its rows (the engine factory).
    missing : {"error", "marginalize"}
        "marginalize": NaN marks a missing value and passes the checks (inf and rows with
        every value missing are still refused); "error": NaN is refused, naming its rows.
        A BatchSource given as it is gets its ``allow_nan`` set from this.
    **source_kw
        Further arguments of the source class (ZarrSource, DaskArraySource, ArraySource).
    """
    allow_nan = missing == "marginalize"
    if _is_batch_source(data):
        if batch_size is not None or sample_weight is not None or source_kw:
            raise ValueError("batch_size and source options apply when data is not a BatchSource")
        if allow_nan:
            data.allow_nan = True
        return data
    source = _open(data, batch_size, sample_weight, check, allow_nan, source_kw)
    source.allow_nan = allow_nan
    return source


def _open(
    data: Any,
    batch_size: int | None,
    sample_weight: Any,
    check: bool,
    allow_nan: bool,
    source_kw: dict,
) -> BatchSource:
    if isinstance(data, str | os.PathLike) or _is_zarr_array(data):
        from mixstream.data.zarr_source import ZarrSource

        if sample_weight is not None:
            raise ValueError("sample_weight applies to in-memory data; store weights in the store")
        return ZarrSource(data, batch_size=batch_size, **source_kw)
    if _is_dask_array(data):
        from mixstream.data.dask_source import DaskArraySource

        if sample_weight is not None:
            raise ValueError("sample_weight applies to in-memory data, not dask arrays")
        return DaskArraySource(data, batch_size=batch_size, **source_kw)
    X = check_matrix(data, "X")
    if check and not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    if check:
        check_finite(X, "X", allow_nan=allow_nan)
    weights = _check_weights(sample_weight, X.shape[0])
    source = ArraySource(X, batch_size, weights, **source_kw)
    source.validated = check
    return source


def _check_weights(sample_weight: Any, n_rows: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(
            f"sample_weight must be 1-D, shape ({n_rows},) (one weight per row of X); "
            f"got shape {w.shape}" + (": pass sample_weight.ravel()" if w.size == n_rows else "")
        )
    if w.shape[0] != n_rows:
        raise ValueError(f"sample_weight has {w.shape[0]} entries; X has {n_rows} rows")
    check_finite(w, "sample_weight")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not (w > 0).any():
        raise ValueError("Sample weights must contain at least one non-zero number")
    return w
