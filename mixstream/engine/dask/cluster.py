"""Starting the Dask clusters mixstream owns: a LocalCluster of worker processes, or one
worker per GPU.
"""

from __future__ import annotations

from typing import Any

#: scheduler settings for the clusters mixstream starts itself. A lap's batch tasks are all
#: known when it starts and each reads its own rows only when it runs, so the scheduler's
#: queuing of root tasks (worker-saturation 1.1) buys nothing and costs a scheduler round trip
#: between one batch and the next on every worker (measured: 15-25% of a lap at 100,000-row
#: batches on 2 cores). A cluster the user brings keeps its own settings.
OWN_CLUSTER_CONFIG = {"distributed.scheduler.worker-saturation": float("inf")}
BLAS_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def start_cluster(
    backend: str,
    n_workers: int | None,
    threads_per_worker: int,
    memory_limit: str | int | float | None,
    blas_threads: int,
    **cluster_kwargs: Any,
) -> Any:
    """A cluster of worker processes for one executor, with ``OWN_CLUSTER_CONFIG``.

    Parameters
    ----------
    backend : {"numpy", "cupy"}
        "cupy": ``gpu_cluster`` (one worker per GPU); else a ``LocalCluster``.
    n_workers, threads_per_worker, memory_limit :
        The LocalCluster's (``n_workers`` caps the GPU workers).
    blas_threads : int
        BLAS / OpenMP threads per worker, set in the workers' environment (``BLAS_ENV_VARS``);
        an ``env=`` in ``cluster_kwargs`` is added on top.
    **cluster_kwargs :
        More LocalCluster arguments.
    """
    import dask
    from distributed import LocalCluster

    env = {k: str(blas_threads) for k in BLAS_ENV_VARS}
    env.update(cluster_kwargs.pop("env", {}) or {})
    with dask.config.set(OWN_CLUSTER_CONFIG):
        if backend == "cupy":
            return gpu_cluster(n_workers, threads_per_worker, env)
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            memory_limit=memory_limit,
            env=env,
            **cluster_kwargs,
        )


def gpu_cluster(n_workers: int | None, threads_per_worker: int, env: dict[str, str]) -> Any:
    """One Dask worker per visible GPU.

    dask-cuda's LocalCUDACluster when installed (it pins each worker to its GPU and sets up the
    device memory pool); otherwise plain worker processes, each with CUDA_VISIBLE_DEVICES set to
    its own device, so two workers never share a GPU.
    """
    from mixstream.backend import namespace

    n_gpus = namespace("cupy").cuda.runtime.getDeviceCount()
    n = n_gpus if n_workers is None else min(n_workers, n_gpus)
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        from distributed import Nanny, Scheduler, SpecCluster

        workers = {
            f"gpu-{i}": {
                "cls": Nanny,
                "options": {
                    "nthreads": threads_per_worker,
                    "env": {**env, "CUDA_VISIBLE_DEVICES": str(i)},
                },
            }
            for i in range(n)
        }
        scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
        return SpecCluster(workers=workers, scheduler=scheduler)
    devices = ",".join(str(i) for i in range(n))
    return LocalCUDACluster(
        CUDA_VISIBLE_DEVICES=devices, threads_per_worker=threads_per_worker, env=env
    )
