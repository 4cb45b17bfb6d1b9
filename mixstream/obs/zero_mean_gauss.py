"""Zero-mean Gaussian components with full covariance: x | k ~ N(0, Sigma_k).

Prior (VB and MAP-EM): the precision Lambda_k = Sigma_k^{-1} is Wishart with ``nu0`` degrees of
freedom and inverse scale ``B0``,

    p(Lambda) ∝ |Lambda|^{(nu0 - D - 1) / 2} exp(-tr(B0 Lambda) / 2),
    E[Lambda] = nu0 B0^{-1},   E[Sigma] = B0 / (nu0 - D - 1)  (nu0 > D + 1).

The user states the prior as ``nu0`` and ``prior_cov`` = E[Sigma]; then B0 = (nu0 - D - 1)
prior_cov. Defaults (``set_prior_from_data``): nu0 = D + 2, the weakest integer value with a
finite prior mean of Sigma, and prior_cov = the empirical second moment X^T X / N (the data are
not centred: every component has mean zero), so a priori each component looks like the whole
data set.

VB keeps q(Lambda_k) = Wishart(nu_k, B_k) with nu_k = nu0 + N_k, B_k = B0 + S_k, where
S_k = sum_n r_nk x_n x_n^T is the statistic "xxT" (K, D, D).

EM: maximum likelihood Sigma_k = S_k / N_k + reg_covar I (an empty component gets
prior_cov + reg_covar I, which does not change the objective); with ``map_prior=True`` the
posterior mode Sigma_k = (B0 + S_k) / (nu0 + N_k - D - 1) instead (needs nu0 > D + 1).

Local step: x^T A x is linear in the D (D + 1) / 2 products x_d x_e (d <= e), so with
phi(x) = upper triangle of x x^T (cached per block), log_prob for all K components is one GEMM
phi @ W^T and the statistics are one GEMM resp^T @ phi.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import digamma, multigammaln

from mixstream.backend import get_namespace, to_device, to_host
from mixstream.obs.base import ObsModel
from mixstream.obs.gauss.missing import (
    fill_shift,
    find_missing,
    full_correction,
    full_stats_correction,
    split_rows,
)
from mixstream.suffstats import SuffStats

_LOG_2PI = math.log(2.0 * math.pi)
#: components with less mass than this are "empty" for maximum-likelihood EM
_EMPTY = 1e-10
#: cache key for the per-block features phi(X)
_CACHE_KEY = "zero_mean_gauss/xxT_upper"
#: cache key for a block's incomplete rows
_MISSING_KEY = "zero_mean_gauss/missing"


class ZeroMeanGaussObs(ObsModel):
    """x | k ~ N(0, Sigma_k), Wishart prior on the precision.

    Parameters
    ----------
    inference : {"vb", "em"}
    nu0 : float, optional
        Wishart degrees of freedom (> D + 1); default D + 2.
    prior_cov : array (D, D), optional
        Prior mean of each component's covariance, symmetric positive definite; default the
        empirical second moment of the data given to ``set_prior_from_data``.
    reg_covar : float
        Added to the diagonal of maximum-likelihood EM covariances (default 1e-6).
    map_prior : bool
        EM only: the posterior mode under the Wishart prior instead of maximum likelihood.
    missing : {"error", "marginalize"}
        "marginalize": NaN entries are integrated out, as for ``GaussObs`` (the formulas of
        ``obs/gauss/missing.py`` with mean zero); statistics then carry "Hmiss".
    """

    likelihood = "zero_mean_gauss"

    def __init__(
        self,
        inference: str = "vb",
        nu0: float | None = None,
        prior_cov: Any = None,
        reg_covar: float = 1e-6,
        map_prior: bool = False,
        missing: str = "error",
    ) -> None:
        super().__init__(inference)
        if missing not in ("error", "marginalize"):
            raise ValueError(f"missing must be 'error' or 'marginalize', got {missing!r}")
        self.missing = missing
        if nu0 is not None and not (np.isfinite(nu0) and nu0 > 0):
            raise ValueError(f"nu0 must be a positive finite number, got {nu0!r}")
        if not (np.isfinite(reg_covar) and reg_covar >= 0):
            raise ValueError(f"reg_covar must be a non-negative finite number, got {reg_covar!r}")
        self._nu0_user = None if nu0 is None else float(nu0)
        self._prior_cov_user = None if prior_cov is None else np.array(prior_cov, np.float64)
        self.reg_covar = float(reg_covar)
        self.map_prior = bool(map_prior)
        self.nu0 = 0.0
        self.prior_cov = np.zeros((0, 0))
        self.B0 = np.zeros((0, 0))
        # vb posterior
        self.nu = np.zeros(0)
        self.B = np.zeros((0, 0, 0))
        # em point estimate and the statistics it came from (blended by stepwise EM)
        self.cov = np.zeros((0, 0, 0))
        self._em_N = np.zeros(0)
        self._em_S = np.zeros((0, 0, 0))
        self._set_derived_empty()

    # ------------------------------------------------------------------ prior
    def validate(self, X: Any, where: str = "X") -> None:
        self.check_shape(X, where)

    def set_prior_from_data(self, X: Any, weights: Any = None) -> None:
        xp = get_namespace(X)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"set_prior_from_data needs a non-empty 2-D array, got {X.shape}")
        D = int(X.shape[1])
        self._set_features(D)
        nu0 = float(D + 2) if self._nu0_user is None else self._nu0_user
        if nu0 <= D + 1:
            raise ValueError(
                f"nu0 must exceed n_features + 1 = {D + 1} so that the prior mean of the "
                f"covariance exists, got {nu0}"
            )
        if self._prior_cov_user is not None:
            cov = self._prior_cov_user
            if cov.shape != (D, D):
                raise ValueError(
                    f"prior_cov must have shape (n_features, n_features) = ({D}, {D}), "
                    f"got {cov.shape}"
                )
            if not np.allclose(cov, cov.T, rtol=1e-10, atol=0.0) or not _is_pd(cov):
                raise ValueError("prior_cov must be symmetric positive definite")
        else:
            X64 = xp.asarray(X, dtype=xp.float64)
            Xw = X64 if weights is None else X64 * xp.asarray(weights, dtype=xp.float64)[:, None]
            total = X.shape[0] if weights is None else float(to_host(weights).sum())
            cov = to_host(Xw.T @ X64) / total
            cov = 0.5 * (cov + cov.T)
            if not _is_pd(cov):  # a constant-zero column, or fewer rows than features
                scale = max(float(np.trace(cov)) / D, 1.0e-300)
                cov = cov + max(1e-6 * scale, self.reg_covar) * np.eye(D)
        self.nu0 = nu0
        self.prior_cov = np.array(cov, np.float64)
        self.B0 = (nu0 - D - 1.0) * self.prior_cov

    def _set_features(self, D: int) -> None:
        self.n_features = D
        self._iu = np.triu_indices(D)
        # x^T A x = sum_{d<=e} w_de A_de x_d x_e with w = 1 on the diagonal, 2 off it
        self._w = np.where(self._iu[0] == self._iu[1], 1.0, 2.0)

    # ------------------------------------------------------------------ local step
    def _features(self, X: Any, cache: dict | None) -> Any:
        """phi(X) = the upper triangle of x x^T per row, (N, D (D + 1) / 2), float64."""
        if cache is not None:
            phi = cache.get(_CACHE_KEY)
            if phi is not None and phi.shape[0] == X.shape[0]:
                return phi
        xp = get_namespace(X)
        X64 = xp.asarray(X, dtype=xp.float64)
        i, j = (to_device(a, xp) for a in self._iu)
        phi = X64[:, i] * X64[:, j]
        if cache is not None:
            cache[_CACHE_KEY] = phi
        return phi

    def cache_width(self) -> int:
        return self.n_features * (self.n_features + 1) // 2

    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        self.require_prior()
        xp = get_namespace(X)
        if self.missing == "marginalize":
            rows_missing = find_missing(X, xp)
            if rows_missing is not None:
                return self._log_prob_missing(X, rows_missing, xp, cache, bias)
        phi = self._features(X, cache)
        W = self._prec[:, self._iu[0], self._iu[1]] * self._w  # (K, P)
        const = -0.5 * self.n_features * _LOG_2PI + 0.5 * self._logdet
        lp = phi @ to_device(W.T, xp)
        lp *= -0.5
        lp += to_device(const if bias is None else const + to_host(bias), xp)[None, :]
        return lp

    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        self.require_prior()
        xp = get_namespace(X)
        if self.missing == "marginalize":
            return self._calc_stats_missing(X, resp, xp, cache)
        return self._calc_stats_plain(X, resp, xp, cache)

    # ------------------------------------------------------------------ missing values
    def _log_prob_missing(
        self, X: Any, rows_missing: np.ndarray, xp: Any, cache: dict | None, bias: Any
    ) -> Any:
        """The GEMM path with the missing values at 0, plus the marginalisation's correction
        on the incomplete rows (obs/gauss/missing.py, with mean zero)."""
        zero = np.zeros(self.n_features)
        Xf = fill_shift(X, zero, xp, rows_missing)
        out = self.log_prob(Xf, cache, bias)
        mr = split_rows(Xf, rows_missing, zero)
        corr = full_correction(mr, self._prec, np.zeros((self.K, self.n_features)), False)
        out[to_device(mr.rows, xp)] += to_device(corr, xp)
        if cache is not None:
            cache[_MISSING_KEY] = (X.shape[0], mr, Xf)
        return out

    def _calc_stats_missing(self, X: Any, resp: Any, xp: Any, cache: dict | None) -> dict:
        entry = None if cache is None else cache.get(_MISSING_KEY)
        if entry is None or entry[0] != X.shape[0]:
            rows_missing = find_missing(X, xp)
            if rows_missing is None:
                plain = self._calc_stats_plain(X, resp, xp, cache)
                return {**plain, "Hmiss": xp.zeros(resp.shape[1])}
            own: dict = {}
            self._log_prob_missing(X, rows_missing, xp, own, None)
            entry, cache = own[_MISSING_KEY], own
        _, mr, Xf = entry
        S = self._calc_stats_plain(Xf, resp, xp, cache)["xxT"]
        r = np.asarray(to_host(resp), np.float64)
        part = full_stats_correction(mr, r[mr.rows], self.n_features)
        return {"xxT": S + to_device(part["xx"], xp), "Hmiss": to_device(part["Hmiss"], xp)}

    def _calc_stats_plain(self, X: Any, resp: Any, xp: Any, cache: dict | None) -> dict:
        phi = self._features(X, cache)
        T = xp.asarray(resp, dtype=xp.float64).T @ phi  # (K, P)
        D = self.n_features
        i, j = (to_device(a, xp) for a in self._iu)
        S = xp.zeros((T.shape[0], D, D))
        S[:, i, j] = T
        S[:, j, i] = T
        return {"xxT": S}

    # ------------------------------------------------------------------ global step
    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        self.require_prior()
        _check_rho(rho)
        K = SS.K
        N = np.maximum(SS.N, 0.0)
        S = SS["xxT"]
        blend = rho is not None and rho < 1.0 and self.K == K
        if self.inference == "vb":
            nu = self.nu0 + N
            B = self.B0[None] + S
            if blend:
                nu = (1.0 - rho) * self.nu + rho * nu
                B = (1.0 - rho) * self.B + rho * B
            self.nu, self.B = nu, 0.5 * (B + B.transpose(0, 2, 1))
        else:
            if blend:
                N = (1.0 - rho) * self._em_N + rho * N
                S = (1.0 - rho) * self._em_S + rho * S
            self._em_N, self._em_S = N.copy(), S.copy()
            self.cov = self._em_estimate(N, S)
        self.K = K
        self._refresh()

    def _em_estimate(self, N: np.ndarray, S: np.ndarray) -> np.ndarray:
        D = self.n_features
        if self.map_prior:
            cov = (self.B0[None] + S) / (self.nu0 + N - D - 1.0)[:, None, None]
        else:
            full = N > _EMPTY
            safe = np.where(full, N, 1.0)
            cov = np.where(full[:, None, None], S / safe[:, None, None], self.prior_cov[None])
            cov = cov + self.reg_covar * np.eye(D)[None]
        return 0.5 * (cov + cov.transpose(0, 2, 1))

    def _set_derived_empty(self) -> None:
        D = self.n_features
        self._prec = np.zeros((0, D, D))
        self._prec_chol = np.zeros((0, D, D))
        self._logdet = np.zeros(0)
        self._logdet_B = np.zeros(0)

    def _refresh(self) -> None:
        """Precisions (E[Lambda] for vb), their log-determinants and Cholesky factors."""
        D, K = self.n_features, self.K
        if K == 0:
            self._set_derived_empty()
            return
        mats = self.B if self.inference == "vb" else self.cov
        eye = np.eye(D)
        prec = np.empty((K, D, D))
        prec_chol = np.empty((K, D, D))
        logdet_m = np.empty(K)
        for k in range(K):
            try:
                L = np.linalg.cholesky(mats[k])
            except np.linalg.LinAlgError:
                what = "posterior scale B" if self.inference == "vb" else "covariance"
                raise ValueError(
                    f"the {what} of component {k} is not positive definite; increase "
                    "reg_covar or check the data scale"
                ) from None
            Linv = solve_triangular(L, eye, lower=True)
            logdet_m[k] = 2.0 * np.log(np.diag(L)).sum()
            prec[k] = Linv.T @ Linv
            prec_chol[k] = Linv.T  # upper triangular, prec = P P^T (scikit-learn's layout)
        if self.inference == "vb":
            self._logdet_B = logdet_m
            self._prec = prec * self.nu[:, None, None]
            self._prec_chol = prec_chol * np.sqrt(self.nu)[:, None, None]
            self._logdet = _expected_logdet(self.nu, logdet_m, D)
        else:
            self._logdet_B = np.zeros(0)
            self._prec = prec
            self._prec_chol = prec_chol
            self._logdet = -logdet_m

    # ------------------------------------------------------------------ objective
    def elbo_term(self, SS: SuffStats) -> float:
        self.check_components(SS)
        if self.K == 0:
            return 0.0
        D = self.n_features
        N, S = SS.N, SS["xxT"]
        # missing values: the entropy of q(x_m | x_o, k)
        hmiss = float(SS["Hmiss"].sum()) if "Hmiss" in SS else 0.0
        if self.inference == "vb":
            # E_q log p(X | Lambda) + E_q log p(Lambda) - E_q log q(Lambda), for any Wishart q
            resid = S + self.B0[None] - self.B  # (K, D, D)
            terms = (
                -0.5 * D * _LOG_2PI * N
                + 0.5 * (N + self.nu0 - self.nu) * self._logdet
                - 0.5 * np.einsum("kij,kij->k", resid, self._prec)
                + _log_wishart_norm(self.nu0, _logdet(self.B0), D)
                - _log_wishart_norm(self.nu, self._logdet_B, D)
            )
            return float(terms.sum()) + hmiss
        total = hmiss + float(
            (N * (-0.5 * D * _LOG_2PI + 0.5 * self._logdet)).sum()
            - 0.5 * np.einsum("kij,kij->", S, self._prec)
        )
        if self.map_prior:
            total += float(
                (
                    _log_wishart_norm(self.nu0, _logdet(self.B0), D)
                    + 0.5 * (self.nu0 - D - 1.0) * self._logdet
                    - 0.5 * np.einsum("ij,kij->k", self.B0, self._prec)
                ).sum()
            )
        return total

    # ------------------------------------------------------------------ parameters
    def _covariances(self) -> np.ndarray:
        if self.inference == "vb":  # inverse of E[Lambda] (what scikit-learn reports)
            return self.B / self.nu[:, None, None]
        return self.cov.copy()

    def point_estimates(self) -> dict[str, np.ndarray]:
        return {
            "means": np.zeros((self.K, self.n_features)),
            "covariances": self._covariances(),
            "precisions": self._prec.copy(),
            "precisions_cholesky": self._prec_chol.copy(),
        }

    def n_free_params(self) -> int:
        return self.K * self.n_features * (self.n_features + 1) // 2

    def set_point_params(
        self,
        means: Any = None,
        covariances: Any = None,
        precisions: Any = None,
        counts: Any = 100.0,
    ) -> None:
        """Components from given covariances or precisions (K, D, D).

        ``means`` (K, D), if given, must be zeros (it is accepted so that the output of
        ``point_estimates`` and the estimator's point-parameter init can be passed as they
        are); with neither covariances nor precisions, ``means`` sets K and every component
        gets the prior mean covariance. EM uses the covariances as they are. VB sets
        q(Lambda_k) = Wishart(nu0 + c_k, (nu0 + c_k) Sigma_k) so that E[Lambda_k] = Sigma_k^{-1};
        c = ``counts`` (scalar or (K,)) is how many observations the given parameters stand for.
        """
        self.require_prior()
        D = self.n_features
        if covariances is not None and precisions is not None:
            raise ValueError("give covariances= or precisions=, not both")
        if means is not None:
            means = np.asarray(means, np.float64)
            if means.ndim != 2 or means.shape[1] != D:
                raise ValueError(f"means must have shape (K, {D}), got {means.shape}")
            if np.any(means != 0.0):
                raise ValueError("zero_mean_gauss components have mean zero; means must be 0")
        if covariances is None and precisions is None:
            if means is None:
                raise ValueError("give covariances=, precisions= or means= (to set K)")
            covariances = np.broadcast_to(self.prior_cov, (means.shape[0], D, D))
        given = np.array(covariances if precisions is None else precisions, np.float64)
        if given.ndim != 3 or given.shape[1:] != (D, D):
            raise ValueError(f"expected shape (K, {D}, {D}), got {given.shape}")
        if means is not None and means.shape[0] != given.shape[0]:
            raise ValueError(f"means has {means.shape[0]} rows for {given.shape[0]} components")
        cov = given if precisions is None else np.linalg.inv(given)
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        K = cov.shape[0]
        counts = np.broadcast_to(np.asarray(counts, np.float64), (K,)).copy()
        if self.inference == "vb":
            self.nu = self.nu0 + counts
            self.B = cov * self.nu[:, None, None]
        else:
            self.cov = cov
            self._em_N = counts
            self._em_S = cov * counts[:, None, None]
        self.K = K
        self._refresh()

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            "n_features": np.array(self.n_features),
            "nu0": np.array(self.nu0),
            "prior_cov": self.prior_cov,
            "reg_covar": np.array(self.reg_covar),
            "map_prior": np.array(self.map_prior),
            "nu": self.nu,
            "B": self.B,
            "cov": self.cov,
            "em_N": self._em_N,
            "em_S": self._em_S,
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self._set_features(int(state["n_features"]))
        self.nu0 = float(state["nu0"])
        self.prior_cov = np.array(state["prior_cov"], np.float64)
        self.B0 = (self.nu0 - self.n_features - 1.0) * self.prior_cov
        self.reg_covar = float(state["reg_covar"])
        self.map_prior = bool(state["map_prior"])
        self.nu = np.array(state["nu"], np.float64)
        self.B = np.array(state["B"], np.float64)
        self.cov = np.array(state["cov"], np.float64)
        self._em_N = np.array(state["em_N"], np.float64)
        self._em_S = np.array(state["em_S"], np.float64)
        self.K = int(self.nu.size if self.inference == "vb" else self.cov.shape[0])
        self._refresh()

    def sample(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        L = np.linalg.cholesky(self._covariances()[k])
        return rng.standard_normal((n, self.n_features)) @ L.T


# ---------------------------------------------------------------------- helpers
def _check_rho(rho: float | None) -> None:
    if rho is not None and not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho!r}")


def _is_pd(A: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return False
    return True


def _logdet(A: np.ndarray) -> float:
    return float(2.0 * np.log(np.diag(np.linalg.cholesky(A))).sum())


def _expected_logdet(nu: np.ndarray, logdet_B: np.ndarray, D: int) -> np.ndarray:
    """E[log |Lambda|] under Wishart(nu, B^{-1}): sum_d psi((nu + 1 - d) / 2) + D log 2 - log|B|."""
    d = np.arange(1, D + 1)
    return (
        digamma(0.5 * (nu[:, None] + 1.0 - d[None, :])).sum(axis=1) + D * math.log(2.0) - logdet_B
    )


def _log_wishart_norm(nu: Any, logdet_B: Any, D: int) -> Any:
    """log normaliser of Wishart(nu, B^{-1}): nu/2 log|B| - nu D/2 log 2 - log Gamma_D(nu/2)."""
    nu = np.asarray(nu, np.float64)
    return 0.5 * nu * logdet_B - 0.5 * nu * D * math.log(2.0) - multigammaln(0.5 * nu, D)
