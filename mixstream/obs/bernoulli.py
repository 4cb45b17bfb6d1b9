"""Binary data: D independent Bernoullis per component, x_d | k ~ Bernoulli(p_kd).

Prior: p_kd ~ Beta(lam1_d, lam0_d) (pseudo-counts of ones and zeros; default 1, 1 = uniform).
VB keeps q(p_kd) = Beta(lam1_d + X1_kd, lam0_d + N_k - X1_kd) with the statistic
X1_kd = sum_n r_nk x_nd ("x1", (K, D)).

EM: maximum likelihood p_kd = X1_kd / N_k, or with ``map_prior=True`` the posterior mode
(X1_kd + lam1_d - 1) / (N_k + lam1_d + lam0_d - 2) (needs lam1, lam0 >= 1). Either is clipped to
[eps, 1 - eps] so that every log stays finite; the objective is concave in each p_kd, so the
clipped value is the exact maximiser over that box and EM stays monotone. An empty component
takes the data mean (its objective term is zero whatever p is).

log_prob is one GEMM: X @ (E log p - E log(1 - p))^T + sum_d E log(1 - p_kd), which equals
X @ E[log p]^T + (1 - X) @ E[log(1 - p)]^T.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import digamma, gammaln, xlogy

from mixstream.backend import get_namespace, to_device, to_host
from mixstream.obs.base import ObsModel, weighted_mean
from mixstream.suffstats import SuffStats

#: components with less mass than this are "empty" for EM
_EMPTY = 1e-10
#: rows named in a validation error
_SHOW_ROWS = 10
_CACHE_KEY = "bernoulli/X64"


class BernoulliObs(ObsModel):
    """D independent Bernoullis per component with Beta(lam1, lam0) priors.

    Parameters
    ----------
    inference : {"vb", "em"}
    lam1, lam0 : float or array (D,)
        Beta prior pseudo-counts of ones and of zeros (> 0; >= 1 for ``map_prior``).
    eps : float
        EM clips probabilities to [eps, 1 - eps] (default 1e-10).
    map_prior : bool
        EM only: posterior mode instead of maximum likelihood.
    missing : {"error", "marginalize"}
        "marginalize": a NaN entry drops out of the row's likelihood and of the statistics;
        the statistics then carry "nobs" (K, D), sum_n r_nk [x_nd observed], which takes the
        place of N_k feature by feature (X0 = nobs - x1).
    """

    likelihood = "bernoulli"

    def __init__(
        self,
        inference: str = "vb",
        lam1: Any = 1.0,
        lam0: Any = 1.0,
        eps: float = 1e-10,
        map_prior: bool = False,
        missing: str = "error",
    ) -> None:
        super().__init__(inference)
        if missing not in ("error", "marginalize"):
            raise ValueError(f"missing must be 'error' or 'marginalize', got {missing!r}")
        self.missing = missing
        if not (np.isfinite(eps) and 0.0 < eps < 0.5):
            raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
        self._lam1_user = np.array(lam1, np.float64)
        self._lam0_user = np.array(lam0, np.float64)
        for name, v in (("lam1", self._lam1_user), ("lam0", self._lam0_user)):
            _check_positive(v, name)
            if map_prior and np.any(v < 1.0):
                raise ValueError(
                    f"map_prior=True needs {name} >= 1 (the Beta density has no interior mode "
                    f"otherwise), got {name}={v.tolist()}"
                )
        self.eps = float(eps)
        self.map_prior = bool(map_prior)
        self.lam1 = np.zeros(0)
        self.lam0 = np.zeros(0)
        self.data_mean = np.zeros(0)
        self.a = np.zeros((0, 0))  # vb: q(p) = Beta(a, b)
        self.b = np.zeros((0, 0))
        self.p = np.zeros((0, 0))  # em point estimate
        self._em_N = np.zeros(0)
        self._em_X1 = np.zeros((0, 0))
        self._em_Nd = np.zeros((0, 0))  # per-feature counts behind the EM estimate (missing)
        self._elogp = np.zeros((0, 0))
        self._elog1mp = np.zeros((0, 0))

    # ------------------------------------------------------------------ data and prior
    def validate(self, X: Any, where: str = "X") -> None:
        self.check_shape(X, where)
        xp = get_namespace(X)
        bad = (X != 0) & (X != 1)
        if self.missing == "marginalize":
            bad &= ~xp.isnan(X)
        bad = bad.any(axis=1)
        if bool(bad.any()):
            raise ValueError(
                f"bernoulli data must be 0 or 1: {where} rows {_rows(xp, bad)} hold other values"
            )

    def set_prior_from_data(self, X: Any, weights: Any = None) -> None:
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"set_prior_from_data needs a non-empty 2-D array, got {X.shape}")
        xp = get_namespace(X)
        D = int(X.shape[1])
        self.n_features = D
        self.lam1 = _prior_vector(self._lam1_user, D, "lam1")
        self.lam0 = _prior_vector(self._lam0_user, D, "lam0")
        mean = weighted_mean(xp.asarray(X, dtype=xp.float64), weights)
        self.data_mean = np.clip(mean, self.eps, 1.0 - self.eps)

    # ------------------------------------------------------------------ local step
    def _x64(self, X: Any, cache: dict | None) -> Any:
        if cache is not None:
            X64 = cache.get(_CACHE_KEY)
            if X64 is not None and X64.shape[0] == X.shape[0]:
                return X64
        xp = get_namespace(X)
        X64 = xp.asarray(X, dtype=xp.float64)
        if cache is not None and X64 is not X:
            cache[_CACHE_KEY] = X64
        return X64

    def _observed(self, X: Any, cache: dict | None) -> tuple[Any, Any]:
        """(X with NaN as 0, observed mask as float64) or (X, None) without NaN."""
        X64 = self._x64(X, cache)
        if self.missing != "marginalize":
            return X64, None
        xp = get_namespace(X)
        key = "bernoulli/observed"
        if cache is not None and key in cache and cache[key][0].shape[0] == X.shape[0]:
            return cache[key]
        miss = xp.isnan(X64)
        out = (X64, None) if not bool(miss.any()) else (xp.where(miss, 0.0, X64), 1.0 - miss)
        if cache is not None:
            cache[key] = out
        return out

    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        self.require_prior()
        xp = get_namespace(X)
        X64, W = self._observed(X, cache)
        if W is not None:  # missing entries drop out: sum over observed d only
            lp = X64 @ to_device((self._elogp - self._elog1mp).T, xp)
            lp += W @ to_device(self._elog1mp.T, xp)
            if bias is not None:
                lp += to_device(to_host(bias), xp)[None, :]
            return lp
        lp = X64 @ to_device((self._elogp - self._elog1mp).T, xp)
        const = self._elog1mp.sum(axis=1)
        lp += to_device(const if bias is None else const + to_host(bias), xp)[None, :]
        return lp

    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        self.require_prior()
        xp = get_namespace(X)
        X64, W = self._observed(X, cache)
        r = xp.asarray(resp, dtype=xp.float64)
        stats = {"x1": r.T @ X64}
        if self.missing == "marginalize":
            if W is None:  # every feature observed: N_k itself, summed as the Model sums it
                stats["nobs"] = xp.broadcast_to(r.sum(axis=0)[:, None], stats["x1"].shape)
            else:
                stats["nobs"] = r.T @ W
        return stats

    def _feature_counts(self, SS: SuffStats, N: np.ndarray) -> np.ndarray:
        """Per-feature mass (K, D): "nobs" with missing values, else N_k for every feature."""
        if "nobs" in SS:
            return np.clip(SS["nobs"], 0.0, N[:, None])
        return np.broadcast_to(N[:, None], (SS.K, self.n_features))

    # ------------------------------------------------------------------ global step
    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        self.require_prior()
        if rho is not None and not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {rho!r}")
        K = SS.K
        N = np.maximum(SS.N, 0.0)
        Nd = self._feature_counts(SS, N)
        X1 = np.clip(SS["x1"], 0.0, Nd)
        blend = rho is not None and rho < 1.0 and self.K == K
        if self.inference == "vb":
            a = self.lam1[None] + X1
            b = self.lam0[None] + (Nd - X1)
            if blend:
                a = (1.0 - rho) * self.a + rho * a
                b = (1.0 - rho) * self.b + rho * b
            self.a, self.b = a, b
        else:
            if blend:
                prev = self._em_Nd
                if prev.shape != X1.shape:
                    prev = np.broadcast_to(self._em_N[:, None], X1.shape)
                N = (1.0 - rho) * self._em_N + rho * N
                Nd = (1.0 - rho) * prev + rho * Nd
                X1 = (1.0 - rho) * self._em_X1 + rho * X1
            self._em_N, self._em_X1, self._em_Nd = N.copy(), X1.copy(), np.array(Nd)
            self.p = self._em_estimate(Nd, X1)
        self.K = K
        self._refresh()

    def _em_estimate(self, Nd: np.ndarray, X1: np.ndarray) -> np.ndarray:
        """p from per-feature counts Nd (K, D) (N_k broadcast without missing values)."""
        if self.map_prior:
            num = X1 + (self.lam1 - 1.0)[None]
            den = Nd + (self.lam1 + self.lam0 - 2.0)[None]
        else:
            num, den = X1, np.broadcast_to(Nd, X1.shape)
        full = den > _EMPTY
        p = np.where(full, num / np.where(full, den, 1.0), self.data_mean[None])
        return np.clip(p, self.eps, 1.0 - self.eps)

    def _refresh(self) -> None:
        if self.inference == "vb":
            total = digamma(self.a + self.b)
            self._elogp = digamma(self.a) - total
            self._elog1mp = digamma(self.b) - total
        else:
            self._elogp = np.log(self.p)
            self._elog1mp = np.log1p(-self.p)

    # ------------------------------------------------------------------ objective
    def elbo_term(self, SS: SuffStats) -> float:
        self.check_components(SS)
        N = np.maximum(SS.N, 0.0)
        Nd = self._feature_counts(SS, N)
        X1 = np.clip(SS["x1"], 0.0, Nd)
        X0 = Nd - X1
        if self.inference == "vb":
            # E_q log p(X | p) + E_q log Beta(p | lam) - E_q log q(p), for any Beta q
            terms = (
                (X1 + self.lam1[None] - self.a) * self._elogp
                + (X0 + self.lam0[None] - self.b) * self._elog1mp
                + _c_beta(self.lam1, self.lam0)[None]
                - _c_beta(self.a, self.b)
            )
            return float(terms.sum())
        total = float((xlogy(X1, self.p) + xlogy(X0, 1.0 - self.p)).sum())
        if self.map_prior:
            total += float(
                (
                    (self.lam1 - 1.0)[None] * self._elogp
                    + (self.lam0 - 1.0)[None] * self._elog1mp
                    + _c_beta(self.lam1, self.lam0)[None]
                ).sum()
            )
        return total

    # ------------------------------------------------------------------ parameters
    def _probs(self) -> np.ndarray:
        if self.inference == "vb":
            return self.a / (self.a + self.b)
        return self.p.copy()

    def point_estimates(self) -> dict[str, np.ndarray]:
        probs = self._probs()
        return {"means": probs, "probs": probs.copy()}

    def n_free_params(self) -> int:
        return self.K * self.n_features

    def set_point_params(self, means: Any = None, probs: Any = None, counts: Any = 100.0) -> None:
        """Components from given probabilities (K, D); ``means`` is the same thing (E[x | k]).

        EM uses them (clipped to [eps, 1 - eps]). VB sets q(p_kd) = Beta(lam1 + c_k p_kd,
        lam0 + c_k (1 - p_kd)), c = ``counts`` (scalar or (K,)): how many observations the given
        parameters stand for.
        """
        self.require_prior()
        if (means is None) == (probs is None):
            raise ValueError("give exactly one of means= or probs=")
        probs = np.array(probs if means is None else means, np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.n_features:
            raise ValueError(f"probs must have shape (K, {self.n_features}), got {probs.shape}")
        if not np.all((probs >= 0.0) & (probs <= 1.0)):
            raise ValueError("probs must lie in [0, 1]")
        K = probs.shape[0]
        c = np.broadcast_to(np.asarray(counts, np.float64), (K,)).copy()
        if self.inference == "vb":
            self.a = self.lam1[None] + c[:, None] * probs
            self.b = self.lam0[None] + c[:, None] * (1.0 - probs)
        else:
            self.p = np.clip(probs, self.eps, 1.0 - self.eps)
            self._em_N, self._em_X1 = c, c[:, None] * self.p
        self.K = K
        self._refresh()

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            "n_features": np.array(self.n_features),
            "lam1": self.lam1,
            "lam0": self.lam0,
            "eps": np.array(self.eps),
            "map_prior": np.array(self.map_prior),
            "data_mean": self.data_mean,
            "a": self.a,
            "b": self.b,
            "p": self.p,
            "em_N": self._em_N,
            "em_X1": self._em_X1,
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.n_features = int(state["n_features"])
        self.lam1 = np.array(state["lam1"], np.float64)
        self.lam0 = np.array(state["lam0"], np.float64)
        self.eps = float(state["eps"])
        self.map_prior = bool(state["map_prior"])
        self.data_mean = np.array(state["data_mean"], np.float64)
        self.a = np.array(state["a"], np.float64)
        self.b = np.array(state["b"], np.float64)
        self.p = np.array(state["p"], np.float64)
        self._em_N = np.array(state["em_N"], np.float64)
        self._em_X1 = np.array(state["em_X1"], np.float64)
        self.K = int((self.a if self.inference == "vb" else self.p).shape[0])
        self._refresh()

    def sample(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.random((n, self.n_features)) < self._probs()[k]).astype(np.float64)


# ---------------------------------------------------------------------- helpers
def _c_beta(a: Any, b: Any) -> Any:
    """log normaliser of Beta(a, b): log Gamma(a + b) - log Gamma(a) - log Gamma(b)."""
    return gammaln(a + b) - gammaln(a) - gammaln(b)


def _check_positive(v: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(v) & (v > 0)):
        raise ValueError(f"{name} must be positive and finite, got {v.tolist()}")


def _prior_vector(v: np.ndarray, D: int, name: str) -> np.ndarray:
    """A scalar or (D,) prior parameter as a (D,) float64 array, with a clear shape error."""
    if v.ndim == 0:
        return np.full(D, float(v))
    if v.shape != (D,):
        raise ValueError(
            f"{name} must be a scalar or an array of shape (n_features,) = ({D},), "
            f"got shape {v.shape}"
        )
    return v.astype(np.float64, copy=True)


def _rows(xp: Any, bad: Any) -> str:
    """The first offending row indices as text: "[3, 17]", or "[0, 1, ..., 9, ...] (25 rows)"."""
    rows = to_host(xp.flatnonzero(bad))
    text = ", ".join(str(int(r)) for r in rows[:_SHOW_ROWS])
    if rows.size > _SHOW_ROWS:
        return f"[{text}, ...] ({rows.size} rows)"
    return f"[{text}]"
