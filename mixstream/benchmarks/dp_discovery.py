"""DP cluster discovery: mixstream moVB with birth/merge/delete from K=1 beside scikit-learn.

The problem: n rows in d dimensions from k well-separated Gaussian clusters (means ~ N(0, 3^2 I),
axis-aligned covariances with per-feature standard deviations in [0.5, 1.5]). mixstream starts
from ONE component and must find k with its moves; scikit-learn's BayesianGaussianMixture
(weight_concentration_prior_type="dirichlet_process") starts from n_components=20 (k-means
init) and has no moves, only the DP prior to empty the extra components. For each covariance
type the table gives the wall time until the fit first holds the true K (mixstream: at the end
of a lap; scikit-learn: active components, weight > 0.5%, tracked one EM iteration at a time
with warm_start), the total fit time, the final K and the adjusted Rand index against the
planted labels.

bnpy (the reference implementation of memoized VB with these moves, 0.1.7 on PyPI) is not
installable in the project environment: its pinned dependencies (an old scikit-learn) fail to
build on Python 3.11, and the package itself uses APIs removed from Python 3.11
(``inspect.getargspec``) and NumPy 2 (``np.float``, ``np.bool8``, ...). When ``import bnpy``
works (e.g. ``pip install --no-deps bnpy pandas`` in a scratch environment), ``--bnpy`` adds its
memoVB with birth/merge/delete from K=1 to the table, run under small compatibility shims
(``_bnpy_shims``); it uses its own default Normal-Wishart prior (prior covariance I), not ours.

    python -m mixstream.benchmarks.dp_discovery  # 100,000 x 16, 10 clusters
    python -m mixstream.benchmarks.dp_discovery --n 20000 --seeds 3
    python -m mixstream.benchmarks.dp_discovery --bnpy  # also bnpy, if importable
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture

from mixstream.alloc import DPAlloc
from mixstream.data.array_source import ArraySource
from mixstream.engine.local import LocalExecutor
from mixstream.learn.init import initialize
from mixstream.learn.movb import fit_movb
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs

ACTIVE = 0.005  # scikit-learn components with a larger weight count as active


def planted(n: int, d: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned clusters (per-feature sd in [0.5, 1.5]) so both covariance types hold
    the planted model and its K is the right answer for each."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    sd = rng.uniform(0.5, 1.5, size=(k, d))
    labels = rng.integers(k, size=n)
    return means[labels] + rng.normal(size=(n, d)) * sd[labels], labels


def run_mixstream(X, labels, cov, k, seed, batch_size):
    t0 = time.perf_counter()
    model = Model(DPAlloc(1.0), GaussObs(cov))
    ex = LocalExecutor(ArraySource(X, batch_size))
    initialize(model, ex, 1, "kmeans++", np.random.default_rng(seed))
    reached = [None]

    def on_lap(m, record):
        if reached[0] is None and m.K == k:
            reached[0] = time.perf_counter() - t0

    result = fit_movb(
        model,
        ex,
        max_laps=100,
        tol=1e-4,
        rng=seed,
        moves=("birth", "merge", "delete"),
        on_lap=on_lap,
    )
    total = time.perf_counter() - t0
    ari = adjusted_rand_score(labels, model.local_step(X)["resp"].argmax(1))
    return {"reach": reached[0], "total": total, "K": model.K, "ari": ari, "laps": result.n_iter}


def run_sklearn(X, labels, cov, k, seed, max_iter=500, tol=1e-3):
    t0 = time.perf_counter()
    bgm = BayesianGaussianMixture(
        n_components=20,
        covariance_type=cov,
        weight_concentration_prior_type="dirichlet_process",
        max_iter=1,
        warm_start=True,
        random_state=seed,
    )
    reached, prev, it = None, None, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for it in range(1, max_iter + 1):  # noqa: B007 - reported
            bgm.fit(X)
            active = int((bgm.weights_ > ACTIVE).sum())
            if reached is None and active == k:
                reached = time.perf_counter() - t0
            if prev is not None and abs(bgm.lower_bound_ - prev) < tol:
                break
            prev = bgm.lower_bound_
    total = time.perf_counter() - t0
    ari = adjusted_rand_score(labels, bgm.predict(X))
    K = int((bgm.weights_ > ACTIVE).sum())
    return {"reach": reached, "total": total, "K": K, "ari": ari, "laps": it}


def _bnpy_shims() -> None:
    """Aliases bnpy 0.1.7 still uses, removed from Python 3.11 and NumPy 2."""
    import inspect
    from collections import namedtuple

    spec = namedtuple("ArgSpec", "args varargs keywords defaults")
    if not hasattr(inspect, "getargspec"):
        inspect.getargspec = lambda f: spec(*inspect.getfullargspec(f)[:4])
    for name, value in {
        "float": float,
        "int": int,
        "object": object,
        "bool8": np.bool_,
        "float_": np.float64,
        "int_": np.int64,
        "Inf": np.inf,
        "NaN": np.nan,
    }.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def run_bnpy(X, labels, cov, k, seed, batch_size):
    import contextlib
    import io
    import tempfile

    _bnpy_shims()
    import bnpy

    data = bnpy.data.XData(X)
    obs = "Gauss" if cov == "full" else "DiagGauss"
    with (
        tempfile.TemporaryDirectory() as out,
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model, info = bnpy.run(
            data,
            "DPMixtureModel",
            obs,
            "memoVB",
            K=1,
            nLap=100,
            nBatch=max(1, X.shape[0] // batch_size),
            moves="birth,merge,delete,shuffle",
            gamma0=1.0,
            initname="randexamples",
            output_path=out,
            printEvery=1000,
            taskid=1,
            dataorderseed=seed + 1,
            seed=seed + 1,
        )
        total = time.perf_counter() - t0
    Ks = np.asarray(info["K_history"])
    times = np.asarray(info["elapsed_time_sec_history"])
    hit = np.flatnonzero(Ks == k)
    resp = model.calc_local_params(data)["resp"]
    ari = adjusted_rand_score(labels, np.asarray(resp).argmax(1))
    laps = float(np.asarray(info["lap_history"])[-1])
    return {
        "reach": float(times[hit[0]]) if hit.size else None,
        "total": total,
        "K": int(model.obsModel.K),
        "ari": ari,
        "laps": round(laps),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--cov", nargs="+", default=["diag", "full"], choices=["diag", "full"])
    p.add_argument("--bnpy", action="store_true", help="also run bnpy when it can be imported")
    p.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn (minutes per fit)")
    a = p.parse_args()
    bnpy_note = "bnpy: not installable in this environment (see the module docstring)"
    if a.bnpy:
        try:
            _bnpy_shims()
            import bnpy  # noqa: F401

            bnpy_note = "bnpy 0.1.7: memoVB + birth/merge/delete from K=1 (with compat shims)"
        except ImportError as exc:
            a.bnpy = False
            bnpy_note = f"bnpy: not installable here ({exc}); not compared"

    print(
        f"DP discovery: {a.n:,} x {a.d}, {a.k} planted clusters; {platform.processor() or ''}"
        f" python {platform.python_version()}"
    )
    print(
        "mixstream: moVB + birth/merge/delete from K=1, batches of "
        f"{a.batch_size:,} rows; scikit-learn: BayesianGaussianMixture(dirichlet_process, "
        "n_components=20)"
    )
    print(bnpy_note + "\n")
    head = (
        f"{'covariance':<10} {'method':<24} {'seed':>4} {'t(true K) s':>12} {'total s':>9} "
        f"{'iters':>6} {'final K':>8} {'ARI':>7}"
    )
    print(head)
    print("-" * len(head))
    # one small fit first: numba loads its compiled kernels once per process (about 0.5 s)
    warm_X, warm_labels = planted(2_000, a.d, 2, 0)
    run_mixstream(warm_X, warm_labels, a.cov[0], 2, 0, 1_000)
    for cov in a.cov:
        for seed in range(a.seeds):
            X, labels = planted(a.n, a.d, a.k, seed)
            runs = [("mixstream moVB (laps)", run_mixstream, (a.batch_size,))]
            if not a.no_sklearn:
                runs.append(("sklearn BGM-DP (iters)", run_sklearn, ()))
            if a.bnpy:
                runs.append(("bnpy memoVB (laps)", run_bnpy, (a.batch_size,)))
            for name, run, extra in runs:
                r = run(X, labels, cov, a.k, seed, *extra)
                reach = "never" if r["reach"] is None else f"{r['reach']:.2f}"
                print(
                    f"{cov:<10} {name:<24} {seed:>4} {reach:>12} {r['total']:>9.2f} "
                    f"{r['laps']:>6} {r['K']:>8} {r['ari']:>7.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
