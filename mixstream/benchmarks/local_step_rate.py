"""The Gaussian local step + summary against the GEMM rate, per phase, float64 and float32.

For each covariance type and data dtype (the model's ``compute_dtype`` follows the data), this
prints the achieved GFLOP/s of ``Model.local_summarize`` over all rows (the local step and the
summary: both products counted, ``core_vs_sklearn.local_step_flops`` each), beside two measured
GEMM rates of the same dtype:

- "square": numpy matmul of 2048 x 2048 matrices, BLAS on every thread (the machine's peak);
- "same shapes": only the step's two products, (K x W) @ (W x B) and (W x B) @ (B x K) with
  W = 1 + D + F features and B rows per block, over the same blocks and threads as the step
  (what a step with free element-wise work would reach).

Then one thread's time per phase over the same blocks: features, log-prob GEMM, softmax with
entropy, statistics (the second GEMM and its float64 sums).

    python -m mixstream.benchmarks.local_step_rate          # 1,000,000 x 16, K=32
    python -m mixstream.benchmarks.local_step_rate --n 100000 --cov diag --dtype float32
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import numpy as np

from mixstream.alloc import FiniteAlloc
from mixstream.backend import softmax_entropy_rows, softmax_entropy_rows_float32
from mixstream.benchmarks.core_vs_sklearn import (
    best_of,
    local_step_flops,
    make_data,
    time_phases,
)
from mixstream.learn.kmeans import kmeans_plusplus, nearest
from mixstream.model import _BLOCK_CELLS as BLOCK_CELLS
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs
from mixstream.parallel import get_num_threads, map_ordered

PHASES = ("features", "log-prob GEMM", "softmax + entropy", "statistics")


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


def block_rows(model: Model) -> int:
    """Rows per block of ``local_summarize`` (its own formula)."""
    return max(256, BLOCK_CELLS // (model.K + model.obs.cache_width()))


def same_shape_gemm_rate(model: Model, n: int, block: int, dtype: Any, flops: float) -> float:
    """GFLOP/s of the step's two products alone, same blocks, threads and dtype as the step."""
    rng = np.random.default_rng(0)
    width = 1 + model.obs.n_features + model.obs._n_quad()
    feat = rng.normal(size=(width, block)).astype(dtype)
    theta_t = rng.normal(size=(model.K, width)).astype(dtype)
    resp = rng.random((block, model.K)).astype(dtype)

    def two(start: int) -> None:
        f = feat[:, : min(block, n - start)]
        theta_t @ f
        f @ resp[: f.shape[1]]

    return 2 * flops / best_of(lambda: map_ordered(two, range(0, n, block))) / 1e9


def phases(model: Model, X: np.ndarray, block: int) -> dict[str, float] | None:
    """Seconds per phase over all of X, one thread, the blocks of ``local_summarize``; None
    where the observation model no longer has the pieces this reads (features, theta)."""

    def softmax(st: dict[str, Any]) -> None:
        lp = st["lp"]  # float32 for a float32 model, as local_summarize normalises it
        fused = softmax_entropy_rows_float32(lp) if lp.dtype == np.float32 else None
        st["resp"] = (fused or softmax_entropy_rows(lp))[2]

    def statistics(st: dict[str, Any]) -> None:
        model.obs.calc_stats(st["X"], st["resp"], {"gauss/features": st["feat"]})

    later = [(PHASES[2], softmax), (PHASES[3], statistics)]
    return time_phases(model, X, block, later, narrow=True)


def measure(X: np.ndarray, k: int, cov: str, dtype: str, square: int = 2048) -> dict[str, Any]:
    """Every number of one (covariance, dtype) case."""
    n, d = X.shape
    Xd = np.ascontiguousarray(X, dtype=dtype)
    model = build_model(X, k, cov, dtype)
    block = block_rows(model)
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
        "same_shapes": same_shape_gemm_rate(model, n, block, np.dtype(dtype), flops),
        "phases": phases(model, Xd, block),
    }


def report(r: dict[str, Any]) -> None:
    g = r["gflops"]
    print(
        f"{r['cov']:<6}{r['dtype']:<9}{r['seconds']:>9.3f}{g:>9.1f}{r['square']:>9.1f}"
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
        f"{'cov':<6}{'dtype':<9}{'seconds':>9}{'GFLOP/s':>9}{'square':>9}{'of it':>8}"
        f"{'shapes':>9}{'of it':>8}"
    )
    for r in rows:
        report(r)
    print("\none thread, same blocks, seconds per phase:")
    print(f"{'cov':<6}{'dtype':<9}" + "".join(f"{ph:>19}" for ph in PHASES))
    for r in rows:
        ph = r["phases"]
        cells = "".join(f"{ph[x]:>19.3f}" for x in PHASES) if ph else "  (not available)"
        print(f"{r['cov']:<6}{r['dtype']:<9}{cells}")
    return rows


if __name__ == "__main__":
    main()
