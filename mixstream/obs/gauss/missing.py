"""Missing values (NaN) in a Gaussian model: marginalised in the local step, expected in the
statistics (``missing="marginalize"``; docs/math.md, "Missing values").

For a row y (shifted coordinates) with observed coordinates o and c missing ones m, and a
component with mean mu and precision P (EM: Sigma^{-1}; VB: E[Lambda] = nu Psi^{-1}: the
quadratic part of E_q log N(y | mu, Lambda), so the VB local step's constant, E log|Lambda| and
D / kappa, stays as it is):

- the block is first put through the complete-data path (the GEMMs) with the missing values
  set to y_m = 0 (the shift): that gives f(0), the log-likelihood term at y_m = 0, and the
  statistics of y0 (y with zeros at m);
- q(y_m | y_o, k) = N(yhat_m, P_mm^{-1}) with yhat_m = P_mm^{-1} h, h = (P mu)_m - (P y0)_m:
  the conditional mean mu_m + S_mo S_oo^{-1} (y_o - mu_o) and covariance S_mm - S_mo S_oo^{-1}
  S_om of S = P^{-1} (Schur complements), computed from the precision, so the solves are
  c x c, small when few values miss;
- log-likelihood term: log int exp f dy_m = f(0) + 1/2 h^T P_mm^{-1} h + c/2 log 2 pi
  - 1/2 log|P_mm|, which for EM is exactly log N(y_o | mu_o, Sigma_oo);
- statistics: yhat = y0 + z (z the conditional means at m) gives sum_n r_nk yhat and
  sum_n r_nk (y0 y0^T + y0 z^T + z y0^T + z z^T + P_mm^{-1} on the missing block): the GEMM
  statistics of y0 plus corrections; and Hmiss_k = sum_n r_nk H[q(y_m | y_o, k)], the entropy,
  so that the objective from statistics equals the observed-data one after a local step.

With numba (the usual case) one pass over the rows does the c x c factorisations, with the
components innermost (obs/gauss/_missing_numba.py), on (P_k y0) from GEMMs a chunk of rows at a
time. Without it, rows are grouped by their number of missing values c (``np.unique`` of the
counts): the c x c factorisations run for all rows of a group and all components at once
(loops over c, vectorised over rows and components, for c <= ``_SMALL``; LAPACK's batched
routines above), and (P_k y0) for all components is one GEMM. Diagonal and spherical
precisions need no solves: a missing coordinate just drops out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixstream.obs.gauss.linalg import LOG_2PI

#: largest number of missing values per row factorised by the vectorised loops
_SMALL = 4

#: P_g y0 values per chunk of the numba path (256 KiB: stays in a core's L2 cache)
_CHUNK_CELLS = 1 << 15


@dataclass
class MissingRows:
    """The incomplete rows of a block, in shifted coordinates, and what the local step found.

    Attributes
    ----------
    rows : array (n_i,) of int, or None
        Their positions in the block; None: every row of the block (``whole_block``).
    y0 : array (n_i, D)
        Shifted values, 0 where missing.
    miss : array (n_i, D) of bool
    groups : list of (sel (n_c,), idx (n_c, c)), numpy path of full precisions
        Rows (positions in ``rows``) with c missing values and those values' columns.
    flat : tuple, numba path of full precisions
        (cols, offs, coffs, G, tied, sol (total, K), cinv): row r's missing columns are
        cols[offs[r]:offs[r + 1]], their conditional means sol[offs[r]:offs[r + 1]], and
        entry (i, j) of its conditional covariance under precision g is
        cinv[(coffs[r] + i * c + j) * G + g].
    sol : list of arrays (n_c, K, c), full only
        Conditional means of the missing values (shifted), per group of ``groups``.
    cinv : list of arrays (n_c, G, c, c), full only
        Conditional covariances P_mm^{-1}, per group of ``groups``.
    ent : array (n_i, K), full only
        Entropies of q(y_m | y_o, k).
    """

    rows: np.ndarray | None
    y0: np.ndarray | None
    miss: np.ndarray
    groups: list = field(default_factory=list)
    sol: list = field(default_factory=list)
    flat: tuple | None = None
    cinv: list = field(default_factory=list)
    ent: np.ndarray | None = None


def find_missing(X: Any, xp: Any) -> Any:
    """The NaN mask (N, D) of X (X's namespace), or None when X has no NaN (one sum over X
    clears a complete block)."""
    if X.dtype.kind in "iub":
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        total = X.sum()
    if bool(xp.isfinite(total)):
        return None
    miss = xp.isnan(X)
    return miss if bool(miss.any()) else None


def check_rows_observed(miss: np.ndarray, where: str = "X", row_offset: int = 0) -> None:
    """ValueError naming the rows (at most 5) whose every value is missing."""
    empty = miss.all(axis=1)
    if empty.any():
        rows = (np.flatnonzero(empty)[:5] + row_offset).tolist()
        raise ValueError(
            f"{where} has {int(empty.sum())} row(s) with every value missing (NaN); first "
            f"rows: {rows}: a row needs at least one observed value"
        )


def fill_shift(X: Any, shift: np.ndarray, xp: Any, miss: Any) -> Any:
    """X with each NaN (``miss``, from ``find_missing``) replaced by its feature's shift
    (y_m = 0 in shifted coordinates)."""
    from mixstream.backend import to_device

    # float64 whatever X's dtype: the local step then computes y_m = shift - shift = 0 exactly
    s = to_device(np.asarray(shift, np.float64), xp)
    return xp.where(miss, s[None, :], X)


def split_rows(Xf: Any, mask: Any, shift: np.ndarray) -> MissingRows:
    """The incomplete rows of a block (host float64, shifted, 0 where missing); ``Xf`` is the
    block filled by ``fill_shift``, ``mask`` its NaN mask (``find_missing``)."""
    from mixstream.backend import get_namespace, to_device, to_host

    mask = np.asarray(to_host(mask))
    kernels = _numba_kernels()
    if kernels is not None and isinstance(Xf, np.ndarray) and Xf.ndim == 2:
        rows, y0, miss, all_missing = kernels.split_rows(Xf, mask, np.asarray(shift, np.float64))
        if all_missing:
            check_rows_observed(miss)
        return MissingRows(rows, y0, miss)
    rows = np.flatnonzero(mask.any(axis=1))
    idx = to_device(rows, get_namespace(Xf))
    miss = mask[rows]
    check_rows_observed(miss)
    y0 = np.asarray(to_host(Xf[idx]), np.float64) - shift
    y0[miss] = 0.0  # exactly: a float32 shift minus the float64 one need not be 0
    return MissingRows(rows, y0, miss)


def whole_block(mask: Any) -> MissingRows:
    """Every row of a block, for diagonal precisions: only the NaN mask is needed, and a
    complete row's correction is exactly 0 (no gather of the incomplete rows)."""
    from mixstream.backend import to_host

    miss = np.asarray(to_host(mask))
    check_rows_observed(miss)
    return MissingRows(None, None, miss)


def _groups(miss: np.ndarray) -> list:
    """[(sel (n_c,), idx (n_c, c))]: the rows with c missing values and those columns."""
    counts = miss.sum(axis=1)
    groups = []
    for c in np.unique(counts):
        sel = np.flatnonzero(counts == c)
        # stable argsort puts the missing columns first, in increasing order
        idx_c = np.argsort(~miss[sel], axis=1, kind="stable")[:, :c]
        groups.append((sel, idx_c))
    return groups


def _numba_kernels() -> Any:
    """The numba kernels (obs/gauss/_missing_numba.py), or None when numba is off
    (``MIXSTREAM_NUMBA=0``, as for mixstream._kernels) or missing."""
    from mixstream import _kernels

    if not _kernels.enabled():
        return None
    try:
        from mixstream.obs.gauss import _missing_numba
    except ImportError:
        return None
    return _missing_numba


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
def full_correction(mr: MissingRows, P: np.ndarray, b: np.ndarray, tied: bool) -> np.ndarray:
    """What marginalising adds (n_i, K) to the complete-data log-likelihood term of the rows
    with their missing values set to y_m = 0; fills mr.sol, mr.cinv, mr.ent.

    f(y_m) = -1/2 (y - mu)^T P (y - mu) has gradient h = b_m - (P y0)_m at y_m = 0 (b = P mu)
    and Hessian -P_mm, so int exp f dy_m = exp f(0) exp(1/2 h^T P_mm^{-1} h)
    (2 pi)^{c/2} |P_mm|^{-1/2}, and the conditional mean is yhat_m = P_mm^{-1} h.

    Parameters
    ----------
    P : array (G, D, D), precisions; b : array (K, D), P_k mu_k (shifted means)
    """
    K, D = b.shape
    n = mr.y0.shape[0]
    G = P.shape[0]
    kernels = _numba_kernels()
    if kernels is not None:
        return _full_correction_numba(kernels, mr, P, b, tied)
    # (P_k y0) for every row and component in one GEMM: (n_i, D) @ (D, G D)
    Py = (mr.y0 @ P.transpose(1, 0, 2).reshape(D, G * D)).reshape(n, G, D)
    corr = np.empty((n, K))
    ent = np.empty((n, K))
    mr.groups = _groups(mr.miss)
    kk = np.arange(K)[None, :, None]
    gg = np.zeros_like(kk) if tied else kk
    sols, cinvs = [], []
    for sel, idx in mr.groups:
        c = idx.shape[1]
        Pmm = P[:, idx[:, :, None], idx[:, None, :]]  # (G, n_c, c, c)
        cinv, logdet = _small_inverse(Pmm)
        cinv_n = np.moveaxis(cinv, 0, 1)  # (n_c, G, c, c)
        h = b[kk, idx[:, None, :]] - Py[sel[:, None, None], gg, idx[:, None, :]]  # (n_c, K, c)
        sol = np.einsum("ngij,ngj->ngi", cinv_n, h) if not tied else h @ cinv_n[:, 0]
        half_logdet = 0.5 * logdet.T  # (n_c, G)
        corr[sel] = 0.5 * (h * sol).sum(axis=-1) + 0.5 * c * LOG_2PI - half_logdet
        ent[sel] = 0.5 * c * (1.0 + LOG_2PI) - half_logdet
        sols.append(sol)
        cinvs.append(cinv_n)
    mr.sol, mr.cinv, mr.ent = sols, cinvs, ent
    return corr


def _full_correction_numba(
    kernels: Any, mr: MissingRows, P: np.ndarray, b: np.ndarray, tied: bool
) -> np.ndarray:
    """``full_correction`` by the numba kernels: the precisions' index g innermost (lanes),
    and the log-determinants in one vectorised log after the kernel."""
    K, D = b.shape
    n = mr.y0.shape[0]
    G = P.shape[0]
    PT = np.ascontiguousarray(np.asarray(P, np.float64).transpose(1, 2, 0))  # (D, D, G)
    offs = np.empty(n + 1, np.int64)
    cols = np.empty(np.count_nonzero(mr.miss), np.int64)
    kernels.layout(mr.miss, cols, offs)
    counts = np.diff(offs)
    coffs = np.concatenate([[0], np.cumsum(counts * counts)]).astype(np.int64)
    corr = np.empty((n, K))
    det = np.empty((n, G))
    sol = np.empty((cols.size, K))
    cinv = np.empty(int(coffs[-1]) * G)
    bT = np.ascontiguousarray(np.asarray(b, np.float64).T)
    tied = bool(tied)
    # P_g y0 as (rows, D, G) by GEMMs (P_g is symmetric: (y0 P_g)_d = (P_g y0)_d), a chunk
    # of rows at a time so the kernel finds it in cache; the GEMM's rounding, not a loop's,
    # is what the complete-data path's f(0) is added to (a loop's broke the 1e-8 marginals)
    step = max(1, _CHUNK_CELLS // (D * G))
    for r0 in range(0, n, step):
        PyT = (mr.y0[r0 : r0 + step] @ PT.reshape(D, D * G)).reshape(-1, D, G)
        kernels.full_correction(PyT, bT, PT, cols, offs, coffs, tied, r0, corr, det, sol, cinv)
    half_logdet = 0.5 * np.log(det)  # (n_i, G), G = 1 or K
    corr -= half_logdet
    ent = (0.5 * (1.0 + LOG_2PI)) * counts[:, None] - half_logdet
    mr.flat, mr.ent = (cols, offs, coffs, G, bool(tied), sol, cinv), np.broadcast_to(ent, (n, K))
    return corr


def full_stats_correction(mr: MissingRows, resp: np.ndarray, D: int) -> dict[str, np.ndarray]:
    """What the missing values add to the statistics of the rows with y_m = 0: "x" (K, D),
    "xx" (K, D, D) and "Hmiss" (K,), under resp (n_i, K).

    With yhat = y0 + z (z: the conditional means at the missing positions, zero elsewhere)
    E[y y^T] = y0 y0^T + y0 z^T + z y0^T + z z^T + C (C: P_mm^{-1} on the missing block).
    """
    n, K = resp.shape
    if mr.flat is not None:
        kernels = _numba_kernels()
        xT, cross, dxxT = np.zeros((D, K)), np.zeros((D, K, D)), np.zeros((D, D, K))
        r = np.ascontiguousarray(resp, dtype=np.float64)
        kernels.full_block_stats(r, mr.y0, *mr.flat, xT, cross, dxxT)
        cross = cross.transpose(0, 2, 1)  # (D, D, K): [m, d, k]
        dxx = (dxxT + (cross + cross.transpose(1, 0, 2))).transpose(2, 0, 1)
        return {"x": xT.T, "xx": np.ascontiguousarray(dxx), "Hmiss": (resp * mr.ent).sum(axis=0)}
    Z = np.zeros((n, K, D))  # r_nk z_nk
    flat_parts, value_parts = [], []
    kk = np.arange(K)[None, :, None]
    for (sel, idx), sol, cinv in zip(mr.groups, mr.sol, mr.cinv):
        rs = resp[sel][:, :, None]
        Z[sel[:, None, None], kk, idx[:, None, :]] = rs * sol
        # r (z_m z_m^T + C) on the missing block, scattered by one bincount over (k, i, j)
        block = rs[..., None] * (sol[..., :, None] * sol[..., None, :] + cinv)
        flat = (kk[..., None] * D + idx[:, None, :, None]) * D + idx[:, None, None, :]
        flat_parts.append(np.broadcast_to(flat, block.shape).ravel())
        value_parts.append(block.ravel())
    dxx = np.bincount(
        np.concatenate(flat_parts), np.concatenate(value_parts), minlength=K * D * D
    ).reshape(K, D, D)
    return _with_cross(mr, resp, Z, dxx)


def _with_cross(mr: MissingRows, resp: np.ndarray, Z: np.ndarray, dxx: np.ndarray) -> dict:
    """The statistics' corrections from Z = r z (n, K, D) and the missing blocks' dxx:
    adds the cross terms y0 z^T + z y0^T (one GEMM)."""
    n, K, D = Z.shape
    cross = (mr.y0.T @ Z.reshape(n, K * D)).reshape(D, K, D).transpose(1, 0, 2)
    dxx += cross + cross.transpose(0, 2, 1)
    return {"x": Z.sum(axis=0), "xx": dxx, "Hmiss": (resp * mr.ent).sum(axis=0)}


# ---------------------------------------------------------------------- diagonal precisions
def diag_correction(mr: MissingRows, p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """What marginalising adds (n_i, K) to the log-likelihood term of the rows with y_m = 0,
    diagonal precisions p (K, D): each missing coordinate d drops out, taking its term
    -p_d m_d^2 / 2 (at y_d = 0) and its share of the normaliser with it."""
    return mr.miss.astype(np.float64) @ (0.5 * (p * m * m + LOG_2PI - np.log(p))).T


def diag_stats_correction(mr: MissingRows, resp: np.ndarray, p: np.ndarray, m: np.ndarray) -> dict:
    """What the missing values add to x (K, D) and to the per-feature sums of squares (K, D)
    of the rows with y_m = 0 (their conditional is their marginal N(mu_d, 1 / p_d))."""
    rm = resp.T @ mr.miss.astype(np.float64)  # (K, D): each component's mass on each hole
    # the entropy of N(mu_d, 1 / p_d) per hole, summed with the same masses
    hmiss = 0.5 * (rm * (1.0 + LOG_2PI - np.log(p))).sum(axis=1)
    return {"x": rm * m, "xx": rm * (m * m + 1.0 / p), "Hmiss": hmiss}


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
