"""numba kernels of the full-precision missing-value step (obs/gauss/missing.py has the maths
and the numpy version that runs when numba is off; the two agree to rounding, tested).

Rows are given ragged: the missing columns of row r are ``cols[offs[r]:offs[r + 1]]`` (in
increasing order) and the conditional means ``sol[offs[r]:offs[r + 1], k]``. With MCAR holes
nearly every row has its own pattern, and a row's c x c factorisation (c its missing count) is
a few dozen flops: one pass over the rows, with no (rows, components, D) temporaries, is what
keeps the step near the cost of the complete-data GEMMs.
"""

import math

import numpy as np
from numba import njit

_LOG_2PI = math.log(2.0 * math.pi)


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _chol(P, g, cols, a, c, L):
    """Lower Cholesky factor of P[g][cols[a:a+c]][:, cols[a:a+c]] into L[:c, :c]; log det."""
    det = 1.0  # the product of the squared pivots: one log (c is small, no overflow)
    for j in range(c):
        s = P[g, cols[a + j], cols[a + j]]
        for t in range(j):
            s -= L[j, t] * L[j, t]
        d = math.sqrt(max(s, 1e-300))
        L[j, j] = d
        det *= s
        for i in range(j + 1, c):
            s = P[g, cols[a + i], cols[a + j]]
            for t in range(j):
                s -= L[i, t] * L[j, t]
            L[i, j] = s / d
    return math.log(det)


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _inverse(P, g, cols, a, c, L, Li, C):
    """C[:c, :c] = P_mm^{-1} of the block cols[a:a+c]; returns log|P_mm|. Closed forms for
    up to three holes (most rows at low missing rates), a Cholesky factor above."""
    if c == 1:
        p = P[g, cols[a], cols[a]]
        C[0, 0] = 1.0 / p
        return math.log(p)
    if c == 2:
        i, j = cols[a], cols[a + 1]
        p, q, t = P[g, i, i], P[g, i, j], P[g, j, j]
        det = p * t - q * q
        C[0, 0] = t / det
        C[1, 1] = p / det
        C[0, 1] = C[1, 0] = -q / det
        return math.log(det)
    if c == 3:  # cofactors; a Cholesky factor below when rounding leaves det <= 0
        i, j, m = cols[a], cols[a + 1], cols[a + 2]
        p00, p01, p02 = P[g, i, i], P[g, i, j], P[g, i, m]
        p11, p12, p22 = P[g, j, j], P[g, j, m], P[g, m, m]
        c00 = p11 * p22 - p12 * p12
        c01 = p02 * p12 - p01 * p22
        c02 = p01 * p12 - p02 * p11
        det = p00 * c00 + p01 * c01 + p02 * c02
        if det > 0.0:
            C[0, 0] = c00 / det
            C[0, 1] = C[1, 0] = c01 / det
            C[0, 2] = C[2, 0] = c02 / det
            C[1, 1] = (p00 * p22 - p02 * p02) / det
            C[1, 2] = C[2, 1] = (p01 * p02 - p00 * p12) / det
            C[2, 2] = (p00 * p11 - p01 * p01) / det
            return math.log(det)
    logdet = _chol(P, g, cols, a, c, L)
    # L^{-1} (lower) by forward substitution, then C = L^{-T} L^{-1}: c^3 / 2 flops
    for j in range(c):
        Li[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, c):
            v = 0.0
            for t in range(j, i):
                v += L[i, t] * Li[t, j]
            Li[i, j] = -v / L[i, i]
    for i in range(c):
        for j in range(i + 1):
            v = 0.0
            for t in range(i, c):
                v += Li[t, i] * Li[t, j]
            C[i, j] = v
            C[j, i] = v
    return logdet


@njit(nogil=True, cache=True, error_model="numpy")
def full_correction(Py, b, P, cols, offs, coffs, tied, corr, ent, sol, cinv):
    """corr (n, K), ent (n, K), sol (total, K) and the conditional covariances P_mm^{-1}
    (``cinv``: row r, group g at ``coffs[r] * G + g * c * c``, row-major c x c) of the rows.

    Py : (n, G, D) P_g y0; b : (K, D) P_k mu_k; P : (G, D, D).
    """
    n = offs.size - 1
    K = b.shape[0]
    G = P.shape[0]
    cmax = 2
    for r in range(n):
        cmax = max(cmax, offs[r + 1] - offs[r])
    L = np.empty((cmax, cmax))
    Li = np.empty((cmax, cmax))
    C = np.empty((cmax, cmax))
    h = np.empty(cmax)
    for r in range(n):
        a = offs[r]
        c = offs[r + 1] - a
        for g in range(G):
            logdet = _inverse(P, g, cols, a, c, L, Li, C)
            base = coffs[r] * G + g * c * c
            for i in range(c):
                for j in range(c):
                    cinv[base + i * c + j] = C[i, j]
            k0, k1 = (0, K) if tied else (g, g + 1)
            for k in range(k0, k1):
                for i in range(c):
                    h[i] = b[k, cols[a + i]] - Py[r, g, cols[a + i]]
                q = 0.0
                for i in range(c):
                    v = 0.0
                    for j in range(c):
                        v += C[i, j] * h[j]
                    q += h[i] * v
                    sol[a + i, k] = v
                corr[r, k] = 0.5 * q + 0.5 * c * _LOG_2PI - 0.5 * logdet
                ent[r, k] = 0.5 * c * (1.0 + _LOG_2PI) - 0.5 * logdet


@njit(nogil=True, cache=True, error_model="numpy")
def full_block_stats(resp, y0, cols, offs, coffs, G, tied, sol, cinv, x, crossT, dxx):
    """The statistics' corrections of the rows: x (K, D) += r z, crossT (K, D, D): row m of
    component k += r z_m y0 (the cross term y0 z^T, transposed, for contiguous rows), and
    dxx (K, D, D) += r (z_m z_m^T + P_mm^{-1}) on each row's missing block."""
    n = offs.size - 1
    K = resp.shape[1]
    D = y0.shape[1]
    for r in range(n):
        a = offs[r]
        c = offs[r + 1] - a
        for g in range(G):
            base = coffs[r] * G + g * c * c
            k0, k1 = (0, K) if tied else (g, g + 1)
            for k in range(k0, k1):
                w = resp[r, k]
                for i in range(c):
                    wz = w * sol[a + i, k]
                    ci = cols[a + i]
                    x[k, ci] += wz
                    for d in range(D):
                        crossT[k, ci, d] += wz * y0[r, d]
                    for j in range(c):
                        v = sol[a + i, k] * sol[a + j, k] + cinv[base + i * c + j]
                        dxx[k, ci, cols[a + j]] += w * v
