"""Missing values: the lap time with NaN marginalised against the complete-data lap.

One lap = the local step and statistics of every row (``Model.local_summarize``, the work a
worker does per batch) plus the global step, on in-memory data, for an EM model with
``missing="marginalize"`` fitted beforehand. Data: a planted mixture, N x D (default 100,000 x
16, K = 10), and the same data with a fraction of its entries set to NaN completely at random
(default 10%; at D = 16 about 81% of the rows then miss at least one value, and nearly every
row has its own pattern). For reference, scikit-learn GaussianMixture's time per EM iteration
on the complete data (same machine, same run). Targets: <= 2x the complete lap for diag,
<= 3x for full.

    OMP_NUM_THREADS=1 python bench/missing.py
    python bench/missing.py --n 20000 --frac 0.1,0.4 --covariance-types diag,full
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from functools import partial

import numpy as np
from sklearn.mixture import GaussianMixture

from mixstream import MixtureModel


def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    z = rng.integers(0, k, n)
    A = rng.normal(scale=0.4, size=(k, d, d)) + np.eye(d)
    return centers[z] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), A[z])


def with_holes(X: np.ndarray, frac: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Xm = X.copy()
    mask = rng.random(X.shape) < frac
    mask[mask.all(axis=1), 0] = False  # a row keeps one value
    Xm[mask] = np.nan
    return Xm


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def lap_time(model, X: np.ndarray, repeats: int) -> float:
    def lap() -> None:
        SS = model.local_summarize(X)
        model.copy().global_step(SS)

    lap()  # warm caches and the numba kernels
    return best_of(lap, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--frac", default="0.1")
    ap.add_argument("--covariance-types", default="diag,full")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    X = make_data(args.n, args.d, args.k)
    fracs = [float(f) for f in args.frac.split(",")]
    print(
        f"N={args.n} D={args.d} K={args.k}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; best of {args.repeats}"
    )
    header = (
        f"{'cov':<6} {'NaN':>5} {'rows w/ NaN':>11} {'patterns':>8} {'complete lap s':>14} "
        f"{'NaN lap s':>10} {'ratio':>6} {'sklearn EM iter s':>17}"
    )
    print(header)
    print("-" * len(header))
    for ctype in args.covariance_types.split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = MixtureModel(
                args.k,
                allocation="finite",
                algorithm="em",
                covariance_type=ctype,
                max_laps=3,
                random_state=0,
                missing="marginalize",
            ).fit(X)
            gm = GaussianMixture(
                args.k, covariance_type=ctype, max_iter=1, init_params="random_from_data"
            )
            sk = best_of(partial(gm.fit, X), args.repeats)
        model = est.model_
        base = lap_time(model, X, args.repeats)
        for frac in fracs:
            Xm = with_holes(X, frac)
            miss = np.isnan(Xm)
            rows = miss.any(axis=1).mean()
            patterns = len(np.unique(miss, axis=0))
            t = lap_time(model, Xm, args.repeats)
            print(
                f"{ctype:<6} {frac:>5.0%} {rows:>11.0%} {patterns:>8} {base:>14.3f} {t:>10.3f} "
                f"{t / base:>5.2f}x {sk:>17.3f}"
            )


if __name__ == "__main__":
    main()
