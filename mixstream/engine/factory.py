"""Pick an executor for the data: in-process for small data, Dask for big stores or on request."""

from __future__ import annotations

from typing import Any

from mixstream.data.sources import open_source
from mixstream.learn.executor import BatchSource
from mixstream.vocabulary import ENGINES

#: a Zarr store bigger than this (uncompressed) gets a Dask LocalCluster under engine="auto"
DASK_THRESHOLD_BYTES = 2 * 1024**3


def as_source(data: Any, batch_size: int | None = None, **source_kw: Any) -> BatchSource:
    """``open_source(data, batch_size, check=False, **source_kw)`` (kept for its callers)."""
    return open_source(data, batch_size, check=False, **source_kw)


def make_executor(
    data: Any,
    client: Any = None,
    backend: str = "numpy",
    engine: str = "auto",
    batch_size: int | None = None,
    threshold_bytes: int = DASK_THRESHOLD_BYTES,
    **dask_kw: Any,
) -> Any:
    """An Executor over ``data``.

    Parameters
    ----------
    data : BatchSource, Zarr path / URL / zarr.Array, or array (N, D)
    client : None, distributed.Client or scheduler address
        Given: the Dask engine on that cluster.
    backend : {"numpy", "cupy"}
    engine : {"auto", "local", "dask"}
        "auto": Dask when a client is given or when ``data`` is a Zarr store bigger than
        ``threshold_bytes`` (then a LocalCluster is started), else in-process. "local" refuses
        a client; "dask" starts a LocalCluster when no client is given.
    batch_size : int, optional
        Rows per batch when ``data`` is not already a BatchSource.
    **dask_kw :
        ``DaskExecutor`` arguments (n_workers, threads_per_worker, memory_limit, ...).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "local" and client is not None:
        raise ValueError("engine='local' runs in this process: drop client= or use engine='dask'")
    source = open_source(data, batch_size, check=False)
    if engine == "auto":
        from mixstream.data.zarr_source import ZarrSource

        big = isinstance(source, ZarrSource) and source.nbytes > threshold_bytes
        engine = "dask" if client is not None or big else "local"
    if engine == "local":
        if dask_kw:
            raise ValueError(f"{sorted(dask_kw)} only apply to the Dask engine")
        from mixstream.engine.local import LocalExecutor

        return LocalExecutor(source, backend=backend)
    from mixstream.engine.dask import DaskExecutor

    return DaskExecutor(source, client=client, backend=backend, **dask_kw)
