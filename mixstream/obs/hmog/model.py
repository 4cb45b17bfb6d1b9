"""``HMoGObs``: the hierarchical mixture of Gaussians as an observation model.

    x = W y + mu + e,   e ~ N(0, Psi),   y | z=k ~ N(m_k, S_k),   z ~ the allocation model

The latent components (m_k, S_k) live in R^d and are a full-covariance ``GaussObs`` in latent
space (Normal-Wishart posteriors under VB, ML / MAP under EM); the lower layer (W, mu, Psi) is
a point estimate (maximum likelihood) shared by all components. See docs/math.md, "HMoG".

Local step (never a p x p inverse per component): with A = W^T Psi^-1 W and
u_n = W^T Psi^-1 (x_n - mu), the posterior of y given x_n and z=k is Gaussian with precision
P_k = E[Lambda_k] + A and mean P_k^-1 (E[Lambda_k m_k] + u_n); the log-probability of row n
under component k is the maximum over q(y) of E_q[log p(x, y | k)] + H[q], which under EM is
log N(x_n | W m_k + mu, W S_k W^T + Psi) (Woodbury and the determinant lemma).

Statistics (additive; fields of a SuffStats, all with the component axis):
  per component: N, y = sum r E[y], yy = sum r E[y y^T], Hy = sum r H[q(y | x, k)];
  the lower layer's, per component too (their sums over k are what its update reads):
  sx = sum x, sxy = sum x E[y]^T, sxx = sum x x^T on Psi's structure. With ``split_rows``
  (fits with births) each is a sum over the component's rows, weighted by r_nk and with
  E[y | x, k], so that a birth's split of one component's rows edits them exactly (O(K p d) a
  row, one GEMM); without it each batch's sums (O(p d) a row) are split over the components in
  proportion to N_k, which merges, deletes, reorders and alignments keep exact. x is centred on
  a fixed shift (the data mean) for accuracy. Costs per row: O(p d) for the projection, O(K d^2)
  for the posteriors, O(K p) for a diagonal sxx (O(p^2) for a full Psi, and O(K p^2) with
  ``split_rows``: prefer "diag" at large p).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.backend import to_host
from mixstream.obs.base import ObsModel
from mixstream.obs.gauss import GaussObs
from mixstream.obs.gauss.linalg import LOG_2PI
from mixstream.obs.gauss.missing import find_missing
from mixstream.obs.hmog import missing as with_nan
from mixstream.obs.hmog import noise
from mixstream.obs.hmog.init import pca_layer
from mixstream.suffstats import SuffStats
from mixstream.vocabulary import MISSING_MODES

_CACHE_KEY = "hmog/features"
_SHARED = ("sx", "sxy", "sxx")
#: most floats of the x-space covariances (K, p, p) kept as ``covariances_`` (256 MB); beyond,
#: ``model_.obs.x_covariances()`` gives them on demand
MAX_X_COV_FLOATS = 1 << 25


class HMoGObs(ObsModel):
    """Gaussian mixture in a d-dimensional latent space under a linear-Gaussian layer.

    Parameters
    ----------
    latent_dim : int
        d, 1 <= d < n_features (required).
    covariance_type : {"spherical", "diag", "full"}
        Structure of the noise covariance Psi (probabilistic PCA, factor analysis, full); the
        latent components always have full covariances.
    inference : {"vb", "em"}
    reg_covar : float
        Added to the diagonal of the latent components' covariances (EM) / scatter (VB).
    map_prior : bool
        EM only: MAP latent components under their Normal-Wishart prior.
    split_rows : bool
        Keep the layer's statistics per component as sums over each component's rows, so that
        a birth, which splits one component's rows among new ones, edits them exactly; this
        costs O(K p d) per row (one GEMM). False: each batch's sums (O(p d) per row) are split
        over the components in proportion to N_k, which merges and deletes keep exact but a
        birth does not (build_model turns it off for fits without births).
    whiten : bool, optional
        After each global step, reparametrise the latent space so that the components' mixture
        (weights N_k / N) has zero mean and identity covariance, preserving p(x). Default: on
        for EM (full-batch: the bound of the statistics it was given is carried into the new
        coordinates exactly), off for VB, whose latent prior is not invariant.
    """

    likelihood = "hmog"

    def __init__(
        self,
        latent_dim: int | None = None,
        covariance_type: str = "diag",
        inference: str = "vb",
        reg_covar: float | str = 1e-6,
        map_prior: bool = False,
        whiten: bool | None = None,
        split_rows: bool = True,
        missing: str = "error",
    ) -> None:
        super().__init__(inference)
        if missing not in MISSING_MODES:
            raise ValueError(f"missing must be one of {MISSING_MODES}, got {missing!r}")
        self.missing = missing
        if latent_dim is None:
            raise ValueError("likelihood='hmog' needs latent_dim (the latent dimension d >= 1)")
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int | np.integer):
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        self.covariance_type = noise.check_structure(covariance_type)
        reg = 1e-6 if isinstance(reg_covar, str) else float(reg_covar)
        self.reg_covar = reg
        self.map_prior = bool(map_prior)
        self.whiten = (inference == "em") if whiten is None else bool(whiten)
        self.split_rows = bool(split_rows)
        self.inner = GaussObs("full", inference=inference, reg_covar=reg, map_prior=map_prior)
        self.W = np.zeros((0, self.latent_dim))
        self.mu = np.zeros(0)  # in shifted coordinates
        self.shift = np.zeros(0)
        self.psi = np.zeros(0)
        self.floor = 0.0
        #: a proposal's copy (``for_proposal``): the layer (W, mu, Psi) stays as it is
        self.layer_fixed = False
        self._frame: tuple[np.ndarray, np.ndarray] | None = None
        self._shared: dict[str, np.ndarray] | None = None
        self._derived: dict[str, Any] = {}

    # ------------------------------------------------------------------ data
    def validate(self, X: Any, where: str = "X") -> None:
        self.check_real(X, where, "hmog")
        self.check_latent_dim(X.shape[1])

    def check_latent_dim(self, p: int) -> None:
        if not self.latent_dim < p:
            raise ValueError(
                f"latent_dim must be smaller than n_features = {p}, got {self.latent_dim}"
            )

    def set_prior_from_data(self, X: Any, weights: Any = None) -> None:
        """Shift, noise floor, the probabilistic-PCA layer (when not fitted yet) and the latent
        components' Normal-Wishart prior from the sample's latent coordinates."""
        X = np.asarray(to_host(X), dtype=np.float64)
        n, p = X.shape
        self.check_latent_dim(p)
        w = np.ones(n) if weights is None else np.asarray(to_host(weights), np.float64)
        self.n_features = p
        if self.K == 0:
            self.shift = (w @ X) / w.sum()
            var = (w @ (X - self.shift) ** 2) / w.sum()
            self.floor = noise.NOISE_FLOOR * max(float(var.mean()), 1e-300)
            W, mu, psi = pca_layer(
                X - self.shift, w, self.latent_dim, self.covariance_type, self.floor
            )
            self.W, self.mu, self.psi = W, mu, np.asarray(psi, np.float64)
            self._refresh_layer()
        self.inner.set_prior_from_data(self.init_space(X), weights=w)
        if self.inner.K == 0:
            self.inner.shift = np.zeros(self.latent_dim)

    def init_space(self, X: Any) -> np.ndarray:
        """Coordinates in which initial clusters are found: the posterior mean of y under the
        current layer with a standard normal latent prior (PCA / FA scores), (N, d)."""
        X = np.asarray(to_host(X), np.float64)
        D = self._derived
        M = np.eye(self.latent_dim) + D["A"]
        return np.linalg.solve(M, ((X - self.shift - self.mu) @ D["PiW"]).T).T

    # ------------------------------------------------------------------ derived quantities
    def _refresh_layer(self) -> None:
        p = self.n_features
        inv, logdet = noise.factor(self.covariance_type, self.psi, p)
        PiW = noise.times_inv(self.covariance_type, inv, self.W)
        A = self.W.T @ PiW
        self._derived.update(inv=inv, logdet=logdet, PiW=PiW, A=0.5 * (A + A.T))
        self._refresh_components()

    def _latent_natural(
        self, K: int | None = None, standard: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(E[Lambda_k] (K, d, d), E[Lambda_k m_k] (K, d), c_k (K,)) with c_k = E log|Lambda_k| / 2
        - d/2 log 2 pi - E[m_k^T Lambda_k m_k] / 2; a standard normal prior for every component
        before the components exist (the first statistics of an initialisation)."""
        d = self.latent_dim
        if self.inner.K == 0 or standard:
            K = K or 0
            return (
                np.broadcast_to(np.eye(d), (K, d, d)).copy(),
                np.zeros((K, d)),
                np.full(K, -0.5 * d * LOG_2PI),
            )
        inner = self.inner
        prec = np.asarray(inner._prec)
        eta = np.matmul(prec, inner.m[:, :, None])[:, :, 0]
        return prec, eta, np.asarray(inner._theta[0], np.float64)

    def _refresh_components(self, K: int | None = None, standard: bool = False) -> None:
        """Per-component posterior factors and the local step's matrix ``theta``.

        With v_k = P_k^-1 E[Lambda_k m_k], the posterior mean is v_k + P_k^-1 u and
        b^T P_k^-1 b = u^T P_k^-1 u + 2 v_k^T u + eta_k^T v_k: log-probabilities are one GEMM of
        the latent features f(u) = [1, u, u_i u_j (i <= j)] with theta (1 + d + d(d+1)/2, K).
        """
        prec, eta, c = self._latent_natural(K, standard)
        P = prec + self._derived["A"][None]
        L = np.linalg.cholesky(P)
        d = self.latent_dim
        Linv = np.linalg.solve(L, np.broadcast_to(np.eye(d), P.shape))
        Pinv = np.matmul(Linv.transpose(0, 2, 1), Linv)
        logdetP = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        v = np.matmul(Pinv, eta[:, :, None])[:, :, 0]
        const = c + 0.5 * d * LOG_2PI - 0.5 * logdetP
        iu = np.triu_indices(d)
        scale = np.where(iu[0] == iu[1], 0.5, 1.0)  # u_i u_j appears twice off the diagonal
        theta = np.empty((1 + d + iu[0].size, P.shape[0]))
        theta[0] = const + 0.5 * (eta * v).sum(axis=1)
        theta[1 : 1 + d] = v.T
        theta[1 + d :] = (Pinv[:, iu[0], iu[1]] * scale).T
        self._derived.update(
            Pinv=0.5 * (Pinv + Pinv.transpose(0, 2, 1)),
            v=v,
            theta=theta,
            iu=iu,
            Hy=0.5 * d * (1.0 + LOG_2PI) - 0.5 * logdetP,
            K=P.shape[0],
            prec=prec,  # the incomplete rows' posteriors (obs/hmog/missing.py) start from these
            eta=eta,
            c=c,
        )

    # ------------------------------------------------------------------ local step
    def _rows(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(x - shift - mu (N, p), the row-wise base term (N,))."""
        X = np.asarray(to_host(X), np.float64)
        Xc = X - (self.shift + self.mu)
        D = self._derived
        q0 = noise.quad_rows(self.covariance_type, D["inv"], Xc, np)
        base = -0.5 * self.n_features * LOG_2PI - 0.5 * D["logdet"] - 0.5 * q0
        return Xc, base

    def _features(self, U: np.ndarray) -> np.ndarray:
        """f(u) = [1, u, u_i u_j (i <= j)] (N, 1 + d + d(d+1)/2)."""
        iu = self._derived["iu"]
        n, d = U.shape
        F = np.empty((n, 1 + d + iu[0].size))
        F[:, 0] = 1.0
        F[:, 1 : 1 + d] = U
        np.multiply(U[:, iu[0]], U[:, iu[1]], out=F[:, 1 + d :])
        return F

    def _nan_mask(self, X: Any) -> np.ndarray | None:
        """The NaN mask of X when missing values are marginalised and X has some, else None."""
        return find_missing(X, np) if self.missing == "marginalize" else None

    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        self._require_params()
        mask = self._nan_mask(X)
        if mask is not None:
            return with_nan.log_prob(self, X, mask, cache, bias)
        Xc, base = self._rows(X)
        F = self._features(Xc @ self._derived["PiW"])
        lp = F @ self._derived["theta"]
        lp += base[:, None]
        if bias is not None:
            lp += np.asarray(to_host(bias), np.float64)[None, :]
        if cache is not None:
            cache[_CACHE_KEY] = F
        return lp

    def for_proposal(self) -> HMoGObs:
        """This model with its layer fixed: a birth's pieces are latent components only."""
        self.layer_fixed = True
        return self

    def cache_width(self) -> int:
        d = self.latent_dim
        return 1 + d + d * (d + 1) // 2

    def _mean_rows(self, U: np.ndarray, resp: np.ndarray) -> np.ndarray:
        """sum_k r_nk E[y | x_n, k] = sum_k r_nk (v_k + P_k^-1 u_n), (N, d)."""
        D = self._derived
        K, d = resp.shape[1], self.latent_dim
        G = (resp @ D["Pinv"].reshape(K, d * d)).reshape(-1, d, d)
        return resp @ D["v"] + np.einsum("nij,nj->ni", G, U)

    def latent_means(self, X: Any, resp: np.ndarray) -> np.ndarray:
        """E[y | x_n] = sum_k r_nk E[y | x_n, k] (N, d) for given responsibilities."""
        mask = self._nan_mask(X)
        if mask is not None:
            return with_nan.latent_means(self, X, np.asarray(resp, np.float64), mask)
        Xc, _ = self._rows(X)
        return self._mean_rows(Xc @ self._derived["PiW"], np.asarray(resp, np.float64))

    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        X = np.asarray(to_host(X), np.float64)
        resp = np.asarray(to_host(resp), np.float64)
        K = resp.shape[1]
        if (self.inner.K == 0 or self.layer_fixed) and self._derived.get("K") != K:
            # initialisation, or a proposal's first pieces: a standard normal latent prior
            self._refresh_components(K, standard=True)
        elif self._derived.get("K") != K:
            raise ValueError(
                f"resp has {K} columns but the HMoG has {self._derived.get('K')} components"
            )
        mask = self._nan_mask(X)
        if mask is not None:
            return with_nan.calc_stats(self, X, resp, mask, cache)
        F = None if cache is None else cache.get(_CACHE_KEY)
        if F is None or F.shape[0] != X.shape[0]:
            F = self._features((X - (self.shift + self.mu)) @ self._derived["PiW"])
        D, d = self._derived, self.latent_dim
        T = resp.T @ F  # (K, features): N_k, sum r u, sum r u u^T (packed)
        N, Su = T[:, 0], T[:, 1 : 1 + d]
        Suu = np.empty((K, d, d))
        iu = D["iu"]
        Suu[:, iu[0], iu[1]] = T[:, 1 + d :]
        Suu[:, iu[1], iu[0]] = T[:, 1 + d :]
        Pinv, v = D["Pinv"], D["v"]
        PSu = np.matmul(Pinv, Su[:, :, None])[:, :, 0]  # P^-1 sum r u
        outer = v[:, :, None] * PSu[:, None, :]
        yy = np.matmul(np.matmul(Pinv, Suu), Pinv) + outer + outer.transpose(0, 2, 1)
        yy += N[:, None, None] * (v[:, :, None] * v[:, None, :] + Pinv)
        Xs = X - self.shift
        U = F[:, 1 : 1 + d]
        split = self._row_split if self.split_rows else self._mass_split
        sx, sxy, sxx = split(Xs, resp, U, N)
        return {
            "y": PSu + N[:, None] * v,
            "yy": yy,
            "Hy": N * D["Hy"],
            "sx": sx,
            "sxy": sxy,
            "sxx": sxx,
        }

    def _row_split(self, Xs: np.ndarray, resp: np.ndarray, U: np.ndarray, N: np.ndarray) -> tuple:
        """(sum r x (K, p), sum r x E[y | x, k]^T (K, p, d), sum r x x^T on the structure)
        per component, over its rows: sum r x E[y|k]^T = (sum r x) v_k^T + (sum r x u^T) P_k^-1."""
        n, K, d = Xs.shape[0], resp.shape[1], self.latent_dim
        sx = resp.T @ Xs
        # one GEMM for every component's sum_n r_nk x_n u_n^T
        RU = (resp[:, :, None] * U[:, None, :]).reshape(n, K * d)
        XU = (Xs.T @ RU).reshape(-1, K, d).transpose(1, 0, 2)
        sxy = np.matmul(XU, self._derived["Pinv"]) + sx[:, :, None] * self._derived["v"][:, None]
        if self.covariance_type == "full":
            sxx = np.stack([(Xs * resp[:, k : k + 1]).T @ Xs for k in range(K)])
        elif self.covariance_type == "diag":
            sxx = resp.T @ (Xs * Xs)
        else:
            sxx = resp.T @ (Xs * Xs).sum(axis=1)
        return sx, sxy, sxx

    def _mass_split(self, Xs: np.ndarray, resp: np.ndarray, U: np.ndarray, N: np.ndarray) -> tuple:
        """The batch's sums (sum w x, sum x E[y | x]^T, sum w x x^T), split over the
        components in proportion to N_k."""
        wrow = resp.sum(axis=1)
        sxy = Xs.T @ self._mean_rows(U, resp)  # resp carries the row weights
        if self.covariance_type == "full":
            sxx = (Xs * wrow[:, None]).T @ Xs
        elif self.covariance_type == "diag":
            sxx = wrow @ (Xs * Xs)
        else:
            sxx = np.asarray(wrow @ (Xs * Xs).sum(axis=1))
        total = N.sum()
        share = N / total if total > 0 else np.full(N.shape[0], 1.0 / max(N.shape[0], 1))
        return (
            np.multiply.outer(share, wrow @ Xs),
            np.multiply.outer(share, sxy),
            np.multiply.outer(share, sxx),
        )

    # ------------------------------------------------------------------ global step
    def _latent_stats(self, SS: SuffStats) -> SuffStats:
        pack = self.inner.covariance_structure.pack
        fields = {"N": np.maximum(SS.N, 0.0), "x": SS["y"], "xx": pack(SS["yy"], self.latent_dim)}
        return SuffStats._trusted(fields, SS.uids, {}, None, None)

    @staticmethod
    def _shared_totals(SS: SuffStats) -> dict[str, np.ndarray]:
        out = {k: SS[k].sum(axis=0) for k in _SHARED}
        out.update(n=SS.N.sum(), Sy=SS["y"].sum(axis=0), Syy=SS["yy"].sum(axis=0))
        return out

    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        if rho is not None and not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {rho!r}")
        self.require_prior()
        tot = self._shared_totals(SS)
        if rho is not None and rho < 1.0 and self._shared is not None:
            tot = {k: (1.0 - rho) * self._shared[k] + rho * v for k, v in tot.items()}
        self._shared = {k: np.array(v, np.float64) for k, v in tot.items()}
        if tot["n"] > 0 and not self.layer_fixed:
            self._update_layer(tot)
        self.inner.update(self._latent_stats(SS), rho)
        self.K = SS.K
        self._frame = None
        if self.whiten and not self.layer_fixed and self.K > 0 and SS.N.sum() > 0:
            self._whiten(np.maximum(SS.N, 0.0))
        self._refresh_layer()

    def _update_layer(self, tot: dict[str, np.ndarray]) -> None:
        """ML (W, mu, Psi): regression of x on [E y, 1], then the expected residual scatter."""
        d = self.latent_dim
        H = np.empty((d + 1, d + 1))
        H[:d, :d], H[:d, d], H[d, :d], H[d, d] = tot["Syy"], tot["Sy"], tot["Sy"], tot["n"]
        G = np.concatenate([tot["sxy"], tot["sx"][:, None]], axis=1)  # (p, d + 1)
        B = np.linalg.solve(0.5 * (H + H.T), G.T).T
        # contiguous copies: a strided W would take other BLAS paths (other rounding) than the
        # contiguous one a checkpoint restores, and a resumed fit would drift by 1e-13
        self.W, self.mu = np.ascontiguousarray(B[:, :d]), B[:, d].copy()
        resid = self._residual(tot, B, G, H)
        self.psi = np.asarray(
            noise.estimate(self.covariance_type, resid, tot["n"], self.n_features, self.floor)
        )

    def _residual(
        self, tot: dict[str, np.ndarray], B: np.ndarray, G: np.ndarray, H: np.ndarray
    ) -> np.ndarray:
        """sum_n E[(x - B z)(x - B z)^T] on Psi's structure, z = [y, 1]."""
        s = self.covariance_type
        BH = B @ H
        if s == "full":
            GB = G @ B.T
            return tot["sxx"] - GB - GB.T + BH @ B.T
        if s == "diag":
            return tot["sxx"] - 2.0 * (G * B).sum(axis=1) + (BH * B).sum(axis=1)
        return tot["sxx"] - 2.0 * (G * B).sum() + (BH * B).sum()

    def _whiten(self, N: np.ndarray) -> None:
        """y' = L^-1 (y - c) with c, L L^T the mean and covariance of the latent mixture
        (weights N_k / N): W' = W L, mu' = mu + W c; p(x) does not change."""
        inner = self.inner
        pi = N / N.sum()
        m, S = inner.m, np.asarray(inner.cov)
        c = pi @ m
        C = np.einsum("k,kij->ij", pi, S + m[:, :, None] * m[:, None, :]) - np.outer(c, c)
        L = np.linalg.cholesky(0.5 * (C + C.T))
        Linv = np.linalg.inv(L)
        self.mu = self.mu + self.W @ c
        self.W = self.W @ L
        inner.m = (m - c) @ Linv.T
        inner.cov = inner._symmetrize(np.matmul(np.matmul(Linv, S), Linv.T))
        inner._stats = None
        inner._refresh()
        self._frame = (Linv, c)

    # ------------------------------------------------------------------ objective
    def _in_frame(self, SS: SuffStats) -> SuffStats:
        """SS's latent statistics in the coordinates of the current parameters (the last
        update's whitening, y' = Linv (y - c), applied to the statistics it was given)."""
        if self._frame is None:
            return SS
        Linv, c = self._frame
        N, y, yy = SS.N, SS["y"], SS["yy"]
        yc = y - N[:, None] * c
        yyc = yy - y[:, :, None] * c[None, None, :] - c[None, :, None] * y[:, None, :]
        yyc = yyc + N[:, None, None] * np.outer(c, c)
        fields = dict(SS.fields)
        fields["y"] = yc @ Linv.T
        fields["yy"] = np.matmul(np.matmul(Linv, yyc), Linv.T)
        fields["sxy"] = np.matmul(SS["sxy"] - SS["sx"][:, :, None] * c[None, None, :], Linv.T)
        fields["Hy"] = SS["Hy"] + N * float(np.linalg.slogdet(Linv)[1])
        return SuffStats._trusted(fields, SS.uids, SS.scalars, None, None)

    def elbo_term(self, SS: SuffStats) -> float:
        """E_q[log p(X | Y; W, mu, Psi)] + (the latent components' term: E_q log p(Y | Z,
        theta) + E log p(theta) - E log q(theta) under VB) + sum_k H[q(y | x, k)] mass."""
        self.check_components(SS)
        if self.K == 0:
            return 0.0
        SS = self._in_frame(SS)
        tot = self._shared_totals(SS)
        d = self.latent_dim
        H = np.empty((d + 1, d + 1))
        H[:d, :d], H[:d, d], H[d, :d], H[d, d] = tot["Syy"], tot["Sy"], tot["Sy"], tot["n"]
        G = np.concatenate([tot["sxy"], tot["sx"][:, None]], axis=1)
        B = np.concatenate([self.W, self.mu[:, None]], axis=1)
        resid = self._residual(tot, B, G, H)
        D = self._derived
        lower = -0.5 * tot["n"] * (self.n_features * LOG_2PI + D["logdet"])
        lower -= 0.5 * noise.trace_inv(self.covariance_type, D["inv"], resid)
        latent = self.inner.elbo_term(self._latent_stats(SS))
        return float(lower + latent + SS["Hy"].sum())

    # ------------------------------------------------------------------ parameters
    def latent_covariances(self) -> np.ndarray:
        """S_k (K, d, d): EM covariances, VB E[Lambda_k]^-1."""
        if self.inference == "em":
            return np.asarray(self.inner.cov, np.float64).copy()
        return np.linalg.inv(np.asarray(self.inner._prec))

    def noise_matrix(self) -> np.ndarray:
        return noise.as_matrix(self.covariance_type, self.psi, self.n_features)

    def x_covariances(self) -> np.ndarray:
        """The components' covariances in x-space, W S_k W^T + Psi, (K, p, p)."""
        W, S = self.W, self.latent_covariances()
        return np.matmul(np.matmul(W[None], S), W.T[None]) + self.noise_matrix()[None]

    def point_estimates(self) -> dict[str, np.ndarray]:
        """x-space means (K, p) and, up to ``MAX_X_COV_FLOATS`` floats, covariances (K, p, p);
        the latent components, W^T ("components", (d, p)), mu and Psi."""
        m = self.inner.m.copy()
        out = {
            "means": m @ self.W.T + (self.shift + self.mu),
            "latent_means": m,
            "latent_covariances": self.latent_covariances(),
            "components": self.W.T.copy(),
            "mean": self.shift + self.mu,
            "noise_variance": np.asarray(self.psi).copy(),
        }
        if self.K * self.n_features**2 <= MAX_X_COV_FLOATS:
            out["covariances"] = self.x_covariances()
        return out

    def n_free_params(self) -> int:
        """W (p d) + mu (p) + Psi + K latent means and covariances, less the d + d^2 of the
        latent space's affine reparametrisations (W A^-1, A y + c) that leave p(x) as is."""
        p, d = self.n_features, self.latent_dim
        own = p * d + p + noise.n_params(self.covariance_type, p)
        latent = self.K * (d + d * (d + 1) // 2)
        return int(own + latent - d - d * d)

    def get_state(self) -> dict[str, np.ndarray]:
        state = {
            "latent_dim": np.array(self.latent_dim),
            "covariance_type": np.array(self.covariance_type),
            "inference": np.array(self.inference),
            "whiten": np.array(self.whiten),
            "n_features": np.array(self.n_features),
            "K": np.array(self.K),
            "W": self.W.copy(),
            "mu": self.mu.copy(),
            "shift": self.shift.copy(),
            "psi": np.asarray(self.psi, np.float64).copy(),
            "floor": np.array(self.floor),
        }
        state.update({f"latent/{k}": v for k, v in self.inner.get_state().items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if int(state["latent_dim"]) != self.latent_dim or (
            str(state["covariance_type"]) != self.covariance_type
        ):
            raise ValueError(
                "the saved HMoG has latent_dim / covariance_type "
                f"{int(state['latent_dim'])} / {str(state['covariance_type'])!r}, this model "
                f"{self.latent_dim} / {self.covariance_type!r}"
            )
        self.whiten = bool(state["whiten"])
        self.n_features = int(state["n_features"])
        self.K = int(state["K"])
        self.W = np.asarray(state["W"], np.float64).copy()
        self.mu = np.asarray(state["mu"], np.float64).copy()
        self.shift = np.asarray(state["shift"], np.float64).copy()
        self.psi = np.asarray(state["psi"], np.float64).copy()
        self.floor = float(state["floor"])
        self.inner.set_state({k[7:]: v for k, v in state.items() if k.startswith("latent/")})
        self._frame, self._shared = None, None
        if self.n_features:
            self._refresh_layer()

    def sample(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        y = rng.multivariate_normal(self.inner.m[k], self.latent_covariances()[k], size=n)
        e = noise.sample(self.covariance_type, self.psi, n, self.n_features, rng)
        return y @ self.W.T + (self.shift + self.mu) + e

    def _require_params(self) -> None:
        if self.K == 0:
            raise RuntimeError("the observation model has no components yet; update it first")
