"""Batch functions for the engine tests, importable by Dask worker processes (as
``helpers.dask_batches``: the workers unpickle them by that name).

They obey the batch-function contract ``fn(payload, X, w, **kw)`` and add delays or report
where and when they ran, so tests can kill workers mid-map and shuffle answer order.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import numpy as np

from mixstream.learn.executor import kmeans_batch
from mixstream.suffstats import SuffStats


def slow_kmeans_batch(
    centers: np.ndarray, X: Any, w: Any, delay: float = 0.2, jitter: bool = False
) -> SuffStats:
    """``kmeans_batch`` after sleeping ``delay`` seconds (a random part of it with ``jitter``)."""
    time.sleep(random.uniform(0.0, delay) if jitter else delay)
    return kmeans_batch(centers, X, w)


def reverse_delay_probe(
    payload: Any, X: Any, w: Any, n_rows: int = 1, delay: float = 0.5
) -> tuple[float, float, int]:
    """(X[0, 0], finish time, pid), sleeping longer for batches nearer the start.

    With column 0 of the data holding the row index, later batches finish first.
    """
    first = float(X[0, 0])
    time.sleep(delay * (1.0 - first / max(n_rows, 1)))
    return first, time.time(), os.getpid()


def weighted_count(payload: Any, X: Any, w: Any) -> SuffStats:
    """Rows and summed weights of a batch, as a one-component SuffStats."""
    n = float(X.shape[0])
    total = n if w is None else float(np.asarray(w).sum())
    return SuffStats(
        {"N": np.array([total]), "sum_x": np.asarray(X, np.float64).sum(0)[None]},
        scalars={"n_rows": n},
    )


def blas_state() -> dict[str, Any]:
    """BLAS / OpenMP thread counts, mixstream's thread count, zarr's decode pool, the malloc
    tuning and the thread env vars of this process."""
    import zarr
    import zarr.core.sync as zarr_sync
    from threadpoolctl import threadpool_info

    from mixstream.engine.dask import worker as engine_dask
    from mixstream.parallel import get_num_threads

    return {
        "max_threads": max((p["num_threads"] for p in threadpool_info()), default=1),
        "mixstream_threads": get_num_threads(),
        "malloc_tuned": engine_dask.malloc_tuned,
        "zarr_threads": zarr.config.get("threading.max_workers"),
        # the decode pool itself (made at the first read): what the setting has done
        "zarr_pool": getattr(zarr_sync._executor, "_max_workers", None),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }
