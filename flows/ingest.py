"""ingest_flow: copy a .npy, CSV or Parquet file into a chunked Zarr store, as a flow run.

    from flows.ingest import ingest_flow
    ingest_flow("points.csv", "points.zarr", chunk_rows=65_536, shard_rows=1_048_576)

The store is written under a temporary name and renamed into place when complete (see
mixstream.data.ingest), so a failed run leaves nothing half-written; re-running is safe.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

ARTIFACT_KEY = "mixstream-ingest"


@task(name="ingest", task_run_name="ingest", cache_policy=NONE, persist_result=False)
def ingest_task(
    src: str, dest: str, chunk_rows: int | None, shard_rows: int | None, overwrite: bool
) -> dict[str, Any]:
    import zarr

    from mixstream.data.ingest import ingest

    path = ingest(src, dest, chunk_rows=chunk_rows, shard_rows=shard_rows, overwrite=overwrite)
    X = zarr.open_group(path, mode="r")["X"]
    info = {
        "dest": path,
        "shape": [int(n) for n in X.shape],
        "dtype": str(X.dtype),
        "chunks": [int(n) for n in X.chunks],
        "shards": None if X.shards is None else [int(n) for n in X.shards],
    }
    get_run_logger().info("%s -> %s: %s %s", src, path, tuple(info["shape"]), info["dtype"])
    return info


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
    create_markdown_artifact(
        markdown="\n".join(
            [
                "# mixstream ingest",
                "",
                f"- source: `{src}`",
                f"- store: `{info['dest']}` (array `X`)",
                f"- shape: {tuple(info['shape'])}, dtype {info['dtype']}",
                f"- chunks: {tuple(info['chunks'])}, shards: "
                f"{'none' if info['shards'] is None else tuple(info['shards'])}",
            ]
        ),
        key=ARTIFACT_KEY,
        description=f"Zarr store written from {src}",
    )
    return info["dest"]
