"""select_flow: model selection over a grid of K and covariance types on a Zarr store.

    from flows.select import select_flow
    select_flow("data.zarr", "runs/sel", n_components=[1, 2, 3, 4], covariance_types=["full"])

Tasks: ``select`` (every candidate fitted through the engine on the training rows, one
scoring pass, the output directory written atomically: mixstream.app.selection.select) and
``publish`` (the table and the choice as artifacts).
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from flows._artifacts import PrefectArtifacts
from mixstream.options import SELECT_DEFAULTS as S
from mixstream.options import Algorithm, Allocation, CovarianceType, Likelihood
from mixstream.vocabulary import SELECTION_CRITERIA

_TASK = {"cache_policy": NONE, "persist_result": False}
Criterion = Literal[SELECTION_CRITERIA]


@task(name="select", task_run_name="select", **_TASK)
def run_select(data: str, out: str, options: dict[str, Any]) -> dict[str, Any]:
    from mixstream.app.selection import select

    sel = select(data, out=out, **options)
    get_run_logger().info("%s", sel.summary)
    return {"table": sel.table, "summary": sel.summary, "best": sel.best, **sel.out}


@task(name="publish", task_run_name="publish", **_TASK)
def publish(summary: dict[str, Any]) -> None:
    artifacts = PrefectArtifacts()
    artifacts.table("mixstream-selection", summary["table"], summary["summary"])
    artifacts.markdown(
        "mixstream-selection-report",
        f"# {summary['summary']}\n\nmodel `{summary['model']}`, report `{summary['report']}`",
        "Model selection: the choice and where its files are.",
    )


@flow(name="select-flow", persist_result=False)
def select_flow(
    data: str,
    out: str,
    n_components: list[int] = list(S["n_components"]),  # noqa: B006 - a Prefect default
    covariance_types: list[CovarianceType] = list(S["covariance_types"]),  # noqa: B006
    likelihoods: list[Likelihood] = ["gauss"],  # noqa: B006
    criterion: Criterion = S["criterion"],
    holdout: float = S["holdout"],
    algorithm: Algorithm = "em",
    allocation: Allocation = "finite",
    max_laps: int = 100,
    tol: float = 1e-3,
    batch_size: int | None = None,
    random_state: int = 0,
    dp: bool = False,
    scheduler: str | None = None,
    n_workers: int = 2,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fit the grid to the store ``data``, choose by ``criterion``, write ``out``.

    Parameters are those of ``mixstream.select``; ``scheduler`` (else $MIXSTREAM_SCHEDULER)
    or a LocalCluster of ``n_workers`` single-threaded workers runs the batches.

    Returns
    -------
    dict: table, summary, best, and the paths written (out, table_csv, table_json,
    bic_figure, model, report).
    """
    from mixstream import app

    address = app.resolve_scheduler(scheduler)
    options = {
        "n_components": n_components, "covariance_types": covariance_types,
        "likelihoods": likelihoods, "criterion": criterion, "holdout": holdout,
        "algorithm": algorithm, "allocation": allocation, "max_laps": max_laps, "tol": tol,
        "batch_size": batch_size, "random_state": random_state, "dp": dp, "engine": "dask",
        "client": address, "n_workers": n_workers, "overwrite": overwrite,
    }  # fmt: skip
    summary = run_select(data, out, options)
    publish(summary)
    return summary
