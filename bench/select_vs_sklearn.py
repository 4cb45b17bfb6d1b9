"""Model selection: ``mixstream.select`` beside a scikit-learn GaussianMixture grid loop.

The grid is K = 1..K_max x covariance types, on planted data (6 clusters with full
covariances, 8-D, seeded). mixstream fits every candidate on 90% of the rows (a seeded block
holdout) through the engine, in this process and on a Zarr store through a Dask LocalCluster
of worker processes (its start counted), and scores BIC / AIC / held-out log-likelihood in one
pass. scikit-learn fits the same training rows in a loop (its k-means start per fit, the same
tol and max_iter) and scores BIC and the held-out rows. Prints seconds, the ratio to
scikit-learn and each one's choice.

    python bench/select_vs_sklearn.py                    # 200,000 x 8, K=1..8
    python bench/select_vs_sklearn.py --n 20000 --workers 2

A script of the checkout, not a module of mixstream.benchmarks: it runs the application layer
(``mixstream.select``), which the package's benchmarks, a lower layer, may not import.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

COVS = ("full", "diag", "spherical")
# the planted data of the selection tests: the benchmark and the tests draw the same rows
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers.selection_data import planted  # noqa: E402


def sklearn_grid(
    X: np.ndarray, held: np.ndarray, ks: range, tol: float
) -> tuple[float, tuple[float, str]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    t0 = time.perf_counter()
    train, test = X[~held], X[held]
    best = (np.inf, "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cov in COVS:
            for k in ks:
                gm = GaussianMixture(k, covariance_type=cov, tol=tol, max_iter=100,
                                     random_state=0).fit(train)  # fmt: skip
                bic = gm.bic(train)
                gm.score(test)  # the held-out log-likelihood, as select computes it
                best = min(best, (bic, f"K={k} {cov}"))
    return time.perf_counter() - t0, best


def _choice(sel: object) -> str:
    return f"{sel.best['model']}, BIC {sel.best['bic']:.1f}"


def _refit_row(sel: object) -> tuple[str, float, str]:
    """The refit of the chosen model on every row, which the row above includes."""
    r = sel.refit
    before, after = r["log_likelihood_before"], r["log_likelihood"]
    text = f"{r['laps']} laps, log-lik per row {before:.5f} -> {after:.5f}"
    return ("  of which: refit of the choice on every row", r["seconds"], text)


def main(argv: list[str] | None = None) -> None:
    from mixstream.app.selection import select
    from mixstream.data.holdout import make_split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--k-max", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=25_000)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=25_000, help="rows per batch (both)")
    args = p.parse_args(argv)
    import zarr

    X = planted(args.n)
    ks = range(1, args.k_max + 1)
    kw = {"n_components": ks, "covariance_types": COVS, "tol": args.tol, "random_state": 0,
          "batch_size": args.batch_size}  # fmt: skip
    rows = []
    select(X[:2000], [1, 2], ("full",), engine="local")  # compile the kernels once
    t0 = time.perf_counter()
    sel = select(X, **kw, engine="local")
    rows.append(("mixstream.select, in-process", time.perf_counter() - t0, _choice(sel)))
    rows.append(_refit_row(sel))
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "planted.zarr")
        zarr.open_group(store, mode="w").create_array(
            "X", data=X, chunks=(args.chunk_rows, X.shape[1])
        )
        t0 = time.perf_counter()
        sel_d = select(store, **kw, engine="dask", n_workers=args.workers)
        name = f"mixstream.select, Zarr store, Dask {args.workers} workers (start included)"
        rows.append((name, time.perf_counter() - t0, _choice(sel_d)))
        rows.append(_refit_row(sel_d))
    # what starting and closing the LocalCluster alone costs, for the row above
    from mixstream.data.array_source import ArraySource
    from mixstream.engine.dask import DaskExecutor

    t0 = time.perf_counter()
    DaskExecutor(ArraySource(X[:10]), n_workers=args.workers).close()
    rows.append((f"  of which: start and stop a LocalCluster of {args.workers} workers",
                 time.perf_counter() - t0, ""))  # fmt: skip
    # the same training rows as select's split
    seed = np.random.SeedSequence(0).spawn(2)[0]
    held = make_split(args.n, 0.1, np.random.default_rng(seed)).test_mask(0, args.n)
    sk_seconds, (sk_bic, sk_model) = sklearn_grid(X, held, ks, args.tol)
    rows.append(("scikit-learn GaussianMixture loop", sk_seconds, f"{sk_model}, BIC {sk_bic:.1f}"))
    grid = f"K=1..{args.k_max} x {len(COVS)} covariance types"
    print(f"{args.n:,} x {X.shape[1]}, {grid}, {platform.processor() or platform.machine()}")
    print(f"{'':<72} {'seconds':>8} {'vs sklearn':>10}  choice")
    for name, seconds, best in rows:
        print(f"{name:<72} {seconds:8.2f} {seconds / sk_seconds:9.2f}x  {best}")


if __name__ == "__main__":
    main()
