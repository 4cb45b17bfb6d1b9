"""Fused host kernels for the row-wise normalisation of the local step (numba).

numpy evaluates float64 ``exp`` one element at a time on CPUs without AVX-512, and a softmax
written with numpy makes five passes over the (N, K) log-probabilities. On the benchmark's
machine that was half the local step, more than the GEMM that produces the log-probabilities.
These kernels do the whole normalisation (row max, exp, row sums, responsibilities, log
responsibilities, log normaliser) in three passes, with an exp that vectorises.

numba is a dependency, but the kernels stay optional: when numba cannot be imported, or
``MIXSTREAM_NUMBA=0`` is set, ``softmax`` returns None and the caller's numpy code runs. The
results agree with numpy's to a few ulps (tests/test_kernels.py).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

_kernels: Any = None  # the compiled functions, or False when numba is unavailable / disabled


def enabled() -> bool:
    """True when the numba kernels are in use in this process."""
    return _get() is not False


def softmax(log_prob: np.ndarray, want_resp: bool = True) -> tuple | None:
    """Normalise float64 log-probabilities (N, K) row by row, in place; None if not applicable.

    Parameters
    ----------
    log_prob : ndarray (N, K), float64, C- or F-contiguous
        Overwritten with the log responsibilities.
    want_resp : bool
        Also return the responsibilities exp(log_resp).

    Returns
    -------
    (log_norm (N,), log_resp (N, K), resp (N, K) or None), or None when the kernels are off or
    the array is not a contiguous float64 host array (the caller then runs numpy).
    """
    if not isinstance(log_prob, np.ndarray) or log_prob.dtype != np.float64:
        return None
    if log_prob.ndim != 2 or log_prob.size == 0:
        return None
    k = _get()
    if k is False:
        return None
    n_rows = log_prob.shape[0]
    log_norm = np.empty(n_rows)
    if log_prob.flags.f_contiguous:  # (K, N) in memory: vectorise over rows
        resp = np.empty_like(log_prob, order="F") if want_resp else None
        k.softmax_kn(log_prob.T, None if resp is None else resp.T, log_norm)
    elif log_prob.flags.c_contiguous:
        resp = np.empty_like(log_prob, order="C") if want_resp else None
        k.softmax_nk(log_prob, resp, log_norm)
    else:
        return None
    return log_norm, log_prob, resp


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
