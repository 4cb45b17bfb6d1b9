"""The Gaussian local step + summary against the GEMM rate, per phase, float64 and float32.

For each covariance type and data dtype (the model's ``compute_dtype`` follows the data), this
prints the achieved GFLOP/s of ``Model.local_summarize`` over all rows (the local step and the
summary: both products counted, ``core_vs_sklearn.local_step_flops`` each), beside two measured
GEMM rates of the same dtype:

- "square": numpy matmul of 2048 x 2048 matrices, BLAS on every thread (the machine's peak);
- "same shapes": only the step's two products, (K x W) @ (W x B) and (W x B) @ (B x K) with
  W = 1 + D + F features and B rows per block (the fused kernel's blocks), through the same
  BLAS, units and threads as the step (what a step with free element-wise work would reach).

Then one thread's time per phase of the fused kernel (``obs/gauss/fused.py``) over the same
blocks, each phase looped alone in numba: features, log-prob GEMM, softmax with entropy,
statistics (the second GEMM and its float64 sums), and the whole kernel on one thread.

    python -m mixstream.benchmarks.local_step_rate          # 1,000,000 x 16, K=32
    python -m mixstream.benchmarks.local_step_rate --n 100000 --cov diag --dtype float32
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import numpy as np
from numba import njit

from mixstream import _kernels
from mixstream._numba_kernels import _add_block, _block_exp, _block_features, _block_normalize
from mixstream.alloc import FiniteAlloc
from mixstream.benchmarks.core_vs_sklearn import best_of, local_step_flops, make_data
from mixstream.learn.kmeans import kmeans_plusplus, nearest
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs
from mixstream.obs.gauss import fused as fused_step
from mixstream.parallel import get_num_threads, map_ordered

PHASES = ("features", "log-prob GEMM", "softmax + entropy", "statistics", "whole kernel")
#: the phase loop's codes for the two products alone (the "same shapes" rate)
_BOTH_GEMMS = 4


def square_gemm_rate(dtype: Any, n: int = 2048, repeats: int = 5) -> float:
    """Best n x n GEMM rate in ``dtype``, GFLOP/s, BLAS on its default threads."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(n, n)).astype(dtype) for _ in range(2))
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def build_model(X: np.ndarray, k: int, cov: str, dtype: str) -> Model:
    """An EM model at a k-means start, its local step in ``dtype``."""
    rng = np.random.default_rng(1)
    X64 = np.asarray(X[:50_000], np.float64)
    labels = nearest(X64, kmeans_plusplus(X64, k, rng))
    resp = np.zeros((X64.shape[0], k))
    resp[np.arange(X64.shape[0]), labels] = 1.0
    model = Model(FiniteAlloc(inference="em"), GaussObs(cov, inference="em", compute_dtype=dtype))
    model.obs.set_prior_from_data(X64)
    model.uids = model.new_uids(k)
    model.global_step(model.summarize(X64, {"resp": resp}))
    return model


def kernel_inputs(model: Model) -> tuple[np.ndarray, int, int]:
    """(theta_t (K, W), the kernel's ``squares`` code, rows per block), as fused.py makes them."""
    theta_t, block = fused_step.kernel_inputs(model.obs, model.alloc.log_weights())
    squares = _kernels._SQUARES[model.obs.covariance_structure.structure]
    return theta_t, squares, block


@njit(nogil=True)
def _phase_loop(X, start, stop, shift, theta_t, squares, block, phase):  # pragma: no cover
    """Run one phase of ``gauss_summary`` alone over the whole blocks of rows start..stop;
    the later phases read one real block's features, log-probs and resp (kept in cache, as
    in the kernel)."""
    K, W = theta_t.shape
    dt = theta_t.dtype
    F, L, R = np.empty((W, block), dt), np.empty((K, block), dt), np.empty((block, K), dt)
    E, Tb, T = np.empty((K, block)), np.empty((W, K), dt), np.zeros((W, K))
    m, s, Nk, H = np.empty(block), np.empty(block), np.zeros(K), np.zeros(K)
    _block_features(X, start, block, shift, F, squares)
    np.dot(theta_t, F, L)
    _block_exp(L, E, block, m, s)
    _block_normalize(L, E, R, block, m, s, H, Nk)
    for a in range(start, stop - block + 1, block):
        if phase == 0:
            _block_features(X, a, block, shift, F, squares)
        if phase == 1 or phase == 4:
            np.dot(theta_t, F, L)
        if phase == 2:
            _block_exp(L, E, block, m, s)
            _block_normalize(L, E, R, block, m, s, H, Nk)
        if phase == 3 or phase == 4:
            np.dot(F, R, Tb)
            _add_block(T, Tb)
    return T[0, 0]


def same_shape_gemm_rate(model: Model, X: np.ndarray, flops: float) -> float:
    """GFLOP/s of the step's two products alone: same blocks, units, threads and dtype."""
    theta_t, squares, block = kernel_inputs(model)
    n = X.shape[0]
    shift = np.asarray(model.obs.shift, np.float64)

    rows = fused_step.unit_rows(n)

    def unit(start: int) -> None:
        _phase_loop(X, start, min(start + rows, n), shift, theta_t, squares, block, _BOTH_GEMMS)

    units = range(0, n, rows)
    return 2 * flops / best_of(lambda: map_ordered(unit, units)) / 1e9


def phases(model: Model, X: np.ndarray) -> dict[str, float]:
    """Seconds per phase over all of X, one thread (BLAS too), the fused kernel's blocks."""
    from threadpoolctl import threadpool_limits

    theta_t, squares, block = kernel_inputs(model)
    n = X.shape[0]
    shift = np.asarray(model.obs.shift, np.float64)
    scale = n / max(block, n // block * block)  # the loop leaves out the last partial block
    out = {}
    with threadpool_limits(1):
        for code, name in enumerate(PHASES[:4]):
            _phase_loop(X, 0, 2 * block, shift, theta_t, squares, block, code)  # compile
            out[name] = scale * best_of(
                lambda c=code: _phase_loop(X, 0, n, shift, theta_t, squares, block, c)
            )
        structure = model.obs.covariance_structure.structure
        out[PHASES[4]] = best_of(
            lambda: _kernels.gauss_summary(X, 0, n, shift, theta_t, structure, block)
        )
    return out


def measure(X: np.ndarray, k: int, cov: str, dtype: str, square: int = 2048) -> dict[str, Any]:
    """Every number of one (covariance, dtype) case."""
    n, d = X.shape
    Xd = np.ascontiguousarray(X, dtype=dtype)
    model = build_model(X, k, cov, dtype)
    block = kernel_inputs(model)[2]
    model.local_summarize(Xd[: 4 * block])  # numba kernels compile outside the timing
    flops = local_step_flops(n, d, k, cov)
    seconds = best_of(lambda: model.local_summarize(Xd))
    return {
        "cov": cov,
        "dtype": dtype,
        "block": block,
        "seconds": seconds,
        "gflops": 2 * flops / seconds / 1e9,
        "square": square_gemm_rate(np.dtype(dtype), square),
        "same_shapes": same_shape_gemm_rate(model, Xd, flops),
        "phases": phases(model, Xd),
    }


def report(r: dict[str, Any]) -> None:
    g = r["gflops"]
    print(
        f"{r['cov']:<6}{r['dtype']:<9}{r['block']:>7}{r['seconds']:>9.3f}{g:>9.1f}{r['square']:>9.1f}"
        f"{100 * g / r['square']:>7.0f}%{r['same_shapes']:>9.1f}{100 * g / r['same_shapes']:>7.0f}%"
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--cov", nargs="+", default=["full", "diag"], choices=["full", "diag"])
    p.add_argument(
        "--dtype", nargs="+", default=["float64", "float32"], choices=["float64", "float32"]
    )
    p.add_argument("--square", type=int, default=2048, help="size of the square GEMM")
    a = p.parse_args(argv)
    X = make_data(a.n, a.d, a.k)
    rows = [measure(X, a.k, cov, dt, a.square) for cov in a.cov for dt in a.dtype]
    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
        f"numpy {np.__version__}; threads {get_num_threads()}"
    )
    print(f"data: N={a.n:,} D={a.d} K={a.k}; local step + summary (both products counted)\n")
    print(
        f"{'cov':<6}{'dtype':<9}{'block':>7}{'seconds':>9}{'GFLOP/s':>9}{'square':>9}{'of it':>8}"
        f"{'shapes':>9}{'of it':>8}"
    )
    for r in rows:
        report(r)
    print("\none thread (BLAS too), the fused kernel's blocks, seconds per phase over all rows:")
    print(f"{'cov':<6}{'dtype':<9}" + "".join(f"{ph:>19}" for ph in PHASES))
    for r in rows:
        ph = r["phases"]
        cells = "".join(f"{ph[x]:>19.3f}" for x in PHASES) if ph else "  (not available)"
        print(f"{r['cov']:<6}{r['dtype']:<9}{cells}")
    return rows


if __name__ == "__main__":
    main()
