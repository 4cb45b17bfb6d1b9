"""fit_flow: fit a mixture to a Zarr store, one Prefect task per lap, resumable.

Tasks, each one step of mixstream.app.fit: ``validate``, ``init`` (resumed from
<out>/checkpoints when there is one), ``lap-<n>`` (all batches on the Dask workers, then a
checkpoint; retried on transient failures, never applied twice), ``evaluate``, ``publish``.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task

from flows._artifacts import TASK, PrefectArtifacts
from mixstream import app, urls
from mixstream.options import RUN_DEFAULTS as D
from mixstream.options import Algorithm, Allocation, CovarianceType, Likelihood, Missing, Move


@task(name="validate", task_run_name="validate", **TASK)
def validate(data: str, options: dict[str, Any]) -> dict[str, Any]:
    plan = app.check_fit(data, options)
    get_run_logger().info("%s: %d x %d", plan["data"], plan["n_rows"], plan["n_features"])
    return plan


@task(name="init", task_run_name="init", **TASK)
def init(options: dict[str, Any], executor: Any, checkpoint_dir: str, artifacts: Any) -> Any:
    run = app.start_run(options, executor, checkpoint_dir, artifacts)
    if run.resumed_from_lap:
        get_run_logger().info("resuming from the checkpoint after lap %d", run.resumed_from_lap)
    return run


@task(name="lap", task_run_name="lap-{lap}", retries=2, retry_delay_seconds=2,
      retry_condition_fn=app.retry_lap, **TASK)  # fmt: skip
def run_lap(run: Any, lap: int, artifacts: Any) -> dict[str, Any]:
    record = app.run_lap(run, lap, artifacts)
    get_run_logger().info(app.lap_line(record, run.options.max_laps))
    return record


@task(name="evaluate", task_run_name="evaluate", **TASK)
def evaluate(run: Any) -> dict[str, Any]:
    fitted = app.finish_run(run)
    get_run_logger().info(
        "K=%d, ELBO per point %.6g", fitted["n_components_"], fitted["lower_bound_"]
    )
    return fitted


@task(name="publish", task_run_name="publish", **TASK)
def publish(run: Any, data: str, out: str, plan: dict, dashboard: Any, artifacts: Any) -> dict:
    summary = app.publish_run(run, data, out, plan, dashboard, artifacts)
    get_run_logger().info("model %s, report %s", summary["model"], summary["report"])
    return summary


@flow(name="fit-flow", persist_result=False)
def fit_flow(
    data: str,
    out: str,
    n_components: int = D.n_components,
    allocation: Allocation = D.allocation,
    likelihood: Likelihood = D.likelihood,
    covariance_type: CovarianceType = D.covariance_type,
    algorithm: Algorithm = D.algorithm,
    moves: list[Move] | None = D.moves,
    batch_size: int | None = D.batch_size,
    max_laps: int = D.max_laps,
    tol: float = D.tol,
    random_state: int = D.random_state,
    scheduler: str | None = None,
    n_workers: int = 2,
    overwrite: bool = False,
    latent_dim: int | None = None,
    missing: Missing = D.missing,
) -> dict[str, Any]:
    """Fit a mixture to the Zarr store ``data``; model, report and checkpoints go to ``out``.

    Parameters
    ----------
    data : path of a Zarr store (a group with the array "X"), readable by every worker
    out : the run directory: model.msz, report.html, figures/, run.json, checkpoints/
    n_components, ..., random_state : MixtureModel options (words, defaults: mixstream.options)
    scheduler : Dask scheduler address; None: $MIXSTREAM_SCHEDULER, else a LocalCluster of
        ``n_workers`` single-threaded workers started and closed by this run
    latent_dim : likelihood="hmog": the latent dimension d
    overwrite : replace a finished run in ``out``; an unfinished run is resumed either way
    missing : "error" refuses NaN in the store; "marginalize" integrates missing values out

    Returns
    -------
    dict: the run directory's summary (mixstream.app.write_run_dir), seconds, lap_seconds.
    """
    t0 = time.perf_counter()
    options = app.fit_options(
        n_components, allocation, likelihood, covariance_type, algorithm, moves,
        batch_size, max_laps, tol, random_state, latent_dim, missing,
    )  # fmt: skip
    plan = validate(data, options)
    out_dir = app.resolve_out(out)  # a Path, or an fsspec URL as given
    app.prepare_run_dir(out_dir, overwrite)
    source, _ = app.describe_data(data, batch_size, missing)
    artifacts = PrefectArtifacts()
    with app.open_executor(source, scheduler, n_workers) as executor:
        dashboard = app.dashboard_of(executor)
        run = init(options, executor, urls.join(out_dir, app.CHECKPOINT_DIR), artifacts)
        while not run.done:
            run_lap(run, run.laps_done + 1, artifacts)
        evaluate(run)
        summary = publish(run, data, str(out_dir), plan, dashboard, artifacts)
    return app.timed(summary, run, t0)
