"""A Dask-backed xarray DataArray larger than the Dask workers' memory limit, fitted with flat
memory: peak RSS of the coordinator and of each worker at two (or more) data sizes.

The DataArray (dims "sample", "feature") wraps a lazy ``dask.array`` of planted mixture rows
(generated chunk by chunk on the workers, never stored anywhere); ``MixtureModel.fit`` streams
it batch by batch on a LocalCluster of 2 single-threaded workers with ``--memory-limit`` each.
Each size runs in a fresh child interpreter with a fresh cluster, so every peak (``ru_maxrss``)
is that size's own. Flat memory: the peaks do not grow with the data.

    python bench/xarray_memory.py                         # 1 and 2 GiB, workers limited to 600 MiB
    python bench/xarray_memory.py --sizes-gib 0.5 1 --memory-limit 300MiB
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

D, K = 16, 4
CHUNK_ROWS = 65_536


def planted(block_info: dict | None = None) -> object:
    """One chunk of planted rows: K well separated Gaussian blobs, seeded by the chunk index."""
    import numpy as np

    (start, stop), _ = block_info[None]["array-location"]
    rng = np.random.default_rng(start)
    z = rng.integers(0, K, stop - start)
    centres = 6.0 * np.eye(K, D)
    return centres[z] + rng.normal(size=(stop - start, D))


def one(size_gib: float, memory_limit: str) -> dict[str, float]:
    import resource
    import time

    import dask.array as da
    import numpy as np
    import xarray as xr
    from distributed import Client, LocalCluster

    from mixstream import MixtureModel

    n_rows = int(size_gib * 2**30 / (8 * D)) // CHUNK_ROWS * CHUNK_ROWS
    lazy = da.map_blocks(
        planted, chunks=((CHUNK_ROWS,) * (n_rows // CHUNK_ROWS), (D,)), dtype=np.float64
    )
    names = [f"f{j}" for j in range(D)]
    X = xr.DataArray(lazy, dims=("sample", "feature"), coords={"feature": names})
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=memory_limit, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        est = MixtureModel(
            K, allocation="finite", algorithm="em", covariance_type="diag", max_laps=3,
            tol=0.0, random_state=0, batch_size=CHUNK_ROWS, client=client,
        )  # fmt: skip
        t0 = time.perf_counter()
        est.fit(X)
        seconds = time.perf_counter() - t0
        workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "size_gib": n_rows * D * 8 / 2**30,
        "n_rows": n_rows,
        "seconds": seconds,
        "coordinator_before_mb": rss0,
        "coordinator_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": max(workers.values()),
        "n_iter": est.n_iter_,
        "sample_dim": est.sample_dim_,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gib", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--memory-limit", default="600MiB")
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.memory_limit)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    rows = []
    for size in args.sizes_gib:
        cmd = [sys.executable, __file__, "--one", str(size), "--memory-limit", args.memory_limit]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    print()
    print(f"worker memory limit {args.memory_limit}, 2 workers x 1 thread, EM diag K={K}, 3 laps")
    print(
        "| data (GiB) | rows | seconds | coordinator RSS before fit (MB) | coordinator peak (MB) "
        "| worker peak (MB) |"
    )
    print("|" + "---|" * 6)
    for r in rows:
        print(
            f"| {r['size_gib']:.2f} | {r['n_rows']:,} | {r['seconds']:.1f} | "
            f"{r['coordinator_before_mb']:.0f} | {r['coordinator_peak_mb']:.0f} | "
            f"{r['worker_peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
