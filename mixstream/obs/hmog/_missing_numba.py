"""numba kernels of the HMoG's missing-value step (obs/hmog/missing.py has the maths and the
numpy version that runs when numba is off; the two agree to rounding, tested).

Rows are given ragged, as in obs/gauss/_missing_numba.py: the holes of row r are
``cols[offs[r]:offs[r + 1]]`` and its c x c block of Q_mm^{-1} starts at ``cinv[coffs[r]]``.
With MCAR holes nearly every row has its own pattern, and each (row, component) needs its own
d x d factor: one pass over the rows, without (rows, components, d, d) temporaries beyond the
posteriors themselves, keeps the step within a small factor of the complete-data GEMMs.
"""

import math

import numpy as np
from numba import njit

_LOG_2PI = math.log(2.0 * math.pi)
#: no "reassoc": sums keep their order (the numpy path's rounding); "nnan" / "ninf" let the
#: loops over the components vectorise (inputs are finite)
_FLAGS = {"contract", "nsz", "nnan", "ninf"}


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def observed_layer(V, A, cols, offs, coffs, cinv, sol, Ao, uo, F):
    """A full Psi: F (total, d) = Q_mm^{-1} V_m, Ao (n, d, d) = A - V_m^T F and
    uo (n, d) += V_m^T a (a = ``sol``, the noise's conditional mean at the holes)."""
    n = offs.size - 1
    d = V.shape[1]
    for r in range(n):
        a = offs[r]
        c = offs[r + 1] - a
        base = coffs[r]
        # the innermost loops run along rows of V, F and Ao (contiguous)
        for i in range(c):
            F[a + i, :] = 0.0
            for j in range(c):
                cij = cinv[base + i * c + j]
                vj = cols[a + j]
                for e in range(d):
                    F[a + i, e] += cij * V[vj, e]
        Ao[r] = A
        for i in range(c):
            vi = cols[a + i]
            for e in range(d):
                ve = V[vi, e]
                for f in range(d):
                    Ao[r, e, f] -= ve * F[a + i, f]
                uo[r, e] += ve * sol[a + i]
        for e in range(d):
            for f in range(e):
                s = 0.5 * (Ao[r, e, f] + Ao[r, f, e])
                Ao[r, e, f] = s
                Ao[r, f, e] = s


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def posterior(AoT, uoT, base, hx, prec, eta, const, lp, yhat, Pinv, Hy):
    """Per (row, component): P = prec_k + Ao_n (Cholesky), Pinv, yhat = Pinv (eta_k + uo_n),
    lp = base + const_k + d/2 log 2 pi - log|P| / 2 + b^T yhat / 2 and the entropies Hy.

    Rows are factorised 64 at a time, the row innermost (AoT (d, d, n), uoT (d, n)), so that
    every step of the d x d Cholesky factorisation is a loop over rows the compiler vectorises.
    """
    n, K, d = yhat.shape
    B = 64
    L = np.empty((d, d, B))
    Li = np.empty((d, d, B))
    PI = np.empty((d, d, B))
    bb = np.empty((d, B))
    s = np.empty(B)
    logdet = np.empty(B)
    det = np.empty(B)
    q = np.empty(B)
    for r0 in range(0, n, B):
        nb = min(B, n - r0)
        for k in range(K):
            logdet[:nb] = 0.0
            det[:nb] = 1.0
            for j in range(d):
                pj = prec[k, j, j]
                for b in range(nb):
                    s[b] = pj + AoT[j, j, r0 + b]
                for t in range(j):
                    for b in range(nb):
                        s[b] -= L[j, t, b] * L[j, t, b]
                for b in range(nb):
                    v = max(s[b], 1e-300)
                    L[j, j, b] = math.sqrt(v)
                    Li[j, j, b] = 1.0 / L[j, j, b]
                    det[b] *= v
                if j % 4 == 3 or j == d - 1:  # the pivots' product, logged every 4: no overflow
                    for b in range(nb):
                        logdet[b] += math.log(det[b])
                        det[b] = 1.0
                for i in range(j + 1, d):
                    pij = prec[k, i, j]
                    for b in range(nb):
                        s[b] = pij + AoT[i, j, r0 + b]
                    for t in range(j):
                        for b in range(nb):
                            s[b] -= L[i, t, b] * L[j, t, b]
                    for b in range(nb):
                        L[i, j, b] = s[b] * Li[j, j, b]
            # L^{-1} by forward substitution, then P^{-1} = L^{-T} L^{-1}
            for j in range(d):
                for i in range(j + 1, d):
                    s[:nb] = 0.0
                    for t in range(j, i):
                        for b in range(nb):
                            s[b] += L[i, t, b] * Li[t, j, b]
                    for b in range(nb):
                        Li[i, j, b] = -s[b] * Li[i, i, b]
            for i in range(d):
                for j in range(i + 1):
                    s[:nb] = 0.0
                    for t in range(i, d):
                        for b in range(nb):
                            s[b] += Li[t, i, b] * Li[t, j, b]
                    for b in range(nb):
                        PI[i, j, b] = s[b]
                        PI[j, i, b] = s[b]
            for i in range(d):
                e = eta[k, i]
                for b in range(nb):
                    bb[i, b] = e + uoT[i, r0 + b]
            q[:nb] = 0.0
            for i in range(d):
                s[:nb] = 0.0
                for j in range(d):
                    for b in range(nb):
                        s[b] += PI[i, j, b] * bb[j, b]
                for b in range(nb):
                    yhat[r0 + b, k, i] = s[b]
                    q[b] += bb[i, b] * s[b]
            for b in range(nb):
                r = r0 + b
                for i in range(d):
                    for j in range(d):
                        Pinv[r, k, i, j] = PI[i, j, b]
                lp[r, k] = base[r] + const[k] + 0.5 * d * _LOG_2PI - 0.5 * logdet[b] + 0.5 * q[b]
                Hy[r, k] = 0.5 * d * (1.0 + _LOG_2PI) - 0.5 * logdet[b] + hx[r]


@njit(nogil=True, cache=True, inline="always", error_model="numpy", fastmath=_FLAGS)
def _add_holes(t, r, rho, m1, M2, xs0, cols, a, c, cbase, F, am, cinv, full, Fm, G, out, sxd, sxf):
    """What row r's holes add to target t of the layer's sums, from the row's weighted latent
    moments rho = sum w, m1 = sum w yhat, M2 = sum w E[y y^T] (sums over the components the
    target pools): with z = am + F yhat, sum w z = rho am + F m1, sum w E[x_m y^T] =
    am m1^T + F M2, sum w E[x_m x_m^T] = F M2 F^T + am (F m1)^T + (F m1) am^T + rho (am am^T
    + Q_mm^{-1})."""
    sx, sxy = out[3], out[4]
    d = m1.size
    p = xs0.shape[1]
    for i in range(c):
        v = 0.0
        for e in range(d):
            v += F[a + i, e] * m1[e]
        Fm[i] = v
        for e in range(d):
            v = 0.0
            for f in range(d):
                v += F[a + i, f] * M2[f, e]
            G[i, e] = v
    for i in range(c):
        ci = cols[a + i]
        zi = rho * am[a + i] + Fm[i]
        sx[t, ci] += zi
        for e in range(d):
            sxy[t, ci, e] += am[a + i] * m1[e] + G[i, e]
        for j in range(c if full else i + 1):
            if not full and j != i:
                continue
            v = am[a + i] * Fm[j] + Fm[i] * am[a + j] + rho * am[a + i] * am[a + j]
            v += rho * (cinv[cbase + i * c + j] if full else cinv[ci])
            for e in range(d):
                v += G[i, e] * F[a + j, e]
            if full:
                sxf[t, ci, cols[a + j]] += v
            else:
                sxd[t, ci] += v
        if full:  # the cross terms xs0 z^T + z xs0^T (xs0 is 0 at the holes)
            for q in range(p):
                u = zi * xs0[r, q]
                sxf[t, ci, q] += u
                sxf[t, q, ci] += u


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_FLAGS)
def hole_stats(
    resp, yhat, Pinv, Hy, xs0, cols, offs, coffs, F, am, cinv, full, pooled, out, sxd, sxf
):
    """The incomplete rows' latent statistics and what their holes add to the layer's.

    out = (y (K, d), yy (K, d, d), H (K,), sx (T, p), sxy (T, p, d)); the holes' second
    moments go to sxf (T, p, p) with the cross terms xs0 z^T + z xs0^T when ``full`` (``cinv``
    ragged), else their diagonal to sxd (T, p) (``cinv``: Psi's diagonal (p,)). T = K, or 1
    with ``pooled`` (the mass split only needs the sums over the components: the holes then
    cost O(c d^2) a row instead of O(K c d^2)). xs0's own sums are the caller's GEMMs.
    """
    y, yy, H = out[0], out[1], out[2]
    n, K, d = yhat.shape
    cmax = 1
    for r in range(n):
        cmax = max(cmax, offs[r + 1] - offs[r])
    Fm = np.empty(cmax)
    G = np.empty((cmax, d))
    m1 = np.empty(d)
    M2 = np.empty((d, d))
    P1 = np.zeros(d)
    P2 = np.zeros((d, d))
    for r in range(n):
        a = offs[r]
        c = offs[r + 1] - a
        rho = 0.0
        P1[:] = 0.0
        P2[:] = 0.0
        for k in range(K):
            w = resp[r, k]
            if w == 0.0:
                continue
            H[k] += w * Hy[r, k]
            for i in range(d):
                m1[i] = w * yhat[r, k, i]
                y[k, i] += m1[i]
                for j in range(d):
                    v = w * (Pinv[r, k, i, j] + yhat[r, k, i] * yhat[r, k, j])
                    M2[i, j] = v
                    yy[k, i, j] += v
            if pooled:
                rho += w
                P1 += m1
                P2 += M2
            else:
                _add_holes(
                    k, r, w, m1, M2, xs0, cols, a, c, coffs[r], F, am, cinv, full, Fm, G,
                    out, sxd, sxf,
                )  # fmt: skip
        if pooled:
            _add_holes(
                0, r, rho, P1, P2, xs0, cols, a, c, coffs[r], F, am, cinv, full, Fm, G,
                out, sxd, sxf,
            )  # fmt: skip
