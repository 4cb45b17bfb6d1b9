"""ingest_flow: a .npy, CSV or Parquet file into a chunked Zarr store, written atomically
(mixstream.data.ingest), so a failed run leaves nothing half-written and a rerun is safe."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows._artifacts import TASK, PrefectArtifacts
from mixstream import app


@task(name="ingest", task_run_name="ingest", **TASK)
def ingest_task(src: str, dest: str, options: dict[str, Any]) -> dict[str, Any]:
    return app.ingest_to_store(src, dest, **options)


@flow(name="ingest-flow", persist_result=False)
def ingest_flow(
    src: str,
    dest: str,
    chunk_rows: int | None = None,
    shard_rows: int | None = None,
    overwrite: bool = False,
    header: bool | None = None,
    weights: str | None = None,
    na_values: list[str] | None = None,
) -> str:
    """Copy ``src`` (.npy, .csv / .tsv / .txt, .parquet) into the Zarr store ``dest`` (array "X").

    ``header``: whether a CSV's first line names the columns (None: only a line of text is);
    ``weights``: a column written as the store's sample_weight; ``na_values``: cells read as
    NaN (missing values). Returns ``dest``'s path.
    """
    options = {k: v for k, v in locals().items() if k not in ("src", "dest")}
    info = ingest_task(src, dest, options)
    app.publish_ingest(PrefectArtifacts(), src, info)
    return info["dest"]
