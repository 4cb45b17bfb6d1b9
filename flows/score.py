"""score_flow: labels and per-row log-likelihoods of a Zarr store, written to Zarr.

Tasks: ``load`` (the model file), ``score`` (each batch on the Dask workers writes its own
chunks: mixstream.app.score_into), then its artifacts (rows per cluster, a summary).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from flows._artifacts import TASK, PrefectArtifacts
from mixstream import app


@task(name="load", task_run_name="load", **TASK)
def load(model: str) -> Any:
    from mixstream import MixtureModel

    return MixtureModel.load(model)


@task(name="score", task_run_name="score", retries=1, retry_delay_seconds=2, **TASK)
def score(est: Any, data: str, out: str, overwrite: bool, proba: bool = False) -> dict[str, Any]:
    result = app.score_into(est, data, out, overwrite=overwrite, proba=proba)
    get_run_logger().info("%s: %s rows", result["out"], result["n_rows"])
    return result


@flow(name="score-flow", persist_result=False)
def score_flow(
    model: str,
    data: str,
    out: str,
    scheduler: str | None = None,
    n_workers: int = 2,
    overwrite: bool = True,
    proba: bool = False,
) -> dict[str, Any]:
    """Write the labels and per-row log-likelihoods of the store ``data`` to the Zarr group ``out``.

    Parameters
    ----------
    model : a model file written by fit_flow (<out>/model.msz) or MixtureModel.save
    data : path or URL of a Zarr store with the model's number of features
    out : the Zarr group to write (arrays "labels", "log_likelihood", and "proba" with proba)
    scheduler, n_workers : the Dask cluster, as in fit_flow
    overwrite, proba : replace an existing ``out`` (once complete); write responsibilities

    Returns
    -------
    dict: out, n_rows, mean_log_likelihood, counts (rows per cluster), model_K.
    """
    out_path = app.check_output(out, overwrite)
    est = load(model)
    source, _ = app.describe_data(data, est.batch_size, getattr(est, "missing", "error"))
    with app.open_executor(source, scheduler, n_workers) as executor:
        est.client = executor.client  # the scoring borrows this run's cluster
        try:
            result = score(est, data, str(out_path), overwrite, proba)
        finally:
            est.client = None
    app.publish_scores(PrefectArtifacts(), result, str(app.resolve_out(model)), data)
    return result
