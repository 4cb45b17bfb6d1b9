"""Missing values (NaN) in the HMoG (``missing="marginalize"``; docs/math.md §15, "HMoG").

x = W y + mu + e, e ~ N(0, Psi). For a row with observed coordinates o and c missing ones m,
write Q = Psi^{-1}, V = Q W (``PiW``), A = W^T Q W and xc0 = x - shift - mu with 0 at the holes.
The marginal of x_o is the HMoG with W_o, mu_o and Psi_oo, and every quantity it needs comes
from the precision with c x c solves (Psi_oo^{-1} = Q_oo - Q_om Q_mm^{-1} Q_mo):

- A_o = W_o^T Psi_oo^{-1} W_o = A - V_m^T F with F = Q_mm^{-1} V_m (c, d);
- u_o = W_o^T Psi_oo^{-1} xc_o = xc0^T V + F^T h with h = -(Q xc0)_m (0 for diag / spherical);
- the x-part of the log-density gains c/2 log 2 pi - 1/2 log|Q_mm| + 1/2 h^T Q_mm^{-1} h
  (obs/gauss/missing.py's correction with one component of mean 0: log|Psi_oo| and the
  quadratic form on the observed sub-block);
- the latent posterior given component k has precision P = E[Lambda_k] + A_o and mean
  P^{-1} (E[Lambda_k m_k] + u_o): a d x d factor per (incomplete row, component), while
  complete rows keep the model's GEMM path untouched;
- q(x_m | y, x_o) = N(mu_m + a + F y, Q_mm^{-1}) with a = Q_mm^{-1} h, the exact conditional
  (diag / spherical: a = 0, F = W_m, Q_mm^{-1} = Psi_mm), whose entropy joins "Hy".

Statistics (the fields of ``HMoGObs.calc_stats``, additive): with z = E[x_m | x_o, k] =
mu_m + a + F yhat_k, the rows' x takes z at its holes, sum r x E[y]^T gains
z yhat^T + F P^{-1} there, and sum r x x^T gains z z^T + F P^{-1} F^T + Q_mm^{-1} on the
missing block (and, for a full Psi, the cross terms with the observed values).

Incomplete rows are processed in chunks, so memory stays O(chunk K d^2). With numba the holes
are ragged and obs/hmog/_missing_numba.py does the per-row work (``RaggedHoles``); without it
rows are grouped by their number of holes, as obs/gauss/missing.py's numpy path (``Holes``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixstream.obs.gauss.linalg import LOG_2PI
from mixstream.obs.gauss.missing import (
    MissingRows,
    _groups,
    _small_inverse,
    check_rows_observed,
    full_stats_correction,
)
from mixstream.obs.hmog import noise

#: cache key of a block's incomplete rows (HMoGObs.log_prob -> calc_stats)
MISSING_KEY = "hmog/missing"
#: (row, component, d, d) floats of latent posteriors computed at once
_CHUNK_FLOATS = 1 << 21
#: most such floats a block keeps from log_prob for calc_stats (64 MB)
_CACHE_FLOATS = 1 << 23


@dataclass
class Holes:
    """A chunk of incomplete rows and the observed-coordinate layer of each.

    Attributes
    ----------
    xs0 : array (n, p)
        x - shift, 0 at the holes.
    groups : list of (sel (n_c,), idx (n_c, c))
        Rows (positions in the chunk) with c holes and those columns.
    F, cond, am : lists, per group
        F (n_c, c, d); Q_mm^{-1} (n_c, c, c); mu_m + a (n_c, c).
    Ao : array (n, d, d); uo : array (n, d)
        W_o^T Psi_oo^{-1} W_o and W_o^T Psi_oo^{-1} (x_o - mu_o).
    base : array (n,)
        log N(x_o | mu_o, Psi_oo) (the x-part of the log-density, as ``HMoGObs._rows``).
    hx : array (n,)
        Entropy of q(x_m | y, x_o).
    """

    xs0: np.ndarray
    groups: list
    F: list
    cond: list
    am: list
    Ao: np.ndarray
    uo: np.ndarray
    base: np.ndarray
    hx: np.ndarray


def _observed_part(
    obs: Any, X: np.ndarray, miss: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(xs0, xc0, uo, base) of incomplete rows X (n, p): shifted and centred rows with their
    holes at 0, the observed part of W^T Psi^-1 (x - mu) (n, d), and the log-density terms of
    the observed coordinates that need no factorisation (n,)."""
    D, s = obs._derived, obs.covariance_type
    xs0 = X - obs.shift
    xs0[miss] = 0.0
    xc0 = xs0 - obs.mu
    xc0[miss] = 0.0
    uo = xc0 @ D["PiW"]
    quad = noise.quad_rows(s, D["inv"], xc0, np)
    base = -0.5 * obs.n_features * LOG_2PI - 0.5 * D["logdet"] - 0.5 * quad
    return xs0, xc0, uo, base


def _holes(obs: Any, X: np.ndarray, miss: np.ndarray) -> Holes:
    """The layer of incomplete rows X (n, p) with NaN mask ``miss`` (n, p)."""
    D, s = obs._derived, obs.covariance_type
    xs0, xc0, uo, base = _observed_part(obs, X, miss)
    V, inv = D["PiW"], D["inv"]
    n, d = X.shape[0], obs.latent_dim
    Ao = np.empty((n, d, d))
    hx = np.empty(n)
    Qx = xc0 @ inv if s == "full" else None
    qdiag = None if s == "full" else np.broadcast_to(np.asarray(inv, np.float64), (obs.n_features,))
    groups = _groups(miss)
    Fs, conds, ams = [], [], []
    for sel, idx in groups:
        c = idx.shape[1]
        if s == "full":
            cond, logdetQ = _small_inverse(inv[idx[:, :, None], idx[:, None, :]])
            h = -np.take_along_axis(Qx[sel], idx, axis=1)
            a = np.einsum("nij,nj->ni", cond, h)
        else:  # a diagonal Psi: a hole just drops out
            qm = qdiag[idx]
            cond = np.zeros((sel.size, c, c))
            cond[:, np.arange(c), np.arange(c)] = 1.0 / qm
            logdetQ = np.log(qm).sum(axis=1)
            h = a = np.zeros((sel.size, c))
        Vm = V[idx]  # (n_c, c, d)
        F = np.matmul(cond, Vm)
        Ao_c = D["A"][None] - np.matmul(Vm.transpose(0, 2, 1), F)
        Ao[sel] = 0.5 * (Ao_c + Ao_c.transpose(0, 2, 1))
        uo[sel] += np.einsum("ncd,nc->nd", F, h)
        base[sel] += 0.5 * c * LOG_2PI - 0.5 * logdetQ + 0.5 * (h * a).sum(axis=1)
        hx[sel] = 0.5 * c * (1.0 + LOG_2PI) - 0.5 * logdetQ
        Fs.append(F)
        conds.append(cond)
        ams.append(obs.mu[idx] + a)
    return Holes(xs0, groups, Fs, conds, ams, Ao, uo, base, hx)


@dataclass
class RaggedHoles:
    """``Holes`` for the numba kernels: the holes of chunk row r are cols[offs[r]:offs[r + 1]]
    with F (total, d) and am (total,) row by row; ``cinv`` holds the rows' Q_mm^{-1} blocks from
    coffs[r] (full Psi) or is Psi's diagonal (p,)."""

    xs0: np.ndarray
    cols: np.ndarray
    offs: np.ndarray
    coffs: np.ndarray
    F: np.ndarray
    am: np.ndarray
    cinv: np.ndarray
    Ao: np.ndarray
    uo: np.ndarray
    base: np.ndarray
    hx: np.ndarray


def _kernels() -> Any:
    """obs/hmog/_missing_numba.py, or None when numba is off (``MIXSTREAM_NUMBA=0``) or absent."""
    from mixstream import _kernels as switch

    if not switch.enabled():
        return None
    try:
        from mixstream.obs.hmog import _missing_numba
    except ImportError:
        return None
    return _missing_numba


def _ragged_holes(obs: Any, X: np.ndarray, miss: np.ndarray) -> RaggedHoles:
    """``_holes`` for the kernels: diag / spherical by GEMMs with the mask (a hole drops out),
    a full Psi by obs/gauss's fused c x c kernel (one component of mean 0) and ours."""
    from mixstream.obs.gauss import _missing_numba as gauss_kernels

    D, s = obs._derived, obs.covariance_type
    p, d = obs.n_features, obs.latent_dim
    xs0, xc0, uo, base = _observed_part(obs, X, miss)
    V, inv = D["PiW"], D["inv"]
    cols = np.nonzero(miss)[1].astype(np.int64)  # row-major: each row's holes in order
    counts = miss.sum(axis=1)
    offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = X.shape[0]
    if s == "full":
        coffs = np.concatenate([[0], np.cumsum(counts * counts)]).astype(np.int64)
        Q = np.ascontiguousarray(inv, np.float64)
        corr, det = np.empty((n, 1)), np.empty((n, 1))
        sol, cinv = np.empty((cols.size, 1)), np.empty(int(coffs[-1]))
        # one shared precision (G = 1, "tied") and b = 0: the layer's mean is in xc0 already
        PyT = (xc0 @ Q)[:, :, None]
        gauss_kernels.full_correction(
            PyT, np.zeros((p, 1)), Q[:, :, None], cols, offs, coffs, True, 0, corr, det, sol, cinv
        )
        half_logdet = 0.5 * np.log(det)
        corr -= half_logdet
        ent = (0.5 * (1.0 + LOG_2PI)) * counts[:, None] - half_logdet
        F, Ao = np.empty((cols.size, d)), np.empty((n, d, d))
        _kernels().observed_layer(V, D["A"], cols, offs, coffs, cinv, sol[:, 0], Ao, uo, F)
        return RaggedHoles(
            xs0, cols, offs, coffs, F, obs.mu[cols] + sol[:, 0], cinv, Ao, uo,
            base + corr[:, 0], ent[:, 0],
        )  # fmt: skip
    qd = np.broadcast_to(np.asarray(inv, np.float64), (p,))
    mf = miss.astype(np.float64)
    Wq = (obs.W[:, :, None] * obs.W[:, None, :] * qd[:, None, None]).reshape(p, d * d)
    Ao = D["A"][None] - (mf @ Wq).reshape(n, d, d)
    logq = mf @ np.log(qd)
    base += 0.5 * counts * LOG_2PI - 0.5 * logq
    hx = 0.5 * counts * (1.0 + LOG_2PI) - 0.5 * logq
    F = np.ascontiguousarray(obs.W[cols])
    return RaggedHoles(xs0, cols, offs, offs, F, obs.mu[cols], 1.0 / qd, Ao, uo, base, hx)


def _ragged_posterior(obs: Any, holes: RaggedHoles) -> tuple[np.ndarray, ...]:
    """``_posterior`` by the kernel."""
    D = obs._derived
    n, K, d = holes.Ao.shape[0], D["K"], obs.latent_dim
    lp, Hy = np.empty((n, K)), np.empty((n, K))
    yhat, Pinv = np.empty((n, K, d)), np.empty((n, K, d, d))
    AoT = np.ascontiguousarray(holes.Ao.transpose(1, 2, 0))
    uoT = np.ascontiguousarray(holes.uo.T)
    prec = np.ascontiguousarray(D["prec"], np.float64)
    eta = np.ascontiguousarray(D["eta"], np.float64)
    args = (AoT, uoT, holes.base, holes.hx, prec, eta, np.asarray(D["c"], np.float64))
    _kernels().posterior(*args, lp, yhat, Pinv, Hy)
    return lp, yhat, Pinv, Hy


def _ragged_stats(obs: Any, holes: RaggedHoles, post: tuple, r: np.ndarray) -> dict:
    """``_chunk_stats`` by the kernel: xs0's sums by GEMMs, the holes' by ``hole_stats``.
    Without ``split_rows`` the layer's sums are pooled over the components (their total is
    all the mass split keeps): a leading axis of 1."""
    _, yhat, Pinv, Hy = post
    s, p, d = obs.covariance_type, obs.n_features, obs.latent_dim
    r = np.ascontiguousarray(r, np.float64)
    n, K = r.shape
    xs0 = holes.xs0
    pooled = not obs.split_rows
    rt = r.sum(axis=1, keepdims=True) if pooled else r  # (n, T)
    T = rt.shape[1]
    ry = (r[:, :, None] * yhat).reshape(n, K, d)
    ryt = ry.sum(axis=1) if pooled else ry.reshape(n, K * d)
    out = (
        np.zeros((K, d)),
        np.zeros((K, d, d)),
        np.zeros(K),
        rt.T @ xs0,
        np.ascontiguousarray((xs0.T @ ryt).reshape(p, T, d).transpose(1, 0, 2)),
    )
    full = s == "full"
    if full:
        sxd = np.zeros((1, 1))
        sxf = np.stack([(xs0 * rt[:, t : t + 1]).T @ xs0 for t in range(T)])
    else:
        sxd, sxf = rt.T @ (xs0 * xs0), np.zeros((1, 1, 1))
    args = (holes.cols, holes.offs, holes.coffs, holes.F, holes.am, holes.cinv, full, pooled)
    _kernels().hole_stats(r, yhat, Pinv, Hy, xs0, *args, out, sxd, sxf)
    sxx = sxf if full else (sxd.sum(axis=1) if s == "spherical" else sxd)
    return {"y": out[0], "yy": out[1], "Hy": out[2], "sx": out[3], "sxy": out[4], "sxx": sxx}


def _posterior(obs: Any, holes: Holes) -> tuple[np.ndarray, ...]:
    """(log-probabilities without the bias (n, K), E[y | x_o, k] (n, K, d), P^{-1} (n, K, d, d),
    Hy (n, K) = H[q(y | x_o, k)] + H[q(x_m | y, x_o)])."""
    D = obs._derived
    prec, eta, c = D["prec"], D["eta"], D["c"]
    d = obs.latent_dim
    P = prec[None] + holes.Ao[:, None]  # (n, K, d, d)
    L = np.linalg.cholesky(P)
    logdetP = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    Pinv = np.linalg.inv(P)
    Pinv = 0.5 * (Pinv + Pinv.transpose(0, 1, 3, 2))
    b = eta[None] + holes.uo[:, None]  # (n, K, d)
    yhat = np.einsum("nkij,nkj->nki", Pinv, b)
    lp = holes.base[:, None] + c[None] + 0.5 * d * LOG_2PI - 0.5 * logdetP
    lp += 0.5 * (b * yhat).sum(axis=-1)
    Hy = 0.5 * d * (1.0 + LOG_2PI) - 0.5 * logdetP + holes.hx[:, None]
    return lp, yhat, Pinv, Hy


def _chunks(obs: Any, n: int, K: int) -> tuple[range, int]:
    size = max(64, _CHUNK_FLOATS // max(K * obs.latent_dim**2, 1))
    return range(0, n, size), size


def _parts(obs: Any, X: np.ndarray, mask: np.ndarray, rows: np.ndarray, K: int) -> Iterator:
    """(positions (n_c,) in ``rows``, Holes, posterior) over chunks of the incomplete rows, one
    chunk at a time (a caller that keeps them all holds O(n_i K d^2) floats)."""
    starts, size = _chunks(obs, rows.size, K)
    fast = _kernels() is not None
    for a in starts:
        pos = np.arange(a, min(a + size, rows.size))
        if fast:
            holes = _ragged_holes(obs, X[rows[pos]], mask[rows[pos]])
            yield pos, holes, _ragged_posterior(obs, holes)
        else:
            holes = _holes(obs, X[rows[pos]], mask[rows[pos]])
            yield pos, holes, _posterior(obs, holes)


def _split(X: Any, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X host float64, complete rows, incomplete rows); refuses rows with every value NaN."""
    X = np.asarray(X, np.float64)
    incomplete = mask.any(axis=1)
    rows = np.flatnonzero(incomplete)
    check_rows_observed(mask[rows])
    return X, np.flatnonzero(~incomplete), rows


def log_prob(obs: Any, X: Any, mask: np.ndarray, cache: dict | None, bias: Any) -> np.ndarray:
    """``HMoGObs.log_prob`` of a block with NaN (N, K): complete rows by the GEMM path,
    incomplete rows by their observed coordinates' marginal."""
    X, full, rows = _split(X, mask)
    K = obs._derived["K"]
    out = np.empty((X.shape[0], K))
    sub: dict | None = None if cache is None else {}
    if full.size:
        out[full] = obs.log_prob(X[full], sub, bias)
    parts = _parts(obs, X, mask, rows, K)
    # calc_stats reuses the posteriors of a block (local_summarize's blocks are small); a large
    # X is not held, its statistics recompute them chunk by chunk
    keep = cache is not None and rows.size * K * obs.latent_dim**2 <= _CACHE_FLOATS
    if keep:
        parts = list(parts)
    b = 0.0 if bias is None else np.asarray(bias, np.float64)[None, :]
    for pos, _, post in parts:
        out[rows[pos]] = post[0] + b
    if cache is not None:
        cache[MISSING_KEY] = (X.shape[0], sub, parts if keep else None, obs._derived["theta"])
    return out


def latent_means(obs: Any, X: Any, resp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """E[y | x_o] = sum_k r_nk E[y | x_o, k] (N, d) of a block with NaN."""
    X, full, rows = _split(X, mask)
    out = np.empty((X.shape[0], obs.latent_dim))
    if full.size:
        out[full] = obs.latent_means(X[full], resp[full])
    for pos, _, post in _parts(obs, X, mask, rows, resp.shape[1]):
        out[rows[pos]] = np.einsum("nk,nkd->nd", resp[rows[pos]], post[1])
    return out


def calc_stats(obs: Any, X: Any, resp: np.ndarray, mask: np.ndarray, cache: dict | None) -> dict:
    """``HMoGObs.calc_stats`` of a block with NaN: the complete rows' statistics plus the
    incomplete rows' expected ones (same fields, all additive)."""
    entry = None if cache is None else cache.get(MISSING_KEY)
    X, full, rows = _split(X, mask)
    K = resp.shape[1]
    sub, parts = None, None
    if entry is not None and entry[0] == X.shape[0] and entry[3] is obs._derived["theta"]:
        sub, parts = entry[1], entry[2]
    if parts is None:
        parts = _parts(obs, X, mask, rows, K)
    out = obs.calc_stats(X[full], resp[full], sub)
    r_i = resp[rows]
    acc = None
    for pos, holes, post in parts:
        stats = _ragged_stats if isinstance(holes, RaggedHoles) else _chunk_stats
        part = stats(obs, holes, post, r_i[pos])
        if not obs.split_rows:  # the mass split keeps the totals only (kernels: pooled already)
            part.update({k: part[k].sum(axis=0, keepdims=True) for k in ("sx", "sxy", "sxx")})
        acc = part if acc is None else {k: acc[k] + v for k, v in part.items()}
    if acc is not None:
        if not obs.split_rows:
            acc = _share(acc, r_i.sum(axis=0))
        for k, v in acc.items():
            out[k] = out[k] + v
    return out


def _share(stats: dict, N: np.ndarray) -> dict:
    """The layer's fields summed over the components and split in proportion to N_k (as
    ``HMoGObs._mass_split``)."""
    total = N.sum()
    share = N / total if total > 0 else np.full(N.shape[0], 1.0 / max(N.shape[0], 1))
    out = dict(stats)
    for k in ("sx", "sxy", "sxx"):
        out[k] = np.multiply.outer(share, stats[k].sum(axis=0))
    return out


def _scatter(vals: np.ndarray, idx: np.ndarray, p: int) -> np.ndarray:
    """sum over rows of vals (n, K, c, *rest) put at the rows' columns idx (n, c): (K, p, *rest)."""
    K = vals.shape[1]
    rest = vals.shape[3:]
    width = int(np.prod(rest)) if rest else 1
    at = np.arange(K)[None, :, None] * p + idx[:, None, :]  # (n, K, c)
    flat = (at[..., None] * width + np.arange(width)).ravel()
    out = np.bincount(flat, vals.reshape(-1), minlength=K * p * width)
    return out.reshape((K, p, *rest))


def _chunk_stats(obs: Any, holes: Holes, post: tuple, r: np.ndarray) -> dict:
    """The statistics (per component) of one chunk of incomplete rows under resp r (n, K)."""
    _, yhat, Pinv, Hy = post
    s, p = obs.covariance_type, obs.n_features
    ry = r[:, :, None] * yhat
    yy = np.einsum("nk,nkij->kij", r, Pinv) + np.einsum("nki,nkj->kij", ry, yhat)
    xs0 = holes.xs0
    n, K = r.shape
    sx = r.T @ xs0
    sxy = (xs0.T @ ry.reshape(n, -1)).reshape(p, K, -1).transpose(1, 0, 2)
    sols, covs = [], []
    diag = np.zeros((K, p))
    for (sel, idx), F, cond, am in zip(holes.groups, holes.F, holes.cond, holes.am):
        rs = r[sel][:, :, None]
        z = am[:, None, :] + np.einsum("ncd,nkd->nkc", F, yhat[sel])  # (n_c, K, c)
        FP = np.einsum("ncd,nkde->nkce", F, Pinv[sel])  # (n_c, K, c, d)
        xy = z[..., None] * yhat[sel][:, :, None, :] + FP
        sx += _scatter(rs * z, idx, p)
        sxy += _scatter(rs[..., None] * xy, idx, p)
        if s == "full":
            sols.append(z)
            covs.append(np.einsum("nkce,nfe->nkcf", FP, F) + cond[:, None])
        else:  # the diagonal of z z^T + F P^-1 F^T + Q_mm^-1
            v = z * z + np.einsum("nkce,nce->nkc", FP, F) + np.diagonal(cond, 0, 1, 2)[:, None]
            diag += _scatter(rs * v, idx, p)
    if s == "full":
        sxx = np.stack([(xs0 * r[:, k : k + 1]).T @ xs0 for k in range(K)])
        mr = MissingRows(None, xs0, np.zeros((n, p), bool), holes.groups, sols, None, covs)
        mr.ent = np.zeros((n, K))
        sxx += full_stats_correction(mr, r, p)["xx"]
    else:
        sxx = r.T @ (xs0 * xs0) + diag
        if s == "spherical":
            sxx = sxx.sum(axis=1)
    return {
        "y": ry.sum(axis=0),
        "yy": yy,
        "Hy": (r * Hy).sum(axis=0),
        "sx": sx,
        "sxy": sxy,
        "sxx": sxx,
    }
