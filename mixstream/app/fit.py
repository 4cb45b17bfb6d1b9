"""A fit into a run directory, step by step or in one call, without Prefect.

The steps are what ``fit_flow``'s tasks run (validate, start, one lap, finish, publish); the
command line's ``mixstream fit --no-prefect`` runs them all with ``fit_to_dir``:

    options = fit_options(n_components=1, algorithm="movb")
    summary = fit_to_dir("data.zarr", "runs/today", options)   # model, report, run.json

Each lap is one ``FitRun.ensure_lap`` (mixstream.fit_run: the one lap driver, also behind
``MixtureModel.fit``), with a checkpoint after it; a fit run again into the same directory
resumes from the last checkpoint, and a finished one removes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixstream import urls
from mixstream.app.outputs import write_run_dir
from mixstream.app.publish import ARTIFACT_KEYS, NullPublisher, Publisher, publish_fit
from mixstream.app.rundir import (
    CHECKPOINT_DIR,
    dashboard_of,
    describe_data,
    make_estimator,
    open_executor,
    prepare_run_dir,
    remove_checkpoint,
    resolve_scheduler,
)

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


def is_transient(exc: BaseException) -> bool:
    """Whether a failed lap is worth retrying (lost workers, connections, timeouts, I/O)."""
    return not isinstance(exc, _PERMANENT)


def retry_lap(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect ``retry_condition_fn`` for a lap: retry only transient failures."""
    try:
        state.result()
    except Exception as exc:  # the lap's exception
        return is_transient(exc)
    return True


def lap_line(record: dict, max_laps: int) -> str:
    """One progress line: lap, ELBO per point, K, accepted/tried moves, seconds."""
    moves = ""
    tried = record.get("moves_tried") or {}
    accepted = record.get("moves_accepted") or {}
    if tried:
        moves = "  " + " ".join(f"{m} {accepted.get(m, 0)}/{n}" for m, n in tried.items())
    return (
        f"lap {record['lap']:>3}/{max_laps}  ELBO {record['elbo']:.6g}  K {record['K']}"
        f"{moves}  {record['seconds']:.2f} s"
    )


def lap_detail(record: dict, previous: dict | None = None) -> str:
    """The detail of a lap for verbose output: the ELBO change and why moves were rejected."""
    from mixstream.learn.history import rejected_text

    change = "" if previous is None else f"ELBO change {record['elbo'] - previous['elbo']:+.3g}; "
    rejected = rejected_text(record.get("moves_rejected")) or "none"
    return f"lap {record['lap']} detail: {change}rejected moves: {rejected}"


def check_fit(data: str, options: dict[str, Any]) -> dict[str, Any]:
    """Check the options, open the store and plan its batches (nothing heavy); the plan."""
    make_estimator(options)
    _, plan = describe_data(data, options["batch_size"], options.get("missing", "error"))
    return plan


def start_run(
    options: dict[str, Any],
    executor: Any,
    checkpoint_dir: str | os.PathLike,
    publisher: Publisher | None = None,
) -> Any:
    """The FitRun over the executor's data, resumed from the checkpoint when there is one.

    Publishes the Dask dashboard's link and the progress so far.
    """
    publisher = publisher or NullPublisher()
    est = make_estimator(options, checkpoint_dir)
    if est.n_init != 1:
        raise ValueError("a fit into a run directory runs one restart (n_init=1)")
    est.n_features_in_ = executor.source.n_features
    run = est.start_fit(executor)
    dashboard = dashboard_of(executor)
    if dashboard:
        publisher.link(
            ARTIFACT_KEYS["dashboard"],
            dashboard,
            "Dask dashboard",
            "The Dask scheduler's dashboard of this fit (live while the cluster runs).",
        )
    publisher.progress(
        ARTIFACT_KEYS["progress"],
        100.0 * run.laps_done / est.max_laps,
        "Laps done out of max_laps",
    )
    return run


def run_lap(run: Any, lap: int, publisher: Publisher | None = None) -> dict[str, Any]:
    """Lap ``lap`` (every batch once on the workers, the global step, a checkpoint), unless it
    is done already; its history record. Safe to retry (``FitRun.ensure_lap``)."""
    record = run.ensure_lap(lap)
    max_laps = run.options.max_laps
    (publisher or NullPublisher()).progress(
        ARTIFACT_KEYS["progress"], min(100.0, 100.0 * lap / max_laps), "Laps done out of max_laps"
    )
    return record


def fitted_summary(est: Any) -> dict[str, Any]:
    """The fitted attributes of an estimator, JSON-able."""
    return {
        "n_components_": int(est.n_components_),
        "lower_bound_": float(est.lower_bound_),
        "converged_": bool(est.converged_),
        "n_iter_": int(est.n_iter_),
        "weights_": [float(w) for w in est.weights_],
    }


def finish_run(run: Any) -> dict[str, Any]:
    """Set the estimator's fitted attributes from the best restart; a summary of them."""
    model, result = run.finish()
    run.est.model_ = model
    run.est._set_fitted(result)
    return fitted_summary(run.est)


def publish_run(
    run: Any,
    data: str,
    out: str | os.PathLike,
    plan: dict[str, Any],
    dashboard: str | None = None,
    publisher: Publisher | None = None,
) -> dict[str, Any]:
    """Model, report, figures and run.json into ``out``; the artifacts; drop the checkpoint.

    Returns the run directory's summary (see ``write_run_dir``).
    """
    est = run.est
    summary = write_run_dir(
        est, out, data, run.executor.source, plan, run.resumed_from_lap, dashboard
    )
    publish_fit(publisher or NullPublisher(), est, summary, plan["n_rows"])
    remove_checkpoint(est.checkpoint_dir)
    return summary


def fit_to_dir(
    data: str,
    out: str | os.PathLike,
    options: dict[str, Any],
    scheduler: str | None = None,
    n_workers: int | None = None,
    publisher: Publisher | None = None,
    on_start: Callable[[Any], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fit ``options`` to the store ``data`` into the run directory ``out``, in this process.

    Parameters
    ----------
    data : str
        Path or URL of a Zarr store (a group with the 2-D array "X").
    out : path
        The run directory: model.msz, report.html, figures/, run.json, checkpoints/.
    options : dict
        ``fit_options(...)``.
    scheduler : str, optional
        A Dask scheduler address (else $MIXSTREAM_SCHEDULER).
    n_workers : int, optional
        Workers of a LocalCluster started for the fit; with neither this nor a scheduler,
        mixstream chooses (in-process for small data).
    publisher : Publisher, optional
        Where the artifacts go (the dashboard's link, progress, tables, the report).
    on_start : callable(FitRun), optional
        Called once the run is initialised or resumed, before its laps (``resumed_from_lap``
        and ``laps_done`` say where it starts).
    overwrite : bool
        Replace a finished run in ``out`` (moved aside and removed before the fit starts);
        without it such a run raises RunExistsError. An unfinished run (a checkpoint) is
        resumed either way.

    Returns
    -------
    dict
        The run directory's summary plus ``seconds`` and ``lap_seconds``.
    """
    t0 = time.perf_counter()
    publisher = publisher or NullPublisher()
    plan = check_fit(data, options)
    source, _ = describe_data(data, options["batch_size"], options.get("missing", "error"))
    out = urls.resolve(out) if urls.is_url(out) else Path(out).resolve()
    prepare_run_dir(out, overwrite)
    engine = "dask" if (n_workers or resolve_scheduler(scheduler)) else "auto"
    with open_executor(source, scheduler, n_workers or 2, engine) as executor:
        dashboard = dashboard_of(executor)
        run = start_run(options, executor, urls.join(out, CHECKPOINT_DIR), publisher)
        if on_start is not None:
            on_start(run)
        while not run.done:
            run_lap(run, run.laps_done + 1, publisher)
        finish_run(run)
        summary = publish_run(run, data, out, plan, dashboard, publisher)
    return timed(summary, run, t0)


def timed(summary: dict[str, Any], run: Any, t0: float) -> dict[str, Any]:
    """``summary`` with the seconds since ``t0`` and the seconds spent inside the laps this
    run computed (the rest is set-up and orchestration)."""
    summary["seconds"] = time.perf_counter() - t0
    summary["lap_seconds"] = sum(
        float(h.get("seconds", 0.0)) for h in run.est.history_[run.resumed_from_lap :]
    )
    return summary
