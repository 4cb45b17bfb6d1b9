"""``GaussObs``: the Gaussian observation model (see the package docstring for the maths).

Everything that depends on the covariance type is asked of ``self.covariance_structure``
(a ``CovarianceStructure``); this class holds the parameters and the steps common to all six
types: prior resolution, the two-GEMM local step, the VB / EM global steps, the ELBO, state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream import _kernels
from mixstream.backend import get_namespace, to_device, to_host
from mixstream.obs.base import LOG_PROB_FLOAT32, ObsModel
from mixstream.obs.gauss.fused import fused_summary
from mixstream.obs.gauss.grid import REG_COVAR_FLOOR, auto_reg_covar
from mixstream.obs.gauss.linalg import LOG_2PI
from mixstream.obs.gauss.marginal import MISSING_KEY, MissingValuesMixin
from mixstream.obs.gauss.missing import find_missing, log_predictive_missing
from mixstream.obs.gauss.params import GaussParamsMixin
from mixstream.obs.gauss.predictive import log_predictive, prior_component
from mixstream.obs.gauss.structure import PRIOR_SCALE, CovarianceStructure
from mixstream.obs.gauss.types import canonical_covariance_type, covariance_strategy
from mixstream.suffstats import SuffStats
from mixstream.vocabulary import COMPUTE_DTYPES

#: components with less mass than this are "empty" for maximum-likelihood EM
_EMPTY = 1e-10
#: most rows one float32 statistics GEMM sums over
_FLOAT32_BLOCK_ROWS = 1 << 14
#: cache key for the per-block features [1, y, q(y)]
_CACHE_KEY = "gauss/features"
#: what ``missing`` may be: refuse NaN (checked by the data sources) or marginalise it
MISSING_MODES = ("error", "marginalize")


def _feature_budget() -> int:
    """Most float64 cells of per-block features kept at once: ``mixstream.obs.gauss.
    _FEATURE_BUDGET``, read at call time so that lowering it there takes effect."""
    from mixstream.obs import gauss

    return int(gauss._FEATURE_BUDGET)


class GaussObs(MissingValuesMixin, GaussParamsMixin, ObsModel):
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
        reg_covar: float | str = 1e-6,
        mean_prior: Any = None,
        mean_precision_prior: float | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        map_prior: bool = False,
        compute_dtype: str = "float64",
        missing: str = "error",
    ) -> None:
        super().__init__(inference)
        if missing not in MISSING_MODES:
            raise ValueError(f"missing must be one of {MISSING_MODES}, got {missing!r}")
        #: "marginalize": NaN entries are integrated out (obs/gauss/missing.py)
        self.missing = missing
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}"
            )
        self.compute_dtype = compute_dtype
        ctype = canonical_covariance_type(covariance_type)
        auto = isinstance(reg_covar, str) and reg_covar == "auto"
        if not auto and not (
            np.isscalar(reg_covar)
            and not isinstance(reg_covar, str)
            and np.isfinite(reg_covar)
            and reg_covar >= 0
        ):
            raise ValueError(
                f"reg_covar must be a non-negative finite number or 'auto', got {reg_covar!r}"
            )
        self.covariance_type = ctype
        #: "auto" is resolved from the data by set_prior_from_data (obs/gauss/grid.py)
        self.reg_covar_auto = auto
        self.reg_covar = REG_COVAR_FLOOR if auto else float(reg_covar)
        self.map_prior = bool(map_prior)
        # the user's prior values, kept as given; the resolved ones end in "_"
        self.mean_prior = mean_prior
        self.mean_precision_prior = mean_precision_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        #: the default prior's scale is fitted (``fit_prior``); a given one stays as given
        self.empirical_prior = covariance_prior is None
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
    def covariance_structure(self) -> CovarianceStructure:
        """The strategy of this model's covariance type (storage and type-specific maths)."""
        return covariance_strategy(self.covariance_type)

    @property
    def structure(self) -> str:
        """The covariance structure without "tied_": "full", "diag" or "spherical"."""
        return self.covariance_structure.structure

    @property
    def tied(self) -> bool:
        return self.covariance_structure.tied

    def _set_features(self, D: int) -> None:
        self.n_features = int(D)
        if self.shift.shape != (D,):
            self.shift = np.zeros(D)

    # shorthands for the strategy's representation algebra (D filled in)
    def _n_quad(self) -> int:
        return self.covariance_structure.n_quad(self.n_features)

    def _eye(self) -> Any:
        return self.covariance_structure.eye(self.n_features)

    def _col(self, v: np.ndarray) -> np.ndarray:
        return self.covariance_structure.col(v)

    def _outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.covariance_structure.outer(a, b, self.n_features)

    def _tr(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return self.covariance_structure.tr(A, B, self.n_features)

    def _unpack(self, xx: np.ndarray) -> np.ndarray:
        return self.covariance_structure.unpack(xx, self.n_features)

    def _pack(self, M: np.ndarray) -> np.ndarray:
        return self.covariance_structure.pack(M, self.n_features)

    def _gsum(self, A: np.ndarray) -> np.ndarray:
        return self.covariance_structure.gsum(A)

    def _expected_logdet(self, nu: np.ndarray, logdet_psi: np.ndarray) -> np.ndarray:
        return self.covariance_structure.expected_logdet(nu, logdet_psi, self.n_features)

    def _group_shape(self, K: int) -> tuple[int, ...]:
        return self.covariance_structure.group_shape(K, self.n_features)

    # ------------------------------------------------------------------ data and prior
    def validate(self, X: Any, where: str = "X") -> None:
        self.check_real(X, where, "gauss")

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
        if self.reg_covar_auto:
            self.reg_covar = auto_reg_covar(X[w > 0])
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
        cs = self.covariance_structure
        nu0 = self.degrees_of_freedom_prior
        if nu0 is None:
            nu0 = cs.default_dof(D)
        low = cs.min_dof(D)
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
        cs = self.covariance_structure
        if self.covariance_prior is not None:
            c = np.array(self.covariance_prior, np.float64)
            return cs.check_covariance_prior(c, D, f"{self.covariance_type} covariance_prior")
        scale = self.degrees_of_freedom_prior_ * PRIOR_SCALE
        return scale * cs.data_covariance(Xc, w, total, D, self.reg_covar)

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
        cs = self.covariance_structure
        fused = xp is np and _kernels.center_features(X, self.shift, feat, cs.structure)
        if not fused:
            feat[0] = 1.0
            shift = to_device(self.shift, xp)[:, None]
            if feat.dtype == xp.float64:
                xp.subtract(X.T, shift, out=y)
            else:  # the difference in float64 first: rounding y, not x, keeps its digits
                y[...] = X.T - shift
        cs.fill_quad(feat, y, D, xp, bool(fused))
        return feat

    def _dtype(self, xp: Any) -> Any:
        return xp.float32 if self.compute_dtype == "float32" else xp.float64

    def _block_rows(self) -> int:
        rows = max(1, _feature_budget() // (1 + self.n_features + self._n_quad()))
        # a float32 GEMM sums its rows in float32: short blocks bound that rounding (about
        # sqrt(rows) * 6e-8 relative) before the float64 sum over blocks takes over
        return min(rows, _FLOAT32_BLOCK_ROWS) if self.compute_dtype == "float32" else rows

    def _lp_from_features(self, feat: Any, xp: Any, theta: np.ndarray, narrow: bool = False) -> Any:
        """log_prob (N, K) from features (W, N); computed as theta^T f (K, N) and returned as its
        transpose (column-major): that GEMM shape is the faster one, and the Model's row-wise
        log-sum-exp and column sums then run over contiguous columns. Float32 features give a
        float32 GEMM whose result is returned as float64 (the softmax and entropies stay
        float64), unless ``narrow``: then float32 and row-major (f^T theta) for a softmax that
        widens it as it reads it (in float32 that GEMM shape runs 10-12% faster)."""
        theta = theta.astype(feat.dtype, copy=False)
        one_form = self.covariance_structure.one_quadratic_form
        if narrow and feat.dtype == xp.float32 and not one_form:
            return feat.T @ to_device(theta, xp)
        if one_form:  # one serves every component
            D = self.n_features
            lpT = to_device(theta[: 1 + D].T, xp) @ feat[: 1 + D]
            lpT += (to_device(theta[1 + D :, 0], xp) @ feat[1 + D :])[None, :]
        else:
            lpT = to_device(np.ascontiguousarray(theta.T), xp) @ feat
        if lpT.dtype != np.float64 and not narrow:
            # F order: the (N, K) result keeps the column-major layout of the float64 path
            return xp.asarray(lpT.T, dtype=xp.float64, order="F")
        return lpT.T

    def log_predictive(self, X: Any) -> Any:
        """Student-t posterior predictive log-densities (N, K) under VB; None under EM."""
        if self.inference != "vb" or self.K == 0:
            return None
        if self.missing == "marginalize":
            xp = get_namespace(X)
            rows_missing = find_missing(X, xp)
            if rows_missing is not None:
                return to_device(log_predictive_missing(self, to_host(X)), xp)
        return log_predictive(self, X)

    def log_prior_predictive(self, X: Any) -> Any:
        """Student-t prior predictive log-densities (N,) under VB (rows with NaN: over their
        observed coordinates); None under EM and before the prior is set."""
        if self.inference != "vb" or self.mean_prior_ is None:
            return None
        prior = prior_component(self)
        if self.missing == "marginalize":
            xp = get_namespace(X)
            if find_missing(X, xp) is not None:
                return to_device(log_predictive_missing(prior, to_host(X))[:, 0], xp)
        return log_predictive(prior, X)[:, 0]

    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        self._require_params()
        xp = get_namespace(X)
        if self.missing == "marginalize":
            rows_missing = find_missing(X, xp)
            if rows_missing is not None:
                return self._log_prob_missing(X, rows_missing, xp, cache, bias)
            if cache is not None:
                cache[MISSING_KEY] = (-X.shape[0],)
        narrow = cache is not None and bool(cache.get(LOG_PROB_FLOAT32)) and xp is np
        return self._log_prob_plain(X, cache, bias, narrow)

    def _log_prob_plain(
        self, X: Any, cache: dict | None = None, bias: Any = None, narrow: bool = False
    ) -> Any:
        """log_prob of rows without NaN: the two-GEMM path. ``narrow``: a float32 GEMM's
        result stays float32 where the rows are one block (see ``_lp_from_features``)."""
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
            out = self._lp_from_features(feat, xp, theta, narrow)
        else:
            out = xp.empty((n, self.K), dtype=xp.float64, order="F")
            for a in range(0, n, rows):
                b = min(a + rows, n)
                out[a:b] = self._lp_from_features(self._features(X[a:b], xp), xp, theta)
        if dead is not None and dead.any():
            out[:, to_device(np.flatnonzero(dead), xp)] = to_device(bias[dead], xp)
        return out

    fused_summary = fused_summary  # one kernel for local step + summary (obs/gauss/fused.py)

    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        if self.n_features == 0:
            self._set_features(X.shape[1])
        xp = get_namespace(X)
        if self.missing == "marginalize":
            return self._calc_stats_missing(X, resp, xp, cache)
        return self._calc_stats_plain(X, resp, xp, cache)

    def _calc_stats_plain(self, X: Any, resp: Any, xp: Any, cache: dict | None) -> dict:
        """The statistics of complete rows: one GEMM with the (cached) features."""
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
        xx = self.covariance_structure.stats_xx(T, D)
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
        psi = self.covariance_structure.symmetrize(psi)
        self.kappa, self.m, self.nu, self.psi = kappa, m, np.asarray(nu, np.float64), psi
        if rho is None and self.empirical_prior:  # empirical Bayes: docs/math.md §4
            cs, nu0 = self.covariance_structure, self.degrees_of_freedom_prior_
            self.psi, self.covariance_prior_ = cs.fit_prior(
                self.nu, self.psi, self.covariance_prior_, nu0, self.reg_covar
            )

    def for_proposal(self) -> GaussObs:
        """This model with its prior fixed (a birth's pieces must not fit it to one target)."""
        self.empirical_prior = False
        return self

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
            c = self.covariance_structure.map_dof_offset(D)
            denom = nu0 + self._gsum(N) + (K if self.tied else 1) + c
            cov = A / self._col(np.asarray(denom, np.float64))
            self.m, self.cov = m, self._symmetrize(cov)
            return
        prev_m, prev_cov = self._previous(uids, K)
        full = N > _EMPTY
        safe = np.where(full, N, 1.0)
        m = np.where(full[:, None], x / safe[:, None], prev_m)
        S = xxp - self._outer(x, x) / self._col(safe)  # scatter about the component mean
        S = self.covariance_structure.clip_scatter(S)
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
        return self.covariance_structure.symmetrize(A)

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
        cs = self.covariance_structure
        M, inv, logdet_mat, self._chol, self._chol_inv = cs.factor(
            M, self._floor(), self.n_features
        )
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
            return max(self.covariance_structure.min_eig(psi0), 1e-300)
        return max(self.reg_covar, 1e-300)

    def _local_matrix(self) -> np.ndarray:
        """theta (1 + D + F, K): log_prob = [1, y, q(y)] @ theta."""
        D, K, m = self.n_features, self.K, self.m
        b, quad = self.covariance_structure.local_terms(self._prec, m, D)
        c = 0.5 * self._logdet - 0.5 * D * LOG_2PI - 0.5 * (b * m).sum(axis=1)
        if self.inference == "vb":
            c = c - 0.5 * D / self.kappa
        theta = np.empty((1 + D + quad.shape[1], K))
        theta[0] = c
        theta[1 : 1 + D] = b.T
        theta[1 + D :] = quad.T  # (F, G) broadcasts over K for tied
        return theta
