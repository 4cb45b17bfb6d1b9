"""Fused host kernels of the local step (numba).

- ``softmax``: numpy evaluates float64 ``exp`` one element at a time on CPUs without AVX-512,
  and a softmax written with numpy makes five passes over the (N, K) log-probabilities. On the
  benchmark's machine that was half the local step, more than the GEMM that produces the
  log-probabilities. The kernel does the whole normalisation (row max, exp, row sums,
  responsibilities, log responsibilities, log normaliser, and optionally the assignment
  entropy) in three passes, with an exp that vectorises.
- ``center_features``: the centred rows (and their squares) of a Gaussian local step from
  row-major data in one tiled pass, where numpy reads the data transposed (a strided pass).
- ``gauss_summary``: the whole Gaussian local step and summary (features, both GEMMs through
  the BLAS that numba links, softmax, entropy) over blocks of a few hundred rows, so that the
  features and the responsibilities stay in L2 and no Python runs between the phases.

numba is a dependency, but the kernels stay optional: when numba cannot be imported, or
``MIXSTREAM_NUMBA=0`` is set, they return None / False and the caller's numpy code runs. The
results agree with numpy's to a few ulps (tests/unit/test_kernels.py).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

_kernels: Any = None  # the compiled functions, or False when numba is unavailable / disabled


def enabled() -> bool:
    """True when the numba kernels are in use in this process."""
    return _get() is not False


def softmax(
    log_prob: np.ndarray, want_resp: bool = True, want_entropy: bool = False
) -> tuple | None:
    """Normalise float64 log-probabilities (N, K) row by row, in place; None if not applicable.

    Parameters
    ----------
    log_prob : ndarray (N, K), float64, C- or F-contiguous
        Overwritten with the log responsibilities.
    want_resp : bool
        Also return the responsibilities exp(log_resp).
    want_entropy : bool
        Also return Hresp (K,) = -sum_n r_nk log r_nk, summed in the same pass (needs
        ``want_resp``); otherwise the tuple has three items.

    Returns
    -------
    (log_norm (N,), log_resp (N, K), resp (N, K) or None[, Hresp (K,)]), or None when the
    kernels are off or the array is not a contiguous float64 host array (the caller then runs
    numpy).
    """
    if not isinstance(log_prob, np.ndarray) or log_prob.dtype != np.float64:
        return None
    if log_prob.ndim != 2 or log_prob.size == 0:
        return None
    k = _get()
    if k is False:
        return None
    n_rows, n_cols = log_prob.shape
    log_norm = np.empty(n_rows)
    H = np.empty(n_cols) if want_entropy and want_resp else None
    if log_prob.flags.f_contiguous:  # (K, N) in memory: vectorise over rows
        resp = np.empty_like(log_prob, order="F") if want_resp else None
        k.softmax_kn(log_prob.T, None if resp is None else resp.T, log_norm, H)
    elif log_prob.flags.c_contiguous:
        resp = np.empty_like(log_prob, order="C") if want_resp else None
        k.softmax_nk(log_prob, resp, log_norm, H)
    else:
        return None
    if want_entropy:
        return log_norm, log_prob, resp, H
    return log_norm, log_prob, resp


def softmax_float32(log_prob: Any) -> tuple | None:
    """``softmax(log_prob, want_entropy=True)`` for float32 log-probabilities of a float32 GEMM,
    computed in float64 (as if widened first), with float32 outputs where the float32 step
    reads them; None if not applicable (the caller widens and runs ``softmax``).

    Parameters
    ----------
    log_prob : ndarray (N, K), float32, C- or F-contiguous
        Overwritten with the log responsibilities (float32).

    Returns
    -------
    (log_norm (N,) float64, log_resp (N, K) float32, resp (N, K) float32 in the layout of
    ``log_prob``, Hresp (K,) float64, N (K,) float64 = sum_n r_nk of the float64 resp), or
    None when the kernels are off or the array is not a contiguous float32 host array.
    """
    if not isinstance(log_prob, np.ndarray) or log_prob.dtype != np.float32:
        return None
    if log_prob.ndim != 2 or log_prob.size == 0:
        return None
    k = _get()
    if k is False:
        return None
    n_rows, n_cols = log_prob.shape
    log_norm, H, Nk = np.empty(n_rows), np.empty(n_cols), np.empty(n_cols)
    if log_prob.flags.c_contiguous:
        resp = np.empty_like(log_prob, order="C")
        k.softmax_nk32(log_prob, resp, log_norm, H, Nk)
    elif log_prob.flags.f_contiguous:
        resp = np.empty_like(log_prob, order="F")
        scratch = np.empty((n_cols, n_rows))  # exp in float64, as the float64 kernel keeps it
        k.softmax_kn32(log_prob.T, scratch, resp.T, log_norm, H, Nk)
    else:
        return None
    return log_norm, log_prob, resp, H, Nk


#: rows per tile of ``center_features`` over a whole batch: a tile's rows of X and its
#: feature columns stay in cache while the rows are written feature-major
_FEATURE_TILE = 64
#: the ``squares`` argument of the numba kernel, by Gaussian covariance structure
_SQUARES = {"full": 0, "diag": 1, "spherical": 2}


def center_features(X: Any, shift: np.ndarray, out: np.ndarray, structure: str) -> bool:
    """Fill the first feature rows of a Gaussian local step; False when not applicable.

    ``out`` (W, N) float64 gets 1, y = X - shift (D rows) and, for "diag" the D squares y_d**2,
    for "spherical" the row sum_d y_d**2; for "full" only 1 and y (the caller adds the
    products). False (nothing written) when the kernels are off or X is not a C-contiguous
    float32/float64 host array; the caller then runs numpy.
    """
    if not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.float64):
        return False
    if X.ndim != 2 or not X.flags.c_contiguous or X.shape[0] == 0:
        return False
    k = _get()
    if k is False:
        return False
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    k.center_features(X, shift, out, _SQUARES[structure], _FEATURE_TILE)
    return True


def gauss_summary(
    X: Any,
    start: int,
    stop: int,
    shift: np.ndarray,
    theta_t: np.ndarray,
    structure: str,
    block: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """The Gaussian local step and its summary over rows ``start:stop`` of X, in one kernel.

    Parameters
    ----------
    X : ndarray (N, D), float32 or float64, C-contiguous, complete rows
    shift : ndarray (D,)
        Subtracted from the rows before the features are formed (in float64).
    theta_t : ndarray (K, W), float32 or float64, C-contiguous
        log p(x | k) + bias = theta_t @ [1, y, q(y)]; its dtype is the GEMMs' precision.
    structure : "full", "diag" or "spherical"
        Which quadratic features q(y) theta_t's last W - 1 - D columns weigh.
    block : int
        Rows per block.

    Returns
    -------
    (T (W, K), N (K,), Hresp (K,), sum of log normalisers), float64 sums: T = F @ resp with
    F (W, rows) the features, N and Hresp from the float64 resp; or None when the kernels are
    off or an argument is not a contiguous float32 / float64 host array.
    """
    k = _get()
    if k is False or structure not in _SQUARES:
        return None
    for a in (X, theta_t):
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            return None
        if a.ndim != 2 or not a.flags.c_contiguous:
            return None
    K, W = theta_t.shape
    T, Nk, H = np.zeros((W, K)), np.zeros(K), np.zeros(K)
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    squares = _SQUARES[structure]
    log_norm = k.gauss_summary(X, start, stop, shift, theta_t, squares, block, T, Nk, H)
    return T, Nk, H, float(log_norm)


def _get() -> Any:
    global _kernels
    if _kernels is None:
        if os.environ.get("MIXSTREAM_NUMBA", "1").strip() in ("0", "false", "no", "off"):
            _kernels = False
        else:
            try:
                _kernels = _compile()
            except ImportError:
                _kernels = False
    return _kernels


def _compile() -> Any:
    from mixstream import _numba_kernels  # compiles (or loads from numba's cache) on import

    return _numba_kernels
