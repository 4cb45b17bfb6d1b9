"""EM beside the torch-based GMM libraries and scikit-learn: same data, same starting point.

One command runs scikit-learn's GaussianMixture, tgmm, pomegranate, torchgmm and mixstream
(``MixtureModel(algorithm="em")``; "mixstream32" is the same with ``dtype="float32"``) on the
same data (one .npy file that every library loads) from the same initial weights, means and
covariances (one k-means start: k-means++ centres on a 50,000-row sample, one assignment of
every row, the weights / means / covariances of that hard partition, passed through each
library's own init API). Each library runs in a subprocess of its own, so its peak memory
(the peak resident size, VmHWM, during the fits minus that peak reset to the resident size
once the data is loaded and a warm-up fit has run) is its own. Reported per library
and case:

- seconds per EM iteration: (fit of 1 + iters iterations - fit of 1 iteration) / iters, so each
  library's set-up and initial / final E-steps cancel (tol=0 or its equivalent: no early stop);
- the final average log-likelihood of the fitted parameters, computed for every library by one
  scorer (scikit-learn's ``score`` with the library's weights / means / covariances set), so
  equal numbers show that they fit the same model from the same start;
- peak memory above the loaded data, MiB.

    pip install -e ".[peers]"          # torch first: see docs/benchmarks.md
    python bench/peers.py                              # 1,000,000 x {16, 64}, K=32, full, diag
    python bench/peers.py --n 200000 --d 16 --cov full --iters 2

Two adjustments make pomegranate 1.1.2 fit the same model as the others: its distributions are
cast to float64 (it takes its dtype from a float32 device marker and would sum the statistics in
float32) and scikit-learn's reg_covar is added to its covariances after each M-step (it adds
none). torchgmm takes initial means only: its init pass runs, then its result is replaced by the
shared start; its statistics (torchmetrics states, float32 under ``precision=64``) are set to
float64. tgmm runs with ``batch_size`` rows per chunk (its own memory bound: unchunked it
holds several N x K x D tensors). Libraries that are not installed are reported as skipped.

Threads: OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, MIXSTREAM_NUM_THREADS and
torch.set_num_threads are all set to --threads (default: the cores this process may use) in every
subprocess.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

LIBRARIES = ("sklearn", "tgmm", "pomegranate", "torchgmm", "mixstream", "mixstream32")
#: the module each library needs: a library whose module is missing is skipped
NEEDS = {
    "sklearn": "sklearn",
    "tgmm": "tgmm",
    "pomegranate": "pomegranate",
    "torchgmm": "torchgmm",
    "mixstream": "mixstream",
    "mixstream32": "mixstream",
}
REG_COVAR = 1e-6
#: a library whose pair of timed fits takes less than this many seconds runs them again (best of
#: up to three pairs)
REPEAT_BELOW = 20.0
#: tgmm's row chunk, in cells of its (rows, K, D) deviation tensor: without a chunk tgmm holds
#: several N x K x D float64 tensors at once (16 GB each at 1M x 32 x 64)
TGMM_CHUNK_CELLS = 1 << 25


# ---------------------------------------------------------------------------------- data
def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """Rows from k correlated Gaussian clusters, float64 (n, d); built cluster by cluster so
    memory stays O(n d), whatever d."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(k, d))
    A = rng.normal(scale=0.3, size=(k, d, d)) + np.eye(d)
    labels = rng.integers(k, size=n)
    X = np.empty((n, d))
    for j in range(k):
        rows = np.flatnonzero(labels == j)
        X[rows] = means[j] + rng.normal(size=(rows.size, d)) @ A[j]
    return X


def shared_start(X: np.ndarray, k: int, cov: str, seed: int = 1) -> dict[str, np.ndarray]:
    """One k-means start: weights (k,), means (k, d), covariances ((k, d, d) or (k, d))."""
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    from mixstream.learn.kmeans import kmeans_plusplus, nearest

    rng = np.random.default_rng(seed)
    centers = kmeans_plusplus(X[:50_000], k, rng)
    labels = nearest(X, centers)
    resp = np.zeros((X.shape[0], k))
    resp[np.arange(X.shape[0]), labels] = 1.0
    nk, means, covs = _estimate_gaussian_parameters(X, resp, REG_COVAR, cov)
    return {"weights": nk / nk.sum(), "means": means, "covariances": covs}


def score(X: np.ndarray, params: dict[str, np.ndarray], cov: str) -> float:
    """Average log-likelihood per row of a Gaussian mixture: scikit-learn's scorer for all."""
    from sklearn.mixture import GaussianMixture
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    gm = GaussianMixture(params["weights"].size, covariance_type=cov)
    gm.weights_ = params["weights"] / params["weights"].sum()
    gm.means_ = params["means"]
    gm.covariances_ = params["covariances"]
    gm.precisions_cholesky_ = _compute_precision_cholesky(params["covariances"], cov)
    return float(gm.score(X))


# ---------------------------------------------------------------------------------- fits
def fit_sklearn(X: np.ndarray, start: dict, cov: str, iters: int) -> dict[str, np.ndarray]:
    from sklearn.mixture import GaussianMixture

    c = start["covariances"]
    gm = GaussianMixture(
        start["weights"].size,
        covariance_type=cov,
        reg_covar=REG_COVAR,
        weights_init=start["weights"],
        means_init=start["means"],
        precisions_init=np.linalg.inv(c) if cov == "full" else 1.0 / c,
        init_params="random_from_data",  # cheap; the given parameters replace its result
        max_iter=iters,
        tol=0.0,
    ).fit(X)
    return {"weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_}


def fit_tgmm(X: np.ndarray, start: dict, cov: str, iters: int) -> dict[str, np.ndarray]:
    import torch
    from tgmm import GaussianMixture

    k, d = start["means"].shape
    gm = GaussianMixture(
        n_components=k,
        covariance_type=cov,
        max_iter=iters,
        tol=1e-300,  # tgmm refuses tol <= 0; a relative change below 1e-300 never happens here
        reg_covar=REG_COVAR,
        init_means=torch.from_numpy(start["means"]),
        init_weights=torch.from_numpy(start["weights"]),
        init_covariances=torch.from_numpy(start["covariances"]),
        batch_size=max(1024, TGMM_CHUNK_CELLS // (k * d)),
        device="cpu",
    )
    gm.fit(torch.from_numpy(X))
    return {
        "weights": gm.weights_.numpy(),
        "means": gm.means_.numpy(),
        "covariances": gm.covariances_.numpy(),
    }


def fit_pomegranate(X: np.ndarray, start: dict, cov: str, iters: int) -> dict[str, np.ndarray]:
    import torch
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel

    class RegNormal(Normal):
        """pomegranate's Normal with scikit-learn's reg_covar added to the diagonal of each
        covariance after its M-step (pomegranate 1.1.2 adds none, and its ``min_cov`` is not
        used): the same model as the other libraries, and a component with few rows keeps a
        positive definite covariance instead of failing its Cholesky factorisation."""

        def from_summaries(self) -> None:
            super().from_summaries()
            with torch.no_grad():
                if self.covariance_type == "full":
                    self.covs.diagonal().add_(REG_COVAR)
                else:
                    self.covs.add_(REG_COVAR)
            self._reset_cache()

    # .double(): a pomegranate distribution takes its dtype from its first parameter, a float32
    # device marker, and would sum its statistics in float32 (uncentred sums of squares, which
    # then lose positive definiteness); float64 throughout, as every other library here
    dists = [
        RegNormal(means=m, covs=c, covariance_type=cov).double()
        for m, c in zip(start["means"], start["covariances"])
    ]
    for dist in dists:
        dist._reset_cache()  # its statistics buffers, now in float64
    # tol=-inf: pomegranate stops when the log-likelihood improves by less than tol
    gm = GeneralMixtureModel(dists, priors=start["weights"], max_iter=iters, tol=-np.inf)
    gm = gm.double()
    gm._reset_cache()
    gm.fit(torch.from_numpy(X))
    return {
        "weights": gm.priors.detach().numpy(),
        "means": np.stack([dd.means.detach().numpy() for dd in gm.distributions]),
        "covariances": np.stack([dd.covs.detach().numpy() for dd in gm.distributions]),
    }


def fit_torchgmm(X: np.ndarray, start: dict, cov: str, iters: int) -> dict[str, np.ndarray]:
    import logging

    import torch
    from torchgmm.bayes.core import cholesky_precision, covariance
    from torchgmm.bayes.gmm import estimator as tg_estimator

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    base = tg_estimator.GaussianMixtureRandomInitLightningModule
    prec = cholesky_precision(torch.from_numpy(start["covariances"]), cov)

    class SharedStart(base):  # type: ignore[misc, valid-type]
        """torchgmm takes initial means only (and derives weights and covariances from the
        nearest-mean partition): its init pass is run, then its result is replaced by the
        shared weights, means and covariances. Its sums are float64 too (see Float64Sums):
        in float32 its own init covariances can fail their Cholesky factorisation at D=64
        before they are replaced."""

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            for agg in (self.prior_aggregator, self.mean_aggregator, self.covar_aggregator):
                agg.set_dtype(torch.float64)

        def nonparametric_training_epoch_end(self) -> None:
            super().nonparametric_training_epoch_end()
            self.model.component_probs.copy_(torch.from_numpy(start["weights"]))
            self.model.means.copy_(torch.from_numpy(start["means"]))
            self.model.precisions_cholesky.copy_(prec)

    fit_base = tg_estimator.GaussianMixtureLightningModule

    class Float64Sums(fit_base):  # type: ignore[misc, valid-type]
        """torchgmm's EM with its statistics summed in float64: its aggregators are torchmetrics
        states, which stay float32 under ``precision=64`` unless set_dtype is called."""

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            for agg in (self.prior_aggregator, self.mean_aggregator, self.covar_aggregator):
                agg.set_dtype(torch.float64)

    tg_estimator.GaussianMixtureRandomInitLightningModule = SharedStart
    tg_estimator.GaussianMixtureLightningModule = Float64Sums
    try:
        gm = tg_estimator.GaussianMixture(
            start["weights"].size,
            covariance_type=cov,
            init_means=torch.from_numpy(start["means"]),
            convergence_tolerance=0.0,  # 0: no early stopping
            covariance_regularization=REG_COVAR,
            trainer_params={
                "precision": 64,
                "max_epochs": iters,
                "accelerator": "cpu",
                "devices": 1,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "logger": False,
                "enable_checkpointing": False,
            },
        ).fit(torch.from_numpy(X))
    finally:
        tg_estimator.GaussianMixtureRandomInitLightningModule = base
        tg_estimator.GaussianMixtureLightningModule = fit_base
    m = gm.model_
    return {
        "weights": m.component_probs.numpy().copy(),
        "means": m.means.numpy().copy(),
        "covariances": covariance(m.precisions_cholesky, cov).numpy().copy(),
    }


def fit_mixstream(
    X: np.ndarray, start: dict, cov: str, iters: int, dtype: str | None = None
) -> dict[str, np.ndarray]:
    from mixstream import MixtureModel

    gm = MixtureModel(
        start["weights"].size,
        allocation="finite",
        algorithm="em",
        covariance_type=cov,
        reg_covar=REG_COVAR,
        init={k: start[k] for k in ("weights", "means", "covariances")},
        max_laps=iters,
        tol=0.0,
        engine="local",
        random_state=0,
        dtype=dtype,
    ).fit(X)
    return {"weights": gm.weights_, "means": gm.means_, "covariances": gm.covariances_}


def fit_mixstream32(X: np.ndarray, start: dict, cov: str, iters: int) -> dict[str, np.ndarray]:
    """mixstream with ``dtype="float32"``: float32 features and GEMMs, float64 statistics and
    global steps (the same EM to float32 rounding; its log-likelihood says how close)."""
    return fit_mixstream(X, start, cov, iters, "float32")


FITS = {
    "sklearn": fit_sklearn,
    "tgmm": fit_tgmm,
    "pomegranate": fit_pomegranate,
    "torchgmm": fit_torchgmm,
    "mixstream": fit_mixstream,
    "mixstream32": fit_mixstream32,
}


# ---------------------------------------------------------------------------------- worker
def _status_mib(field: str) -> float | None:
    """A line of /proc/self/status ("VmHWM": the peak resident size), MiB (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _reset_peak() -> bool:
    """Reset VmHWM to the resident size now (writing 5 to /proc/self/clear_refs); False where
    that cannot be done. ``ru_maxrss`` is only the fallback: it carries the parent's resident
    size over fork and exec, which hides a peak below the parent's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_mib("VmHWM") is not None


def worker(lib: str, data: Path, start_file: Path, cov: str, iters: int, out: Path) -> None:
    """Fit one library twice (1 and 1 + iters iterations) in this process; write the times,
    the fitted parameters of the longer fit and the peak memory to ``out`` (.npz)."""
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    if lib in ("tgmm", "pomegranate", "torchgmm"):
        import torch

        torch.set_num_threads(threads)
    __import__(NEEDS[lib])  # imports before the baseline, so they are not counted as the fit's
    X = np.load(data)
    start = dict(np.load(start_file))
    fit = FITS[lib]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge": the iteration count is fixed
        # a warm-up on a few rows: one-off costs (numba compiles, lazy imports, torch's first
        # kernels) are not an iteration's
        fit(X[: min(len(X), 4096)], start, cov, 1)
        exact = _reset_peak()
        # the peak just reset (the resident size then): later peaks are never below it
        base = _status_mib("VmHWM") if exact else _maxrss_mib()
        short = long = np.inf
        spent, runs = 0.0, 0
        # the best of up to three pairs of fits while a pair is quick (under REPEAT_BELOW s):
        # a fast library's fixed costs move by more than its iterations on a shared machine
        while runs < 3 and (runs == 0 or spent < REPEAT_BELOW):
            t0 = time.perf_counter()
            fit(X, start, cov, 1)
            t1 = time.perf_counter()
            params = fit(X, start, cov, 1 + iters)
            t2 = time.perf_counter()
            short, long = min(short, t1 - t0), min(long, t2 - t1)
            spent, runs = spent + t2 - t0, runs + 1
    np.savez(
        out,
        t_short=short,
        t_long=long,
        runs=runs,
        peak_mib=(_status_mib("VmHWM") if exact else _maxrss_mib()) - base,
        **{k: np.asarray(v, np.float64) for k, v in params.items()},
    )


# ---------------------------------------------------------------------------------- driver
def installed(lib: str) -> bool:
    return importlib.util.find_spec(NEEDS[lib]) is not None


def run_library(
    lib: str, data: Path, start_file: Path, cov: str, iters: int, threads: int, work: Path
) -> dict[str, Any]:
    """One library in a subprocess; its row of the table (or why it has none)."""
    if not installed(lib):
        return {"library": lib, "skipped": "not installed"}
    out = work / f"{lib}.npz"
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["MIXSTREAM_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, __file__, "--worker", lib, "--data", str(data)]
    cmd += ["--start", str(start_file), "--cov", cov, "--iters", str(iters), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"library": lib, "skipped": f"failed: {tail[0][:200]}"}
    res = dict(np.load(out))
    return {
        "library": lib,
        "s_per_iter": (float(res["t_long"]) - float(res["t_short"])) / iters,
        "t_long": float(res["t_long"]),
        "peak_mib": float(res["peak_mib"]),
        "runs": int(res["runs"]),
        "params": {k: res[k] for k in ("weights", "means", "covariances")},
    }


def run_case(
    n: int, d: int, k: int, cov: str, iters: int, threads: int, libs: list[str], work: Path
) -> dict[str, Any]:
    """Every library on one (n, d, k, cov) case; rows with ratios and common scores."""
    X = make_data(n, d, k)
    data = work / f"X_{n}_{d}.npy"
    np.save(data, X)
    start = shared_start(X, k, cov)
    start_file = work / f"start_{d}_{cov}.npz"
    np.savez(start_file, **start)
    rows = [run_library(lib, data, start_file, cov, iters, threads, work) for lib in libs]
    start_ll = score(X, start, cov)
    ref = next((r for r in rows if r["library"] == "sklearn" and "s_per_iter" in r), None)
    for r in rows:
        if "params" not in r:
            continue
        r["loglik"] = score(X, r.pop("params"), cov)
        if ref is not None:
            r["speedup_vs_sklearn"] = ref["s_per_iter"] / r["s_per_iter"]
    return {
        "n": n,
        "d": d,
        "k": k,
        "cov": cov,
        "iters": iters,
        "start_loglik": start_ll,
        "rows": rows,
    }


def machine_line(threads: int) -> str:
    import sklearn

    parts = [
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"scikit-learn {sklearn.__version__}",
    ]
    for mod in ("torch", "tgmm", "pomegranate", "torchgmm"):
        if importlib.util.find_spec(mod) is not None:
            from importlib.metadata import PackageNotFoundError, version

            try:
                parts.append(f"{mod} {version(mod)}")
            except PackageNotFoundError:  # pragma: no cover - a module without metadata
                parts.append(mod)
    parts.append(f"threads {threads} (OMP / BLAS / torch / mixstream)")
    return "; ".join(parts)


def print_case(case: dict[str, Any]) -> None:
    print(
        f"\nN={case['n']:,} D={case['d']} K={case['k']} covariance={case['cov']}, float64, "
        f"{case['iters']} timed iterations; start log-likelihood {case['start_loglik']:.4f}"
    )
    print(f"{'library':<13}{'s/iter':>10}{'vs sklearn':>12}{'log-lik':>12}{'peak MiB':>10}")
    for r in case["rows"]:
        if "skipped" in r:
            print(f"{r['library']:<13}  skipped: {r['skipped']}")
            continue
        ratio = r.get("speedup_vs_sklearn")
        ratio_s = f"{ratio:.1f}x" if ratio is not None else "-"
        print(
            f"{r['library']:<13}{r['s_per_iter']:>10.3f}{ratio_s:>12}{r['loglik']:>12.4f}"
            f"{r['peak_mib']:>10.0f}"
        )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, nargs="+", default=[16, 64])
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--cov", nargs="+", default=["full", "diag"], choices=["full", "diag"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--libs", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    p.add_argument("--json", type=Path, help="also write the results here")
    # the subprocess of one library
    p.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--start", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a.worker, a.data, a.start, a.cov[0], a.iters, a.out)
        return []

    print(f"machine: {machine_line(a.threads)}")
    cases = []
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        for d in a.d:
            for cov in a.cov:
                case = run_case(a.n, d, a.k, cov, a.iters, a.threads, a.libs, Path(tmp))
                print_case(case)
                cases.append(case)
                if a.json:
                    a.json.write_text(
                        json.dumps({"machine": machine_line(a.threads), "cases": cases}, indent=1)
                    )
    return cases


if __name__ == "__main__":
    main()
