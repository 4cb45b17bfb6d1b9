"""Checks on data values, with messages that say what is wrong and where."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mixstream.backend import get_namespace, to_host


def check_finite(
    X: Any, where: str, row_offset: int = 0, max_rows: int = 5, allow_nan: bool = False
) -> None:
    """Raise ValueError naming ``where`` and the first rows holding NaN or inf.

    ``allow_nan`` (``missing="marginalize"``): NaN marks a missing value and is allowed, but
    inf and rows (of a 2-D X) with every value missing are still refused.
    """
    xp = get_namespace(X)
    if X.dtype.kind in "iub":
        return  # integers cannot hold NaN or inf
    if allow_nan:
        _check_missing(X, where, row_offset, max_rows, xp)
        return
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


def _check_missing(X: Any, where: str, row_offset: int, max_rows: int, xp: Any) -> None:
    """NaN allowed; inf and (2-D) rows of NaN only refused, naming the rows."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = X.sum() if X.size else None
    if total is None or bool(xp.isfinite(total)):
        return
    inf = xp.isinf(X)
    nan_rows = xp.isnan(X).all(axis=1) if X.ndim > 1 else None
    if X.ndim > 1:
        inf = inf.any(axis=1)
    for bad, what in ((inf, "infinite values"), (nan_rows, "every value missing (NaN)")):
        if bad is not None and bool(bad.any()):
            rows = to_host(xp.flatnonzero(bad)[:max_rows]) + row_offset
            raise ValueError(
                f"{where} holds {what} in {int(bad.sum())} row(s); first rows: {rows.tolist()}"
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


class DegenerateDataWarning(UserWarning):
    """Data a mixture can be fitted to, but not meaningfully as it is (a constant feature,
    every row the same point, fewer rows than the starting number of components)."""


#: rows of a store read for the zero-variance and duplicate checks (in-memory data: all rows)
CHECK_SAMPLE_ROWS = 10_000


def _check_sample(source: Any) -> tuple[np.ndarray | None, bool]:
    """Rows to look at for constant features and duplicates, and whether they are all rows:
    an in-memory array whole, otherwise the first rows of the first batch (never a full pass
    over a store)."""
    X = getattr(source, "X", None)
    if X is not None and not type(X).__module__.startswith("dask"):  # a dask array: streamed
        return np.asarray(to_host(X)), True
    try:
        first = np.asarray(to_host(source.read(0)))[:CHECK_SAMPLE_ROWS]
    except Exception:  # the fit reads the batch itself and reports the problem
        return None, False
    return first, first.shape[0] >= int(source.n_rows)


def check_fit_data(source: Any, n_components: int, k_grows: bool, where: str | None = None) -> int:
    """The checks on the data of a fit that every front end shares (``MixtureModel.fit``, the
    application layer and so the command line and the flows all go through them); the number
    of components the fit starts from.

    - fewer than two rows: ValueError;
    - fewer rows than ``n_components``: ValueError naming both, unless the number of
      components adapts (``k_grows``: a DP mixture fitted by moVB with moves), where
      ``n_components`` is only a starting point: a DegenerateDataWarning, and the fit starts
      from ``n_rows`` components;
    - a feature of zero variance: a DegenerateDataWarning naming its indices (the prior keeps
      each component's variance positive, so the fit goes on);
    - every row the same point: a DegenerateDataWarning (the fit goes on; all components lie
      on that point).
    Zero variance and duplicates are judged on in-memory data as a whole and on the first
    ``CHECK_SAMPLE_ROWS`` rows of a store (the warning says so).
    """
    where = where or str(getattr(source, "name", "") or "X")
    n_rows = int(source.n_rows)
    if n_rows < 2:
        raise ValueError(
            f"{where} has n_samples={n_rows} row(s): a mixture needs at least 2 rows to fit"
        )
    start = n_components
    if n_rows < n_components:
        if not k_grows:
            raise ValueError(
                f"Expected n_samples >= n_components, got n_components={n_components}, "
                f"n_samples={n_rows} ({where}): lower n_components to at most {n_rows}, or "
                "fit a DP mixture with algorithm='movb' and moves, where n_components is "
                "only a starting point"
            )
        start = n_rows
        warnings.warn(
            f"{where} has {n_rows} rows, fewer than n_components={n_components}: the DP "
            f"moVB fit starts from {n_rows} components (n_components is a starting point)",
            DegenerateDataWarning,
            stacklevel=3,
        )
    X, whole = _check_sample(source)
    if X is None or X.ndim != 2 or X.shape[0] < 2:
        return start
    rows = "" if whole else f" in its first {X.shape[0]} rows (of {n_rows})"
    constant = np.flatnonzero(X.min(axis=0) == X.max(axis=0))  # no (N, D) temporary
    if constant.size == X.shape[1]:
        warnings.warn(
            f"every row of {where}{rows} is the same point: all components are fitted to that "
            "one point (the prior keeps their variances positive)",
            DegenerateDataWarning,
            stacklevel=3,
        )
    elif constant.size:
        shown = constant[:20].tolist()
        more = f" and {constant.size - 20} more" if constant.size > 20 else ""
        warnings.warn(
            f"feature(s) {shown}{more} of {where} have zero variance{rows}: the prior keeps "
            "each component's variance of them positive (reg_covar); drop them if they carry "
            "no information",
            DegenerateDataWarning,
            stacklevel=3,
        )
    return start
