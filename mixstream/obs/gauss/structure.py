"""The interface of a Gaussian covariance structure: one strategy object per covariance type.

A ``CovarianceStructure`` knows how one covariance type stores a covariance (or precision,
or inverse scale) and does every computation whose form depends on that storage. The Gaussian
observation model (``GaussObs``), sampling (``MixtureModel.sample``), the report's projections
and any other model with a Gaussian part (e.g. the noise of a latent-factor model) ask the
strategy instead of switching on type names or guessing from array shapes.

Representations
---------------
"rep": one covariance as this structure stores it: a (D, D) matrix (full), a (D,) vector of
variances (diag) or a 0-d variance (spherical). Parameters carry a leading *group* axis G: K
(one covariance per component) or 1 (``tied``: one shared by all components), so a stack is
(G, D, D), (G, D) or (G,). The *user* shape is scikit-learn's: the stack without its group
axis when tied (``covariance_shape``).

Strategies hold no data; methods take the number of features D where they need it. They are
plain picklable objects (Dask ships the observation model to workers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

#: the default prior's point covariance Psi0 / nu0, as a fraction of the data's covariance
PRIOR_SCALE = 0.3
#: the default prior's least variance, as a fraction of the mean variance (constant features)
PRIOR_FLOOR = 1e-3


class CovarianceStructure(ABC):
    """A covariance type: its storage, and the computations that depend on it.

    Parameters
    ----------
    tied : bool
        One covariance shared by all components (group axis G = 1) instead of one each.
    """

    #: "full", "diag" or "spherical"
    structure: str = ""

    def __init__(self, tied: bool = False) -> None:
        self.tied = bool(tied)

    @property
    def name(self) -> str:
        """The covariance type: ``structure``, prefixed "tied_" when tied."""
        return f"tied_{self.structure}" if self.tied else self.structure

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tied={self.tied})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.tied == self.tied  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.tied))

    # -------------------------------------------------------------- shapes and groups
    @abstractmethod
    def rep_shape(self, D: int) -> tuple[int, ...]:
        """Shape of one covariance: (D, D), (D,) or ()."""

    def group_shape(self, K: int, D: int) -> tuple[int, ...]:
        """Shape of the stacked parameters: (G, *rep_shape), G = 1 if tied else K."""
        return (1 if self.tied else K, *self.rep_shape(D))

    def user_shape(self, K: int, D: int) -> tuple[int, ...]:
        """scikit-learn's shape of ``covariances_`` / ``precisions_`` for this type."""
        return self.group_shape(K, D)[1:] if self.tied else self.group_shape(K, D)

    def n_groups(self, K: int) -> int:
        """G: how many covariances K components have."""
        return 1 if self.tied else K

    def gsum(self, A: np.ndarray) -> np.ndarray:
        """Per-component (K, ...) -> per-group (G, ...)."""
        return A.sum(axis=0, keepdims=True) if self.tied else A

    def user(self, A: np.ndarray) -> np.ndarray:
        """A group stack (G, ...) in the user's shape (float64 copy)."""
        return np.array(A[0] if self.tied else A, np.float64)

    @abstractmethod
    def n_cov_params(self, D: int) -> int:
        """Free parameters of one covariance."""

    # -------------------------------------------------------------- representation algebra
    @abstractmethod
    def n_quad(self, D: int) -> int:
        """Width F of the quadratic features q(y) of the local step."""

    @abstractmethod
    def eye(self, D: int) -> Any:
        """The identity in this representation."""

    @abstractmethod
    def col(self, v: np.ndarray) -> np.ndarray:
        """A vector over components / groups (G,) shaped to broadcast against (G, *rep)."""

    @abstractmethod
    def outer(self, a: np.ndarray, b: np.ndarray, D: int) -> np.ndarray:
        """a b^T for rows a, b (..., D) in this representation (matrix, diagonal, trace / D)."""

    @abstractmethod
    def tr(self, A: np.ndarray, B: np.ndarray, D: int) -> np.ndarray:
        """tr(A B) of two symmetric matrices in this representation (broadcasting)."""

    @abstractmethod
    def unpack(self, xx: np.ndarray, D: int) -> np.ndarray:
        """Statistic ``xx`` (K, F) -> sum_n r_nk y_n y_n^T in this representation."""

    @abstractmethod
    def pack(self, M: np.ndarray, D: int) -> np.ndarray:
        """Inverse of ``unpack``."""

    def symmetrize(self, A: np.ndarray) -> np.ndarray:
        """Remove rounding asymmetry (matrices only)."""
        return A

    def clip_scatter(self, S: np.ndarray) -> np.ndarray:
        """A scatter that cancellation may have made slightly negative, made usable."""
        return S

    # -------------------------------------------------------------- local step
    @abstractmethod
    def fill_quad(self, feat: Any, y: Any, D: int, xp: Any, fused: bool) -> None:
        """Write q(y) into the rows ``feat[1 + D:]`` (W, N); ``fused``: the numba kernel
        already wrote the rows it can (everything but full's cross products)."""

    @abstractmethod
    def stats_xx(self, T: Any, D: int) -> Any:
        """The ``xx`` statistic (K, F) or (K,) from the GEMM result T (W, K)."""

    @abstractmethod
    def local_terms(self, P: np.ndarray, m: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray]:
        """(b, quad) of the local step: b = P m (K, D) and the coefficients of q(y), (G, F)."""

    @property
    def one_quadratic_form(self) -> bool:
        """True when every component shares the quadratic part of theta and the GEMM computes
        it once (tied full: F = D (D + 1) / 2 columns, the costly part)."""
        return False

    # -------------------------------------------------------------- factors and priors
    @abstractmethod
    def factor(
        self, M: np.ndarray, floor: float, D: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(M, M^{-1}, log|M| (G,), chol, chol_inv) of a stack M (G, *rep), M repaired to be
        positive (definite) with eigenvalues >= floor where rounding broke it; chol /
        chol_inv are the lower Cholesky factor and its inverse (full) or empty arrays."""

    @abstractmethod
    def min_eig(self, psi0: Any) -> float:
        """The least eigenvalue of a covariance in this representation."""

    @abstractmethod
    def logdet(self, M: Any, D: int) -> float:
        """log|M| of one covariance in this representation."""

    @abstractmethod
    def expected_logdet(self, nu: np.ndarray, logdet_psi: np.ndarray, D: int) -> np.ndarray:
        """E log|Lambda| (G,) under q of the precision given nu (G,) and log|Psi| (G,)."""

    @abstractmethod
    def kl_precision(
        self,
        common: np.ndarray,
        nu: np.ndarray,
        nu0: float,
        elogdet: np.ndarray,
        logdet_psi: np.ndarray,
        D: int,
    ) -> np.ndarray:
        """KL(q(Lambda_g) || p(Lambda_g)) (G,) from its part common to every structure,
        nu0 / 2 (log|Psi| - log|Psi0|) - nu D / 2 + nu / 2 tr(Psi^{-1} Psi0)."""

    @abstractmethod
    def log_prior_norm(self, psi0: Any, nu0: float, D: int) -> tuple[float, float]:
        """(log normaliser, exponent e) of the prior density of a covariance Sigma:
        log p(Sigma) = norm + e log|Sigma^{-1}| - tr(Sigma^{-1} Psi0) / 2."""

    @abstractmethod
    def map_dof_offset(self, D: int) -> float:
        """c of the MAP covariance A / (nu0 + N_g + n_mu + c) (docs of the package)."""

    def empirical_prior(self, nu: np.ndarray, psi: np.ndarray, nu0: float) -> Any | None:
        """The inverse scale Psi0 that maximises the ELBO's prior terms sum_g E_q log p(Lambda_g)
        for the posteriors (nu (G,), psi (G, *rep)), or None where it has no closed form that
        keeps the structure (full: the matrix update made DP fits on wine and breast cancer
        prefer one or two components, docs/math.md §4)."""
        return None

    def fit_prior(
        self,
        nu: np.ndarray,
        psi: np.ndarray,
        psi0: Any,
        nu0: float,
        reg_covar: float,
        max_iter: int = 20,
    ) -> tuple[np.ndarray, Any]:
        """Empirical Bayes for the prior's inverse scale: (psi, Psi0) after coordinate ascent
        on the ELBO, alternating Psi0 <- its maximiser given q (``empirical_prior``; Psi0 / nu0
        at least ``reg_covar``) and psi <- psi + (new Psi0 - old Psi0), the conjugate update
        given the new Psi0 (nu, kappa and m do not depend on it). Each step raises the ELBO, so
        fits stay monotone. Unchanged where ``empirical_prior`` has no closed form."""
        psi0 = np.asarray(psi0, np.float64)
        low = nu0 * max(reg_covar, 1e-300)
        for _ in range(max_iter):
            new = self.empirical_prior(nu, psi, nu0)
            if new is None:
                break
            new = np.maximum(new, low)
            psi = psi + (new - psi0)
            done = np.allclose(new, psi0, rtol=1e-6, atol=0.0)
            psi0 = new
            if done:
                break
        return psi, psi0

    @abstractmethod
    def default_dof(self, D: int) -> float:
        """The default degrees_of_freedom_prior nu0."""

    @abstractmethod
    def min_dof(self, D: int) -> float:
        """nu0 must exceed this."""

    def check_covariance_prior(self, c: np.ndarray, D: int, name: str) -> np.ndarray:
        """A user's covariance_prior Psi0 (float64), checked: shape ``rep_shape(D)``, finite,
        positive (definite); ``name`` starts the error messages."""
        c = self.prior_from_state(c)
        want = self.rep_shape(D)
        if c.shape != want:
            raise ValueError(f"{name} must have shape {want}, got {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{name} must be finite")
        self.check_positive(c, name)
        return c

    @abstractmethod
    def check_positive(self, c: np.ndarray, name: str) -> None:
        """Raise ValueError (starting with ``name``) unless c (rep) is positive (definite)."""

    @abstractmethod
    def data_covariance(
        self, Xc: np.ndarray, w: np.ndarray, total: float, D: int, reg_covar: float
    ) -> Any:
        """np.cov(X.T), np.var(X, ddof=1) or its mean, of centred rows Xc (N, D) with
        frequency weights w (N,) summing to ``total``, floored to be positive definite."""

    @abstractmethod
    def from_given(self, given: np.ndarray, precisions: bool, what: str) -> np.ndarray:
        """Covariances (G, *rep) from a user's covariances or precisions (G, *rep),
        checked to be positive (definite)."""

    def prior_from_state(self, psi0: np.ndarray) -> np.ndarray:
        """Psi0 as stored in a state (0-d arrays may come back as (1,)) in this representation."""
        return psi0

    # -------------------------------------------------------------- point estimates and draws
    @abstractmethod
    def precisions_cholesky(
        self, prec: np.ndarray, chol_inv: np.ndarray, nu: np.ndarray, vb: bool
    ) -> np.ndarray:
        """scikit-learn's precisions_cholesky_ (G, *rep): upper U with precision = U U^T."""

    @abstractmethod
    def scale_noise(
        self, z: np.ndarray, cov: np.ndarray, chol: np.ndarray, nu: float, vb: bool
    ) -> np.ndarray:
        """Standard normal draws z (n, D) scaled to one group's covariance ``cov`` (rep);
        ``chol`` its lower Cholesky factor (full), ``nu`` its degrees of freedom (vb)."""

    @abstractmethod
    def as_matrix(self, c: Any, D: int) -> np.ndarray:
        """One covariance (rep) as a (D, D) matrix."""

    @abstractmethod
    def stack_as_matrices(self, C: np.ndarray, D: int) -> np.ndarray:
        """A per-component stack (K, *rep) as (K, D, D) matrices."""

    @abstractmethod
    def project_stack(self, C: np.ndarray, B: np.ndarray) -> np.ndarray:
        """B^T Sigma_k B (K, 2, 2) of a per-component stack (K, *rep) onto basis B (D, 2)."""

    def to_full(self, covariances: Any, K: int, D: int) -> np.ndarray:
        """User-shaped ``covariances`` as K full matrices (K, D, D), for sampling.

        Raises ValueError when the shape is not ``user_shape(K, D)``.
        """
        C = np.asarray(covariances, dtype=np.float64)
        shape = self.user_shape(K, D)
        if C.shape != shape:
            raise ValueError(f"{self.name} covariances must have shape {shape}, got {C.shape}")
        if self.tied:
            return np.broadcast_to(self.as_matrix(C, D), (K, D, D))
        return self.stack_as_matrices(C, D)

    def project(self, covariances: np.ndarray, basis: np.ndarray, K: int) -> np.ndarray:
        """Covariances (user shape, checked by the caller) projected onto basis (D, 2):
        B^T Sigma_k B, (K, 2, 2)."""
        B = basis
        if self.tied:
            C = self.as_matrix(covariances, B.shape[0])
            return np.broadcast_to(B.T @ C @ B, (K, 2, 2)).copy()
        return self.project_stack(covariances, B)
