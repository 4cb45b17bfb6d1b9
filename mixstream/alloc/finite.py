"""Finite mixture weights with a symmetric Dirichlet(alpha / K) prior."""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln, xlogy

from mixstream.alloc.base import AllocModel
from mixstream.suffstats import SuffStats


def _c_dir(conc: np.ndarray) -> float:
    """log normaliser of Dirichlet(conc): log Gamma(sum conc) - sum log Gamma(conc)."""
    return float(gammaln(conc.sum()) - gammaln(conc).sum())


class FiniteAlloc(AllocModel):
    """Weights pi ~ Dirichlet(alpha / K, ..., alpha / K).

    VB keeps q(pi) = Dirichlet(theta), theta_k = alpha / K + N_k. EM takes the posterior mode
    (N_k + a - 1) / (N + K (a - 1)) with a = alpha / K when a >= 1; for a < 1 that mode lies on
    the simplex boundary, so EM uses the maximum-likelihood weights N_k / N instead (what
    scikit-learn's GaussianMixture does).
    """

    def __init__(self, alpha: float = 1.0, inference: str = "vb") -> None:
        super().__init__(alpha, inference)
        self.theta = np.zeros(0)
        self.weights = np.zeros(0)

    def prior_conc(self, K: int | None = None) -> float:
        return self.alpha / (K or self.K)

    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        K = SS.K
        a = self.prior_conc(K)
        if self.inference == "em":
            w = SS.N + max(a - 1.0, 0.0)
            total = w.sum()
            new = w / total if total > 0 else np.full(K, 1.0 / K)
            self.weights = (
                new if rho is None or self.K != K else (1 - rho) * self.weights + rho * new
            )
        else:
            new = a + SS.N
            self.theta = new if rho is None or self.K != K else (1 - rho) * self.theta + rho * new
        self.K = K

    def log_weights(self) -> np.ndarray:
        if self.inference == "em":
            with np.errstate(divide="ignore"):
                return np.log(self.weights)
        return digamma(self.theta) - digamma(self.theta.sum())

    def expected_weights(self) -> np.ndarray:
        if self.inference == "em":
            return self.weights.copy()
        return self.theta / self.theta.sum()

    def elbo_term(self, SS: SuffStats) -> float:
        a = self.prior_conc(SS.K)
        if self.inference == "em":
            w = self.weights
            lp = float(xlogy(SS.N, w).sum())
            if a >= 1.0:  # log Dirichlet density of the MAP weights
                lp += _c_dir(np.full(SS.K, a)) + float(xlogy(a - 1.0, w).sum())
            return lp
        elog = self.log_weights()
        return float(
            SS.N @ elog + _c_dir(np.full(SS.K, a)) - _c_dir(self.theta) + (a - self.theta) @ elog
        )

    def get_state(self) -> dict[str, np.ndarray]:
        return {"theta": self.theta, "weights": self.weights}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.theta = np.asarray(state["theta"], np.float64)
        self.weights = np.asarray(state["weights"], np.float64)
        self.K = int(max(self.theta.size, self.weights.size))

    def set_weights(self, weights: np.ndarray) -> None:
        """Point weights (EM) for initialisation from given parameters."""
        w = np.asarray(weights, np.float64)
        self.weights = w / w.sum()
        self.theta = self.prior_conc(w.size) + w  # unused by EM; keeps K consistent
        self.K = w.size
