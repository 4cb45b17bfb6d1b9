"""Labelled inputs of the estimator: pandas DataFrames and xarray DataArrays / Datasets.

A DataFrame sets ``feature_names_in_`` at fit (scikit-learn's rules: every column name a
string) and later calls must pass the same columns in the same order. An xarray DataArray
(2-D: the sample dimension first, then the features) or Dataset (one 1-D variable per feature
along one shared sample dimension) sets ``sample_dim_`` and, from the feature coordinate or the
variable names, ``feature_names_in_``; per-row outputs come back as DataArrays along the sample
dimension with its coordinate. A Dask-backed xarray object is handed on as its dask array, so
it is streamed batch by batch (``mixstream.data.dask_source``) and never read whole.

``fit_input`` and ``checked_input`` do the work; the decorators ``labelled_rows`` and
``labelled_input`` put them around the estimator's verbs (only the outermost verb of a call
checks, so verbs calling verbs do not check twice).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

#: the name of the component axis of per-row (n_samples, K) outputs
COMPONENT_DIM = "component"

_depth = threading.local()


def _kind(X: Any) -> str | None:
    """ "pandas", "dataarray", "dataset" or None."""
    module, name = type(X).__module__, type(X).__name__
    if module.startswith("pandas") and name == "DataFrame":
        return "pandas"
    if module.startswith("xarray"):
        return {"DataArray": "dataarray", "Dataset": "dataset"}.get(name)
    return None


def _check_numeric(names: list[Any], dtypes: list[Any], where: str) -> None:
    for name, dt in zip(names, dtypes, strict=True):
        dt = np.dtype(dt) if not hasattr(dt, "kind") else dt
        if getattr(dt, "kind", "O") not in "biuf":
            raise ValueError(
                f"{where} column {name!r} has dtype {dt}, not numbers: mixture models take "
                "numeric features only (encode or drop it first)"
            )


def _as_dataarray(X: Any) -> Any:
    """A Dataset's variables as one (sample, feature) DataArray; a DataArray as it is."""
    if _kind(X) == "dataset":
        dims = {d for v in X.data_vars.values() for d in v.dims}
        if len(dims) != 1 or any(v.ndim != 1 for v in X.data_vars.values()):
            raise ValueError(
                "an xarray Dataset must hold 1-D variables (one per feature) along one sample "
                f"dimension; its variables have dims {sorted(dims)}"
            )
        _check_numeric(list(X.data_vars), [v.dtype for v in X.data_vars.values()], "Dataset")
        return X.to_dataarray(dim="feature").transpose(next(iter(dims)), "feature")
    if X.ndim != 2:
        raise ValueError(
            f"an xarray DataArray must be 2-D (sample dimension, features); it has dims {X.dims}"
        )
    _check_numeric([X.name or "values"], [X.dtype], "DataArray")
    return X


def _names_of(da: Any) -> np.ndarray | None:
    """The feature names of a (sample, feature) DataArray: its feature coordinate's values,
    when they are strings."""
    feature = da.dims[1]
    if feature not in da.coords:
        return None
    values = np.asarray(da.coords[feature].values)
    if values.dtype.kind not in "UO" or not all(isinstance(v, str) for v in values):
        return None
    return values.astype(object)


def _plain(da: Any) -> Any:
    """The values of a DataArray: its dask array when Dask-backed (streamed), else numpy."""
    data = da.data
    return data if type(data).__module__.startswith("dask") else np.asarray(data)


def fit_input(est: Any, X: Any) -> Any:
    """X as plain rows for ``fit``; sets (or clears) ``feature_names_in_`` and ``sample_dim_``."""
    from sklearn.utils.validation import _check_feature_names

    kind = _kind(X)
    for name in ("feature_names_in_", "sample_dim_"):
        if hasattr(est, name):
            delattr(est, name)
    if kind is None:
        return X
    if kind == "pandas":
        _check_numeric(list(X.columns), list(X.dtypes), "DataFrame")
        _check_feature_names(est, X, reset=True)
        return X.to_numpy()
    da = _as_dataarray(X)
    est.sample_dim_ = str(da.dims[0])
    names = _names_of(da)
    if names is not None:
        est.feature_names_in_ = names
    return _plain(da)


def checked_input(est: Any, X: Any) -> tuple[Any, Callable[[Any], Any]]:
    """X as plain rows for a verb of the fitted ``est``, its feature names checked, and the
    function that turns a per-row output into the input's kind (a DataArray for xarray)."""
    from sklearn.utils.validation import _check_feature_names

    kind = _kind(X)
    if kind in (None, "pandas"):
        if kind == "pandas":
            _check_numeric(list(X.columns), list(X.dtypes), "DataFrame")
        if kind == "pandas" or (hasattr(est, "feature_names_in_") and hasattr(X, "shape")):
            _check_feature_names(est, X, reset=False)
        return (X.to_numpy() if kind == "pandas" else X), _same
    da = _as_dataarray(X)
    _check_xarray_names(est, _names_of(da))
    return _plain(da), functools.partial(_to_dataarray, da.dims[0], da.coords.get(da.dims[0]))


def _check_xarray_names(est: Any, names: np.ndarray | None) -> None:
    fitted = getattr(est, "feature_names_in_", None)
    if fitted is None or names is None:
        return
    if len(names) != len(fitted) or (names != fitted).any():
        unseen = [n for n in names if n not in set(fitted)]
        missing = [n for n in fitted if n not in set(names)]
        raise ValueError(
            "The feature names should match those that were passed during fit: "
            f"unseen at fit time {unseen}, seen at fit time but missing now {missing}"
            + ("" if unseen or missing else "; they must be in the same order")
        )


def _same(out: Any) -> Any:
    return out


def _to_dataarray(sample_dim: str, coord: Any, out: Any) -> Any:
    """A per-row numpy output as a DataArray along ``sample_dim`` (with its coordinate)."""
    import xarray as xr

    if not isinstance(out, np.ndarray) or out.ndim not in (1, 2):
        return out  # a scalar, or a zarr.Array written for a store
    dims = (sample_dim,) if out.ndim == 1 else (sample_dim, COMPONENT_DIM)
    coords = {} if coord is None else {sample_dim: coord}
    return xr.DataArray(out, dims=dims, coords=coords)


def _outermost(method: Callable[..., Any], wrap_output: bool) -> Callable[..., Any]:
    @functools.wraps(method)
    def verb(self: Any, X: Any, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(_depth, "n", 0)
        if depth:
            return method(self, X, *args, **kwargs)
        self._check_fitted()
        X, wrap = checked_input(self, X)
        _depth.n = depth + 1
        try:
            out = method(self, X, *args, **kwargs)
        finally:
            _depth.n = depth
        return wrap(out) if wrap_output else out

    return verb


def labelled_rows(method: Callable[..., Any]) -> Callable[..., Any]:
    """A per-row verb (predict, predict_proba, score_samples) of labelled inputs."""
    return _outermost(method, wrap_output=True)


def labelled_input(method: Callable[..., Any]) -> Callable[..., Any]:
    """A verb with a scalar or store output (score, bic, aic, score_store) of labelled inputs."""
    return _outermost(method, wrap_output=False)
