"""The numba kernels behind ``mixstream._kernels`` (imported only when they are used).

Module-level functions, so that numba's on-disk cache (``cache=True``) serves every later
process: Dask workers and CLI runs load them in a fraction of a second instead of compiling.
"""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _as_int(typingctx, x):
    """Reinterpret a float64's bits as int64 (no conversion)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def _as_float(typingctx, x):
    """Reinterpret an int64's bits as float64."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


# no "reassoc": the rounding trick below, (v * log2e + SHIFT) - SHIFT, must not be folded
_FLAGS = {"contract", "nsz"}
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of log(2): n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer in the low bits
_SHIFT_BITS = np.int64(0x4338000000000000)


# Taylor coefficients 1/i! of exp(r), i = 0..13: on |r| <= log(2)/2 the truncation is under 1e-17
_C = (
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
)
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = _C


@njit(inline="always", fastmath=_FLAGS)
def exp_nonpos(x):
    """exp(x) for x <= 0 to 1 ulp; exactly 0 below -708 (where exp is subnormal)."""
    v = max(x, -708.0)
    kd = v * _LOG2E + _SHIFT
    n = kd - _SHIFT
    r = (v - n * _LN2_HI) - n * _LN2_LO  # |r| <= log(2) / 2
    # Estrin's scheme, not Horner's: a chain of 5 dependent multiply-adds instead of 14, so
    # the vectorised loop is bound by throughput rather than by FMA latency (1.3x faster)
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    b0 = (_C3 * r + _C2) * r2 + (_C1 * r + _C0)
    b1 = (_C7 * r + _C6) * r2 + (_C5 * r + _C4)
    b2 = (_C11 * r + _C10) * r2 + (_C9 * r + _C8)
    p = ((_C13 * r + _C12) * r4 + b2) * r8 + (b1 * r4 + b0)
    scale = _as_float((_as_int(kd) - _SHIFT_BITS + 1023) << 52)  # 2 ** n
    return p * scale if x >= -708.0 else 0.0


# the entropy sum below may be reassociated (summed in vector lanes): it holds no rounding trick
_SUM_FLAGS = _FLAGS | {"reassoc"}


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def softmax_kn(L, R, log_norm, H):
    """L (K, N): log-probs in, log-resp out; R (K, N) or None: resp; log_norm (N,);
    H (K,) or None: the assignment entropy -sum_n r_kn log r_kn (needs R)."""
    K, N = L.shape
    # the max with k outer: a pass with n outer is faster at some shapes (K=16, N=7710) but
    # 2-5x slower where the row stride is a multiple of 4 KiB (N=4096: every L[k, n] of one n
    # falls in the same L1 set) or K is large
    m = L[0].copy()
    for k in range(1, K):
        for n in range(N):
            m[n] = max(m[n], L[k, n])
    for n in range(N):
        if not np.isfinite(m[n]):  # a row of -inf: keep it finite, as numpy's path does
            m[n] = 0.0
    s = np.zeros(N)
    for k in range(K):
        for n in range(N):
            e = exp_nonpos(L[k, n] - m[n])
            if R is not None:
                R[k, n] = e
            s[n] += e
    for n in range(N):
        m[n] += np.log(s[n])
        log_norm[n] = m[n]
        s[n] = 1.0 / s[n]
    if R is None:
        for k in range(K):
            for n in range(N):
                L[k, n] -= m[n]
    else:
        _normalize_kn(L, R, m, s, H)


@njit(nogil=True, cache=True, fastmath=_SUM_FLAGS, error_model="numpy")
def _normalize_kn(L, R, log_norm, inv_sum, H):
    """L -= log_norm, R *= inv_sum (by column n) and, with H, H[k] = -sum_n R log R; a pass of
    its own so that the entropy sum vectorises (2.5x faster than an in-order sum)."""
    K, N = L.shape
    for k in range(K):
        h = 0.0
        for n in range(N):
            lr = L[k, n] - log_norm[n]
            r = R[k, n] * inv_sum[n]
            L[k, n] = lr
            R[k, n] = r
            # r = 0 (log r = -inf: a component left out of the step) adds no entropy
            h -= r * lr if r > 0.0 else 0.0
        if H is not None:
            H[k] = h


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def softmax_nk(L, R, log_norm, H):
    """As softmax_kn for L, R of shape (N, K), C-contiguous."""
    N, K = L.shape
    if H is not None:
        H[:] = 0.0
    for n in range(N):
        row = L[n]
        m = row[0]
        for k in range(1, K):
            m = max(m, row[k])
        if not np.isfinite(m):
            m = 0.0
        s = 0.0
        for k in range(K):
            e = exp_nonpos(row[k] - m)
            if R is not None:
                R[n, k] = e
            s += e
        m += np.log(s)
        log_norm[n] = m
        inv = 1.0 / s
        for k in range(K):
            row[k] -= m
            if R is not None:
                R[n, k] *= inv
                if H is not None:
                    H[k] -= R[n, k] * row[k] if R[n, k] > 0.0 else 0.0


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def center_features(X, shift, F, squares, tile):
    """The feature rows of a Gaussian local step, from row-major data in one pass.

    X (N, D) float32 or float64; shift (D,); F (W, N) float64, filled as F[0] = 1,
    F[1 + d] = y_d = X[:, d] - shift[d] and, by ``squares``: 0 nothing more (the caller adds
    the products), 1 F[1 + D + d] = y_d ** 2 (diag), 2 F[1 + D] = sum_d y_d ** 2 (spherical).
    Rows of X are read in tiles of ``tile`` rows, so both the reads and the transposed writes
    stay in cache (64 for a whole batch; a block already in L2 is one tile).
    """
    N, D = X.shape
    for a in range(0, N, tile):
        b = min(a + tile, N)
        for n in range(a, b):
            F[0, n] = 1.0
        if squares == 2:
            for n in range(a, b):
                F[1 + D, n] = 0.0
        for d in range(D):
            c = shift[d]
            for n in range(a, b):
                y = X[n, d] - c
                F[1 + d, n] = y
                if squares == 1:
                    F[1 + D + d, n] = y * y
                elif squares == 2:
                    F[1 + D, n] += y * y


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def softmax_kn32(L, R, R32, log_norm, H, Nk):
    """softmax_kn for float32 log-probs L (K, N) (a float32 GEMM's output), in float64: the row
    max, exp and sums as if L were widened first. L gets the log resp (float32); R (K, N)
    float64 is scratch for exp; R32 (K, N) float32 gets the resp; log_norm (N,), H (K,) and
    Nk (K,) = sum_n r_kn are float64 sums of the float64 resp."""
    N = L.shape[1]
    m, s = np.empty(N), np.empty(N)
    _block_exp(L, R, N, m, s)
    for n in range(N):
        m[n] += np.log(s[n])
        log_norm[n] = m[n]
        s[n] = 1.0 / s[n]
    _normalize_kn32(L, R, R32, m, s, H, Nk)


@njit(nogil=True, cache=True, fastmath=_SUM_FLAGS, error_model="numpy")
def _normalize_kn32(L, R, R32, log_norm, inv_sum, H, Nk):
    """_normalize_kn with float32 L and resp out, and the column sums Nk of the resp."""
    K, N = L.shape
    for k in range(K):
        h = 0.0
        t = 0.0
        for n in range(N):
            lr = np.float64(L[k, n]) - log_norm[n]
            r = R[k, n] * inv_sum[n]
            L[k, n] = lr
            R32[k, n] = r
            h -= r * lr if r > 0.0 else 0.0
            t += r
        H[k] = h
        Nk[k] = t


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _exp_row(row, m, e):
    """e[k] = exp(row[k] - m), float64: a function of its own, without "reassoc" (the
    rounding trick of exp_nonpos), called from a kernel that has it."""
    for k in range(row.shape[0]):
        e[k] = exp_nonpos(np.float64(row[k]) - m)


@njit(nogil=True, cache=True, fastmath=_SUM_FLAGS, error_model="numpy")
def softmax_nk32(L, R32, log_norm, H, Nk):
    """softmax_kn32 for L, R32 of shape (N, K), C-contiguous, one row at a time, vectorised
    over k (the row's sums in another order than softmax_kn32's: the same to rounding)."""
    N, K = L.shape
    H[:] = 0.0
    Nk[:] = 0.0
    e = np.empty(K)
    for n in range(N):
        row = L[n]
        m = np.float64(row[0])
        for k in range(1, K):
            m = max(m, np.float64(row[k]))
        if not np.isfinite(m):
            m = 0.0
        _exp_row(row, m, e)
        s = 0.0
        for k in range(K):
            s += e[k]
        m += np.log(s)
        log_norm[n] = m
        inv = 1.0 / s
        for k in range(K):
            lr = np.float64(row[k]) - m
            r = e[k] * inv
            row[k] = lr
            R32[n, k] = r
            H[k] -= r * lr if r > 0.0 else 0.0
            Nk[k] += r


# ---------------------------------------------------------------- the fused Gaussian summary
@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _block_features(X, a, n, shift, F, squares):
    """F (W, n) = [1, y, q(y)] of rows a..a+n of X: ``center_features``, then for full
    (``squares`` 0) the products y_i y_j, i <= j, of the stored y (so in float32 from the
    rounded y, as the numpy path multiplies them)."""
    center_features(X[a : a + n], shift, F, squares, n)
    if squares == 0:
        D = X.shape[1]
        off = 1 + D
        for d in range(D):
            for e in range(d, D):
                for i in range(n):
                    F[off, i] = F[1 + d, i] * F[1 + e, i]
                off += 1


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _block_exp(L, E, n, m, s):
    """Row max m (n,), E = exp(L - m) in float64 (K, n) and its row sums s (n,)."""
    K = L.shape[0]
    for i in range(n):
        m[i] = L[0, i]
    for k in range(1, K):
        for i in range(n):
            m[i] = max(m[i], np.float64(L[k, i]))
    for i in range(n):
        if not np.isfinite(m[i]):  # a row of -inf: keep it finite, as the numpy path does
            m[i] = 0.0
        s[i] = 0.0
    for k in range(K):
        for i in range(n):
            e = exp_nonpos(np.float64(L[k, i]) - m[i])
            E[k, i] = e
            s[i] += e


@njit(nogil=True, cache=True, fastmath=_SUM_FLAGS, error_model="numpy")
def _block_normalize(L, E, R, n, m, s, H, Nk):
    """R (n, K) = (E / s)^T (the resp, in R's dtype, rows by components: the statistics GEMM
    F @ R runs 1.4-1.5x faster with R row-major than with the transpose of a (K, n) array);
    adds the entropy and column sums of the float64 resp to H and Nk (K,); returns the sum of
    the rows' log normalisers m + log s."""
    K = L.shape[0]
    total = 0.0
    for i in range(n):
        m[i] += np.log(s[i])
        total += m[i]
        s[i] = 1.0 / s[i]
    for k in range(K):
        h = 0.0
        t = 0.0
        for i in range(n):
            lr = np.float64(L[k, i]) - m[i]
            r = E[k, i] * s[i]
            R[i, k] = r
            h -= r * lr if r > 0.0 else 0.0
            t += r
        H[k] += h
        Nk[k] += t
    return total


@njit(nogil=True, cache=True, fastmath=_SUM_FLAGS, error_model="numpy")
def _add_block(T, Tb):
    W, K = T.shape
    for w in range(W):
        for k in range(K):
            T[w, k] += Tb[w, k]


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def gauss_summary(X, start, stop, shift, theta_t, squares, block, T, Nk, H):
    """The Gaussian local step and summary of rows start..stop of X, block by block.

    Per block of ``block`` rows: the features F (W, b) (``_block_features``), the log-probs
    L = theta_t @ F (K, b) (BLAS, in the dtype of theta_t), the softmax in float64, and
    T += F @ R (W, K) with the resp R (b, K) in theta_t's dtype. Every buffer of a block fits in
    L2 at the usual shapes, so the features and the resp never go to memory. Adds into the
    float64 sums T (W, K), Nk (K,), H (K,) (column sums and entropy of the float64 resp) and
    returns the sum of the log normalisers.
    """
    K, W = theta_t.shape
    dt = theta_t.dtype
    F = np.empty((W, block), dt)
    L = np.empty((K, block), dt)
    R = np.empty((block, K), dt)
    E = np.empty((K, block))
    Tb = np.empty((W, K), dt)
    m = np.empty(block)
    s = np.empty(block)
    total = 0.0
    for a in range(start, stop, block):
        n = min(block, stop - a)
        if n < block:  # BLAS needs contiguous operands: buffers of the last block's width
            F = np.empty((W, n), dt)
            L = np.empty((K, n), dt)
            R = np.empty((n, K), dt)
        _block_features(X, a, n, shift, F, squares)
        np.dot(theta_t, F, L)
        _block_exp(L, E, n, m, s)
        total += _block_normalize(L, E, R, n, m, s, H, Nk)
        np.dot(F, R, Tb)
        _add_block(T, Tb)
    return total
