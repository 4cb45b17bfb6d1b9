"""The Dask executor: batch functions mapped over a BatchSource on a Dask cluster.

Workers read their own batches from the source (a Zarr store they open by path or URL); the
coordinator sends the payload (model or centres) once per call, as a task the workers share, and
receives only the results. ``map_sum`` adds the batch results on the cluster in the same fixed
tree as ``SuffStats.sum`` (runs of ``SUM_FAN_IN``, left to right), so it returns bit for bit
what ``LocalExecutor.map_sum`` returns, whichever worker answers first and whether or not a
worker died on the way (a batch's result is a pure function of (batch, payload), so a lost task
is simply run again). When a ``mixstream.engine.progress.batch_listener`` is active, each batch
is reported, in the caller's thread, as its task finishes on the cluster.

A call over many batches runs them ``SUM_FAN_IN`` to a task (a ``map_sum`` task returns their
sum: the first level of the tree), because every task costs the scheduler and the worker a few
milliseconds, which at 100,000-row batches was a third of a batch's own time on 2 cores.

    with DaskExecutor(ZarrSource("big.zarr"), n_workers=4) as ex:       # a LocalCluster
        SS = ex.map_sum(kmeans_batch, centers)
    DaskExecutor(source, client="tcp://scheduler:8786")                  # a running cluster

Modules: ``cluster`` (starting the clusters mixstream owns), ``worker`` (what runs in the
worker processes: thread caps, malloc tuning, batch tasks), ``executor`` (``DaskExecutor``).
"""

from __future__ import annotations

from typing import Any

from mixstream.engine.dask.cluster import BLAS_ENV_VARS, OWN_CLUSTER_CONFIG, gpu_cluster
from mixstream.engine.dask.executor import (
    INLINE_SOURCE_BYTES,
    MIN_GROUPS_PER_THREAD,
    DaskExecutor,
    StoreNotVisibleError,
)
from mixstream.engine.dask.worker import (
    MALLOC_THRESHOLD_BYTES,
    BlasThreadsPlugin,
    run_batches,
)


def __getattr__(name: str) -> Any:
    # worker-process state that changes after import is read where it lives
    if name == "malloc_tuned":
        from mixstream.engine.dask import worker

        return worker.malloc_tuned
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BLAS_ENV_VARS",
    "INLINE_SOURCE_BYTES",
    "MALLOC_THRESHOLD_BYTES",
    "MIN_GROUPS_PER_THREAD",
    "OWN_CLUSTER_CONFIG",
    "BlasThreadsPlugin",
    "DaskExecutor",
    "StoreNotVisibleError",
    "gpu_cluster",
    "run_batches",
]
