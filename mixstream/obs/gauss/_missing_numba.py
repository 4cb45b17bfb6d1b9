"""numba kernels of the full-precision missing-value step (obs/gauss/missing.py has the maths
and the numpy version that runs when numba is off; the two agree to rounding, tested).

Rows are given ragged: the missing columns of row r are ``cols[offs[r]:offs[r + 1]]`` (in
increasing order) and the conditional means ``sol[offs[r]:offs[r + 1], k]``. With MCAR holes
nearly every row has its own pattern, so a row's c x c factorisations (c its missing count, one
per precision) are a few dozen flops each, and a chain of dependent square roots and divisions:
done one precision at a time they cost several times their flops. So every loop runs with the
precisions g innermost (``PT`` is (D, D, G), P_g y0 is (n, D, G)): the G factorisations of a row
are independent lanes that the CPU overlaps (and SIMD-vectorises). Rows with up to four holes
(98% of the incomplete rows at 10% MCAR holes, D = 16) take closed forms written in scalars in
one loop over the components: a loop whose length changes from row to row costs a mispredicted
branch, and short loops over arrays cost several times their flops. The log-determinants are
left to the caller as determinants (one vectorised log over the block).

Rounding: for up to three holes (and five or more) each quantity is computed with the
arithmetic of the earlier one-precision-at-a-time kernel, and the statistics add one term per
row to each entry in row order, so the fits are those of that kernel to the bit (an
ill-conditioned model's 1e-8 marginal test moves by 1e-7 when a fit's rounding changes); four
holes take 2 x 2 blocks instead of a Cholesky factor (tested against scipy to 1e-10).
"""

import math

import numpy as np
from numba import njit

_LOG_2PI = math.log(2.0 * math.pi)


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _inverse3(PT, i, j, m, g):
    """(det, c00, c01, c02, c11, c12, c22): the determinant and the upper triangle of the
    inverse of precision g's block on holes (i, j, m), by cofactors."""
    p00, p01, p02 = PT[i, i, g], PT[i, j, g], PT[i, m, g]
    p11, p12, p22 = PT[j, j, g], PT[j, m, g], PT[m, m, g]
    c00 = p11 * p22 - p12 * p12
    c01 = p02 * p12 - p01 * p22
    c02 = p01 * p12 - p02 * p11
    dt = p00 * c00 + p01 * c01 + p02 * c02
    c11 = (p00 * p22 - p02 * p02) / dt
    c12 = (p01 * p02 - p00 * p12) / dt
    c22 = (p00 * p11 - p01 * p01) / dt
    return dt, c00 / dt, c01 / dt, c02 / dt, c11, c12, c22


@njit(nogil=True, cache=True, error_model="numpy")
def split_rows(Xf, mask, shift):
    """(rows (n_i,), y0 (n_i, D), miss (n_i, D), all_missing) of a block: the incomplete rows'
    positions, their shifted values (float64, exactly 0 at the holes) and masks, in one pass
    over the mask; all_missing: some row has no observed value (the caller raises)."""
    n, D = mask.shape
    n_i = 0
    for r in range(n):
        for d in range(D):
            if mask[r, d]:
                n_i += 1
                break
    rows = np.empty(n_i, np.int64)
    y0 = np.empty((n_i, D))
    miss = np.empty((n_i, D), np.bool_)
    all_missing = False
    t = 0
    for r in range(n):
        c = 0
        for d in range(D):
            c += mask[r, d]
        if c == 0:
            continue
        all_missing = all_missing or c == D
        rows[t] = r
        for d in range(D):
            m = mask[r, d]
            miss[t, d] = m
            y0[t, d] = 0.0 if m else np.float64(Xf[r, d]) - shift[d]
        t += 1
    return rows, y0, miss, all_missing


@njit(nogil=True, cache=True, error_model="numpy")
def layout(miss, cols, offs):
    """Fill cols (total,) and offs (n + 1,), the ragged layout of the mask miss (n, D)."""
    n, D = miss.shape
    t = 0
    offs[0] = 0
    for r in range(n):
        for d in range(D):
            if miss[r, d]:
                cols[t] = d
                t += 1
        offs[r + 1] = t


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _three_holes(PT, cols, a, C, det):
    """``_closed_form`` for three holes (cofactors); False when rounding left a determinant
    <= 0 (the caller then takes the Cholesky factor)."""
    G = PT.shape[2]
    i, j, m = cols[a], cols[a + 1], cols[a + 2]
    ok = True
    for g in range(G):
        dt, c00, c01, c02, c11, c12, c22 = _inverse3(PT, i, j, m, g)
        ok = ok and dt > 0.0
        det[g] = dt
        C[0, g] = c00
        C[1, g] = C[3, g] = c01
        C[2, g] = C[6, g] = c02
        C[4, g] = c11
        C[5, g] = C[7, g] = c12
        C[8, g] = c22
    return ok


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _closed_form(PT, cols, a, c, C, det):
    """C[i * c + j, g] = (P_g)_mm^{-1} and det[g] = |(P_g)_mm| for one or two holes."""
    G = PT.shape[2]
    i = cols[a]
    if c == 1:
        for g in range(G):
            p = PT[i, i, g]
            det[g] = p
            C[0, g] = 1.0 / p
        return
    j = cols[a + 1]
    for g in range(G):
        p, q, t = PT[i, i, g], PT[i, j, g], PT[j, j, g]
        dt = p * t - q * q
        det[g] = dt
        C[0, g] = t / dt
        C[1, g] = C[2, g] = -q / dt
        C[3, g] = p / dt


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _cholesky_inverse(PT, cols, a, c, L, Li, C, det):
    """As ``_closed_form`` for c >= 3: a Cholesky factor L (c x c lower, L[i * c + j, g]), its
    inverse Li by forward substitution, and C = Li^T Li (c^3 / 2 flops per lane)."""
    G = PT.shape[2]
    for g in range(G):
        det[g] = 1.0  # the product of the squared pivots (c is small: no overflow)
    for j in range(c):
        cj = cols[a + j]
        jj = j * c + j
        for g in range(G):
            L[jj, g] = PT[cj, cj, g]
        for t in range(j):
            jt = j * c + t
            for g in range(G):
                L[jj, g] -= L[jt, g] * L[jt, g]
        for g in range(G):
            s = L[jj, g]
            det[g] *= s
            L[jj, g] = math.sqrt(max(s, 1e-300))
        for i in range(j + 1, c):
            ij = i * c + j
            ci = cols[a + i]
            for g in range(G):
                L[ij, g] = PT[ci, cj, g]
            for t in range(j):
                it, jt = i * c + t, j * c + t
                for g in range(G):
                    L[ij, g] -= L[it, g] * L[jt, g]
            for g in range(G):
                L[ij, g] /= L[jj, g]
    for j in range(c):
        jj = j * c + j
        for g in range(G):
            Li[jj, g] = 1.0 / L[jj, g]
        for i in range(j + 1, c):
            ij = i * c + j
            for g in range(G):
                Li[ij, g] = 0.0
            for t in range(j, i):
                it, tj = i * c + t, t * c + j
                for g in range(G):
                    Li[ij, g] += L[it, g] * Li[tj, g]
            ii = i * c + i
            for g in range(G):
                Li[ij, g] = -Li[ij, g] / L[ii, g]
    for i in range(c):
        for j in range(i + 1):
            ij, ji = i * c + j, j * c + i
            for g in range(G):
                C[ij, g] = 0.0
            for t in range(i, c):
                ti, tj = t * c + i, t * c + j
                for g in range(G):
                    C[ij, g] += Li[ti, g] * Li[tj, g]
            for g in range(G):
                C[ji, g] = C[ij, g]


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _few_holes(Py, bT, PT, cols, a, c, corr, det, sol, cinv, base):
    """One row with c <= 3 holes and one precision per component (Py (D, K): its P_k y0),
    in one loop over the components: closed-form inverse, conditional means and correction,
    with the arithmetic of the general path (the same bits). False when rounding left a
    3 x 3 determinant <= 0 (the caller then takes the general path)."""
    K = bT.shape[1]
    i = cols[a]
    if c == 1:
        for k in range(K):
            p = PT[i, i, k]
            det[k] = p
            c00 = 1.0 / p
            cinv[base + k] = c00
            h0 = bT[i, k] - Py[i, k]
            v0 = c00 * h0
            sol[a, k] = v0
            corr[k] = 0.5 * (h0 * v0) + 0.5 * _LOG_2PI
        return True
    j = cols[a + 1]
    if c == 2:
        for k in range(K):
            p, q, t = PT[i, i, k], PT[i, j, k], PT[j, j, k]
            dt = p * t - q * q
            det[k] = dt
            c00, c01, c11 = t / dt, -q / dt, p / dt
            cinv[base + k] = c00
            cinv[base + K + k] = c01
            cinv[base + 2 * K + k] = c01
            cinv[base + 3 * K + k] = c11
            h0 = bT[i, k] - Py[i, k]
            h1 = bT[j, k] - Py[j, k]
            v0 = c00 * h0 + c01 * h1
            v1 = c01 * h0 + c11 * h1
            sol[a, k] = v0
            sol[a + 1, k] = v1
            corr[k] = 0.5 * (h0 * v0 + h1 * v1) + _LOG_2PI
        return True
    m = cols[a + 2]
    ok = True
    for k in range(K):
        dt, c00, c01, c02, c11, c12, c22 = _inverse3(PT, i, j, m, k)
        ok = ok and dt > 0.0
        det[k] = dt
        cinv[base + k] = c00
        cinv[base + K + k] = c01
        cinv[base + 2 * K + k] = c02
        cinv[base + 3 * K + k] = c01
        cinv[base + 4 * K + k] = c11
        cinv[base + 5 * K + k] = c12
        cinv[base + 6 * K + k] = c02
        cinv[base + 7 * K + k] = c12
        cinv[base + 8 * K + k] = c22
        h0 = bT[i, k] - Py[i, k]
        h1 = bT[j, k] - Py[j, k]
        h2 = bT[m, k] - Py[m, k]
        v0 = c00 * h0 + c01 * h1 + c02 * h2
        v1 = c01 * h0 + c11 * h1 + c12 * h2
        v2 = c02 * h0 + c12 * h1 + c22 * h2
        sol[a, k] = v0
        sol[a + 1, k] = v1
        sol[a + 2, k] = v2
        corr[k] = 0.5 * (h0 * v0 + h1 * v1 + h2 * v2) + 0.5 * 3 * _LOG_2PI
    return ok


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _four_holes(Py, bT, PT, cols, a, corr, det, sol, cinv, base):
    """``_few_holes`` for four holes: the 4 x 4 inverse by 2 x 2 blocks, X (holes 0, 1), Y, and
    the Schur complement S = Z - Y^T X^{-1} Y (positive definite with P_mm); all in scalars,
    where the general path's loops cost ten times their flops. False when rounding left a
    determinant <= 0 (the caller then takes the Cholesky factor)."""
    K = bT.shape[1]
    i0, i1, i2, i3 = cols[a], cols[a + 1], cols[a + 2], cols[a + 3]
    ok = True
    for k in range(K):
        a00, a01, a02, a03 = PT[i0, i0, k], PT[i0, i1, k], PT[i0, i2, k], PT[i0, i3, k]
        a11, a12, a13 = PT[i1, i1, k], PT[i1, i2, k], PT[i1, i3, k]
        a22, a23, a33 = PT[i2, i2, k], PT[i2, i3, k], PT[i3, i3, k]
        dx = a00 * a11 - a01 * a01
        x00, x01, x11 = a11 / dx, -a01 / dx, a00 / dx
        w00, w01 = x00 * a02 + x01 * a12, x00 * a03 + x01 * a13  # W = X^{-1} Y
        w10, w11 = x01 * a02 + x11 * a12, x01 * a03 + x11 * a13
        s00 = a22 - (a02 * w00 + a12 * w10)
        s01 = a23 - (a02 * w01 + a12 * w11)
        s11 = a33 - (a03 * w01 + a13 * w11)
        ds = s00 * s11 - s01 * s01
        ok = ok and dx > 0.0 and ds > 0.0
        det[k] = dx * ds
        t00, t01, t11 = s11 / ds, -s01 / ds, s00 / ds  # S^{-1}: the lower right block
        u00, u01 = -(w00 * t00 + w01 * t01), -(w00 * t01 + w01 * t11)  # -W S^{-1}
        u10, u11 = -(w10 * t00 + w11 * t01), -(w10 * t01 + w11 * t11)
        c00 = x00 - (u00 * w00 + u01 * w01)  # X^{-1} + W S^{-1} W^T
        c01 = x01 - (u00 * w10 + u01 * w11)
        c11 = x11 - (u10 * w10 + u11 * w11)
        o = base + k
        cinv[o], cinv[o + K], cinv[o + 2 * K], cinv[o + 3 * K] = c00, c01, u00, u01
        cinv[o + 4 * K], cinv[o + 5 * K], cinv[o + 6 * K], cinv[o + 7 * K] = c01, c11, u10, u11
        cinv[o + 8 * K], cinv[o + 9 * K], cinv[o + 10 * K], cinv[o + 11 * K] = u00, u10, t00, t01
        cinv[o + 12 * K], cinv[o + 13 * K], cinv[o + 14 * K], cinv[o + 15 * K] = u01, u11, t01, t11
        h0 = bT[i0, k] - Py[i0, k]
        h1 = bT[i1, k] - Py[i1, k]
        h2 = bT[i2, k] - Py[i2, k]
        h3 = bT[i3, k] - Py[i3, k]
        v0 = c00 * h0 + c01 * h1 + u00 * h2 + u01 * h3
        v1 = c01 * h0 + c11 * h1 + u10 * h2 + u11 * h3
        v2 = u00 * h0 + u10 * h1 + t00 * h2 + t01 * h3
        v3 = u01 * h0 + u11 * h1 + t01 * h2 + t11 * h3
        sol[a, k] = v0
        sol[a + 1, k] = v1
        sol[a + 2, k] = v2
        sol[a + 3, k] = v3
        corr[k] = 0.5 * (h0 * v0 + h1 * v1 + h2 * v2 + h3 * v3) + 2.0 * _LOG_2PI
    return ok


@njit(nogil=True, cache=True, error_model="numpy")
def full_correction(PyT, bT, PT, cols, offs, coffs, tied, r0, corr, det, sol, cinv):
    """Per row r: the determinants det (n, G) of the missing blocks (P_g)_mm, the conditional
    covariances (P_g)_mm^{-1} (``cinv``: entry (i, j) of row r, precision g at
    ``(coffs[r] + i * c + j) * G + g``), the conditional means sol (total, K) and corr (n, K),
    the correction without its -1/2 log det term: 1/2 h^T (P_mm)^{-1} h + c/2 log 2 pi.

    Rows r0 to r0 + len(PyT) only: PyT (rows, D, G) is their P_g y0 (computed by the caller a
    chunk at a time, so that it is still in cache here); bT : (D, K) P_k mu_k; PT : (D, D, G),
    the precisions.
    """
    r1 = r0 + PyT.shape[0]
    G = PT.shape[2]
    K = bT.shape[1]
    cmax = 2
    for r in range(r0, r1):
        cmax = max(cmax, offs[r + 1] - offs[r])
    L = np.empty((cmax * cmax, G))
    Li = np.empty((cmax * cmax, G))
    C = np.empty((cmax * cmax, G))
    h = np.empty((cmax, K))
    v = np.empty(K)
    for r in range(r0, r1):
        a = offs[r]
        c = offs[r + 1] - a
        base = coffs[r] * G
        if not tied and c <= 3:
            if _few_holes(PyT[r - r0], bT, PT, cols, a, c, corr[r], det[r], sol, cinv, base):
                continue
        if not tied and c == 4:
            if _four_holes(PyT[r - r0], bT, PT, cols, a, corr[r], det[r], sol, cinv, base):
                continue
        if c <= 2:
            _closed_form(PT, cols, a, c, C, det[r])
        elif c == 3 and _three_holes(PT, cols, a, C, det[r]):
            pass
        else:
            _cholesky_inverse(PT, cols, a, c, L, Li, C, det[r])
        for ij in range(c * c):
            for g in range(G):
                cinv[base + ij * G + g] = C[ij, g]
        for i in range(c):
            ci = cols[a + i]
            if tied:
                for k in range(K):
                    h[i, k] = bT[ci, k] - PyT[r - r0, ci, 0]
            else:
                for k in range(K):
                    h[i, k] = bT[ci, k] - PyT[r - r0, ci, k]
        for k in range(K):
            corr[r, k] = 0.0
        for i in range(c):
            for k in range(K):
                v[k] = 0.0
            for j in range(c):
                ij = i * c + j
                if tied:
                    for k in range(K):
                        v[k] += C[ij, 0] * h[j, k]
                else:
                    for k in range(K):
                        v[k] += C[ij, k] * h[j, k]
            for k in range(K):
                corr[r, k] += h[i, k] * v[k]
                sol[a + i, k] = v[k]
        for k in range(K):
            corr[r, k] = 0.5 * corr[r, k] + 0.5 * c * _LOG_2PI


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _few_holes_stats(resp, r, sol, cinv, cols, a, c, base, xT, dxxT):
    """``full_block_stats``' x and missing-block terms of row r with c <= 3 holes and one
    precision per component, in one loop over the components (loops whose length changes
    from row to row cost a mispredicted branch each)."""
    K = resp.shape[1]
    i = cols[a]
    if c == 1:
        for k in range(K):
            w, s0 = resp[r, k], sol[a, k]
            xT[i, k] += w * s0
            dxxT[i, i, k] += w * (s0 * s0 + cinv[base + k])
        return
    j = cols[a + 1]
    if c == 2:
        for k in range(K):
            w, s0, s1 = resp[r, k], sol[a, k], sol[a + 1, k]
            xT[i, k] += w * s0
            xT[j, k] += w * s1
            t = w * (s1 * s0 + cinv[base + 2 * K + k])
            dxxT[i, i, k] += w * (s0 * s0 + cinv[base + k])
            dxxT[j, i, k] += t
            dxxT[i, j, k] += t
            dxxT[j, j, k] += w * (s1 * s1 + cinv[base + 3 * K + k])
        return
    m = cols[a + 2]
    for k in range(K):
        w, s0, s1, s2 = resp[r, k], sol[a, k], sol[a + 1, k], sol[a + 2, k]
        xT[i, k] += w * s0
        xT[j, k] += w * s1
        xT[m, k] += w * s2
        t10 = w * (s1 * s0 + cinv[base + 3 * K + k])
        t20 = w * (s2 * s0 + cinv[base + 6 * K + k])
        t21 = w * (s2 * s1 + cinv[base + 7 * K + k])
        dxxT[i, i, k] += w * (s0 * s0 + cinv[base + k])
        dxxT[j, j, k] += w * (s1 * s1 + cinv[base + 4 * K + k])
        dxxT[m, m, k] += w * (s2 * s2 + cinv[base + 8 * K + k])
        dxxT[j, i, k] += t10
        dxxT[i, j, k] += t10
        dxxT[m, i, k] += t20
        dxxT[i, m, k] += t20
        dxxT[m, j, k] += t21
        dxxT[j, m, k] += t21


@njit(nogil=True, cache=True, error_model="numpy")
def full_block_stats(resp, y0, cols, offs, coffs, G, tied, sol, cinv, xT, cross, dxxT):
    """The statistics' corrections of the rows: xT (D, K) += r z, cross (D, K, D):
    [m, k, d] += r z_m y0_d (the cross term y0 z^T, transposed), and dxxT (D, D, K) +=
    r (z_m z_m^T + P_mm^{-1}) on each row's missing block. Every entry takes one term per row,
    in row order, whatever the loop order inside a row: the sums are the same to the bit. The
    missing block is symmetric: each off-diagonal term is computed once and added twice."""
    n = offs.size - 1
    K = resp.shape[1]
    D = y0.shape[1]
    wz = np.empty(K)
    for r in range(n):
        a = offs[r]
        c = offs[r + 1] - a
        base = coffs[r] * G
        few = not tied and c <= 3
        if few:
            _few_holes_stats(resp, r, sol, cinv, cols, a, c, base, xT, dxxT)
        for i in range(c):
            ci = cols[a + i]
            for k in range(K):
                wz[k] = resp[r, k] * sol[a + i, k]
            for k in range(K):
                w = wz[k]
                for d in range(D):
                    cross[ci, k, d] += w * y0[r, d]
            if few:
                continue
            for k in range(K):
                xT[ci, k] += wz[k]
            for j in range(i + 1):
                cj = cols[a + j]
                o = base + (i * c + j) * G
                if tied:
                    cij = cinv[o]
                    for k in range(K):
                        t = resp[r, k] * (sol[a + i, k] * sol[a + j, k] + cij)
                        dxxT[ci, cj, k] += t
                        if j < i:
                            dxxT[cj, ci, k] += t
                elif j < i:
                    for k in range(K):
                        t = resp[r, k] * (sol[a + i, k] * sol[a + j, k] + cinv[o + k])
                        dxxT[ci, cj, k] += t
                        dxxT[cj, ci, k] += t
                else:
                    for k in range(K):
                        si = sol[a + i, k]
                        dxxT[ci, ci, k] += resp[r, k] * (si * si + cinv[o + k])
