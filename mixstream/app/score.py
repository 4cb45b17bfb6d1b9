"""Scoring a store with a fitted model into a Zarr group, and copying files into stores.

result = score_to_store("runs/today", "new.zarr", "runs/today/labels.zarr")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mixstream import urls
from mixstream.app.rundir import (
    check_output,
    describe_data,
    model_path,
    open_executor,
    resolve_scheduler,
)
from mixstream.atomic import atomic_directory


def load_for_scoring(model: str | os.PathLike, data: str) -> tuple[Any, Any]:
    """The fitted MixtureModel in ``model`` (a file or a run directory) and the source of
    ``data``, checked to have the model's features."""
    from mixstream import MixtureModel

    est = MixtureModel.load(model_path(model))
    source, _ = describe_data(data, est.batch_size, getattr(est, "missing", "error"))
    if source.n_features != est.n_features_in_:
        raise ValueError(
            f"{data} has {source.n_features} features; the model was fitted with "
            f"{est.n_features_in_}"
        )
    return est, source


def score_into(
    est: Any, data: str, out: str | os.PathLike, overwrite: bool = False, proba: bool = False
) -> dict[str, Any]:
    """Labels and per-row log-likelihoods of ``data`` into the Zarr group ``out``.

    Written under a temporary name and renamed into place; with ``overwrite`` an existing
    ``out`` is replaced only once the new one is complete.

    Returns
    -------
    dict
        out, model_K, fit_id (of the model, None when it has none), n_rows,
        mean_log_likelihood, counts (rows per cluster). The group's attributes hold the
        model's fit_id too.
    """
    out = check_output(out, overwrite)
    if urls.is_url(out):  # built locally, uploaded with its root zarr.json last
        from mixstream.app.remote import publish_zarr_tree, stage_path, staged_store

        with staged_store(out) as stage:
            fresh = stage_path(stage)
            result = est.score_store(data, fresh, proba=proba)
            _record_model(fresh, est)
            publish_zarr_tree(fresh, out)
    else:
        with atomic_directory(out, overwrite=True) as fresh:
            result = est.score_store(data, fresh, proba=proba)
            _record_model(fresh, est)
    result.pop("group", None)
    counts = np.asarray(result.get("counts", []), dtype=np.float64)
    return {
        "out": str(out),
        "model_K": int(est.n_components_),
        "fit_id": getattr(est, "fit_id_", None),
        "n_rows": int(counts.sum()) if counts.size else None,
        "mean_log_likelihood": float(result["mean_log_likelihood"]),
        "counts": [int(c) for c in counts],
    }


def _record_model(group: str, est: Any) -> None:
    """The labels' attributes: the fit_id of the model that wrote them (when it has one)."""
    import zarr

    attrs = {"n_components": int(est.n_components_)}
    if getattr(est, "fit_id_", None):
        attrs["fit_id"] = str(est.fit_id_)
    zarr.open_group(group, mode="r+").attrs.update(attrs)


def score_to_store(
    model: str | os.PathLike,
    data: str,
    out: str | os.PathLike,
    scheduler: str | None = None,
    n_workers: int | None = None,
    overwrite: bool = False,
    proba: bool = False,
) -> dict[str, Any]:
    """Score ``data`` with ``model`` into ``out`` in this process (see ``score_into``); on a
    Dask cluster when a scheduler or ``n_workers`` is given, else where mixstream chooses."""
    est, source = load_for_scoring(model, data)
    check_output(out, overwrite)
    engine = "dask" if (n_workers or resolve_scheduler(scheduler)) else "auto"
    with open_executor(source, scheduler, n_workers or 2, engine) as executor:
        est.client = getattr(executor, "client", None)
        try:
            return score_into(est, data, out, overwrite, proba)
        finally:
            est.client = None


def ingest_to_store(
    src: str,
    dest: str,
    chunk_rows: int | None = None,
    shard_rows: int | None = None,
    overwrite: bool = False,
    header: bool | None = None,
    weights: str | None = None,
    na_values: Sequence[str] | None = (),
) -> dict[str, Any]:
    """Copy a .npy, CSV or Parquet file into the Zarr store ``dest`` (array "X"); what was
    written: dest, shape, dtype, chunks, shards, weights (the weights column, or None).
    ``header``, ``weights``, ``na_values``: see mixstream.data.ingest.ingest."""
    import zarr

    from mixstream.data.ingest import ingest

    kw = {
        "chunk_rows": chunk_rows,
        "shard_rows": shard_rows,
        "header": header,
        "weights": weights,
        "na_values": na_values,
    }
    if urls.is_url(dest):  # refused in the command line's words before anything is read
        dest = check_output(dest, overwrite)
    path = ingest(src, dest, overwrite=overwrite, **kw)
    return _store_info(zarr.open_group(path, mode="r")["X"], path, weights)


def _store_info(X: Any, dest: str, weights: str | None) -> dict[str, Any]:
    return {
        "dest": dest,
        "shape": [int(n) for n in X.shape],
        "dtype": str(X.dtype),
        "chunks": [int(n) for n in X.chunks],
        "shards": None if X.shards is None else [int(n) for n in X.shards],
        "weights": weights,
    }
