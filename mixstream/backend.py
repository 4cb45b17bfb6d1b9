"""Array namespaces: numpy on the host, cupy on a GPU.

Model code asks this module for the namespace of its data (``get_namespace``) and for the
special functions that go with it (``special``), so the same local step runs on either device.
Host <-> device moves happen here and nowhere else.
"""

from __future__ import annotations

import importlib
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import scipy.special as _sps

from mixstream import _kernels
from mixstream.vocabulary import BACKENDS


def _cupy() -> ModuleType | None:
    try:
        return importlib.import_module("cupy")
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None


def gpu_available() -> bool:
    """True when cupy imports and sees at least one CUDA device."""
    cp = _cupy()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_backend(name: str) -> str:
    """Map a user's backend name to "numpy" or "cupy", failing loudly where cupy cannot run.

    Parameters
    ----------
    name : {"numpy", "cupy", "auto"}
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "numpy":
        return "numpy"
    if name == "auto":
        return "cupy" if gpu_available() else "numpy"
    if _cupy() is None:
        raise RuntimeError(
            "backend='cupy' needs the cupy package: install mixstream[gpu] "
            "(cupy-cuda12x) on a machine with a CUDA GPU, or use backend='numpy'"
        )
    if not gpu_available():
        raise RuntimeError(
            "backend='cupy' was asked for but no CUDA device is visible "
            "(cupy.cuda.runtime.getDeviceCount() found none); use backend='numpy' or 'auto'"
        )
    return "cupy"


def namespace(backend: str) -> ModuleType:
    """The array module for a resolved backend name."""
    if backend == "numpy":
        return np
    return importlib.import_module("cupy")


def get_namespace(*arrays: Any) -> ModuleType:
    """The array module (numpy or cupy) that owns ``arrays``."""
    cp = None
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            cp = cp or _cupy()
            return cp
    return np


def special(xp: ModuleType) -> SimpleNamespace:
    """digamma, gammaln, logsumexp and xlogy for the namespace ``xp``."""
    if xp is np:
        return SimpleNamespace(
            digamma=_sps.digamma,
            gammaln=_sps.gammaln,
            multigammaln=_sps.multigammaln,
            xlogy=_sps.xlogy,
        )
    cps = importlib.import_module("cupyx.scipy.special")
    return SimpleNamespace(
        digamma=cps.digamma, gammaln=cps.gammaln, multigammaln=cps.multigammaln, xlogy=cps.xlogy
    )


def to_host(a: Any) -> np.ndarray:
    """A numpy copy (or view) of ``a``, whichever device it lives on."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_device(a: Any, xp: ModuleType) -> Any:
    """``a`` as an array of namespace ``xp`` (a host -> device copy for cupy)."""
    if xp is np:
        return to_host(a)
    return xp.asarray(a)


def logsumexp_rows(log_prob: Any) -> tuple[Any, Any]:
    """Normalise log-probabilities row by row.

    Parameters
    ----------
    log_prob : array (N, K)
        Unnormalised log-probabilities; overwritten with log responsibilities.

    Returns
    -------
    log_norm : array (N,)
        log sum_k exp(log_prob[n, k]).
    log_resp : array (N, K)
        log_prob - log_norm[:, None] (the same buffer as ``log_prob``).
    """
    fused = _kernels.softmax(log_prob, want_resp=False)
    if fused is not None:
        return fused[0], fused[1]
    xp = get_namespace(log_prob)
    row_max = log_prob.max(axis=1)
    # a row of all -inf (cannot happen with finite params) would give nan; keep it finite
    row_max = xp.where(xp.isfinite(row_max), row_max, 0.0)
    log_prob -= row_max[:, None]
    log_norm = xp.log(xp.exp(log_prob).sum(axis=1))
    log_prob -= log_norm[:, None]
    log_norm += row_max
    return log_norm, log_prob


def softmax_rows(log_prob: Any) -> tuple[Any, Any, Any]:
    """``logsumexp_rows`` and the responsibilities themselves, with one exp pass, not two.

    Parameters
    ----------
    log_prob : array (N, K)
        Unnormalised log-probabilities; overwritten with log responsibilities.

    Returns
    -------
    log_norm : array (N,)
    log_resp : array (N, K), the same buffer as ``log_prob``
    resp : array (N, K), exp(log_resp); rows sum to 1
    """
    fused = _kernels.softmax(log_prob)
    if fused is not None:
        return fused
    xp = get_namespace(log_prob)
    row_max = log_prob.max(axis=1)
    row_max = xp.where(xp.isfinite(row_max), row_max, 0.0)
    log_prob -= row_max[:, None]
    resp = xp.exp(log_prob)
    total = resp.sum(axis=1)
    resp *= (1.0 / total)[:, None]
    log_total = xp.log(total)
    log_prob -= log_total[:, None]
    return log_total + row_max, log_prob, resp


def softmax_entropy_rows(log_prob: Any) -> tuple[Any, Any, Any, Any]:
    """``softmax_rows`` and, where the fused kernel runs, the assignment entropy of its rows.

    Returns
    -------
    log_norm (N,), log_resp (N, K), resp (N, K), as ``softmax_rows``; and Hresp (K,) =
    -sum_n r_nk log r_nk, summed in the kernel's last pass, or None where the kernel does not
    apply (the caller then computes it from log_resp).
    """
    fused = _kernels.softmax(log_prob, want_entropy=True)
    if fused is not None:
        return fused
    return (*softmax_rows(log_prob), None)


def softmax_entropy_rows_float32(log_prob: Any) -> tuple[Any, Any, Any, Any, Any] | None:
    """``softmax_entropy_rows`` of float32 log-probabilities (a float32 GEMM's, (N, K) C- or
    F-contiguous) in float64 arithmetic, with float32 resp; None where the fused kernel does
    not apply (the caller widens them to float64 and runs ``softmax_entropy_rows``).

    Returns
    -------
    log_norm (N,) float64, log_resp (N, K) float32 (the buffer of ``log_prob``), resp (N, K)
    float32, Hresp (K,) float64, N (K,) float64: the resp summed over rows before rounding.
    """
    return _kernels.softmax_float32(log_prob)
