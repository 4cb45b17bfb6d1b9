"""Checks on data values, with messages that say what is wrong and where."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.backend import get_namespace, to_host


def check_finite(X: Any, where: str, row_offset: int = 0, max_rows: int = 5) -> None:
    """Raise ValueError naming ``where`` and the first rows holding NaN or inf."""
    xp = get_namespace(X)
    bad = ~xp.isfinite(X)
    if X.ndim > 1:
        bad = bad.any(axis=1)
    if bool(bad.any()):
        rows = to_host(xp.flatnonzero(bad)[:max_rows]) + row_offset
        n_bad = int(bad.sum())
        raise ValueError(
            f"{where} holds NaN or infinite values in {n_bad} row(s); first rows: {rows.tolist()}"
        )


def check_matrix(X: Any, where: str = "X") -> np.ndarray:
    """X as a 2-D numeric array with at least one row and column, else a clear ValueError."""
    if isinstance(X, str | bytes):
        raise ValueError(f"{where} must be a 2-D numeric array, got a string")
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        X = np.asarray(X)
    if X.dtype == object or not (
        np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)
    ):
        raise ValueError(f"{where} must hold numbers; its dtype is {X.dtype}")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{where} must hold real numbers; its dtype is {X.dtype}")
    if X.ndim != 2:
        raise ValueError(
            f"{where} must be 2-D (rows = data points, columns = features); "
            f"it has {X.ndim} dimension(s), shape {X.shape}"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{where} is empty: shape {X.shape}")
    return X
