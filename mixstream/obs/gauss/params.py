"""The Gaussian model's objective and parameters: ELBO terms, point estimates, state, draws.

A mixin of ``GaussObs`` (model.py), kept apart to keep each module short; it reads the
parameters GaussObs holds (m, kappa, nu, psi, cov and the derived _prec, _inv, _logdet, ...)
and asks ``self.covariance_structure`` for everything type-specific.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mixstream.obs.gauss.linalg import LOG_2PI
from mixstream.obs.gauss.types import COVARIANCE_TYPES
from mixstream.suffstats import SuffStats


class GaussParamsMixin:
    """ELBO, point estimates, ``set_point_params``, ``get_state`` / ``set_state``, ``sample``."""

    # provided by GaussObs
    covariance_structure: Any
    inference: str
    n_features: int
    K: int

    # ------------------------------------------------------------------ objective
    def elbo_term(self, SS: SuffStats) -> float:
        self.check_components(SS)
        if self.K == 0:
            return 0.0
        D = self.n_features
        N, x, m = SS.N, SS["x"], self.m
        # sum_n r_nk (y_n - m_k)(y_n - m_k)^T
        resid = (
            self._unpack(SS["xx"])
            - self._outer(x, m)
            - self._outer(m, x)
            + self._col(N) * self._outer(m, m)
        )
        # missing values: the entropy of q(y_m | y_o, k) (obs/gauss/missing.py)
        hmiss = float(SS["Hmiss"].sum()) if "Hmiss" in SS else 0.0
        if self.inference == "em":
            total = float(
                (0.5 * N * (self._logdet - D * LOG_2PI) - 0.5 * self._tr(self._prec, resid)).sum()
            )
            return total + hmiss + (self._log_prior_density() if self.map_prior else 0.0)
        m0, k0, nu0, psi0 = self._prior()
        kappa, nu, elogdet = self.kappa, self.nu, self._logdet
        loglik = 0.5 * N * (elogdet - D * LOG_2PI) - 0.5 * (
            N * D / kappa + nu * self._tr(self._inv, resid)
        )
        d = m - m0
        kl_mean = 0.5 * (
            D * (k0 / kappa - 1.0 + np.log(kappa / k0))
            + k0 * nu * self._tr(self._inv, self._outer(d, d))
        )
        kl_prec = self._kl_precision(nu, nu0, elogdet, self._logdet_prior(), psi0)
        return float(loglik.sum() - kl_mean.sum() - kl_prec.sum()) + hmiss

    def _kl_precision(
        self, nu: np.ndarray, nu0: float, elogdet: np.ndarray, logdet_psi0: float, psi0: Any
    ) -> np.ndarray:
        """KL(q(Lambda_g) || p(Lambda_g)) per group (G,): Wishart or Gamma(s)."""
        D = self.n_features
        common = (
            0.5 * nu0 * (self._logdet_mat - logdet_psi0)
            - 0.5 * nu * D
            + 0.5 * nu * self._tr(self._inv, psi0)
        )
        return self.covariance_structure.kl_precision(common, nu, nu0, elogdet, self._logdet_mat, D)

    def _logdet_prior(self) -> float:
        return self.covariance_structure.logdet(self.covariance_prior_, self.n_features)

    def _log_prior_density(self) -> float:
        """log p(mu, Sigma) at the EM point estimate (the MAP objective's prior term)."""
        m0, k0, nu0, psi0 = self._prior()
        D = self.n_features
        d = self.m - m0
        log_mean = (
            -0.5 * D * LOG_2PI
            + 0.5 * D * math.log(k0)
            + 0.5 * self._logdet
            - 0.5 * k0 * self._tr(self._prec, self._outer(d, d))
        )
        norm, e = self.covariance_structure.log_prior_norm(psi0, nu0, D)
        log_cov = norm + e * self._logdet - 0.5 * self._tr(self._prec, psi0)
        return float(np.sum(log_mean) + np.sum(log_cov))

    # ------------------------------------------------------------------ parameters
    def _covariances(self) -> np.ndarray:
        """(G, rep): EM covariances, or E[Lambda]^{-1} = Psi / nu for VB."""
        if self.inference == "vb":
            return self.psi / self._col(self.nu)
        return self.cov

    def _precisions_cholesky(self) -> np.ndarray:
        """scikit-learn's precisions_cholesky_: upper U with precision = U U^T."""
        vb = self.inference == "vb"
        return self.covariance_structure.precisions_cholesky(
            self._prec, self._chol_inv, self.nu, vb
        )

    def point_estimates(self) -> dict[str, np.ndarray]:
        user = self.covariance_structure.user
        out = {
            "means": self.m + self.shift,
            "covariances": user(self._covariances()),
            "precisions": user(self._prec),
            "precisions_cholesky": user(self._precisions_cholesky()),
        }
        if self.inference == "vb":
            out["mean_precision"] = self.kappa.copy()
            out["degrees_of_freedom"] = user(self.nu)
        return out

    def n_free_params(self) -> int:
        D, K = self.n_features, self.K
        cs = self.covariance_structure
        return int(K * D + cs.n_cov_params(D) * cs.n_groups(K))

    def set_point_params(
        self, means: Any, covariances: Any = None, precisions: Any = None, counts: Any = 100.0
    ) -> None:
        """Components from given parameters (EM initialisation, scikit-learn's ``*_init``).

        Parameters
        ----------
        means : array (K, D)
        covariances, precisions : array, optional
            One of them, in scikit-learn's shape for the covariance type (full (K, D, D),
            diag (K, D), spherical (K,), tied_full (D, D), tied_diag (D,), tied_spherical
            scalar); precisions are inverted as scikit-learn's ``precisions_init``. With
            neither, every component gets covariance_prior.
        counts : float or array (K,)
            How many observations the parameters stand for: EM keeps them as the statistics
            that stepwise EM blends with; VB sets kappa = kappa0 + c, nu = nu0 + c (summed for
            tied) and Psi = nu Sigma, so that E[Lambda] = Sigma^{-1}.
        """
        means = np.array(means, np.float64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (n_components, n_features), got {means.shape}")
        K, D = means.shape
        if self.n_features and D != self.n_features:
            raise ValueError(f"means has {D} features; the model was set up for {self.n_features}")
        if not self.n_features:
            self._set_features(D)
        if covariances is not None and precisions is not None:
            raise ValueError("give covariances= or precisions=, not both")
        want = self.covariance_structure.user_shape(K, self.n_features)
        if covariances is None and precisions is None:
            if self.covariance_prior_ is None:
                raise ValueError("give covariances= or precisions= (or call set_prior_from_data)")
            given = np.broadcast_to(self.covariance_prior_, want)
        else:
            given = np.array(covariances if precisions is None else precisions, np.float64)
        what = "precisions" if precisions is not None else "covariances"
        if given.shape != want:
            raise ValueError(
                f"{self.covariance_type} {what} must have shape {want}, got {given.shape}"
            )
        G = self._group_shape(K)
        given = given.reshape(G)
        label = f"{self.covariance_type} {what}"
        cov = self.covariance_structure.from_given(given, precisions is not None, label)
        counts = np.broadcast_to(np.asarray(counts, np.float64), (K,)).copy()
        if not np.all(counts > 0):
            raise ValueError("counts must be positive")
        m = means - self.shift
        if self.inference == "vb":
            _, k0, nu0, _ = self._prior()
            self.kappa = k0 + counts
            self.nu = nu0 + self._gsum(counts)
            self.psi = cov * self._col(self.nu)
            self.m = m
        else:
            self.m, self.cov = m, cov
            second = (cov[0] if self.tied else cov) + self._outer(m, m)
            self._stats = {
                "N": counts,
                "x": counts[:, None] * m,
                "xx": self._pack(self._col(counts) * second),
            }
        self.K = K
        self._uids = None
        self._refresh()

    def get_state(self) -> dict[str, np.ndarray]:
        def arr(a: Any) -> np.ndarray:
            return np.zeros(0) if a is None else np.asarray(a, np.float64)

        state = {
            "covariance_type": np.array(self.covariance_type),
            "inference": np.array(self.inference),
            "reg_covar": np.array(self.reg_covar),
            "map_prior": np.array(self.map_prior),
            "n_features": np.array(self.n_features),
            "shift": self.shift.copy(),
            "mean_prior": arr(self.mean_prior_),
            "mean_precision_prior": np.array(self.mean_precision_prior_),
            "degrees_of_freedom_prior": np.array(self.degrees_of_freedom_prior_),
            "covariance_prior": arr(self.covariance_prior_),
            "has_prior": np.array(self.covariance_prior_ is not None),
            "K": np.array(self.K),
            "m": self.m.copy(),
            "kappa": self.kappa.copy(),
            "nu": np.asarray(self.nu, np.float64).copy(),
            "psi": np.asarray(self.psi, np.float64).copy(),
            "cov": np.asarray(self.cov, np.float64).copy(),
            "uids": np.zeros(0, np.int64) if self._uids is None else self._uids.copy(),
        }
        if self._stats is not None:
            state.update({f"stats_{k}": v.copy() for k, v in self._stats.items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        def scalar(name: str) -> Any:  # 0-d arrays may come back as shape (1,) from storage
            return np.asarray(state[name]).reshape(-1)[0]

        ctype = str(scalar("covariance_type"))
        if ctype not in COVARIANCE_TYPES:
            raise ValueError(f"state has unknown covariance_type {ctype!r}")
        self.covariance_type = ctype
        if "inference" in state:
            self.inference = str(scalar("inference"))
        self.reg_covar = float(scalar("reg_covar"))
        self.map_prior = bool(scalar("map_prior"))
        self._set_features(int(scalar("n_features")))
        self.shift = np.array(state["shift"], np.float64)
        if bool(scalar("has_prior")):
            self.mean_prior_ = np.array(state["mean_prior"], np.float64)
            psi0 = np.array(state["covariance_prior"], np.float64)
            self.covariance_prior_ = self.covariance_structure.prior_from_state(psi0)
        else:
            self.mean_prior_, self.covariance_prior_ = None, None
        self.mean_precision_prior_ = float(scalar("mean_precision_prior"))
        self.degrees_of_freedom_prior_ = float(scalar("degrees_of_freedom_prior"))
        self.m = np.array(state["m"], np.float64).reshape(-1, self.n_features)
        self.kappa = np.array(state["kappa"], np.float64)
        self.nu = np.array(state["nu"], np.float64)
        self.psi = np.array(state["psi"], np.float64)
        self.cov = np.array(state["cov"], np.float64)
        uids = np.asarray(state["uids"], np.int64)
        self._uids = uids.copy() if uids.size else None
        if "stats_N" in state:
            self._stats = {k: np.array(state[f"stats_{k}"], np.float64) for k in ("N", "x", "xx")}
        else:
            self._stats = None
        self.K = int(scalar("K"))
        self._refresh()

    def sample(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        if not 0 <= k < self.K:
            raise IndexError(f"component {k} out of range for K={self.K}")
        g = 0 if self.tied else k
        z = rng.standard_normal((n, self.n_features))
        cov = self._covariances()[g]
        chol = self._chol[g] if self._chol.size else self._chol
        nu = float(self.nu[g]) if self.inference == "vb" else 1.0
        z = self.covariance_structure.scale_noise(z, cov, chol, nu, self.inference == "vb")
        return z + (self.m[k] + self.shift)
