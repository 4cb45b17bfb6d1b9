"""Dirichlet-process weights by truncated stick-breaking, Beta(1, alpha) sticks."""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln, xlogy

from mixstream.alloc.base import AllocModel
from mixstream.suffstats import SuffStats


def _c_beta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log normaliser of Beta(a, b): log Gamma(a + b) - log Gamma(a) - log Gamma(b)."""
    return gammaln(a + b) - gammaln(a) - gammaln(b)


def _mass_after(N: np.ndarray) -> np.ndarray:
    """sum_{l > k} N_l for each k, shape (K,)."""
    return np.concatenate([np.cumsum(N[::-1])[::-1][1:], [0.0]])


class DPAlloc(AllocModel):
    """pi_k = v_k prod_{l<k} (1 - v_l), v_k ~ Beta(1, alpha), truncated at K components.

    VB: q(v_k) = Beta(eta1_k, eta0_k), eta1 = 1 + N_k, eta0 = alpha + sum_{l>k} N_l; the mass
    prod_k (1 - v_k) left after the K-th stick belongs to components not yet represented.
    EM (DP MAP): the mode of each stick's posterior, v_k = N_k / (N_k + sum_{l>k} N_l + alpha - 1),
    which needs alpha >= 1 (for alpha < 1 the Beta(1, alpha) density is unbounded at v = 1).
    """

    def __init__(self, alpha: float = 1.0, inference: str = "vb") -> None:
        super().__init__(alpha, inference)
        if inference == "em" and alpha < 1.0:
            raise ValueError(
                f"DP MAP estimation (algorithm='em', allocation='dp') needs alpha >= 1, got "
                f"{alpha}: for alpha < 1 the stick prior has no finite mode"
            )
        self.eta1 = np.zeros(0)
        self.eta0 = np.zeros(0)
        self.sticks = np.zeros(0)

    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        K = SS.K
        N = np.maximum(SS.N, 0.0)
        after = _mass_after(N)
        if self.inference == "em":
            denom = N + after + self.alpha - 1.0
            with np.errstate(invalid="ignore", divide="ignore"):
                new = np.where(denom > 0, N / denom, 1.0)
            new = np.clip(new, 0.0, 1.0)
            blend = rho is not None and self.K == K
            self.sticks = (1 - rho) * self.sticks + rho * new if blend else new
        else:
            e1, e0 = 1.0 + N, self.alpha + after
            if rho is not None and self.K == K:
                e1 = (1 - rho) * self.eta1 + rho * e1
                e0 = (1 - rho) * self.eta0 + rho * e0
            self.eta1, self.eta0 = e1, e0
        self.K = K

    def _elog_sticks(self) -> tuple[np.ndarray, np.ndarray]:
        total = digamma(self.eta1 + self.eta0)
        return digamma(self.eta1) - total, digamma(self.eta0) - total

    def log_weights(self) -> np.ndarray:
        if self.inference == "em":
            with np.errstate(divide="ignore"):
                log_v, log_1mv = np.log(self.sticks), np.log1p(-self.sticks)
        else:
            log_v, log_1mv = self._elog_sticks()
        return log_v + np.concatenate([[0.0], np.cumsum(log_1mv)[:-1]])

    def expected_weights(self) -> np.ndarray:
        if self.inference == "em":
            v = self.sticks
        else:
            v = self.eta1 / (self.eta1 + self.eta0)
        # E[pi_k] = E[v_k] prod_{l<k} E[1 - v_l] since the sticks are independent under q
        return v * np.concatenate([[1.0], np.cumprod(1.0 - v)[:-1]])

    def elbo_term(self, SS: SuffStats) -> float:
        if self.inference == "em":
            v = self.sticks
            lw = self.log_weights()
            used = SS.N > 0
            ll = float(SS.N[used] @ lw[used])
            return ll + SS.K * np.log(self.alpha) + float(xlogy(self.alpha - 1.0, 1.0 - v).sum())
        elog_v, elog_1mv = self._elog_sticks()
        prior = _c_beta(np.ones(SS.K), np.full(SS.K, self.alpha))
        kl_part = (
            prior
            - _c_beta(self.eta1, self.eta0)
            + (1.0 - self.eta1) * elog_v
            + (self.alpha - self.eta0) * elog_1mv
        )
        return float(SS.N @ self.log_weights() + kl_part.sum())

    def get_state(self) -> dict[str, np.ndarray]:
        return {"eta1": self.eta1, "eta0": self.eta0, "sticks": self.sticks}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.eta1 = np.asarray(state["eta1"], np.float64)
        self.eta0 = np.asarray(state["eta0"], np.float64)
        self.sticks = np.asarray(state["sticks"], np.float64)
        self.K = int(max(self.eta1.size, self.sticks.size))

    def set_weights(self, weights: np.ndarray) -> None:
        """Sticks that reproduce the given weights (for initialisation from parameters)."""
        w = np.asarray(weights, np.float64)
        w = w / w.sum()
        left = np.concatenate([[1.0], 1.0 - np.cumsum(w)[:-1]])
        self.sticks = np.clip(w / np.maximum(left, 1e-300), 0.0, 1.0)
        self.eta1 = 1.0 + w
        self.eta0 = self.alpha + _mass_after(w)
        self.K = w.size
