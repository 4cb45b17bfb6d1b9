"""Diagonal and isotropic covariances with Gamma precisions (diag, spherical and tied).

q(lambda_kd) = Gamma(nu_k / 2, rate Psi_kd / 2) per feature (diag: a one-feature Wishart per
feature), or one q(lambda_k) = Gamma(D nu_k / 2, rate D Psi_k / 2) (spherical): the
conjugate model of a diagonal / isotropic covariance, so nu0 may be any positive number.
Both are ``n_g`` Gammas of shape nu s / 2 and rate Psi s / 2 (diag: n_g = D, s = 1;
spherical: n_g = 1, s = D).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from mixstream.obs.gauss.structure import PRIOR_FLOOR, CovarianceStructure


class _GammaCovariance(CovarianceStructure):
    """What diag and spherical share: positive representations and Gamma precisions."""

    def gamma_shape(self, D: int) -> tuple[float, int]:
        """(s, n_g): n_g Gammas of shape nu s / 2 and rate Psi s / 2."""
        raise NotImplementedError

    def from_variances(self, var: np.ndarray) -> np.ndarray:
        """Per-feature variances (D,) in this representation."""
        raise NotImplementedError

    def clip_scatter(self, S: np.ndarray) -> np.ndarray:
        return np.maximum(S, 0.0)

    def logdet_rep(self, A: np.ndarray, D: int) -> np.ndarray:
        """log|A| of a stack of representations (G,)."""
        raise NotImplementedError

    def factor(
        self, M: np.ndarray, floor: float, D: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        bad = ~(M > 0)
        if np.any(bad):  # rounding only; keep the local step finite
            M = np.where(bad, floor, M)
        return M, 1.0 / M, self.logdet_rep(M, D), np.zeros(0), np.zeros(0)

    def min_eig(self, psi0: Any) -> float:
        return float(np.asarray(psi0).min())

    def logdet(self, M: Any, D: int) -> float:
        return float(self.logdet_rep(np.asarray(M), D))

    def expected_logdet(self, nu: np.ndarray, logdet_psi: np.ndarray, D: int) -> np.ndarray:
        s, n_g = self.gamma_shape(D)
        return n_g * s * (digamma(0.5 * s * nu) - math.log(0.5 * s)) - logdet_psi

    def kl_precision(
        self,
        common: np.ndarray,
        nu: np.ndarray,
        nu0: float,
        elogdet: np.ndarray,
        logdet_psi: np.ndarray,
        D: int,
    ) -> np.ndarray:
        s, n_g = self.gamma_shape(D)
        a, a0 = 0.5 * s * nu, 0.5 * s * nu0
        return common + n_g * ((a - a0) * digamma(a) - gammaln(a) + gammaln(a0))

    def empirical_prior(self, nu: np.ndarray, psi: np.ndarray, nu0: float) -> Any | None:
        # E log Gamma(lambda_g; nu0 s/2, rate psi0 s/2) summed over the G groups is
        # (G nu0 s/2) log psi0 - (psi0 s/2) sum_g E lambda_g + const, E lambda_g = nu_g / psi_g:
        # its maximum is psi0 = G nu0 / sum_g E lambda_g, per feature (diag) or one (spherical)
        return psi.shape[0] * nu0 / (self.col(nu) / psi).sum(axis=0)

    def default_dof(self, D: int) -> float:
        return 2.0

    def min_dof(self, D: int) -> float:
        return 0.0

    def map_dof_offset(self, D: int) -> float:
        s, _ = self.gamma_shape(D)
        return 2.0 / s

    def check_positive(self, c: np.ndarray, name: str) -> None:
        if np.any(c <= 0):
            raise ValueError(f"{name} must be positive")

    def data_covariance(
        self, Xc: np.ndarray, w: np.ndarray, total: float, D: int, reg_covar: float
    ) -> Any:
        denom = total - 1.0 if total > 1.0 else total
        var = w @ (Xc * Xc) / denom
        c = self.from_variances(var)
        if np.any(c <= 0):
            scale = max(float(var.mean()), 1e-300)
            c = np.maximum(c, max(PRIOR_FLOOR * scale, reg_covar, 1e-300))
        return c

    def from_given(self, given: np.ndarray, precisions: bool, what: str) -> np.ndarray:
        if not np.all(given > 0):
            raise ValueError(f"{what} must be positive")
        return 1.0 / given if precisions else given

    def precisions_cholesky(
        self, prec: np.ndarray, chol_inv: np.ndarray, nu: np.ndarray, vb: bool
    ) -> np.ndarray:
        return np.sqrt(prec)

    def scale_noise(
        self, z: np.ndarray, cov: np.ndarray, chol: np.ndarray, nu: float, vb: bool
    ) -> np.ndarray:
        return z * np.sqrt(cov)


class DiagCovariance(_GammaCovariance):
    """Variances (D,) per group; one Gamma precision per feature."""

    structure = "diag"

    def gamma_shape(self, D: int) -> tuple[float, int]:
        return 1.0, D

    def rep_shape(self, D: int) -> tuple[int, ...]:
        return (D,)

    def n_cov_params(self, D: int) -> int:
        return D

    def n_quad(self, D: int) -> int:
        return D

    def eye(self, D: int) -> Any:
        return np.ones(D)

    def col(self, v: np.ndarray) -> np.ndarray:
        return v[:, None]

    def outer(self, a: np.ndarray, b: np.ndarray, D: int) -> np.ndarray:
        return a * b

    def tr(self, A: np.ndarray, B: np.ndarray, D: int) -> np.ndarray:
        return (A * B).sum(axis=-1)

    def unpack(self, xx: np.ndarray, D: int) -> np.ndarray:
        return xx

    def pack(self, M: np.ndarray, D: int) -> np.ndarray:
        return M

    def logdet_rep(self, A: np.ndarray, D: int) -> np.ndarray:
        return np.log(A).sum(axis=-1)

    def from_variances(self, var: np.ndarray) -> np.ndarray:
        return var

    def fill_quad(self, feat: Any, y: Any, D: int, xp: Any, fused: bool) -> None:
        if not fused:
            xp.multiply(y, y, out=feat[1 + D :])

    def stats_xx(self, T: Any, D: int) -> Any:
        return T[1 + D :].T

    def local_terms(self, P: np.ndarray, m: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray]:
        return P * m, -0.5 * P

    def log_prior_norm(self, psi0: Any, nu0: float, D: int) -> tuple[float, float]:
        # one inverse-gamma per feature, shape nu0 / 2 and scale Psi0_d / 2
        a = 0.5 * nu0
        return float((a * np.log(0.5 * psi0)).sum() - D * gammaln(a)), a + 1.0

    def as_matrix(self, c: Any, D: int) -> np.ndarray:
        return np.diag(c)

    def stack_as_matrices(self, C: np.ndarray, D: int) -> np.ndarray:
        return C[:, :, None] * np.eye(D)

    def project_stack(self, C: np.ndarray, B: np.ndarray) -> np.ndarray:
        return np.einsum("di,kd,dj->kij", B, C, B, optimize=True)


class SphericalCovariance(_GammaCovariance):
    """One variance per group (0-d representation); one Gamma precision."""

    structure = "spherical"

    def gamma_shape(self, D: int) -> tuple[float, int]:
        return float(D), 1

    def rep_shape(self, D: int) -> tuple[int, ...]:
        return ()

    def n_cov_params(self, D: int) -> int:
        return 1

    def n_quad(self, D: int) -> int:
        return 1

    def eye(self, D: int) -> Any:
        return 1.0

    def col(self, v: np.ndarray) -> np.ndarray:
        return v

    def outer(self, a: np.ndarray, b: np.ndarray, D: int) -> np.ndarray:
        return (a * b).sum(axis=-1) / D

    def tr(self, A: np.ndarray, B: np.ndarray, D: int) -> np.ndarray:
        return D * A * B

    def unpack(self, xx: np.ndarray, D: int) -> np.ndarray:
        return xx / D

    def pack(self, M: np.ndarray, D: int) -> np.ndarray:
        return M * D

    def logdet_rep(self, A: np.ndarray, D: int) -> np.ndarray:
        return D * np.log(A)

    def prior_from_state(self, psi0: np.ndarray) -> np.ndarray:
        return psi0.reshape(()) if psi0.shape == (1,) else psi0

    def from_variances(self, var: np.ndarray) -> np.ndarray:
        return np.array(var.mean())

    def fill_quad(self, feat: Any, y: Any, D: int, xp: Any, fused: bool) -> None:
        if not fused:
            feat[1 + D] = (y * y).sum(axis=0)

    def stats_xx(self, T: Any, D: int) -> Any:
        return T[1 + D]

    def local_terms(self, P: np.ndarray, m: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray]:
        return P[:, None] * m, -0.5 * P[:, None]

    def log_prior_norm(self, psi0: Any, nu0: float, D: int) -> tuple[float, float]:
        # inverse-gamma of shape D nu0 / 2 and scale D Psi0 / 2
        a = 0.5 * D * nu0
        return float(a * np.log(0.5 * D * psi0) - gammaln(a)), (a + 1.0) / D

    def as_matrix(self, c: Any, D: int) -> np.ndarray:
        return float(c) * np.eye(D)

    def stack_as_matrices(self, C: np.ndarray, D: int) -> np.ndarray:
        return C[:, None, None] * np.eye(D)

    def project_stack(self, C: np.ndarray, B: np.ndarray) -> np.ndarray:
        return C[:, None, None] * (B.T @ B)[None]
