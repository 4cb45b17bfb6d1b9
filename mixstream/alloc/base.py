"""The interface every allocation model implements."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import numpy as np

from mixstream.suffstats import SuffStats

INFERENCES = ("vb", "em")


class AllocModel(ABC):
    """Prior and posterior over the mixture weights of K components.

    Parameters
    ----------
    alpha : float
        Concentration (> 0).
    inference : {"vb", "em"}
        "vb": a posterior distribution and expected log weights; "em": point (MAP/ML) weights.
    """

    def __init__(self, alpha: float = 1.0, inference: str = "vb") -> None:
        if not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
        if inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {inference!r}")
        self.alpha = float(alpha)
        self.inference = inference
        self.K = 0

    @abstractmethod
    def log_weights(self) -> np.ndarray:
        """E[log pi_k] (vb) or log pi_k (em), shape (K,)."""

    @abstractmethod
    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        """Global step from statistics; ``rho`` blends natural parameters (stochastic VB)."""

    @abstractmethod
    def elbo_term(self, SS: SuffStats) -> float:
        """E[log p(z | pi)] + E[log p(pi)] - E[log q(pi)] (vb) or the MAP objective term (em)."""

    @abstractmethod
    def expected_weights(self) -> np.ndarray:
        """E[pi_k] (vb) or pi_k (em), shape (K,); the mass beyond K (DP) is not included."""

    @abstractmethod
    def get_state(self) -> dict[str, np.ndarray]:
        """The fitted parameters as named arrays."""

    @abstractmethod
    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore parameters written by ``get_state``."""

    def get_active_cluster_probs(self) -> np.ndarray:
        """Expected weights of the K represented components, shape (K,)."""
        return self.expected_weights()

    def n_free_params(self) -> int:
        return max(self.K - 1, 0)

    def copy(self) -> AllocModel:
        return copy.deepcopy(self)
