"""Per-row outputs of a fitted model over a store, written to Zarr by the workers.

Each batch's labels and log-likelihoods are written by the task that computed them, into an
output group whose chunks are the source's batch-aligned chunks, so no two tasks write the same
chunk. The group is written under a temporary name and renamed into place when every batch is
done (``mixstream.atomic.atomic_directory``): a reader never sees a half-written output. To an
object-store URL the group is written locally and uploaded with its root zarr.json last
(``mixstream.urls.staged_directory``): it opens only once every chunk is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mixstream import urls
from mixstream.backend import logsumexp_rows, to_host
from mixstream.learn.executor import Executor
from mixstream.model import Model
from mixstream.suffstats import SuffStats

#: rows per local step inside one batch (bounds the (rows, K) responsibilities in memory)
_BLOCK_ROWS = 65_536


def write_batch_outputs(
    payload: tuple[Model, str, bool], X: Any, w: Any, rows: tuple[int, int]
) -> SuffStats:
    """Labels and log-likelihoods of one batch into the output group; returns counts."""
    import zarr

    model, path, proba = payload
    group = zarr.open_group(path, mode="r+")
    start = rows[0]
    counts = np.zeros(model.K)
    total = 0.0
    for s in range(0, X.shape[0], _BLOCK_ROWS):
        LP = model.local_step(X[s : s + _BLOCK_ROWS])
        labels = to_host(LP["resp"].argmax(axis=1)).astype(np.int32)
        log_norm = to_host(model.log_density(X[s : s + _BLOCK_ROWS]))
        group["labels"][start + s : start + s + labels.shape[0]] = labels
        group["log_likelihood"][start + s : start + s + labels.shape[0]] = log_norm
        if proba:
            group["proba"][start + s : start + s + labels.shape[0]] = to_host(LP["resp"])
        counts += np.bincount(labels, minlength=model.K)
        total += float(log_norm.sum())
    return SuffStats({"N": counts}, model.uids, {"log_norm": total, "n_rows": float(X.shape[0])})


write_batch_outputs.needs_rows = True


def score_to_zarr(
    model: Model, executor: Executor, out: str | os.PathLike, proba: bool = False
) -> dict[str, Any]:
    """Write "labels" (N,) int32, "log_likelihood" (N,) float64 and, with ``proba``, the
    responsibilities "proba" (N, K) float64 for every row to the Zarr group ``out``.

    Returns
    -------
    dict with "path", "mean_log_likelihood" and "counts" (rows per component).
    """
    import zarr

    out = urls.resolve(out) if urls.is_url(out) else Path(out)
    taken = urls.exists(urls.join(out, "zarr.json")) if urls.is_url(out) else out.exists()
    if taken:
        raise FileExistsError(f"{out} exists; scores are never written over existing data")
    source = executor.source
    chunk = _output_chunk_rows(source)
    # an object store: written locally, uploaded with the root zarr.json last (mixstream.urls)
    with urls.staged_directory(out, marker="zarr.json") as tmp:
        group = zarr.open_group(tmp, mode="w-")
        # named dimensions: xarray.open_zarr opens the group
        rows, both = ("sample",), ("sample", "component")
        group.create_array(
            "labels", shape=(source.n_rows,), chunks=(chunk,), dtype="int32", dimension_names=rows
        )
        group.create_array(
            "log_likelihood",
            shape=(source.n_rows,),
            chunks=(chunk,),
            dtype="float64",
            dimension_names=rows,
        )
        if proba:
            group.create_array(
                "proba",
                shape=(source.n_rows, model.K),
                chunks=(chunk, model.K),
                dtype="float64",
                dimension_names=both,
            )
        SS = executor.map_sum(write_batch_outputs, (model, tmp, proba))
        group.attrs["mean_log_likelihood"] = SS.scalars["log_norm"] / SS.scalars["n_rows"]
    return {
        "path": str(out),
        "mean_log_likelihood": SS.scalars["log_norm"] / SS.scalars["n_rows"],
        "counts": SS.N,
    }


def _output_chunk_rows(source: Any) -> int:
    """Largest chunk size that divides every batch boundary, so each task owns its chunks."""
    starts = [a for a, _ in source.batches[1:]]
    return int(np.gcd.reduce(starts)) if starts else min(source.n_rows, 1 << 20)


def row_outputs(payload: tuple[Model, str], X: Any, w: Any) -> np.ndarray:
    """Per-row outputs of one batch, on the host: ``what`` is "log_density" (rows,),
    "labels" (rows,) int64 or "proba" (rows, K); computed in blocks of ``_BLOCK_ROWS`` rows
    (the weights ``w`` play no part: these are the model's values of each row)."""
    model, what = payload
    parts = []
    for s in range(0, X.shape[0], _BLOCK_ROWS):
        Xs = X[s : s + _BLOCK_ROWS]
        if what == "log_density":
            parts.append(to_host(model.log_density(Xs)))
            continue
        # the same arithmetic as the estimator's in-memory predict / predict_proba
        log_resp = to_host(logsumexp_rows(model.log_prob(Xs))[1])
        parts.append(log_resp.argmax(axis=1) if what == "labels" else np.exp(log_resp))
    return np.concatenate(parts)
