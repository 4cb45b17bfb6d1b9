"""HMoG with missing values: the lap time with NaN marginalised against the complete-data lap.

One lap = ``Model.local_summarize`` over every row plus the global step (as bench/missing.py),
for an HMoG EM model with ``missing="marginalize"`` fitted beforehand; the complete and the NaN
lap use the same model. Data: N x p from K clusters in a d-dimensional latent space under a
random linear map plus noise (default 100,000 x 64, d = 8, K = 8), and the same data with a
fraction of its entries set to NaN completely at random (default 10%: at p = 64 nearly every
row misses something, and each has its own pattern).

    OMP_NUM_THREADS=1 python bench/hmog_missing.py
    python bench/hmog_missing.py --n 20000 --noise diag,full --frac 0.1,0.4
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from mixstream import MixtureModel

sys.path.insert(0, str(Path(__file__).parent))
from missing import best_of, with_holes  # bench/missing.py


def make_data(n: int, p: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(p, d))
    centres = 3.0 * rng.normal(size=(k, d))
    Y = centres[rng.integers(k, size=n)] + 0.5 * rng.normal(size=(n, d))
    return Y @ W.T + 0.5 * rng.normal(size=(n, p))


def lap_time(model, X: np.ndarray, repeats: int) -> float:
    def lap() -> None:
        model.copy().global_step(model.local_summarize(X))

    lap()  # warm caches and the numba kernels
    return best_of(lap, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--p", type=int, default=64)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--frac", default="0.1")
    ap.add_argument("--noise", default="diag,full")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    X = make_data(args.n, args.p, args.d, args.k)
    print(
        f"N={args.n} p={args.p} d={args.d} K={args.k}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; best of {args.repeats}"
    )
    print("| noise | NaN | rows with NaN | complete lap s | NaN lap s | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for noise in args.noise.split(","):
        for frac in (float(f) for f in args.frac.split(",")):
            Xm = with_holes(X, frac)
            est = MixtureModel(
                args.k, likelihood="hmog", latent_dim=args.d, covariance_type=noise,
                algorithm="em", allocation="finite", max_laps=2, random_state=0,
                missing="marginalize",
            )  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(Xm)
            complete = lap_time(est.model_, X, args.repeats)
            holes = lap_time(est.model_, Xm, args.repeats)
            rows = np.isnan(Xm).any(axis=1).mean()
            print(
                f"| {noise} | {frac:.0%} | {rows:.1%} | {complete:.3f} | {holes:.3f} | "
                f"{holes / complete:.1f}x |"
            )


if __name__ == "__main__":
    main()
