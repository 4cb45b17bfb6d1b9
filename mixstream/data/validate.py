"""Checks on data values, with messages that say what is wrong and where."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.backend import get_namespace, to_host


def check_finite(X: Any, where: str, row_offset: int = 0, max_rows: int = 5) -> None:
    """Raise ValueError naming ``where`` and the first rows holding NaN or inf."""
    xp = get_namespace(X)
    if X.dtype.kind in "iub":
        return  # integers cannot hold NaN or inf
    # NaN and inf survive a sum, and a sum of finite values is finite unless it overflows: one
    # pass with no (N, D) temporary clears almost every batch; the rest get the full check
    with np.errstate(over="ignore", invalid="ignore"):  # overflow and inf - inf are expected
        total = X.sum() if X.size else None
    if total is not None and bool(xp.isfinite(total)):
        return
    bad = ~xp.isfinite(X)
    if X.ndim > 1:
        bad = bad.any(axis=1)
    if bool(bad.any()):
        rows = to_host(xp.flatnonzero(bad)[:max_rows]) + row_offset
        n_bad = int(bad.sum())
        raise ValueError(
            f"{where} holds NaN or infinite values in {n_bad} row(s); first rows: {rows.tolist()}"
        )


def check_matrix(X: Any, where: str = "X") -> Any:
    """X as a 2-D real numeric array with at least one row and column, else a clear error.

    Wording follows scikit-learn's where its estimator checks look for it.
    """
    if isinstance(X, str | bytes):
        raise ValueError(f"{where} must be a 2-D numeric array, got a string")
    if type(X).__module__.startswith("scipy.sparse") or hasattr(X, "tocsr"):
        raise TypeError(
            f"Sparse input is not supported for {where}: pass a dense array or a Zarr store"
        )
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if X.dtype == object:
        X = np.asarray(X, dtype=np.float64)  # numbers in an object array; anything else raises
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"Complex data not supported: {where} has dtype {X.dtype}")
    if not (np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)):
        raise ValueError(f"{where} must hold numbers; its dtype is {X.dtype}")
    if X.ndim != 2:
        hint = (
            " Reshape your data: X.reshape(-1, 1) for one feature, X.reshape(1, -1) for one row."
            if X.ndim == 1
            else ""
        )
        raise ValueError(
            f"{where} must be 2-D (rows = data points, columns = features); "
            f"it has {X.ndim} dimension(s), shape {X.shape}.{hint}"
        )
    if X.shape[0] == 0:
        raise ValueError(
            f"{where} is empty: 0 sample(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if X.shape[1] == 0:
        raise ValueError(
            f"{where} is empty: 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    return X
