"""select_flow: model selection over a grid of K and covariance types on a Zarr store.

Tasks: ``select`` (mixstream.app.selection.select: every candidate through the engine, one
scoring pass, the output directory written atomically), then the table and the choice as artifacts.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task

from flows._artifacts import TASK, PrefectArtifacts
from mixstream import app
from mixstream.options import SELECT_DEFAULTS as S
from mixstream.options import Algorithm, Allocation, CovarianceType, Likelihood
from mixstream.vocabulary import SELECTION_CRITERIA

Criterion = Literal[SELECTION_CRITERIA]


@task(name="select", task_run_name="select", **TASK)
def run_select(data: str, out: str, options: dict[str, Any]) -> dict[str, Any]:
    from mixstream.app.selection import select

    sel = select(data, out=out, **options)
    get_run_logger().info("%s", sel.summary)
    return sel.outputs()


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
    refit: bool = True,
    scheduler: str | None = None,
    n_workers: int = 2,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fit the grid to the store ``data``, choose by ``criterion``, write ``out``.

    Parameters are those of ``mixstream.select``; ``scheduler`` (else $MIXSTREAM_SCHEDULER)
    or a LocalCluster of ``n_workers`` single-threaded workers runs the batches.

    Returns
    -------
    dict: table, summary, best, refit (``Selection.refit``), and the paths written (out,
    table_csv, table_json, bic_figure, model, report).
    """
    options = {k: v for k, v in locals().items() if k not in ("data", "out", "scheduler")}
    options.update(engine="dask", client=app.resolve_scheduler(scheduler))
    summary = run_select(data, out, options)
    app.publish_selection(PrefectArtifacts(), summary)
    return summary
