"""ingest_flow: a .npy, CSV or Parquet file into a chunked Zarr store, written atomically
(mixstream.data.ingest), so a failed run leaves nothing half-written and a rerun is safe."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows._artifacts import TASK, PrefectArtifacts
from mixstream import app


@task(name="ingest", task_run_name="ingest", **TASK)
def ingest_task(
    src: str, dest: str, chunk_rows: int | None, shard_rows: int | None, overwrite: bool
) -> dict[str, Any]:
    return app.ingest_to_store(src, dest, chunk_rows, shard_rows, overwrite)


@flow(name="ingest-flow", persist_result=False)
def ingest_flow(
    src: str,
    dest: str,
    chunk_rows: int | None = None,
    shard_rows: int | None = None,
    overwrite: bool = False,
) -> str:
    """Copy ``src`` (.npy, .csv / .tsv / .txt, .parquet) into the Zarr store ``dest`` (array "X").

    Returns the absolute path of ``dest``.
    """
    info = ingest_task(src, dest, chunk_rows, shard_rows, overwrite)
    app.publish_ingest(PrefectArtifacts(), src, info)
    return info["dest"]
