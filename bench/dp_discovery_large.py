"""DP discovery at scale: 1,000,000 x 64, 50 planted clusters, from K=1, in memory and on Dask.

The data are ``mixstream.benchmarks.dp_discovery.planted`` (means ~ N(0, 3^2 I), axis-aligned
covariances with per-feature standard deviations in [0.5, 1.5]: in 64 dimensions the clusters
are far apart, about 34 sd between two means). ``MixtureModel(n_components=1, allocation="dp",
algorithm="movb", moves=("birth", "merge", "delete"))`` fits them twice with the same options:

- in memory: the ndarray, the in-process engine (its threads on every core);
- on Dask: the same rows written once to a Zarr store (``mixstream.data.ingest``), fitted
  through a LocalCluster of 2 worker processes with 1 thread each, the workers reading the
  store themselves.

Reported per run: wall time of ``fit`` (the store's writing not included), laps, time to the
true K (the sum of the lap times up to the first lap that ends with K = k), final K, the
adjusted Rand index of ``predict`` against the planted labels, and where the time went: per lap
its seconds, K and the moves tried / accepted. ``--profile`` adds the top functions of a cProfile
of the in-memory fit.

    python bench/dp_discovery_large.py                    # 1M x 64, 50 clusters, diag
    python bench/dp_discovery_large.py --n 50000 --d 16 --k 8 --cov diag full
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from mixstream import MixtureModel
from mixstream.benchmarks.dp_discovery import planted

MOVES = ("birth", "merge", "delete")


def estimator(cov: str, batch_size: int, seed: int, **kw: Any) -> MixtureModel:
    return MixtureModel(
        1,
        allocation="dp",
        algorithm="movb",
        moves=MOVES,
        covariance_type=cov,
        batch_size=batch_size,
        max_laps=100,
        tol=1e-4,
        random_state=seed,
        **kw,
    )


def summarize_fit(est: MixtureModel, X: Any, labels: np.ndarray, k: int, wall: float) -> dict:
    """The row of one fit: wall, laps, time to true K, final K, ARI, per-lap history."""
    hist = est.history_
    elapsed = np.cumsum([h["seconds"] for h in hist])
    hit = [i for i, h in enumerate(hist) if h["K"] == k]
    pred = est.predict(X)
    return {
        "wall": wall,
        "laps": len(hist),
        "reach": float(elapsed[hit[0]]) if hit else None,
        "K": int(hist[-1]["K"]),
        "ari": float(adjusted_rand_score(labels, np.asarray(pred))),
        "history": [
            {k_: h[k_] for k_ in ("lap", "K", "seconds", "moves_tried", "moves_accepted")}
            for h in hist
        ],
    }


def fit_in_memory(X, labels, cov, k, batch_size, seed, profile: bool) -> dict:
    est = estimator(cov, batch_size, seed, engine="local")
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    est.fit(X)
    if prof is not None:
        prof.disable()
    row = summarize_fit(est, X, labels, k, time.perf_counter() - t0)
    if prof is not None:
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        row["where"] = where_time_goes(stats)
        stats.sort_stats("cumulative").print_stats(r"mixstream", 25)
        row["profile"] = out.getvalue()
    return row


#: (file, function) of the parts of a moVB lap, for the profile's summary
PARTS = {
    # the in-process executor's map: its batches run in worker threads, which cProfile does not
    # see, so the wall time of the map calls (the main thread waiting on them) stands for them
    "batch visits (executor map)": ("engine/local.py", "map"),
    "birth: proposals": ("learn/moves/birth.py", "propose"),
    "birth: judging": ("learn/moves/birth.py", "judge"),
    "merge: judging": ("learn/moves/merge.py", "judge"),
    "delete: judging": ("learn/moves/delete.py", "judge"),
    "global steps": ("mixstream/model.py", "global_step"),
}


def where_time_goes(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each part in PARTS (a part called inside another counts in
    both: batch visits made by a move are in the move's time too)."""
    out = dict.fromkeys(PARTS, 0.0)
    for (path, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        for name, (file, fn) in PARTS.items():
            if func == fn and path.replace("\\", "/").endswith(file):
                out[name] += row[3]  # cumulative time
    return out


def fit_on_dask(X, labels, cov, k, batch_size, seed, workdir: Path) -> dict:
    from distributed import Client, LocalCluster

    from mixstream.data.ingest import ingest

    npy, store = workdir / "X.npy", workdir / "X.zarr"
    np.save(npy, X)
    # one chunk per batch: a batch reads whole chunks
    ingest(npy, store, chunk_rows=min(batch_size, X.shape[0]), overwrite=True)
    npy.unlink()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        est = estimator(cov, batch_size, seed, engine="dask", client=client)
        t0 = time.perf_counter()
        est.fit(str(store))
        wall = time.perf_counter() - t0
    return summarize_fit(est, X, labels, k, wall)


def print_row(cov: str, where: str, r: dict) -> None:
    reach = "never" if r["reach"] is None else f"{r['reach']:.1f}"
    print(
        f"{cov:<6}{where:<22}{r['wall']:>9.1f}{r['laps']:>6}{reach:>12}{r['K']:>8}{r['ari']:>9.4f}",
        flush=True,
    )


def print_laps(r: dict) -> None:
    for h in r["history"]:
        tried = ", ".join(f"{m} {n}" for m, n in sorted(h["moves_tried"].items()) if n)
        acc = ", ".join(f"{m} {n}" for m, n in sorted(h["moves_accepted"].items()) if n)
        print(
            f"    lap {h['lap']:>3}: {h['seconds']:7.2f} s, K={h['K']:>3}; "
            f"tried [{tried}] accepted [{acc}]"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=100_000)
    p.add_argument("--cov", nargs="+", default=["diag"], choices=["diag", "full"])
    p.add_argument("--engines", nargs="+", default=["memory", "dask"], choices=["memory", "dask"])
    p.add_argument("--profile", action="store_true", help="cProfile the in-memory fit")
    p.add_argument("--laps", action="store_true", help="print every lap (time, K, moves)")
    a = p.parse_args(argv)

    X, labels = planted(a.n, a.d, a.k, a.seed)
    print(
        f"DP discovery: {a.n:,} x {a.d}, {a.k} planted clusters, seed {a.seed}; "
        f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}\n"
        f"mixstream: moVB + birth/merge/delete from K=1, batches of {a.batch_size:,} rows\n"
    )
    # one small fit first: numba loads its compiled kernels once per process
    warm_X, _ = planted(2_000, a.d, 2, 0)
    estimator(a.cov[0], 1_000, 0, engine="local").fit(warm_X)
    print(
        f"{'cov':<6}{'engine':<22}{'wall s':>9}{'laps':>6}{'t(true K) s':>12}"
        f"{'final K':>8}{'ARI':>9}"
    )
    rows = []
    for cov in a.cov:
        for where in a.engines:
            if where == "memory":
                r = fit_in_memory(X, labels, cov, a.k, a.batch_size, a.seed, a.profile)
                name = "in memory"
            else:
                with tempfile.TemporaryDirectory(prefix="dp-large-") as tmp:
                    r = fit_on_dask(X, labels, cov, a.k, a.batch_size, a.seed, Path(tmp))
                name = "Dask 2x1 from Zarr"
            print_row(cov, name, r)
            if a.laps:
                print_laps(r)
            if r.get("where"):
                print("  profile of the in-memory fit, cumulative seconds:")
                for part, sec in r["where"].items():
                    print(f"    {part:<38}{sec:>8.1f}")
            if r.get("profile"):
                print(r["profile"])
            rows.append({"cov": cov, "engine": where, **r})
    return rows


if __name__ == "__main__":
    main()
