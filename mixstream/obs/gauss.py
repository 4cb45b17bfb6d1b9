"""Gaussian components: x | k ~ N(mu_k, Sigma_k), six covariance structures, EM and VB.

Covariance types
----------------
``full``, ``diag`` and ``spherical`` give each component its own covariance (a matrix, a vector
of variances, one variance); ``tied_full``, ``tied_diag`` and ``tied_spherical`` share one of
those among all components (``tied`` is accepted as scikit-learn's name for ``tied_full``).

Statistics
----------
All statistics live in *shifted* coordinates y = x - c, where the shift c is the data mean seen
by ``set_prior_from_data`` (zero if it was never called). Sums of squares about a point near the
data do not cancel catastrophically for data far from the origin; the parameters are reported
in the original coordinates. Fields, all float64 whatever the dtype of X:

- ``x``  (K, D): sum_n r_nk y_n
- ``xx``: full types (K, D (D + 1) / 2), the upper triangle (row-major, i <= j, as
  ``np.triu_indices``) of sum_n r_nk y_n y_n^T; diag types (K, D), sum_n r_nk y_n**2;
  spherical types (K,), sum_n r_nk |y_n|^2.

The local step is two GEMMs per block. With the features f(y) = [1, y, q(y)], q(y) the products
y_i y_j (i <= j) for full types, y**2 for diag and |y|^2 for spherical, every log density is
linear in f(y): log N(y | m, P^{-1}) = c + (P m)^T y - 1/2 <q(y), vec(P)> (off-diagonal entries of
vec(P) doubled). So log_prob for all K components is ``f @ theta`` with theta (W, K), and the
statistics of the block are ``resp^T @ f`` (one GEMM; the column of ones gives N_k, which the
Model computes itself). f is built feature-major, (W, N), so that each product y_i y_j is one
contiguous vector operation. ``log_prob`` keeps f in ``cache`` for ``calc_stats``; blocks whose
features would exceed ``_FEATURE_BUDGET`` float64 cells are cut into sub-blocks and not cached.

Priors (names and meaning as scikit-learn's BayesianGaussianMixture; weaker defaults)
-------------------------------------------------------------------------------------
mean_prior m0, mean_precision_prior kappa0, degrees_of_freedom_prior nu0, covariance_prior Psi0.
Psi0 is the *inverse scale*: Lambda ~ Wishart(nu0, Psi0^{-1}) (full types; nu0 > D - 1) or Gammas
(diag / spherical types, below; nu0 > 0), E[Lambda] = nu0 Psi0^{-1}, and
mu_k | Lambda_k ~ N(m0, (kappa0 Lambda_k)^{-1}). Defaults, weak and in the data's own units:

- m0 = the data mean, kappa0 = 1 (one pseudo-observation of the mean);
- nu0 = D + 2 for full types (the fewest degrees of freedom for which the prior covariance has a
  finite mean), 2 for diag / spherical types (a Gamma of shape 1 per precision);
- Psi0 = nu0 * PRIOR_SCALE * (the empirical covariance; per-feature variances for diag types,
  their mean for spherical types), so the prior's point covariance Psi0 / nu0 is PRIOR_SCALE
  times the data's: a cluster is a priori smaller than the whole data, in every unit.

scikit-learn's defaults (nu0 = D, Psi0 = the empirical covariance) put D pseudo-observations of
a covariance D times smaller than the data's on every component; in 64 dimensions that outweighs
a 100-row cluster and stopped DP births on its digits (docs/math.md has the numbers). Pass
``degrees_of_freedom_prior=D, covariance_prior=np.cov(X.T)`` to get them back.

EM
--
Maximum likelihood, exactly as scikit-learn's GaussianMixture: Sigma_k = S_k / N_k + reg_covar I
(S_k the scatter about the component mean; its diagonal / mean diagonal for diag / spherical;
sum_k S_k / N for tied). A component with N_k <= 1e-10 keeps its previous mean and covariance
(matched by uid), or the prior mean and covariance_prior + reg_covar I when it has none;
scikit-learn adds 10 eps to every N_k instead, a difference of order 1e-15 / N_k.

``map_prior=True``: the joint mode of the posterior density of (mu, Sigma) (a density over the
covariance, so the mode exists for every nu0 > D - 1 and every N_k >= 0):
mu_k = (kappa0 m0 + sum r y) / (kappa0 + N_k) and Sigma = A / (nu0 + N_g + n_mu + c), where A is
the Wishart posterior inverse scale below (without reg_covar: the prior keeps A positive
definite, and the step is then the exact maximiser of the reported objective), N_g the mass and
n_mu the number of means sharing the covariance (1, or K for tied), and c = D + 1 (full), 2
(diag, one inverse-gamma per feature with shape nu0 / 2 and scale Psi0_d / 2: the marginal of
the Wishart diagonal) or 2 / D (spherical, inverse-gamma with shape D nu0 / 2 and scale
D Psi0 / 2). ``elbo_term`` adds the log prior density at the mode.

``update(SS, rho)`` for EM blends the stored statistics (stepwise EM) and re-estimates from them.

VB
--
q(mu_k, Lambda_k) = N(mu_k | m_k, (kappa_k Lambda_k)^{-1}) Wishart(Lambda_k | nu_k, Psi_k^{-1}):
kappa_k = kappa0 + N_k, m_k = (kappa0 m0 + sum r y) / kappa_k, nu_k = nu0 + N_k and
Psi_k = Psi0 + S_k + N_k reg_covar I + kappa0 N_k / kappa_k (ybar_k - m0)(ybar_k - m0)^T
(reg_covar enters through the scatter, as scikit-learn computes sk with reg_covar).

- full: the exact conditional-conjugate posterior (scikit-learn's model).
- diag / spherical: independent Gamma precisions, the conjugate model of a diagonal /
  isotropic covariance: q(lambda_kd) = Gamma(nu_k / 2, rate Psi_kd / 2) per feature (diag: a
  one-feature Wishart per feature), or one q(lambda_k) = Gamma(D nu_k / 2, rate D Psi_k / 2)
  (spherical), with mu_kd | lambda ~ N(m_kd, 1 / (kappa_k lambda_kd)). The updates of nu and Psi
  are the formulas above restricted to the diagonal (its mean, spherical), and
  E log|Lambda| = D (digamma(nu / 2) + log 2) - sum_d log Psi_d (diag) or
  D (digamma(D nu / 2) - log(D Psi / 2)) (spherical): the expectation under q itself, so the
  ELBO is the exact evidence bound of this model (a diag fit equals D one-feature fits sharing
  the responsibilities; tested). nu0 may be any positive number. scikit-learn's diag / spherical
  VB instead put the D-dimensional Wishart value sum_{d<D} digamma((nu - d) / 2) in the local
  step, the bound of a Normal-Wishart model with a *full* precision a priori; it needs
  nu0 > D - 1, so in 64 dimensions every feature's variance carries at least 64 prior
  pseudo-observations, a strong pull that stopped DP births on real data (scikit-learn's
  digits). We keep its updates (means, Psi, nu match it from the same statistics) but not that
  expectation.
- tied types: one Wishart shared by all components and per-component means,
  q(Lambda) prod_k q(mu_k | Lambda), the exact conditional-conjugate posterior of the tied model:
  nu = nu0 + N, Psi = Psi0 + sum_k (S_k + N_k reg_covar I + kappa0 N_k / kappa_k d_k d_k^T).
  (tied_diag / tied_spherical: one set of Gammas, as above.)

Where this differs from scikit-learn, and why
---------------------------------------------
- diag / spherical (VB): Gamma precisions, see above.
- tied (VB): scikit-learn uses nu = nu0 + N / K, Psi = Psi0 + (1 / K) sum_k (...), and counts the
  Wishart terms K times in its bound. That is a coherent VB, but of a *different model*: K
  independent precisions Lambda_k ~ Wishart(nu0, Psi0^{-1}) whose variational factors are forced
  to be equal; the prior then weighs K times and the fit depends on the truncation K (an empty
  component changes the shared covariance), which a DP truncation must not do. We fit the tied
  model itself: one precision, nu = nu0 + N. With K = 1 both coincide.
- reg_covar in VB: it perturbs the update (as scikit-learn's does), but the ELBO is that of the
  stated model (raw statistics, no reg_covar), so it stays a true bound of its evidence; the
  update is then an O(reg_covar) perturbation of the exact coordinate step. MAP EM leaves
  reg_covar out (the prior regularises), so its step is exact and its objective monotone.
- ``tied_diag`` / ``tied_spherical`` and ``map_prior`` have no scikit-learn counterpart; their
  shapes follow the pattern (tied_diag: (D,), tied_spherical: a 0-d array).
- Point estimates for VB follow BayesianGaussianMixture: covariances = Psi / nu = E[Lambda]^{-1},
  precisions = nu Psi^{-1}, plus "mean_precision" (kappa) and "degrees_of_freedom" (nu).

Numerics
--------
The quadratic forms are computed from uncentred features about the global shift, so a
component at distance R from the shift with spread s loses about log10(R^2 / s^2) of the 16
digits (scikit-learn centres per component). Precisions come from Cholesky factors and
triangular inverses; a covariance (EM) or inverse scale (VB) that rounding made indefinite is
repaired by clipping its eigenvalues (never NaN). Small per-component parameter math stays in
numpy on the host; the data-sized work goes through the array namespace of X (numpy or cupy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg import cholesky, eigh
from scipy.linalg.lapack import dtrtri
from scipy.special import digamma, gammaln, multigammaln

from mixstream import _kernels
from mixstream.backend import get_namespace, to_device, to_host
from mixstream.obs.base import ObsModel
from mixstream.obs.gauss_predictive import log_predictive
from mixstream.suffstats import SuffStats

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical")
#: the default prior's point covariance Psi0 / nu0, as a fraction of the data's covariance
PRIOR_SCALE = 0.3
#: the default prior's least variance, as a fraction of the mean variance (constant features)
PRIOR_FLOOR = 1e-3


def covariance_shape(covariance_type: str, K: int, D: int) -> tuple[int, ...]:
    """scikit-learn's shape of ``covariances_`` / ``precisions_`` for a covariance type.

    full (K, D, D), diag (K, D), spherical (K,), tied_full (D, D), tied_diag (D,),
    tied_spherical () (a scalar).
    """
    return {
        "full": (K, D, D),
        "diag": (K, D),
        "spherical": (K,),
        "tied_full": (D, D),
        "tied_diag": (D,),
        "tied_spherical": (),
    }[covariance_type]


#: scikit-learn's names that mean one of ours
_ALIASES = {"tied": "tied_full"}
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
#: components with less mass than this are "empty" for maximum-likelihood EM
_EMPTY = 1e-10
#: most float64 cells of per-block features kept at once (256 MiB)
_FEATURE_BUDGET = 1 << 25
#: precisions the local step's features and GEMMs may run in
COMPUTE_DTYPES = ("float64", "float32")
#: most rows one float32 statistics GEMM sums over
_FLOAT32_BLOCK_ROWS = 1 << 14
#: cache key for the per-block features [1, y, q(y)]
_CACHE_KEY = "gauss/features"


class GaussObs(ObsModel):
    """Gaussian components with a Normal-Wishart prior.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical"}
        "tied" is accepted for "tied_full".
    inference : {"vb", "em"}
    reg_covar : float
        Non-negative; added to the diagonal of EM covariances (as scikit-learn's
        GaussianMixture), and N_k reg_covar to the diagonal of the scatter for VB / MAP.
    mean_prior : array (D,), optional
        Prior mean m0; default the data mean.
    mean_precision_prior : float, optional
        kappa0 > 0; default 1.
    degrees_of_freedom_prior : float, optional
        nu0: > D - 1 for full types, > 0 for the others; default D + 2 (full types) or 2.
    covariance_prior : array, optional
        Psi0, the inverse scale: (D, D) symmetric positive definite for full types, (D,)
        positive for diag types, a positive scalar for spherical types; default nu0 *
        PRIOR_SCALE * the empirical covariance / variances / mean variance of the data.
    map_prior : bool
        EM only: the posterior mode under the prior instead of maximum likelihood.
    compute_dtype : {"float64", "float32"}
        Precision of the local step's features and its two GEMMs. "float32" halves the
        feature memory and runs the GEMMs at the float32 rate (about 2x on a GPU, 1.4x on
        this project's CPUs); each block's statistics are converted to float64 before blocks
        are added, and the global step and ELBO stay float64. Centred features (y = x - shift,
        computed in float64 before rounding) keep the error near float32 rounding of the
        quadratic forms: about 1e-6 relative in the statistics.
    """

    likelihood = "gauss"

    def __init__(
        self,
        covariance_type: str = "full",
        inference: str = "vb",
        reg_covar: float = 1e-6,
        mean_prior: Any = None,
        mean_precision_prior: float | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        map_prior: bool = False,
        compute_dtype: str = "float64",
    ) -> None:
        super().__init__(inference)
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}"
            )
        self.compute_dtype = compute_dtype
        ctype = _ALIASES.get(covariance_type, covariance_type)
        if ctype not in COVARIANCE_TYPES:
            valid = ", ".join(repr(c) for c in (*COVARIANCE_TYPES, *_ALIASES))
            raise ValueError(f"covariance_type must be one of {valid}; got {covariance_type!r}")
        if not (np.isscalar(reg_covar) and np.isfinite(reg_covar) and reg_covar >= 0):
            raise ValueError(f"reg_covar must be a non-negative finite number, got {reg_covar!r}")
        self.covariance_type = ctype
        self.reg_covar = float(reg_covar)
        self.map_prior = bool(map_prior)
        # the user's prior values, kept as given; the resolved ones end in "_"
        self.mean_prior = mean_prior
        self.mean_precision_prior = mean_precision_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.mean_prior_: np.ndarray | None = None
        self.mean_precision_prior_ = 0.0
        self.degrees_of_freedom_prior_ = 0.0
        self.covariance_prior_: np.ndarray | None = None
        self.shift = np.zeros(0)
        # parameters (means in shifted coordinates); arrays with a group axis G = K or 1 (tied)
        self.m = np.zeros((0, 0))
        self.kappa = np.zeros(0)
        self.nu = np.zeros(0)
        self.psi = np.zeros(0)
        self.cov = np.zeros(0)
        self._stats: dict[str, np.ndarray] | None = None  # EM: the statistics behind the estimate
        self._uids: np.ndarray | None = None
        self._set_derived_empty()

    # ------------------------------------------------------------------ structure helpers
    @property
    def structure(self) -> str:
        """The covariance structure without "tied_": "full", "diag" or "spherical"."""
        return self.covariance_type.removeprefix("tied_")

    @property
    def tied(self) -> bool:
        return self.covariance_type.startswith("tied_")

    def _set_features(self, D: int) -> None:
        self.n_features = int(D)
        self._iu = np.triu_indices(D)
        self._offdiag2 = np.where(self._iu[0] == self._iu[1], 1.0, 2.0)
        if self.shift.shape != (D,):
            self.shift = np.zeros(D)

    def _n_quad(self) -> int:
        """Width of q(y): the quadratic features."""
        D = self.n_features
        return {"full": D * (D + 1) // 2, "diag": D, "spherical": 1}[self.structure]

    def _eye(self) -> Any:
        D = self.n_features
        return {"full": np.eye(D), "diag": np.ones(D), "spherical": 1.0}[self.structure]

    def _col(self, v: np.ndarray) -> np.ndarray:
        """A vector over components / groups shaped to broadcast against a (G, rep) array."""
        return {"full": v[:, None, None], "diag": v[:, None], "spherical": v}[self.structure]

    def _outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """a b^T in our representation: the matrix, its diagonal, or its trace / D."""
        if self.structure == "full":
            return a[..., :, None] * b[..., None, :]
        if self.structure == "diag":
            return a * b
        return (a * b).sum(axis=-1) / self.n_features

    def _tr(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """tr(A B) of two symmetric matrices in our representation (broadcasting)."""
        if self.structure == "full":
            return (A * B).sum(axis=(-2, -1))
        if self.structure == "diag":
            return (A * B).sum(axis=-1)
        return self.n_features * A * B

    def _unpack(self, xx: np.ndarray) -> np.ndarray:
        """Statistic ``xx`` (K, F) -> our representation of sum r y y^T."""
        if self.structure == "full":
            i, j = self._iu
            out = np.empty((xx.shape[0], self.n_features, self.n_features))
            out[:, i, j] = xx
            out[:, j, i] = xx
            return out
        if self.structure == "diag":
            return xx
        return xx / self.n_features

    def _pack(self, M: np.ndarray) -> np.ndarray:
        """Inverse of ``_unpack``."""
        if self.structure == "full":
            return M[:, self._iu[0], self._iu[1]]
        if self.structure == "diag":
            return M
        return M * self.n_features

    def _gsum(self, A: np.ndarray) -> np.ndarray:
        """Per-component (K, ...) -> per-group (G, ...)."""
        return A.sum(axis=0, keepdims=True) if self.tied else A

    def _logdet_rep(self, A: np.ndarray) -> np.ndarray:
        """log|A| for diagonal / isotropic representations (G,)."""
        if self.structure == "diag":
            return np.log(A).sum(axis=-1)
        return self.n_features * np.log(A)

    def _group_shape(self, K: int) -> tuple[int, ...]:
        D = self.n_features
        G = 1 if self.tied else K
        return {"full": (G, D, D), "diag": (G, D), "spherical": (G,)}[self.structure]

    def _user_shape(self, K: int) -> tuple[int, ...]:
        """scikit-learn's shape of covariances / precisions for this type."""
        return self._group_shape(K)[1:] if self.tied else self._group_shape(K)

    # ------------------------------------------------------------------ data and prior
    def validate(self, X: Any, where: str = "X") -> None:
        shape = getattr(X, "shape", None)
        dtype = getattr(X, "dtype", None)
        if shape is None or len(shape) != 2:
            raise ValueError(f"{where} must be a 2-D array (rows, features), got shape {shape}")
        if dtype is None or np.dtype(dtype).kind not in "biuf":
            raise ValueError(f"{where} must hold real numbers for likelihood='gauss', got {dtype}")
        if self.n_features and shape[1] != self.n_features:
            raise ValueError(
                f"{where} has {shape[1]} features but the model was set up for {self.n_features}"
            )

    def set_prior_from_data(self, X: Any, weights: Any = None) -> None:
        """Resolve the priors (scikit-learn's defaults from X) and set the shift.

        ``weights`` (N,) are frequency weights: the defaults equal those of X with each row
        repeated ``weights`` times (mean, and covariance / variances with ddof=1 on the total
        weight, as ``np.cov``).
        """
        X = np.asarray(to_host(X), dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"set_prior_from_data needs a non-empty 2-D array, got {X.shape}")
        n, D = X.shape
        if self.K and D != self.n_features:
            raise ValueError(f"X has {D} features; the components have {self.n_features}")
        if weights is None:
            w = np.ones(n)
        else:
            w = np.asarray(to_host(weights), dtype=np.float64).reshape(-1)
            if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(
                    f"weights must be {n} finite non-negative numbers with a positive sum"
                )
        self._set_features(D)
        total = float(w.sum())
        mean = (w @ X) / total
        Xc = X - mean
        if self.mean_prior is None:
            m0 = mean
        else:
            m0 = np.array(self.mean_prior, np.float64)
            if m0.shape != (D,) or not np.all(np.isfinite(m0)):
                raise ValueError(f"mean_prior must be a finite array of shape ({D},), got {m0!r}")
        kappa0 = 1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        if not (np.isscalar(kappa0) and np.isfinite(kappa0) and kappa0 > 0):
            raise ValueError(f"mean_precision_prior must be a positive number, got {kappa0!r}")
        nu0 = self.degrees_of_freedom_prior
        if nu0 is None:
            nu0 = D + 2.0 if self.structure == "full" else 2.0
        low = D - 1.0 if self.structure == "full" else 0.0
        if not (np.isscalar(nu0) and np.isfinite(nu0) and nu0 > low):
            what = f"n_features - 1 = {D - 1}" if low else "0"
            raise ValueError(
                f"degrees_of_freedom_prior must be a number greater than {what} for "
                f"covariance_type={self.covariance_type!r}, got {nu0!r}"
            )
        self.mean_prior_ = m0
        self.mean_precision_prior_ = float(kappa0)
        self.degrees_of_freedom_prior_ = float(nu0)
        self.covariance_prior_ = self._resolve_covariance_prior(Xc, w, total, D)
        if self.K == 0:  # the shift only moves with no parameters expressed in it
            self.shift = mean

    def _resolve_covariance_prior(
        self, Xc: np.ndarray, w: np.ndarray, total: float, D: int
    ) -> np.ndarray:
        s, name = self.structure, f"{self.covariance_type} covariance_prior"
        if self.covariance_prior is not None:
            c = np.array(self.covariance_prior, np.float64)
            want = {"full": (D, D), "diag": (D,), "spherical": ()}[s]
            if s == "spherical" and c.shape == (1,):
                c = c.reshape(())
            if c.shape != want:
                raise ValueError(f"{name} must have shape {want}, got {c.shape}")
            if not np.all(np.isfinite(c)):
                raise ValueError(f"{name} must be finite")
            if s == "full":
                if not np.allclose(c, c.T, rtol=1e-10, atol=0.0) or not _is_pd(c):
                    raise ValueError(f"{name} must be symmetric positive definite")
            elif np.any(c <= 0):
                raise ValueError(f"{name} must be positive")
            return c
        return self.degrees_of_freedom_prior_ * PRIOR_SCALE * self._data_covariance(Xc, w, total, D)

    def _data_covariance(self, Xc: np.ndarray, w: np.ndarray, total: float, D: int) -> Any:
        """np.cov(X.T), np.var(X, ddof=1) or its mean (by structure), floored to be positive
        definite (constant features, fewer rows than features)."""
        denom = total - 1.0 if total > 1.0 else total
        if self.structure == "full":
            c = (Xc.T * w) @ Xc / denom
            c = 0.5 * (c + c.T)
            if not _is_pd(c):
                scale = max(float(np.trace(c)) / D, 1e-300)
                c = c + max(PRIOR_FLOOR * scale, self.reg_covar, 1e-300) * np.eye(D)
            return c
        var = w @ (Xc * Xc) / denom
        c = var if self.structure == "diag" else np.array(var.mean())
        if np.any(c <= 0):
            scale = max(float(var.mean()), 1e-300)
            c = np.maximum(c, max(PRIOR_FLOOR * scale, self.reg_covar, 1e-300))
        return c

    def _prior(self) -> tuple[np.ndarray, float, float, Any]:
        """(m0 shifted, kappa0, nu0, Psi0 in our representation); raises before set_prior."""
        if self.mean_prior_ is None or self.covariance_prior_ is None:
            raise RuntimeError("call set_prior_from_data(X) before fitting")
        psi0 = self.covariance_prior_
        return (
            self.mean_prior_ - self.shift,
            self.mean_precision_prior_,
            self.degrees_of_freedom_prior_,
            psi0,
        )

    # ------------------------------------------------------------------ local step
    def _features(self, X: Any, xp: Any) -> Any:
        """f(y)^T = [1, y, q(y)]^T for y = X - shift: ``compute_dtype``, (1 + D + F, N).

        Stored feature-major so that every product y_i y_j is one long contiguous vector
        operation; both GEMMs take the transpose without a copy.
        """
        n, D = X.shape
        feat = xp.empty((1 + D + self._n_quad(), n), dtype=self._dtype(xp))
        y = feat[1 : 1 + D]
        # one tiled pass over the rows (numba) where it applies: the numpy subtract below reads
        # X transposed, a strided pass, and the squares take a second one
        fused = xp is np and _kernels.center_features(X, self.shift, feat, self.structure)
        if not fused:
            feat[0] = 1.0
            shift = to_device(self.shift, xp)[:, None]
            if feat.dtype == xp.float64:
                xp.subtract(X.T, shift, out=y)
            else:  # the difference in float64 first: rounding y, not x, keeps its digits
                y[...] = X.T - shift
        if self.structure == "full":
            off = 1 + D
            for i in range(D):
                xp.multiply(y[i], y[i:], out=feat[off : off + D - i])
                off += D - i
        elif fused:
            pass
        elif self.structure == "diag":
            xp.multiply(y, y, out=feat[1 + D :])
        else:
            feat[1 + D] = (y * y).sum(axis=0)
        return feat

    def _dtype(self, xp: Any) -> Any:
        return xp.float32 if self.compute_dtype == "float32" else xp.float64

    def _block_rows(self) -> int:
        rows = max(1, _FEATURE_BUDGET // (1 + self.n_features + self._n_quad()))
        # a float32 GEMM sums its rows in float32: short blocks bound that rounding (about
        # sqrt(rows) * 6e-8 relative) before the float64 sum over blocks takes over
        return min(rows, _FLOAT32_BLOCK_ROWS) if self.compute_dtype == "float32" else rows

    def _lp_from_features(self, feat: Any, xp: Any, theta: np.ndarray) -> Any:
        """log_prob (N, K) from features (W, N); computed as theta^T f (K, N) and returned as its
        transpose (column-major): that GEMM shape is the faster one, and the Model's row-wise
        log-sum-exp and column sums then run over contiguous columns. Float32 features give a
        float32 GEMM whose result is returned as float64 (the softmax and entropies stay
        float64)."""
        theta = theta.astype(feat.dtype, copy=False)
        if self.covariance_type == "tied_full":  # one quadratic form serves every component
            D = self.n_features
            lpT = to_device(theta[: 1 + D].T, xp) @ feat[: 1 + D]
            lpT += (to_device(theta[1 + D :, 0], xp) @ feat[1 + D :])[None, :]
        else:
            lpT = to_device(np.ascontiguousarray(theta.T), xp) @ feat
        if lpT.dtype != np.float64:
            # F order: the (N, K) result keeps the column-major layout of the float64 path
            return xp.asarray(lpT.T, dtype=xp.float64, order="F")
        return lpT.T

    def log_predictive(self, X: Any) -> Any:
        """Student-t posterior predictive log-densities (N, K) under VB; None under EM."""
        if self.inference != "vb" or self.K == 0:
            return None
        return log_predictive(self, X)

    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        self._require_params()
        xp = get_namespace(X)
        theta = self._theta
        dead = None
        if bias is not None:  # the constant row of theta: adding it there costs nothing
            theta = theta.copy()
            bias = np.asarray(to_host(bias), np.float64)
            # a DP MAP weight can be exactly 0 (log -inf); an inf inside the GEMM may come out
            # NaN (BLAS multiplies its padding by it), so those columns are set after it
            dead = ~np.isfinite(bias)
            theta[0] += np.where(dead, 0.0, bias)
        n = X.shape[0]
        rows = self._block_rows()
        if n <= rows:
            feat = self._features(X, xp)
            if cache is not None:
                cache[_CACHE_KEY] = feat
            out = self._lp_from_features(feat, xp, theta)
        else:
            out = xp.empty((n, self.K), dtype=xp.float64, order="F")
            for a in range(0, n, rows):
                b = min(a + rows, n)
                out[a:b] = self._lp_from_features(self._features(X[a:b], xp), xp, theta)
        if dead is not None and dead.any():
            out[:, to_device(np.flatnonzero(dead), xp)] = to_device(bias[dead], xp)
        return out

    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        if self.n_features == 0:
            self._set_features(X.shape[1])
        xp = get_namespace(X)
        # the GEMM runs in the features' precision; its block sums are float64 from here on
        resp = xp.asarray(resp, dtype=self._dtype(xp))
        feat = None if cache is None else cache.get(_CACHE_KEY)
        if feat is not None and feat.shape[1] == X.shape[0] and feat.dtype == resp.dtype:
            T = xp.asarray(feat @ resp, dtype=xp.float64)
        else:
            n, rows = X.shape[0], self._block_rows()
            T = xp.zeros((1 + self.n_features + self._n_quad(), resp.shape[1]))
            for a in range(0, n, rows):
                b = min(a + rows, n)
                T += self._features(X[a:b], xp) @ resp[a:b]
        D = self.n_features
        xx = T[1 + D] if self.structure == "spherical" else T[1 + D :].T
        if resp.dtype != xp.float64:  # the Model sums N from float64 resp: sum_k N_k = n
            return {"x": T[1 : 1 + D].T, "xx": xx}
        # feature 0 is the constant 1, so row 0 of T is N: the Model need not sum resp again
        return {"N": T[0], "x": T[1 : 1 + D].T, "xx": xx}

    # ------------------------------------------------------------------ global step
    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        if rho is not None and not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {rho!r}")
        K = SS.K
        x = SS["x"]
        if self.n_features == 0:
            self._set_features(x.shape[1])
        stats = {"N": np.maximum(SS.N, 0.0), "x": x, "xx": SS["xx"]}
        blend = rho is not None and rho < 1.0 and K == self.K and K > 0
        if self.inference == "vb":
            self._update_vb(stats, rho if blend else None)
        else:
            if blend and self._stats is not None and self._stats["N"].shape[0] == K:
                stats = {k: (1.0 - rho) * self._stats[k] + rho * v for k, v in stats.items()}
            self._stats = {k: np.array(v, np.float64) for k, v in stats.items()}
            self._update_em(stats, SS.uids)
        self.K = K
        self._uids = SS.uids.copy()
        self._refresh()

    def _update_vb(self, stats: dict[str, np.ndarray], rho: float | None) -> None:
        m0, k0, nu0, psi0 = self._prior()
        N, x = stats["N"], stats["x"]
        kappa = k0 + N
        h2 = k0 * m0 + x  # kappa m
        nu = nu0 + self._gsum(N)
        # Psi + sum_k kappa_k m_k m_k^T (per group): the natural parameter paired with -Lambda/2
        h3 = psi0 + self._gsum(
            self._unpack(stats["xx"])
            + self.reg_covar * self._col(N) * self._eye()
            + k0 * self._outer(m0, m0)
        )
        if rho is not None:
            cur3 = self.psi + self._gsum(self._col(self.kappa) * self._outer(self.m, self.m))
            kappa = (1.0 - rho) * self.kappa + rho * kappa
            h2 = (1.0 - rho) * (self.kappa[:, None] * self.m) + rho * h2
            h3 = (1.0 - rho) * cur3 + rho * h3
            nu = (1.0 - rho) * self.nu + rho * nu
        m = h2 / kappa[:, None]
        psi = h3 - self._gsum(self._col(kappa) * self._outer(m, m))
        if self.structure == "full":
            psi = 0.5 * (psi + psi.transpose(0, 2, 1))
        self.kappa, self.m, self.nu, self.psi = kappa, m, np.asarray(nu, np.float64), psi

    def _update_em(self, stats: dict[str, np.ndarray], uids: np.ndarray) -> None:
        N, x = stats["N"], stats["x"]
        K, D = N.shape[0], self.n_features
        xxp = self._unpack(stats["xx"])
        eye = self._eye()
        if self.map_prior:
            m0, k0, nu0, psi0 = self._prior()
            kappa = k0 + N
            m = (k0 * m0 + x) / kappa[:, None]
            # no reg_covar here: Psi0 already keeps A positive definite, and a term the
            # objective does not have would make this step the maximiser of another function
            # (memoized DP-MAP EM on digits then fell by 8e-9 relative per lap, geometrically)
            A = psi0 + self._gsum(
                xxp + k0 * self._outer(m0, m0) - self._col(kappa) * self._outer(m, m)
            )
            c = {"full": D + 1.0, "diag": 2.0, "spherical": 2.0 / D}[self.structure]
            denom = nu0 + self._gsum(N) + (K if self.tied else 1) + c
            cov = A / self._col(np.asarray(denom, np.float64))
            self.m, self.cov = m, self._symmetrize(cov)
            return
        prev_m, prev_cov = self._previous(uids, K)
        full = N > _EMPTY
        safe = np.where(full, N, 1.0)
        m = np.where(full[:, None], x / safe[:, None], prev_m)
        S = xxp - self._outer(x, x) / self._col(safe)  # scatter about the component mean
        if self.structure != "full":
            S = np.maximum(S, 0.0)
        if self.tied:
            total = N.sum()
            cov = S.sum(axis=0, keepdims=True) / total + self.reg_covar * eye
            if not total > _EMPTY:
                cov = prev_cov
        else:
            cov = np.where(self._col(full), S / self._col(safe) + self.reg_covar * eye, prev_cov)
        self.m, self.cov = m, self._symmetrize(cov)

    def _previous(self, uids: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Means (K, D) and covariances (G, rep) an empty EM component keeps: its own last
        values (matched by uid, else by position when K is unchanged) or the prior's."""
        D = self.n_features
        if self.mean_prior_ is not None and self.covariance_prior_ is not None:
            m0 = self.mean_prior_ - self.shift
            base = self.covariance_prior_ + self.reg_covar * self._eye()
        else:
            m0, base = np.zeros(D), np.asarray(self._eye(), np.float64) * max(self.reg_covar, 1.0)
        prev_m = np.broadcast_to(m0, (K, D)).copy()
        prev_cov = np.broadcast_to(base, self._group_shape(K)).copy()
        have = self.inference == "em" and self.K > 0 and self.cov.shape[0] > 0
        if not have:
            return prev_m, prev_cov
        if self.tied:
            prev_cov = self.cov.copy()
        if self._uids is not None:
            pos = {int(u): i for i, u in enumerate(self._uids)}
            pairs = [(i, pos[int(u)]) for i, u in enumerate(uids) if int(u) in pos]
        elif self.K == K:
            pairs = [(i, i) for i in range(K)]
        else:
            pairs = []
        for i, j in pairs:
            prev_m[i] = self.m[j]
            if not self.tied:
                prev_cov[i] = self.cov[j]
        return prev_m, prev_cov

    def _symmetrize(self, A: np.ndarray) -> np.ndarray:
        return 0.5 * (A + A.transpose(0, 2, 1)) if self.structure == "full" else A

    # ------------------------------------------------------------------ derived quantities
    def _set_derived_empty(self) -> None:
        self._prec = np.zeros(0)  # EM: Sigma^{-1}; VB: E[Lambda] = nu Psi^{-1}
        self._inv = np.zeros(0)  # Sigma^{-1} (EM) or Psi^{-1} (VB)
        self._chol = np.zeros(0)  # full: lower Cholesky factor of Sigma (EM) or Psi (VB)
        self._chol_inv = np.zeros(0)  # its inverse
        self._logdet = np.zeros(0)  # EM: log|Sigma^{-1}|; VB: E log|Lambda|
        self._logdet_mat = np.zeros(0)  # log|Sigma| (EM) or log|Psi| (VB)
        self._theta = np.zeros((0, 0))

    def _require_params(self) -> None:
        if self.K == 0:
            raise RuntimeError("the observation model has no components yet; update it first")

    def _refresh(self) -> None:
        """Precisions, log-determinants and the local-step matrix theta from the parameters."""
        if self.K == 0:
            self._set_derived_empty()
            return
        vb = self.inference == "vb"
        M = self.psi if vb else self.cov
        floor = self._floor()
        if self.structure == "full":
            L, M = _chol_stack(M, floor)
            Linv = np.empty_like(L)
            for g in range(L.shape[0]):
                Linv[g], _ = dtrtri(L[g], lower=1)
            inv = np.matmul(Linv.transpose(0, 2, 1), Linv)
            logdet_mat = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
            self._chol, self._chol_inv = L, Linv
        else:
            bad = ~(M > 0)
            if np.any(bad):  # rounding only; keep the local step finite
                M = np.where(bad, floor, M)
            inv = 1.0 / M
            logdet_mat = self._logdet_rep(M)
            self._chol, self._chol_inv = np.zeros(0), np.zeros(0)
        if vb:
            self.psi = M
            prec = self._col(self.nu) * inv
            logdet = self._expected_logdet(self.nu, logdet_mat)
        else:
            self.cov = M
            prec = inv
            logdet = -logdet_mat
        self._inv, self._prec, self._logdet, self._logdet_mat = inv, prec, logdet, logdet_mat
        self._theta = self._local_matrix()

    def _floor(self) -> float:
        """Least eigenvalue a repaired covariance (EM) or inverse scale (VB) gets: reg_covar, or
        for VB the least eigenvalue of Psi0 (every update has Psi >= Psi0)."""
        if self.inference == "vb" and self.covariance_prior_ is not None:
            psi0 = np.asarray(self.covariance_prior_)
            low = np.linalg.eigvalsh(psi0)[0] if self.structure == "full" else psi0.min()
            return max(float(low), 1e-300)
        return max(self.reg_covar, 1e-300)

    def _local_matrix(self) -> np.ndarray:
        """theta (1 + D + F, K): log_prob = [1, y, q(y)] @ theta."""
        D, K, m = self.n_features, self.K, self.m
        P = self._prec
        if self.structure == "full":
            b = np.matmul(P, m[:, :, None])[:, :, 0]
            quad = -0.5 * P[:, self._iu[0], self._iu[1]] * self._offdiag2
        elif self.structure == "diag":
            b = P * m
            quad = -0.5 * P
        else:
            b = P[:, None] * m
            quad = -0.5 * P[:, None]
        c = 0.5 * self._logdet - 0.5 * D * _LOG_2PI - 0.5 * (b * m).sum(axis=1)
        if self.inference == "vb":
            c = c - 0.5 * D / self.kappa
        theta = np.empty((1 + D + quad.shape[1], K))
        theta[0] = c
        theta[1 : 1 + D] = b.T
        theta[1 + D :] = quad.T  # (F, G) broadcasts over K for tied
        return theta

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
        if self.inference == "em":
            total = float(
                (0.5 * N * (self._logdet - D * _LOG_2PI) - 0.5 * self._tr(self._prec, resid)).sum()
            )
            return total + (self._log_prior_density() if self.map_prior else 0.0)
        m0, k0, nu0, psi0 = self._prior()
        kappa, nu, elogdet = self.kappa, self.nu, self._logdet
        loglik = 0.5 * N * (elogdet - D * _LOG_2PI) - 0.5 * (
            N * D / kappa + nu * self._tr(self._inv, resid)
        )
        d = m - m0
        kl_mean = 0.5 * (
            D * (k0 / kappa - 1.0 + np.log(kappa / k0))
            + k0 * nu * self._tr(self._inv, self._outer(d, d))
        )
        kl_prec = self._kl_precision(nu, nu0, elogdet, self._logdet_prior(), psi0)
        return float(loglik.sum() - kl_mean.sum() - kl_prec.sum())

    def _gamma_shape(self) -> tuple[float, int]:
        """(s, n_g) of the Gamma precisions of diag / spherical types: n_g Gammas of shape
        nu s / 2 and rate psi s / 2 (diag: one per feature, s = 1; spherical: one, s = D)."""
        D = self.n_features
        return (1.0, D) if self.structure == "diag" else (float(D), 1)

    def _expected_logdet(self, nu: np.ndarray, logdet_psi: np.ndarray) -> np.ndarray:
        """E log|Lambda| (G,) under q: Wishart(nu, Psi^{-1}) for full types, the Gammas of
        ``_gamma_shape`` for diag / spherical types."""
        D = self.n_features
        if self.structure == "full":
            return _expected_logdet(nu, logdet_psi, D)
        s, n_g = self._gamma_shape()
        return n_g * s * (digamma(0.5 * s * nu) - math.log(0.5 * s)) - logdet_psi

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
        if self.structure == "full":
            return (
                common
                - multigammaln(0.5 * nu, D)
                + multigammaln(0.5 * nu0, D)
                + 0.5 * (nu - nu0) * (elogdet + self._logdet_mat - D * _LOG_2)
            )
        s, n_g = self._gamma_shape()
        a, a0 = 0.5 * s * nu, 0.5 * s * nu0
        return common + n_g * ((a - a0) * digamma(a) - gammaln(a) + gammaln(a0))

    def _logdet_prior(self) -> float:
        psi0 = self.covariance_prior_
        if self.structure == "full":
            return float(2.0 * np.log(np.diag(cholesky(psi0, lower=True))).sum())
        return float(self._logdet_rep(np.asarray(psi0)))

    def _log_prior_density(self) -> float:
        """log p(mu, Sigma) at the EM point estimate (the MAP objective's prior term)."""
        m0, k0, nu0, psi0 = self._prior()
        D = self.n_features
        d = self.m - m0
        log_mean = (
            -0.5 * D * _LOG_2PI
            + 0.5 * D * math.log(k0)
            + 0.5 * self._logdet
            - 0.5 * k0 * self._tr(self._prec, self._outer(d, d))
        )
        if self.structure == "full":
            norm = 0.5 * nu0 * self._logdet_prior() - 0.5 * nu0 * D * _LOG_2
            norm -= multigammaln(0.5 * nu0, D)
            e = 0.5 * (nu0 + D + 1.0)
        elif self.structure == "diag":
            a = 0.5 * nu0
            norm = float((a * np.log(0.5 * psi0)).sum() - D * gammaln(a))
            e = a + 1.0
        else:
            a = 0.5 * D * nu0
            norm = float(a * np.log(0.5 * D * psi0) - gammaln(a))
            e = (a + 1.0) / D
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
        if self.structure != "full":
            return np.sqrt(self._prec)
        U = self._chol_inv.transpose(0, 2, 1)
        return U * np.sqrt(self.nu)[:, None, None] if self.inference == "vb" else U.copy()

    def point_estimates(self) -> dict[str, np.ndarray]:
        def user(A: np.ndarray) -> np.ndarray:
            return np.array(A[0] if self.tied else A, np.float64)

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
        per_cov = {"full": D * (D + 1) // 2, "diag": D, "spherical": 1}[self.structure]
        return int(K * D + per_cov * (1 if self.tied else K))

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
        want = self._user_shape(K)
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
        if self.structure == "full":
            if not np.allclose(given, given.transpose(0, 2, 1), rtol=1e-10, atol=0.0) or not all(
                _is_pd(g) for g in given
            ):
                raise ValueError(
                    f"{self.covariance_type} {what} must be symmetric positive definite"
                )
            cov = given
            if precisions is not None:
                Linv = np.stack([dtrtri(cholesky(g, lower=True), lower=1)[0] for g in given])
                cov = np.matmul(Linv.transpose(0, 2, 1), Linv)
            cov = self._symmetrize(cov)
        else:
            if not np.all(given > 0):
                raise ValueError(f"{self.covariance_type} {what} must be positive")
            cov = given if precisions is None else 1.0 / given
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
            self.covariance_prior_ = psi0.reshape(()) if self.structure == "spherical" else psi0
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
        if self.structure == "full":
            scale = self._chol[g] / (math.sqrt(self.nu[g]) if self.inference == "vb" else 1.0)
            z = z @ scale.T
        else:
            z = z * np.sqrt(cov)
        return z + (self.m[k] + self.shift)


# ---------------------------------------------------------------------- helpers
def _is_pd(A: np.ndarray) -> bool:
    try:
        cholesky(A, lower=True, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        return False
    return True


def _chol_stack(M: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of a stack (G, D, D) of symmetric matrices.

    A matrix that rounding made indefinite gets its eigenvalues clipped to at least ``floor``
    (and 1e-12 of the largest); returns the factors and the (possibly repaired) matrices.
    """
    try:
        return np.linalg.cholesky(M), M
    except np.linalg.LinAlgError:
        pass
    M = M.copy()
    L = np.empty_like(M)
    for g in range(M.shape[0]):
        try:
            L[g] = cholesky(M[g], lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            w, V = eigh(M[g])
            top = max(float(np.abs(w).max()), 1e-300)
            w = np.maximum(w, max(floor, 1e-12 * top))
            M[g] = (V * w) @ V.T
            M[g] = 0.5 * (M[g] + M[g].T)
            L[g] = cholesky(M[g], lower=True, check_finite=False)
    return L, M


def _expected_logdet(nu: np.ndarray, logdet_psi: np.ndarray, D: int) -> np.ndarray:
    """E log|Lambda| under Wishart(nu, Psi^{-1}).

    sum_{d<D} digamma((nu - d) / 2) + D log 2 - log|Psi|.
    """
    d = np.arange(D)
    return digamma(0.5 * (nu[:, None] - d[None, :])).sum(axis=1) + D * _LOG_2 - logdet_psi
