"""Full covariances: one (D, D) matrix per component, or one shared (tied_full).

The precision has a Wishart prior and posterior; the quadratic features are the products
y_i y_j (i <= j), packed as the upper triangle (row-major, as ``np.triu_indices``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.linalg import cholesky
from scipy.linalg.lapack import dtrtri
from scipy.special import multigammaln

from mixstream.obs.gauss.linalg import LOG_2, chol_stack, is_pd, wishart_expected_logdet
from mixstream.obs.gauss.structure import PRIOR_FLOOR, CovarianceStructure


@lru_cache(maxsize=16)
def _triu(D: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Upper-triangle indices (i <= j) and the factor 1 (diagonal) or 2 (off-diagonal) that
    a symmetric matrix's entry carries in <q(y), vec(P)>."""
    iu = np.triu_indices(D)
    return iu, np.where(iu[0] == iu[1], 1.0, 2.0)


class FullCovariance(CovarianceStructure):
    """Covariance (D, D) per group; Wishart precisions (needs nu0 > D - 1)."""

    structure = "full"

    def rep_shape(self, D: int) -> tuple[int, ...]:
        return (D, D)

    def n_cov_params(self, D: int) -> int:
        return D * (D + 1) // 2

    def n_quad(self, D: int) -> int:
        return D * (D + 1) // 2

    def eye(self, D: int) -> Any:
        return np.eye(D)

    def col(self, v: np.ndarray) -> np.ndarray:
        return v[:, None, None]

    def outer(self, a: np.ndarray, b: np.ndarray, D: int) -> np.ndarray:
        return a[..., :, None] * b[..., None, :]

    def tr(self, A: np.ndarray, B: np.ndarray, D: int) -> np.ndarray:
        return (A * B).sum(axis=(-2, -1))

    def unpack(self, xx: np.ndarray, D: int) -> np.ndarray:
        i, j = _triu(D)[0]
        out = np.empty((xx.shape[0], D, D))
        out[:, i, j] = xx
        out[:, j, i] = xx
        return out

    def pack(self, M: np.ndarray, D: int) -> np.ndarray:
        iu = _triu(D)[0]
        return M[:, iu[0], iu[1]]

    def symmetrize(self, A: np.ndarray) -> np.ndarray:
        return 0.5 * (A + A.transpose(0, 2, 1))

    # -------------------------------------------------------------- local step
    def fill_quad(self, feat: Any, y: Any, D: int, xp: Any, fused: bool) -> None:
        # row by row: each product y_i y_j (j >= i) is one long contiguous vector operation
        off = 1 + D
        for i in range(D):
            xp.multiply(y[i], y[i:], out=feat[off : off + D - i])
            off += D - i

    def stats_xx(self, T: Any, D: int) -> Any:
        return T[1 + D :].T

    def local_terms(self, P: np.ndarray, m: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray]:
        iu, offdiag2 = _triu(D)
        b = np.matmul(P, m[:, :, None])[:, :, 0]
        quad = -0.5 * P[:, iu[0], iu[1]] * offdiag2
        return b, quad

    @property
    def one_quadratic_form(self) -> bool:
        return self.tied

    # -------------------------------------------------------------- factors and priors
    def factor(
        self, M: np.ndarray, floor: float, D: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        L, M = chol_stack(M, floor)
        Linv = np.empty_like(L)
        for g in range(L.shape[0]):
            Linv[g], _ = dtrtri(L[g], lower=1)
        inv = np.matmul(Linv.transpose(0, 2, 1), Linv)
        logdet_mat = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        return M, inv, logdet_mat, L, Linv

    def min_eig(self, psi0: Any) -> float:
        return float(np.linalg.eigvalsh(psi0)[0])

    def logdet(self, M: Any, D: int) -> float:
        return float(2.0 * np.log(np.diag(cholesky(M, lower=True))).sum())

    def expected_logdet(self, nu: np.ndarray, logdet_psi: np.ndarray, D: int) -> np.ndarray:
        return wishart_expected_logdet(nu, logdet_psi, D)

    def kl_precision(
        self,
        common: np.ndarray,
        nu: np.ndarray,
        nu0: float,
        elogdet: np.ndarray,
        logdet_psi: np.ndarray,
        D: int,
    ) -> np.ndarray:
        return (
            common
            - multigammaln(0.5 * nu, D)
            + multigammaln(0.5 * nu0, D)
            + 0.5 * (nu - nu0) * (elogdet + logdet_psi - D * LOG_2)
        )

    def log_prior_norm(self, psi0: Any, nu0: float, D: int) -> tuple[float, float]:
        # inverse-Wishart(nu0, Psi0) density of Sigma
        norm = 0.5 * nu0 * self.logdet(psi0, D) - 0.5 * nu0 * D * LOG_2
        norm -= multigammaln(0.5 * nu0, D)
        return norm, 0.5 * (nu0 + D + 1.0)

    def map_dof_offset(self, D: int) -> float:
        return D + 1.0

    def default_dof(self, D: int) -> float:
        return D + 2.0

    def min_dof(self, D: int) -> float:
        return D - 1.0

    def check_positive(self, c: np.ndarray, name: str) -> None:
        if not np.allclose(c, c.T, rtol=1e-10, atol=0.0) or not is_pd(c):
            raise ValueError(f"{name} must be symmetric positive definite")

    def data_covariance(
        self, Xc: np.ndarray, w: np.ndarray, total: float, D: int, reg_covar: float
    ) -> Any:
        denom = total - 1.0 if total > 1.0 else total
        c = (Xc.T * w) @ Xc / denom
        c = 0.5 * (c + c.T)
        if not is_pd(c):
            scale = max(float(np.trace(c)) / D, 1e-300)
            c = c + max(PRIOR_FLOOR * scale, reg_covar, 1e-300) * np.eye(D)
        return c

    def from_given(self, given: np.ndarray, precisions: bool, what: str) -> np.ndarray:
        if not np.allclose(given, given.transpose(0, 2, 1), rtol=1e-10, atol=0.0) or not all(
            is_pd(g) for g in given
        ):
            raise ValueError(f"{what} must be symmetric positive definite")
        cov = given
        if precisions:  # inverted through Cholesky factors, as scikit-learn's precisions_init
            Linv = np.stack([dtrtri(cholesky(g, lower=True), lower=1)[0] for g in given])
            cov = np.matmul(Linv.transpose(0, 2, 1), Linv)
        return self.symmetrize(cov)

    # -------------------------------------------------------------- point estimates and draws
    def precisions_cholesky(
        self, prec: np.ndarray, chol_inv: np.ndarray, nu: np.ndarray, vb: bool
    ) -> np.ndarray:
        U = chol_inv.transpose(0, 2, 1)
        return U * np.sqrt(nu)[:, None, None] if vb else U.copy()

    def scale_noise(
        self, z: np.ndarray, cov: np.ndarray, chol: np.ndarray, nu: float, vb: bool
    ) -> np.ndarray:
        scale = chol / (math.sqrt(nu) if vb else 1.0)
        return z @ scale.T

    def as_matrix(self, c: Any, D: int) -> np.ndarray:
        return c

    def stack_as_matrices(self, C: np.ndarray, D: int) -> np.ndarray:
        return C

    def project_stack(self, C: np.ndarray, B: np.ndarray) -> np.ndarray:
        return np.einsum("di,kde,ej->kij", B, C, B, optimize=True)
