"""fit_flow: fit a mixture to a Zarr store, one Prefect task per lap, resumable.

    from flows.fit import fit_flow
    fit_flow("data.zarr", "runs/today")                      # DP moVB + birth/merge/delete, K=1
    fit_flow("data.zarr", "runs/today", algorithm="vb", n_components=8, moves=[])

Tasks (coarse on purpose: one task per lap, never per batch, so orchestration stays a few
milliseconds per lap against laps of seconds to hours):

    validate  options checked, the store opened and its batches planned (nothing heavy)
    init      the FitRun: resumes from <out>/checkpoints/checkpoint.msz when one exists
    lap-<n>   one lap (every batch on the Dask workers), then an atomic checkpoint; retried up
              to twice on transient failures, rebuilding from the checkpoint so a retried lap
              is never applied twice
    evaluate  the fitted attributes of the best restart
    publish   <out>/model.msz, <out>/report.html, <out>/figures/*.png, <out>/run.json, and the
              artifacts: laps table, clusters table, report (markdown with the plots)

The Dask cluster (the engine's own client: the ``scheduler`` address, else
$MIXSTREAM_SCHEDULER, else a LocalCluster of ``n_workers`` single-threaded workers) is opened once
per flow run and closed when it ends, whatever happens. The FitRun lives in the flow function and
is handed to the tasks, which run in the flow's thread (no result persistence, no caching).
A successful run removes its checkpoint (the model file holds the result), so the next run into
the same ``out`` starts afresh; a failed or interrupted run keeps it and the next run resumes.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NONE

from flows import pipeline

#: exception types that a retry cannot cure (bad data or options, bugs)
_PERMANENT = (
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    NotImplementedError,
    ZeroDivisionError,
    AssertionError,
    MemoryError,
)
ARTIFACT_KEYS = {
    "laps": "mixstream-laps",
    "clusters": "mixstream-clusters",
    "report": "mixstream-report",
    "dashboard": "mixstream-dask-dashboard",
    "progress": "mixstream-fit-progress",
}


def is_transient(exc: BaseException) -> bool:
    """Whether a failed lap is worth retrying (lost workers, connections, timeouts, I/O)."""
    return not isinstance(exc, _PERMANENT)


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:  # the lap's exception
        return is_transient(exc)
    return True


_TASK = {"cache_policy": NONE, "persist_result": False}


@task(name="validate", task_run_name="validate", **_TASK)
def validate(data: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check the options, open the store and plan its batches; a small description."""
    pipeline.make_estimator(options)
    _, plan = pipeline.describe_data(data, options["batch_size"])
    get_run_logger().info(
        "%s: %d x %d %s, %d batch(es) of %d rows",
        plan["data"],
        plan["n_rows"],
        plan["n_features"],
        plan["dtype"],
        plan["n_batches"],
        plan["batch_rows"],
    )
    return plan


@task(name="init", task_run_name="init", **_TASK)
def init(options: dict[str, Any], executor: Any, checkpoint_dir: str) -> pipeline.FitDriver:
    """The FitRun over the cluster's data, resumed from the checkpoint when there is one."""
    logger = get_run_logger()
    est = pipeline.make_estimator(options, checkpoint_dir)
    driver = pipeline.FitDriver(est, executor)
    if driver.resumed_from_lap:
        logger.info("resuming from the checkpoint after lap %d", driver.resumed_from_lap)
    dashboard = pipeline.dashboard_of(executor)
    if dashboard:
        create_link_artifact(
            link=dashboard,
            link_text="Dask dashboard",
            key=ARTIFACT_KEYS["dashboard"],
            description="The Dask scheduler's dashboard of this fit (live while the cluster runs).",
        )
    driver.progress_id = create_progress_artifact(
        progress=100.0 * driver.laps_done / est.max_laps,
        key=ARTIFACT_KEYS["progress"],
        description="Laps done out of max_laps",
    )
    return driver


@task(
    name="lap",
    task_run_name="lap-{lap}",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_transient,
    **_TASK,
)
def run_lap(driver: pipeline.FitDriver, lap: int) -> dict[str, Any]:
    """Lap ``lap``: every batch once on the workers, the global step, a checkpoint."""
    record = driver.ensure_lap(lap)
    get_run_logger().info(pipeline.lap_line(record, driver.est.max_laps))
    if driver.progress_id is not None:
        update_progress_artifact(driver.progress_id, min(100.0, 100.0 * lap / driver.est.max_laps))
    return record


@task(name="evaluate", task_run_name="evaluate", **_TASK)
def evaluate(driver: pipeline.FitDriver) -> dict[str, Any]:
    """The best restart's fitted attributes."""
    fitted = driver.finish()
    get_run_logger().info(
        "K=%d, ELBO per point %.6g after %d lap(s)%s",
        fitted["n_components_"],
        fitted["lower_bound_"],
        driver.laps_done,
        "" if fitted["converged_"] else " (not converged: raise max_laps or tol)",
    )
    return fitted


def _png_markdown(path: str, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


def report_markdown(summary: dict[str, Any]) -> str:
    """The report artifact: where the outputs are, and the report's plots."""
    report = Path(summary["report"])
    lines = [
        f"# mixstream fit: K = {summary['n_components_']}",
        "",
        "| | |",
        "| --- | --- |",
        f"| data | `{summary['data']}` ({summary['n_rows']} x {summary['n_features']}) |",
        f"| ELBO per point | {summary['lower_bound_']:.8g} |",
        f"| laps | {summary['laps']} (resumed from lap {summary['resumed_from_lap']}) |",
        f"| converged | {summary['converged_']} |",
        f"| model | `{summary['model']}` |",
        f"| report | [{report.name}]({report.as_uri()}) `{report}` |",
        f"| Dask dashboard | {summary['dashboard'] or 'none'} |",
        "",
    ]
    titles = {
        "elbo": "ELBO per lap",
        "k": "K per lap",
        "weights": "cluster weights",
        "projection": "the data in its PCA plane, by cluster",
    }
    for name, path in summary["figures"].items():
        alt = titles.get(name, name)
        lines += [f"**{alt}** (`{path}`)", "", _png_markdown(path, alt), ""]
    return "\n".join(lines)


@task(name="publish", task_run_name="publish", **_TASK)
def publish(
    driver: pipeline.FitDriver,
    data: str,
    out: str,
    plan: dict[str, Any],
    dashboard: str | None,
) -> dict[str, Any]:
    """Model, report, figures and run.json into ``out``; the artifacts; drop the checkpoint."""
    from mixstream.report import clusters_table, laps_table

    logger = get_run_logger()
    est = driver.est
    summary = pipeline.publish_files(
        est, out, data, driver.executor.source, plan, driver.resumed_from_lap, dashboard
    )
    create_table_artifact(
        table=laps_table(est.history_),
        key=ARTIFACT_KEYS["laps"],
        description=f"Laps of the fit into {summary['out']} (ELBO per point, K, moves "
        "accepted / tried, seconds); a resumed run lists the laps before and after",
    )
    counts = [float(w) * plan["n_rows"] for w in est.weights_]
    create_table_artifact(
        table=clusters_table(est.weights_, getattr(est, "means_", None), counts),
        key=ARTIFACT_KEYS["clusters"],
        description=f"The {est.n_components_} clusters, heaviest first",
    )
    create_markdown_artifact(
        markdown=report_markdown(summary),
        key=ARTIFACT_KEYS["report"],
        description=f"Report of the fit into {summary['out']}",
    )
    if driver.progress_id is not None:
        update_progress_artifact(driver.progress_id, 100.0)
    pipeline.remove_checkpoint(est.checkpoint_dir)
    logger.info("model:  %s", summary["model"])
    logger.info("report: %s", summary["report"])
    return summary


@flow(name="fit-flow", persist_result=False)
def fit_flow(
    data: str,
    out: str,
    n_components: int = 1,
    allocation: str = "dp",
    likelihood: str = "gauss",
    covariance_type: str = "full",
    algorithm: str = "movb",
    moves: list[str] | None = None,
    batch_size: int | None = None,
    max_laps: int = 50,
    tol: float = 1e-4,
    random_state: int = 0,
    scheduler: str | None = None,
    n_workers: int = 2,
) -> dict[str, Any]:
    """Fit a mixture to the Zarr store ``data``; model, report and checkpoints go to ``out``.

    Parameters
    ----------
    data : path or URL of a Zarr store (a group with the array "X", rows = points); every Dask
        worker must be able to open it
    out : output directory: model.msz, report.html, figures/, run.json, checkpoints/
    n_components, allocation, likelihood, covariance_type, algorithm, batch_size, max_laps,
    tol, random_state : MixtureModel options (defaults: DP memoized VB from one component)
    moves : moVB moves; None means ["birth", "merge", "delete"] for algorithm="movb", none
        otherwise
    scheduler : Dask scheduler address (tcp://host:8786); None: $MIXSTREAM_SCHEDULER, else a
        LocalCluster of ``n_workers`` single-threaded workers started and closed by this run
    n_workers : workers of that LocalCluster

    Returns
    -------
    dict: out, model, report, figures, n_components_, lower_bound_, converged_, laps,
    resumed_from_lap, dashboard, seconds, and the data's n_rows / n_features.
    """
    logger = get_run_logger()
    t0 = time.perf_counter()
    options = pipeline.fit_options(
        n_components,
        allocation,
        likelihood,
        covariance_type,
        algorithm,
        moves,
        batch_size,
        max_laps,
        tol,
        random_state,
    )
    plan = validate(data, options)
    out_dir = Path(out).resolve()
    checkpoint_dir = str(out_dir / pipeline.CHECKPOINT_DIR)
    source, _ = pipeline.describe_data(data, batch_size)
    with pipeline.open_executor(source, scheduler, n_workers) as executor:
        dashboard = pipeline.dashboard_of(executor)
        logger.info("Dask dashboard: %s", dashboard)
        driver = init(options, executor, checkpoint_dir)
        lap = driver.laps_done
        while not driver.done:
            lap += 1
            run_lap(driver, lap)
        evaluate(driver)
        summary = publish(driver, data, str(out_dir), plan, dashboard)
    summary["seconds"] = time.perf_counter() - t0
    # time spent inside the laps this run computed (the rest is set-up and orchestration)
    summary["lap_seconds"] = sum(
        float(h.get("seconds", 0.0)) for h in driver.est.history_[driver.resumed_from_lap :]
    )
    return summary
