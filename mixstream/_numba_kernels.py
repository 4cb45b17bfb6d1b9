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


@njit(inline="always", fastmath=_FLAGS)
def exp_nonpos(x):
    """exp(x) for x <= 0 to 1 ulp; exactly 0 below -708 (where exp is subnormal)."""
    v = max(x, -708.0)
    kd = v * _LOG2E + _SHIFT
    n = kd - _SHIFT
    r = (v - n * _LN2_HI) - n * _LN2_LO  # |r| <= log(2) / 2
    p = 1.0 / 6227020800.0  # Taylor series to r**13: truncation below 1e-17
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _as_float((_as_int(kd) - _SHIFT_BITS + 1023) << 52)  # 2 ** n
    return p * scale if x >= -708.0 else 0.0


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def softmax_kn(L, R, log_norm):
    """L (K, N): log-probs in, log-resp out; R (K, N) or None: resp; log_norm (N,)."""
    K, N = L.shape
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
    for k in range(K):
        for n in range(N):
            L[k, n] -= m[n]
            if R is not None:
                R[k, n] *= s[n]


@njit(nogil=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def softmax_nk(L, R, log_norm):
    """As softmax_kn for L, R of shape (N, K), C-contiguous."""
    N, K = L.shape
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
