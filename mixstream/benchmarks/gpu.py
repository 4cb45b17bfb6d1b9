"""GPU throughput: the local step + summary in CuPy against the device's fp32 GEMM rate.

    python -m mixstream.benchmarks.gpu  # N=1e7, D=32, K=64, full and diag
    python -m mixstream.benchmarks.gpu --store /data/big.zarr --lap  # one lap over a store, K=64

Prints rows/s and achieved GFLOP/s for full and diagonal Gaussians with float32 data on the
device, with the local step in float32 and in float64 (statistics accumulate in float64 either
way), the device's measured fp32 GEMM rate, the same step
on the host limited to 2 BLAS threads, and optionally the seconds of one lap over a store.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def gemm_rate_gpu(cp, n: int = 8192, repeats: int = 5) -> float:
    a = cp.random.standard_normal((n, n), dtype=cp.float32)
    b = cp.random.standard_normal((n, n), dtype=cp.float32)
    a @ b
    cp.cuda.Device().synchronize()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        cp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def step_flops(n: int, d: int, k: int, cov: str) -> float:
    """Products of the local step and the summary: log-probabilities and resp^T features."""
    feats = d * (d + 1) / 2 + d if cov == "full" else 2 * d
    return 2 * 2.0 * n * k * feats


def build(cov: str, X, k: int, dtype: str = "float32"):
    from mixstream.alloc import DPAlloc
    from mixstream.backend import to_host
    from mixstream.learn.kmeans import kmeans_plusplus, nearest
    from mixstream.model import Model
    from mixstream.obs.gauss import GaussObs

    sample = to_host(X[:20000]).astype(np.float64)
    model = Model(DPAlloc(1.0), GaussObs(cov, compute_dtype=dtype))
    model.obs.set_prior_from_data(sample)
    model.uids = model.new_uids(k)
    labels = nearest(sample, kmeans_plusplus(sample, k, np.random.default_rng(0)))
    resp = np.zeros((sample.shape[0], k))
    resp[np.arange(sample.shape[0]), labels] = 1
    model.global_step(model.summarize(sample, {"resp": resp}))
    return model


def time_step(model, X, sync) -> float:
    model.local_summarize(X[: min(len(X), 100_000)])  # warm-up: kernels, caches
    sync()
    t = time.perf_counter()
    model.local_summarize(X)
    sync()
    return time.perf_counter() - t


def main() -> None:
    import cupy as cp
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--d", type=int, default=32)
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--cpu-n", type=int, default=500_000)
    p.add_argument("--store", default=None, help="Zarr store for --lap")
    p.add_argument("--lap", action="store_true")
    a = p.parse_args()

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=4.0, size=(a.k, a.d)).astype(np.float32)
    Xh = centers[rng.integers(a.k, size=a.n)] + rng.normal(size=(a.n, a.d)).astype(np.float32)
    Xd = cp.asarray(Xh)
    peak = gemm_rate_gpu(cp)
    sync = cp.cuda.Device().synchronize
    name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"device: {name}; fp32 GEMM {peak:,.0f} GFLOP/s")
    header = ("cov", "step", "GPU rows/s", "GFLOP/s", "of GEMM", "CPU(2) rows/s", "GPU/CPU")
    print("".join(f"{h:>{w}}" for h, w in zip(header, (6, 9, 14, 10, 9, 15, 9))))
    for cov in ("full", "diag"):
        for dtype in ("float32", "float64"):
            model = build(cov, Xd, a.k, dtype)
            t_gpu = time_step(model, Xd, sync)
            gfl = step_flops(a.n, a.d, a.k, cov) / t_gpu / 1e9
            host = build(cov, Xh[: a.cpu_n], a.k, dtype)
            with threadpool_limits(2):
                t_cpu = time_step(host, Xh[: a.cpu_n], lambda: None)
            r_gpu, r_cpu = a.n / t_gpu, a.cpu_n / t_cpu
            print(
                f"{cov:<6}{dtype:>9}{r_gpu:>14,.0f}{gfl:>10,.0f}{100 * gfl / peak:>8.0f}%"
                f"{r_cpu:>15,.0f}{r_gpu / r_cpu:>8.0f}x",
                flush=True,
            )

    if a.lap and a.store:
        from mixstream.data.zarr_source import ZarrSource
        from mixstream.engine.local import LocalExecutor
        from mixstream.learn.executor import summarize_batch

        source = ZarrSource(a.store, batch_size=2_000_000)
        model = build("full", Xd, a.k)
        ex = LocalExecutor(source, backend="cupy")
        t = time.perf_counter()
        SS = ex.map_sum(summarize_batch, model)
        model.global_step(SS)
        print(
            f"lap over {source.n_rows:,} x {source.n_features} (K={a.k} full): "
            f"{time.perf_counter() - t:.1f} s"
        )


if __name__ == "__main__":
    main()
