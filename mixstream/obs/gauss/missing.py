"""Missing values (NaN) in a Gaussian model: marginalised in the local step, expected in the
statistics (``missing="marginalize"``; docs/math.md, "Missing values").

For a row y with observed coordinates o and missing ones m, and a component with mean mu and
precision P (EM: Sigma^{-1}; VB: E[Lambda] = nu Psi^{-1}, with the same constant c0 as the
complete-data local step, which then carries E log|Lambda| and D / kappa):

- q(y_m | y_o, k) = N(yhat_m, P_mm^{-1}), yhat_m = mu_m - P_mm^{-1} (P delta)_m, where delta =
  y - mu with its missing entries set to 0. These are the conditional mean and covariance
  mu_m + S_mo S_oo^{-1} (y_o - mu_o) and S_mm - S_mo S_oo^{-1} S_om of S = P^{-1} (Schur
  complement), computed from the precision: the solves are m x m, small when few values miss.
- log-likelihood term: log int exp(complete(y)) dy_m
  = c0 - 1/2 (delta^T P delta - (P delta)_m^T P_mm^{-1} (P delta)_m) + m/2 log 2 pi
    - 1/2 log|P_mm|,
  which for EM is exactly log N(y_o | mu_o, Sigma_oo).
- statistics: sum_n r_nk yhat_nk and sum_n r_nk (yhat yhat^T + P_mm^{-1} on the missing block),
  and Hmiss_k = sum_n r_nk H[q(y_m | y_o, k)] (the entropy, so the ELBO from statistics equals
  the observed-data objective after a local step).

Rows are grouped by their number of missing values c: the c x c factorisations run for all
rows of a group and all components at once (loops over c, vectorised over rows and
components, for c <= ``_SMALL``; LAPACK's batched routines above). Diagonal and spherical
precisions need no solves: the missing coordinates just drop out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixstream.obs.gauss.linalg import LOG_2PI

#: largest number of missing values per row factorised by the vectorised loops
_SMALL = 4


@dataclass
class MissingRows:
    """The incomplete rows of a block, in shifted coordinates, and what the local step found.

    Attributes
    ----------
    rows : array (n_i,) of int
        Their positions in the block.
    y0 : array (n_i, D)
        Shifted values, 0 where missing.
    miss : array (n_i, D) of bool
    groups : list of (sel (n_c,), idx (n_c, c))
        Rows (positions in ``rows``) with c missing values and those values' columns.
    yhat : array (K, n_i, D), full only
        Rows completed with each component's conditional mean.
    cinv : list of arrays (G, n_c, c, c), full only
        Conditional covariances P_mm^{-1}, per group of ``groups``.
    ent : array (n_i, K)
        Entropies of q(y_m | y_o, k).
    """

    rows: np.ndarray
    y0: np.ndarray
    miss: np.ndarray
    groups: list = field(default_factory=list)
    yhat: np.ndarray | None = None
    cinv: list = field(default_factory=list)
    ent: np.ndarray | None = None


def find_missing(X: Any, xp: Any) -> np.ndarray | None:
    """Boolean mask (N,) of rows with a NaN, or None when X has none (one sum over X)."""
    if X.dtype.kind in "iub":
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        total = X.sum()
    if bool(xp.isfinite(total)):
        return None
    from mixstream.backend import to_host

    rows = np.asarray(to_host(xp.isnan(X).any(axis=1)))
    return rows if rows.any() else None


def check_rows_observed(miss: np.ndarray, where: str = "X", row_offset: int = 0) -> None:
    """ValueError naming the rows (at most 5) whose every value is missing."""
    empty = miss.all(axis=1)
    if empty.any():
        rows = (np.flatnonzero(empty)[:5] + row_offset).tolist()
        raise ValueError(
            f"{where} has {int(empty.sum())} row(s) with every value missing (NaN); first "
            f"rows: {rows}: a row needs at least one observed value"
        )


def split_rows(X: Any, rows_missing: np.ndarray, shift: np.ndarray) -> MissingRows:
    """The incomplete rows of X (host float64, shifted, NaN -> 0) grouped by missing count."""
    from mixstream.backend import to_host

    rows = np.flatnonzero(rows_missing)
    Y = np.asarray(to_host(X[rows]), np.float64) - shift
    miss = np.isnan(Y)
    check_rows_observed(miss)
    y0 = np.where(miss, 0.0, Y)
    counts = miss.sum(axis=1)
    groups = []
    for c in np.unique(counts):
        sel = np.flatnonzero(counts == c)
        # stable argsort puts the missing columns first, in increasing order
        idx = np.argsort(~miss[sel], axis=1, kind="stable")[:, :c]
        groups.append((sel, idx))
    return MissingRows(rows, y0, miss, groups)


# ---------------------------------------------------------------------- small factorisations
def _small_inverse(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A^{-1}, log|A|) of a stack of small symmetric positive definite matrices (..., c, c)."""
    c = A.shape[-1]
    if c > _SMALL:
        L = np.linalg.cholesky(A)
        logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
        return np.linalg.inv(A), logdet
    # Cholesky by columns, vectorised over the stack
    L = np.zeros_like(A)
    for j in range(c):
        s = A[..., j, j] - (L[..., j, :j] ** 2).sum(axis=-1)
        d = np.sqrt(np.maximum(s, 1e-300))
        L[..., j, j] = d
        for i in range(j + 1, c):
            L[..., i, j] = (A[..., i, j] - (L[..., i, :j] * L[..., j, :j]).sum(axis=-1)) / d
    logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    # L^{-1} by forward substitution, then A^{-1} = L^{-T} L^{-1}
    Li = np.zeros_like(A)
    for j in range(c):
        Li[..., j, j] = 1.0 / L[..., j, j]
        for i in range(j + 1, c):
            Li[..., i, j] = -(L[..., i, j:i] * Li[..., j:i, j]).sum(axis=-1) / L[..., i, i]
    return np.einsum("...ki,...kj->...ij", Li, Li), logdet


# ---------------------------------------------------------------------- full precisions
def full_log_prob(
    mr: MissingRows, P: np.ndarray, m: np.ndarray, c0: np.ndarray, tied: bool
) -> np.ndarray:
    """Marginal log-likelihood terms (n_i, K) of the incomplete rows; fills mr.yhat, mr.cinv,
    mr.ent.

    Parameters
    ----------
    P : array (G, D, D), precisions; m : array (K, D), shifted means; c0 : array (K,), the
        complete-data constant (0.5 log|P| or 0.5 E log|Lambda|, - D/2 log 2 pi, VB's -D/2k)
    """
    K, D = m.shape
    n = mr.y0.shape[0]
    obs = ~mr.miss
    out = np.empty((n, K))
    yhat = np.empty((K, n, D))
    ent = np.empty((n, K))
    grads = np.empty((K, n, D))
    for k in range(K):
        delta = mr.y0 - m[k]
        delta[mr.miss] = 0.0
        grads[k] = delta @ P[0 if tied else k]
        yhat[k] = np.where(obs, mr.y0, m[k])
    cinvs = []
    for sel, idx in mr.groups:
        c = idx.shape[1]
        if c == 0:
            out[sel] = c0
            ent[sel] = 0.0
            cinvs.append(np.zeros((P.shape[0], sel.size, 0, 0)))
            continue
        Pmm = P[:, idx[:, :, None], idx[:, None, :]]  # (G, n_c, c, c)
        cinv, logdet = _small_inverse(Pmm)
        cinvs.append(cinv)
        rhs = grads[:, sel[:, None], idx]  # (K, n_c, c)
        cinv_k = cinv if not tied else np.broadcast_to(cinv, (K, *cinv.shape[1:]))
        logdet_k = logdet if not tied else np.broadcast_to(logdet, (K, sel.size))
        sol = np.einsum("knij,knj->kni", cinv_k, rhs)
        out[sel] = (c0[:, None] + 0.5 * c * LOG_2PI - 0.5 * logdet_k).T
        ent[sel] = (0.5 * c * (1.0 + LOG_2PI) - 0.5 * logdet_k).T
        # yhat_m = mu_m - sol
        rr = sel[:, None]
        for k in range(K):
            yhat[k, rr, idx] = m[k][idx] - sol[k]
    # the quadratic form at the completed row, (yhat - mu)^T P (yhat - mu): yhat_m minimises it,
    # so an error in the small solve enters only to second order, while the expansion
    # delta^T P delta - (P delta)_m^T P_mm^{-1} (P delta)_m cancels (1e-9 at condition 1e4)
    for k in range(K):
        dh = yhat[k] - m[k]
        out[:, k] -= 0.5 * ((dh @ P[0 if tied else k]) * dh).sum(axis=1)
    mr.yhat, mr.cinv, mr.ent = yhat, cinvs, ent
    return out


def full_stats(mr: MissingRows, resp: np.ndarray, tied: bool, D: int) -> dict[str, np.ndarray]:
    """x (K, D), xx (K, D, D) and Hmiss (K,) of the incomplete rows under resp (n_i, K)."""
    K = resp.shape[1]
    x = np.einsum("nk,knd->kd", resp, mr.yhat)
    xx = np.empty((K, D, D))
    for k in range(K):
        yk = mr.yhat[k]
        xx[k] = (yk * resp[:, k, None]).T @ yk
    for (sel, idx), cinv in zip(mr.groups, mr.cinv):
        c = idx.shape[1]
        if c == 0:
            continue
        flat = (idx[:, :, None] * D + idx[:, None, :]).ravel()
        for k in range(K):
            w = resp[sel, k][:, None, None] * cinv[0 if tied else k]
            xx[k] += np.bincount(flat, weights=w.ravel(), minlength=D * D).reshape(D, D)
    hmiss = (resp * mr.ent).sum(axis=0)
    return {"x": x, "xx": xx, "Hmiss": hmiss}


# ---------------------------------------------------------------------- diagonal precisions
def diag_log_prob(mr: MissingRows, p: np.ndarray, m: np.ndarray, c0: np.ndarray) -> np.ndarray:
    """Marginal log-likelihood terms (n_i, K) with diagonal precisions p (K, D): the missing
    coordinates drop out (their conditional is their marginal N(mu_d, 1 / p_d)); fills mr.ent.
    """
    mf = mr.miss.astype(np.float64)
    obsf = 1.0 - mf
    y0 = mr.y0
    quad = (y0 * y0) @ p.T - 2.0 * y0 @ (p * m).T + obsf @ (p * m * m).T
    logp = np.log(p)
    n_miss = mf.sum(axis=1)
    miss_logdet = mf @ logp.T
    mr.ent = 0.5 * (n_miss[:, None] * (1.0 + LOG_2PI) - miss_logdet)
    return c0 - 0.5 * quad + 0.5 * (n_miss[:, None] * LOG_2PI - miss_logdet)


def diag_stats(mr: MissingRows, resp: np.ndarray, p: np.ndarray, m: np.ndarray) -> dict:
    """x (K, D), per-feature sum of squares (K, D) and Hmiss (K,) of the incomplete rows."""
    mf = mr.miss.astype(np.float64)
    rm = resp.T @ mf  # (K, D): mass of each component on each missing feature
    x = resp.T @ mr.y0 + rm * m
    xx = resp.T @ (mr.y0 * mr.y0) + rm * (m * m + 1.0 / p)
    return {"x": x, "xx": xx, "Hmiss": (resp * mr.ent).sum(axis=0)}


# ---------------------------------------------------------------------- VB predictive
def log_predictive_missing(obs: Any, X: np.ndarray) -> np.ndarray:
    """Student-t posterior-predictive log-densities (N, K) of rows with NaN: the marginal of
    each component's t over the row's observed coordinates (same degrees of freedom, the
    observed sub-block of the scale; obs/gauss/predictive.py has the complete-row t's).
    Rows are grouped by missingness pattern (scoring, not the fit's hot path)."""
    from scipy.special import gammaln

    Y = np.asarray(X, np.float64) - obs.shift
    miss = np.isnan(Y)
    check_rows_observed(miss)
    n, D = Y.shape
    K = obs.m.shape[0]
    nu_all = np.atleast_1d(np.asarray(obs.nu, np.float64))
    out = np.empty((n, K))
    patterns, inverse = np.unique(miss, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for p, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse == p)
        o = np.flatnonzero(~pattern)
        d_o = o.size
        for k in range(K):
            g = 0 if obs.tied else k
            kappa, nu = float(obs.kappa[k]), float(nu_all[g])
            c = (1.0 + kappa) / kappa
            d = Y[np.ix_(rows, o)] - obs.m[k][o]
            if obs.structure == "full":
                v = nu - D + 1.0
                L = np.linalg.cholesky(np.asarray(obs.psi[g], np.float64)[np.ix_(o, o)] * (c / v))
                z = np.linalg.solve(L, d.T)
                maha, logdet = (z * z).sum(axis=0), 2.0 * float(np.log(np.diag(L)).sum())
            elif obs.structure == "diag":
                v = nu
                s2 = np.asarray(obs.psi[g], np.float64)[o] * (c / v)
                t = (d * d) / s2
                const = d_o * (
                    gammaln(0.5 * (v + 1)) - gammaln(0.5 * v) - 0.5 * (np.log(v) + np.log(np.pi))
                )
                out[rows, k] = (
                    const - 0.5 * float(np.log(s2).sum()) - 0.5 * (v + 1) * np.log1p(t / v).sum(1)
                )
                continue
            else:
                v = nu * D
                s2 = float(np.asarray(obs.psi).reshape(-1)[g]) * c / nu
                maha, logdet = (d * d).sum(axis=1) / s2, d_o * np.log(s2)
            const = gammaln(0.5 * (v + d_o)) - gammaln(0.5 * v) - 0.5 * d_o * np.log(v * np.pi)
            out[rows, k] = const - 0.5 * logdet - 0.5 * (v + d_o) * np.log1p(maha / v)
    return out
