"""What a fit leaves on the estimator, and how it is stored.

``fitted_attributes`` reads scikit-learn's fitted attributes (``weights_``, ``means_``,
``covariances_`` ..., ``lower_bound_``, ``n_iter_`` ...) off a Model and its FitResult;
``write_estimator`` / ``read_estimator`` are ``MixtureModel.save`` / ``load`` (arrays + JSON,
never pickle); ``fingerprint`` is what a checkpoint must match to be resumed. The estimator is
passed in (duck-typed); this module does not import it.
"""

from __future__ import annotations

from os import PathLike, fspath
from typing import Any

import numpy as np

from mixstream.build import build_model
from mixstream.learn.history import FitResult
from mixstream.model import Model

#: parameters that describe where a fit ran, not the model; not stored in model files
UNSTORED_PARAMS = ("client",)
#: parameters a checkpoint may differ in and still be resumed
_UNFINGERPRINTED = (*UNSTORED_PARAMS, "max_laps", "verbose", "checkpoint_dir", "engine")


def fitted_attributes(model: Model, result: FitResult) -> dict[str, Any]:
    """The fitted attributes of the estimator whose fit ended with ``model`` and ``result``."""
    w = np.asarray(model.alloc.expected_weights(), dtype=np.float64)
    out: dict[str, Any] = {"weights_": w / w.sum()}
    for name, value in model.obs.point_estimates().items():
        out[f"{name}_"] = value
    out.update(
        lower_bound_=result.lower_bound,
        lower_bounds_=[h["elbo"] for h in result.history],
        converged_=result.converged,
        n_iter_=result.n_iter,
        history_=result.history,
        n_components_=int(model.K),
    )
    return out


def fingerprint(params: dict[str, Any], source: Any) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed by a fit with ``params`` on ``source``."""
    from mixstream.io import _jsonable

    params = {k: v for k, v in params.items() if k not in _UNFINGERPRINTED}
    # options added after checkpoints were first written count only away from their default,
    # so that an interrupted run from before them still resumes
    if params.get("missing") == "error":
        del params["missing"]
    if not isinstance(params["random_state"], int | type(None)):
        params["random_state"] = type(params["random_state"]).__name__
    params = {k: _jsonable(v) for k, v in params.items()}
    out = {
        "n_rows": source.n_rows,
        "n_features": source.n_features,
        "batches": [list(b) for b in source.batches],
        **{f"param {k}": v for k, v in params.items()},
    }
    if getattr(source, "weights_path", None):  # a store's weights: a fit on them is another fit
        out["weights"] = source.weights_path
    return out


def write_estimator(est: Any, path: Any) -> Any:
    """Write a fitted estimator to ``path`` (arrays + JSON; no pickle). Returns the path."""
    from mixstream.io import write_model_file

    params = {k: v for k, v in est.get_params().items() if k not in UNSTORED_PARAMS}
    if not isinstance(params.get("random_state"), int | type(None)):
        params["random_state"] = None
    if isinstance(params.get("checkpoint_dir"), PathLike):
        params["checkpoint_dir"] = fspath(params["checkpoint_dir"])
    meta = {
        "class": type(est).__name__,
        "params": params,
        "fitted": {
            "lower_bound_": est.lower_bound_,
            "converged_": est.converged_,
            "n_iter_": est.n_iter_,
            "n_features_in_": est.n_features_in_,
            "history_": est.history_,
        },
    }
    if getattr(est, "fit_id_", None):  # the run directory's fit (mixstream.app)
        meta["fit_id"] = str(est.fit_id_)
    for name in ("feature_names_in_", "sample_dim_"):  # labelled inputs (mixstream.labelled)
        if hasattr(est, name):
            value = getattr(est, name)
            meta["fitted"][name] = [str(v) for v in value] if name[0] == "f" else str(value)
    return write_model_file(path, meta, est.model_.get_state())


def read_estimator(cls: type, path: Any) -> Any:
    """An estimator of class ``cls`` read from a file written by ``write_estimator``; refuses
    damaged, tampered or newer-format files (ModelFileError)."""
    from mixstream.io import ModelFileError, read_model_file

    meta, arrays = read_model_file(path)
    if meta.get("class") != cls.__name__:
        raise ModelFileError(f"{path} holds a {meta.get('class')!r}, not a {cls.__name__}")
    try:
        params = dict(meta["params"])
        if params.get("moves") is not None:  # JSON made the tuple a list
            params["moves"] = tuple(params["moves"])
        est = cls(**params)
        model = build_model(est._validate_params())
        model.set_state(arrays)
        fitted = meta["fitted"]
        est.model_ = model
        est.n_features_in_ = int(fitted["n_features_in_"])
        result = FitResult(
            fitted["lower_bound_"], fitted["converged_"], fitted["n_iter_"], fitted["history_"]
        )
        est._set_fitted(result)
        if meta.get("fit_id"):
            est.fit_id_ = str(meta["fit_id"])
        if "feature_names_in_" in fitted:
            est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        if "sample_dim_" in fitted:
            est.sample_dim_ = str(fitted["sample_dim_"])
        _check_loaded_shapes(est)
    except ModelFileError:
        raise
    except Exception as err:
        raise ModelFileError(
            f"{path}: the model's metadata or arrays are inconsistent ({err})"
        ) from err
    return est


def _check_loaded_shapes(est: Any) -> None:
    K, D = est.model_.K, est.n_features_in_
    means = getattr(est, "means_", None)
    if means is not None and np.asarray(means).shape != (K, D):
        raise ValueError(f"means have shape {np.asarray(means).shape}, expected {(K, D)}")
    if est.weights_.shape != (K,):
        raise ValueError(f"weights have shape {est.weights_.shape}, expected {(K,)}")


__all__ = [
    "UNSTORED_PARAMS",
    "fingerprint",
    "fitted_attributes",
    "read_estimator",
    "write_estimator",
]
