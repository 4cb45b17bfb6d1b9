"""score_flow: labels and per-row log-likelihoods of a Zarr store, written to Zarr.

    from flows.score import score_flow
    score_flow("runs/today/model.msz", "new.zarr", "runs/today/labels.zarr")

Tasks: ``load`` (the model file), ``score`` (every batch on the Dask workers, each writing its
own chunks of "labels" (int32) and "log_likelihood" (float64) into the output group, which is
renamed into place when complete), ``publish`` (artifacts: rows per cluster, a summary).
With ``overwrite`` (the default, so that scheduled runs can rewrite their output) an existing
output is replaced only once the new one is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from flows import pipeline

_TASK = {"cache_policy": NONE, "persist_result": False}
ARTIFACT_KEYS = {"counts": "mixstream-score-counts", "summary": "mixstream-score"}


@task(name="load", task_run_name="load", **_TASK)
def load(model: str) -> Any:
    """The fitted MixtureModel saved in ``model``."""
    from mixstream import MixtureModel

    est = MixtureModel.load(model)
    get_run_logger().info("%s: K=%d, %d features", model, est.n_components_, est.n_features_in_)
    return est


@task(name="score", task_run_name="score", retries=1, retry_delay_seconds=2, **_TASK)
def score(est: Any, data: str, out: str, overwrite: bool, proba: bool = False) -> dict[str, Any]:
    """Labels and log-likelihoods of every row of ``data`` into the Zarr group ``out``."""
    result = pipeline.score_into(est, data, out, overwrite=overwrite, proba=proba)
    get_run_logger().info(
        "%s: %s rows, mean log-likelihood %.6g",
        result["out"],
        result["n_rows"],
        result["mean_log_likelihood"],
    )
    return result


@task(name="publish", task_run_name="publish", **_TASK)
def publish(result: dict[str, Any], model: str, data: str) -> None:
    counts = result["counts"]
    total = max(1, sum(counts))
    create_table_artifact(
        table=[
            {"component": k, "rows": c, "fraction": c / total}
            for k, c in sorted(enumerate(counts), key=lambda kc: -kc[1])
        ],
        key=ARTIFACT_KEYS["counts"],
        description=f"Rows per cluster in {result['out']}",
    )
    create_markdown_artifact(
        markdown="\n".join(
            [
                "# mixstream scores",
                "",
                f"- model: `{model}`",
                f"- data: `{data}`",
                f"- output: `{result['out']}` (arrays `labels`, `log_likelihood`)",
                f"- rows: {result['n_rows']}",
                f"- mean log-likelihood per row: {result['mean_log_likelihood']:.8g}",
            ]
        ),
        key=ARTIFACT_KEYS["summary"],
        description=f"Scores written to {result['out']}",
    )


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
    overwrite : replace an existing ``out`` (atomically, once the new one is complete)
    proba : also write the (n_rows, K) responsibilities

    Returns
    -------
    dict: out, n_rows, mean_log_likelihood, counts (rows per cluster), model_K.
    """
    out_path = pipeline.check_output(out, overwrite)
    est = load(model)
    source, _ = pipeline.describe_data(data, est.batch_size)
    with pipeline.open_executor(source, scheduler, n_workers) as executor:
        get_run_logger().info("Dask dashboard: %s", pipeline.dashboard_of(executor))
        est.client = executor.client  # the scoring borrows this run's cluster
        try:
            result = score(est, data, str(out_path), overwrite, proba)
        finally:
            est.client = None
    publish(result, str(Path(model).resolve()), data)
    return result
