"""The model factory: a ``Model`` (allocation + observation model) from ``FitOptions``.

Used by the estimator, by the lap driver (``mixstream.fit_run``, which rebuilds models when it
restarts or resumes from a checkpoint) and by ``MixtureModel.load``. It sits just above
``model.py`` and imports nothing from the estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.alloc import ALLOCATIONS
from mixstream.model import Model
from mixstream.obs.gauss import canonical_covariance_type
from mixstream.obs.gauss.grid import REG_COVAR_FLOOR
from mixstream.obs.registry import OBSERVATIONS
from mixstream.options import GAUSS_PRIORS, FitOptions


def compute_dtype(options: FitOptions, data_dtype: Any = None) -> str:
    """The local step's precision: ``dtype``, or the data's own (float32 for float32 data,
    float64 for everything else), as scikit-learn's GaussianMixture computes in the dtype of
    X. The statistics and the global step are float64 either way."""
    if options.dtype is not None:
        return options.dtype
    float32 = data_dtype is not None and np.dtype(data_dtype) == np.float32
    return "float32" if float32 else "float64"


def build_model(options: FitOptions, data_dtype: Any = None) -> Model:
    """A fresh (uninitialised) Model for ``options`` (validated); ``data_dtype`` is the
    dtype of the data it will fit (it picks the Gaussian local step's precision)."""
    inference = options.inference
    alloc = ALLOCATIONS[options.allocation](alpha=options.alpha, inference=inference)
    obs_options = dict(options.obs_prior or {})
    if options.missing != "error":  # every likelihood takes it; the default stays implicit
        obs_options["missing"] = options.missing
    if options.likelihood == "gauss":
        obs_options.update(
            covariance_type=canonical_covariance_type(options.covariance_type),
            reg_covar=options.reg_covar,
            map_prior=options.map_prior,
            compute_dtype=compute_dtype(options, data_dtype),
        )
        obs_options.update({p: getattr(options, p) for p in GAUSS_PRIORS})
    elif options.likelihood == "hmog":
        from mixstream.learn.algorithms import memoized

        auto = options.reg_covar == "auto"
        # whitening moves the latent coordinates; a memoized cache holds statistics of earlier
        # coordinates, so only full-batch EM whitens (see HMoGObs)
        obs_options.setdefault("whiten", inference == "em" and not memoized(options))
        # per-component layer statistics cost O(K p d) a row; only a birth needs them
        obs_options.setdefault("split_rows", "birth" in options.run_moves)
        obs_options.update(
            latent_dim=options.latent_dim,
            covariance_type=options.covariance_type,
            reg_covar=1e-6 if auto else options.reg_covar,
            map_prior=options.map_prior,
        )
    else:
        obs_options["map_prior"] = options.map_prior
        if options.likelihood == "zero_mean_gauss":
            # the grid floor is the Gaussian family's (obs/gauss/grid.py); a zero-mean model
            # keeps the plain floor
            auto = options.reg_covar == "auto"
            obs_options["reg_covar"] = REG_COVAR_FLOOR if auto else options.reg_covar
    obs = OBSERVATIONS[options.likelihood](inference=inference, **obs_options)
    return Model(alloc, obs)


__all__ = ["build_model", "compute_dtype"]
