"""The interface every observation model implements.

An observation model owns the per-component likelihood p(x | theta_k), its conjugate prior
and the posterior (VB) or point estimate (EM). It turns a batch and its responsibilities into
additive statistics, turns statistics into parameters, and evaluates its ELBO term from
statistics alone. It never loops over data points; per-component loops are allowed only around
BLAS calls.

Conventions shared by all observation models
--------------------------------------------
- ``X`` is (N, D), numpy or cupy (``mixstream.backend.get_namespace(X)`` tells which); every
  statistic returned is float64 and of the same namespace (SuffStats moves it to the host).
- ``self.inference`` is "vb" or "em", set at construction (the Model passes it on).
- ``cache`` is a dict that ``log_prob`` may fill with per-batch features (e.g. the outer
  products x x^T) that ``calc_stats`` then reuses for the same rows; both must also work with
  ``cache=None``.
- Parameters after ``update`` always have K = SS.K components, in SS's order.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from mixstream.suffstats import SuffStats

INFERENCES = ("vb", "em")
#: cache key the Model sets (to True) when ``log_prob`` may return float32 log-probabilities
#: (a float32 GEMM's, not widened): the Model's float32 softmax kernel then reads them as they
#: are. Observation models are free to ignore it.
LOG_PROB_FLOAT32 = "log_prob/float32"


def weighted_mean(values: Any, weights: Any = None) -> np.ndarray:
    """Row-weighted mean of ``values`` (N, ...) on the host, float64."""
    from mixstream.backend import to_host

    v = np.asarray(to_host(values), dtype=np.float64)
    if weights is None:
        return v.mean(axis=0)
    w = np.asarray(to_host(weights), dtype=np.float64)
    return np.tensordot(w, v, axes=1) / w.sum()


class ObsModel(ABC):
    """Per-component likelihood, prior and posterior.

    Parameters
    ----------
    inference : {"vb", "em"}
    """

    #: the name users pass as ``likelihood=``
    likelihood: str = ""

    def __init__(self, inference: str = "vb") -> None:
        if inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
        self.inference = inference
        self.K = 0
        self.n_features = 0

    # -------------------------------------------------------------- data
    @abstractmethod
    def validate(self, X: Any, where: str = "X") -> None:
        """Raise ValueError naming ``where`` and the offending rows if X is not valid data
        for this likelihood (NaN / inf are checked by the caller)."""

    @abstractmethod
    def set_prior_from_data(self, X: Any, weights: Any = None) -> None:
        """Fill data-dependent prior defaults (e.g. prior mean = data mean) from X (N, D),
        a sample of the data, with optional row weights (N,). Called once, before
        initialisation; sets ``n_features``. Explicit prior values given by the user are kept.
        """

    def log_predictive(self, X: Any) -> Any:
        """log p(x_n | posterior of component k), shape (N, K), where it has a closed form
        (VB only); None where it does not, and callers then use ``log_prob``."""
        return None

    def log_prior_predictive(self, X: Any) -> Any:
        """log p(x_n) under the prior alone (a component no row has joined yet), shape (N,),
        where it has a closed form (VB only); None where it does not."""
        return None

    # -------------------------------------------------------------- the four verbs
    @abstractmethod
    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        """E_q[log p(x_n | theta_k)] (vb) or log p(x_n | theta_k) (em), shape (N, K), plus
        ``bias`` (K,) when given (the log weights: a model folds them into its products rather
        than making another pass over N x K)."""

    def fused_summary(self, X: Any, bias: Any) -> tuple[dict[str, Any], float] | None:
        """``calc_stats(X, resp)`` with the responsibilities of ``log_prob(X, bias=bias)``, the
        column sums "N" and the assignment entropy "Hresp" (K,), and the sum of the rows' log
        normalisers, all in one pass that never holds resp (N, K); None where the model has no
        such path for X (the Model then runs the two verbs)."""
        return None

    @abstractmethod
    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        """Additive statistics of (X, resp): name -> array (K, ...) float64. Must not include
        "Hresp"; may include "N" = resp.sum(axis=0) where it comes for free (a Gaussian's
        constant feature), else the Model adds it."""

    @abstractmethod
    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        """Global step: posterior (vb) or MAP / ML estimate (em) from SS. With ``rho`` in (0, 1]
        the natural parameters move rho of the way from the current ones to the full update
        (stochastic VB / stepwise EM); rho=None or 1 is the plain update."""

    @abstractmethod
    def elbo_term(self, SS: SuffStats) -> float:
        """vb: E_q[log p(X | theta)] + E[log p(theta)] - E[log q(theta)], from statistics,
        valid for any q (not only the one SS produced). em: sum_n sum_k r_nk log p(x_n|theta_k)
        + log prior(theta) (0 for maximum likelihood)."""

    # -------------------------------------------------------------- parameters
    @abstractmethod
    def point_estimates(self) -> dict[str, np.ndarray]:
        """Host arrays a user reads: at least "means" (K, D); Gaussians add "covariances",
        "precisions", "precisions_cholesky" in scikit-learn's shapes for the covariance type."""

    @abstractmethod
    def n_free_params(self) -> int:
        """Free parameters of the K components (for BIC / AIC)."""

    @abstractmethod
    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to restore the fitted model, as named host arrays."""

    @abstractmethod
    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore from ``get_state``'s output."""

    @abstractmethod
    def sample(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws (n, D) from component k's point / expected parameters."""

    # -------------------------------------------------------------- shared checks
    def check_shape(self, X: Any, where: str = "X", columns: str = "features") -> None:
        """X must be 2-D with the model's number of columns (once that is known)."""
        if X.ndim != 2:
            raise ValueError(f"{where} must be a 2-D array (rows, {columns}), got {X.ndim} dims")
        if self.n_features and X.shape[1] != self.n_features:
            raise ValueError(
                f"{where} has {X.shape[1]} {columns} but the model was set up for {self.n_features}"
            )

    def check_real(self, X: Any, where: str, likelihood: str) -> None:
        """X must be a 2-D array of real numbers with the model's number of features (X may
        be any array-like with ``shape`` and ``dtype``: a store is checked without reading)."""
        shape = getattr(X, "shape", None)
        dtype = getattr(X, "dtype", None)
        if shape is None or len(shape) != 2:
            raise ValueError(f"{where} must be a 2-D array (rows, features), got shape {shape}")
        if dtype is None or np.dtype(dtype).kind not in "biuf":
            raise ValueError(
                f"{where} must hold real numbers for likelihood={likelihood!r}, got {dtype}"
            )
        if self.n_features and shape[1] != self.n_features:
            raise ValueError(
                f"{where} has {shape[1]} features but the model was set up for {self.n_features}"
            )

    def require_prior(self) -> None:
        if self.n_features == 0:
            raise RuntimeError("call set_prior_from_data(X) before fitting")

    def check_components(self, SS: SuffStats) -> None:
        """The ELBO is of the current parameters: SS must describe the same K components."""
        if SS.K != self.K:
            raise ValueError(
                f"SS has {SS.K} components but the observation model has {self.K}; "
                "call update(SS) first"
            )

    def init_space(self, X: Any) -> Any:
        """Coordinates (N, D') of the sample X in which initial clusters are found: X itself;
        a latent-variable model gives its latent coordinates."""
        return X

    def for_proposal(self) -> ObsModel:
        """The observation model a move's proposal (a birth's pieces) is fitted with, on the
        rows of one target component: itself; a model with parameters shared by all components
        (HMoG's linear-Gaussian layer) keeps them fixed there, since those rows alone would
        estimate them for the target only."""
        return self

    def cache_width(self) -> int:
        """Floats per row that ``log_prob`` keeps in its cache (sizes the row blocks)."""
        return 0

    def copy(self) -> ObsModel:
        return copy.deepcopy(self)
