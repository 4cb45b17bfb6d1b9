"""Core speed: mixstream EM / VB beside scikit-learn from the same starting point.

Prints seconds per iteration for both and their ratio, and the achieved GFLOP/s of mixstream's
local step against this machine's measured float64 GEMM rate.

    python -m mixstream.benchmarks.core_vs_sklearn  # 1,000,000 x 16, K=32, full covariance
    python -m mixstream.benchmarks.core_vs_sklearn --n 200000 --cov diag

Per-iteration times are differences of two fits (1 and 1 + iters iterations, the best of two
runs each) so initialisation is not counted for either library.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.learn.kmeans import kmeans_plusplus, nearest
from mixstream.model import _BLOCK_CELLS as BLOCK_CELLS
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs
from mixstream.parallel import get_num_threads, map_ordered


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best float64 GEMM rate of this machine, GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    a @ b
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(k, size=n)
    A = rng.normal(scale=0.3, size=(k, d, d)) + np.eye(d)
    X = means[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), A[labels])
    return X


def best_of(fn, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        best = min(best, timed(fn))
    return best


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def per_iteration(fit_for, iters: int, repeats: int = 2) -> float:
    """Seconds per iteration: (best fit of 1 + iters iterations - best fit of 1) / iters."""
    long = best_of(lambda: fit_for(1 + iters), repeats)
    return (long - best_of(lambda: fit_for(1), repeats)) / iters


#: one later phase of ``time_phases``: its name and a function of the block's state (a dict
#: with "X", "feat" and "lp" and whatever earlier phases stored in it)
Phase = tuple[str, Callable[[dict[str, Any]], None]]


def time_phases(
    model: Any, X: np.ndarray, block: int, later: Sequence[Phase], narrow: bool = False
) -> dict[str, float] | None:
    """Seconds per phase over all of X, one thread, the row blocks of ``local_summarize``:
    "features", "log-prob GEMM", then each of ``later`` in order. ``narrow``: a float32 GEMM's
    log-probs stay float32, as ``local_summarize`` keeps them. None where the observation
    model no longer has the pieces this reads (``_features``, ``_lp_from_features``, theta)."""
    from threadpoolctl import threadpool_limits

    obs = model.obs
    if not all(hasattr(obs, a) for a in ("_features", "_lp_from_features", "_theta")):
        return None
    theta = obs._theta.copy()
    theta[0] += model.alloc.log_weights()
    out = dict.fromkeys(("features", "log-prob GEMM", *(name for name, _ in later)), 0.0)
    with threadpool_limits(1):
        for s in range(0, X.shape[0], block):
            Xb = X[s : s + block]
            t0 = time.perf_counter()
            feat = obs._features(Xb, np)
            t1 = time.perf_counter()
            lp = obs._lp_from_features(feat, np, theta, narrow)
            t2 = time.perf_counter()
            out["features"] += t1 - t0
            out["log-prob GEMM"] += t2 - t1
            state = {"X": Xb, "feat": feat, "lp": lp}
            for name, fn in later:
                t = time.perf_counter()
                fn(state)
                out[name] += time.perf_counter() - t
    return out


def phase_breakdown(model, X: np.ndarray, block: int) -> dict[str, float]:
    """Seconds per phase of the local step + summary over all of X, one thread, same blocks."""
    from mixstream.backend import softmax_rows

    def softmax(st: dict[str, Any]) -> None:
        _, st["log_resp"], st["resp"] = softmax_rows(st["lp"])

    later: list[Phase] = [
        ("softmax", softmax),
        ("entropy", lambda st: np.einsum("nk,nk->k", st["resp"], st["log_resp"])),
        ("stats GEMM", lambda st: st["feat"] @ st["resp"]),
    ]
    phases = time_phases(model, X, block, later)
    assert phases is not None, "the Gaussian model lost the pieces the breakdown times"
    return phases


def local_step_flops(n: int, d: int, k: int, cov: str) -> float:
    """Multiply-adds x 2 of the products mixstream's local step runs."""
    if cov == "full":
        return 2.0 * n * k * (d * (d + 1) / 2 + d)
    return 2.0 * n * k * 2 * d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--cov", default="full", choices=["full", "diag"])
    p.add_argument("--iters", type=int, default=4)
    a = p.parse_args()

    X = make_data(a.n, a.d, a.k)
    rng = np.random.default_rng(1)
    centers = kmeans_plusplus(X[:50_000], a.k, rng)
    labels = nearest(X, centers)
    resp = np.zeros((a.n, a.k))
    resp[np.arange(a.n), labels] = 1.0
    # starting parameters for EM, shared by both libraries
    gm0 = GaussianMixture(a.k, covariance_type=a.cov)
    gm0._initialize(X, resp)
    w0, m0, pc = gm0.weights_, gm0.means_, gm0.precisions_cholesky_
    p0 = np.einsum("kij,klj->kil", pc, pc) if a.cov == "full" else pc**2

    def sk_em(it):
        GaussianMixture(
            a.k,
            covariance_type=a.cov,
            weights_init=w0,
            means_init=m0,
            precisions_init=p0,
            init_params="random_from_data",
            max_iter=it,
            tol=0.0,
        ).fit(X)

    def ms_em(it):
        model = Model(FiniteAlloc(inference="em"), GaussObs(a.cov, inference="em"))
        model.obs.set_prior_from_data(X)
        model.uids = model.new_uids(a.k)
        model.obs.set_point_params(m0, precisions=p0)
        model.alloc.set_weights(w0)
        for _ in range(it):
            model.global_step(model.local_summarize(X))

    class BGM(BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state, **kw):
            self._initialize(X, resp)

    def sk_vb(it):
        BGM(
            n_components=a.k,
            covariance_type=a.cov,
            max_iter=it,
            tol=0.0,
            weight_concentration_prior_type="dirichlet_process",
            weight_concentration_prior=1.0,
        ).fit(X)

    def ms_vb(it):
        model = Model(DPAlloc(1.0), GaussObs(a.cov))
        model.obs.set_prior_from_data(X)
        model.uids = model.new_uids(a.k)
        model.global_step(model.summarize(X, {"resp": resp}))
        for _ in range(it - 1):
            model.global_step(model.local_summarize(X))

    rows = []
    for name, sk, ms in (("EM", sk_em, ms_em), ("VB", sk_vb, ms_vb)):
        t_sk = per_iteration(sk, a.iters)
        t_ms = per_iteration(ms, a.iters)
        rows.append((name, t_sk, t_ms, t_sk / t_ms))

    # the local step alone (log-probabilities and responsibilities), over the row blocks and
    # threads that local_summarize uses; then local step + summary as a fit runs it
    model = Model(FiniteAlloc(inference="em"), GaussObs(a.cov, inference="em"))
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(a.k)
    model.obs.set_point_params(m0, precisions=p0)
    model.alloc.set_weights(w0)
    block = max(256, BLOCK_CELLS // (a.k + model.obs.cache_width()))

    def step(s: int) -> None:
        model.local_step(X[s : s + block])  # result dropped: only the time is wanted

    best = best_of(lambda: map_ordered(step, range(0, a.n, block)))
    best_sum = best_of(lambda: model.local_summarize(X))
    flops = local_step_flops(a.n, a.d, a.k, a.cov)
    gflops, gflops_sum = flops / best / 1e9, 2 * flops / best_sum / 1e9
    peak = gemm_rate()
    phases = phase_breakdown(model, X, block)

    print(
        f"machine: {platform.processor() or platform.machine()}, {platform.system()}, "
        f"numpy {np.__version__}"
    )
    print(f"data: N={a.n:,} D={a.d} K={a.k} covariance={a.cov}, float64\n")
    print(f"{'algorithm':<10}{'sklearn s/iter':>16}{'mixstream s/iter':>18}{'speed-up':>10}")
    for name, t_sk, t_ms, ratio in rows:
        print(f"{name:<10}{t_sk:>16.3f}{t_ms:>18.3f}{ratio:>9.1f}x")
    print(
        f"\nthreads: {get_num_threads()}, block: {block} rows; measured float64 GEMM "
        f"{peak:.1f} GFLOP/s\n"
        f"local step:           {best:.3f} s, {gflops:.1f} GFLOP/s -> "
        f"{100 * gflops / peak:.0f}% of GEMM rate\n"
        f"local step + summary: {best_sum:.3f} s, {gflops_sum:.1f} GFLOP/s -> "
        f"{100 * gflops_sum / peak:.0f}% of GEMM rate (both products counted)"
    )
    total = sum(phases.values())
    print(f"\nwhere one thread spends a local step + summary ({total:.3f} s, same blocks):")
    for name, sec in phases.items():
        print(f"  {name:<14}{sec:>8.3f} s {100 * sec / total:>5.0f}%")


if __name__ == "__main__":
    main()
