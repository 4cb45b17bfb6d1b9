"""The fused Gaussian local step + summary: one numba kernel per unit of rows.

``Model.local_summarize`` runs the local step (features, log-prob GEMM, softmax) and the
summary (statistics GEMM) block by block. For complete rows on the host, with the usual summary
(entropy, no row weights, no merge pairs), ``fused_summary`` runs all four phases in one
compiled loop (``_kernels.gauss_summary``) over blocks of about a hundred rows: the features,
log-probs and responsibilities of a block stay in L2, the GEMMs go through BLAS without Python
between them, and only the float64 sums come back. On the benchmark machine this is 1.2-1.7x
the blocked numpy path (docs/benchmarks.md, "The local step against the GEMM rate").

The statistics are those of ``calc_stats`` on the softmax of ``log_prob``: the same GEMMs in the
same precision (``compute_dtype``), softmax and entropy in float64, float64 sums over blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream import _kernels
from mixstream.backend import get_namespace, to_host
from mixstream.obs.gauss.missing import find_missing
from mixstream.parallel import map_ordered

#: feature cells (W x rows) of one block. Measured on the benchmark machine (1 MiB L2):
#: 96-128 rows at W = 153 (D = 16 full) and 256-512 at W = 33 (diag) are the fastest in both
#: dtypes, 10-25% ahead of 4x longer blocks; at W = 2145 (D = 64 full) 16-256 rows run alike
BLOCK_CELLS = 1 << 14
#: fewest rows per unit of work (a unit costs about 50 us of Python; 8192 rows about 1-3 ms);
#: a batch is cut into at most ``MAX_UNITS`` units. The units depend on the batch's rows, never
#: on the threads, and their sums are added in order: the result does not depend on threads
UNIT_ROWS = 1 << 13
MAX_UNITS = 64


def block_rows(width: int) -> int:
    """Rows per block for features of ``width`` columns."""
    return max(64, BLOCK_CELLS // width)


def unit_rows(n: int) -> int:
    """Rows per unit of work for a batch of ``n`` rows."""
    return max(UNIT_ROWS, -(-n // MAX_UNITS))


def kernel_inputs(obs: Any, bias: Any) -> tuple[np.ndarray, int] | None:
    """(theta_t (K, W) in the step's dtype, with the bias (K,) added to its constant column,
    and the rows per block); None for a bias of -inf (a DP MAP weight of 0: the two-verb path
    sets that column after its GEMM)."""
    bias = np.asarray(to_host(bias), np.float64)
    if not np.isfinite(bias).all():
        return None
    theta = obs._theta.copy()
    theta[0] += bias
    theta_t = np.ascontiguousarray(theta.T, dtype=obs._dtype(np))
    return theta_t, block_rows(theta_t.shape[1])


def fused_summary(obs: Any, X: Any, bias: Any) -> tuple[dict[str, Any], float] | None:
    """The statistics of X under ``obs`` with the responsibilities of ``log_prob(X, bias)``.

    Parameters
    ----------
    obs : GaussObs with parameters
    X : array (N, D)
    bias : array (K,)
        The log weights, added to every row's log-probabilities.

    Returns
    -------
    (fields, log_norm): "N" (K,), "x" (K, D), "xx" and "Hresp" (K,), float64, and the sum of
    the rows' log normalisers; or None where this path does not apply (a device array, data
    neither float32 nor float64, tied full covariances, rows with NaN to marginalise, a
    weight of zero, no components, numba off): the caller runs the local step and the
    summary one after the other.
    """
    cs = obs.covariance_structure
    if cs.one_quadratic_form or get_namespace(X) is not np or not _kernels.enabled():
        return None
    if not isinstance(X, np.ndarray) or X.ndim != 2 or not X.flags.c_contiguous:
        return None
    if X.dtype not in (np.float32, np.float64) or obs.K == 0:
        return None
    obs._require_params()
    if obs.missing == "marginalize" and find_missing(X, np) is not None:
        return None
    inputs = kernel_inputs(obs, bias)
    if inputs is None:
        return None
    theta_t, block = inputs
    n = X.shape[0]
    rows = unit_rows(n)

    def unit(start: int) -> tuple | None:
        stop = min(start + rows, n)
        return _kernels.gauss_summary(X, start, stop, obs.shift, theta_t, cs.structure, block)

    parts = map_ordered(unit, range(0, n, rows))
    if any(p is None for p in parts):
        return None
    T, Nk, H, log_norm = parts[0]
    for t, nk, h, ln in parts[1:]:  # left to right: a fixed order
        T, Nk, H, log_norm = T + t, Nk + nk, H + h, log_norm + ln
    D = obs.n_features
    fields = {"N": Nk, "x": T[1 : 1 + D].T, "xx": cs.stats_xx(T, D), "Hresp": H}
    return fields, log_norm
