"""Full-batch coordinate ascent: every lap summarizes all batches, then one global step.

With a VB model this is variational Bayes; with an EM model it is EM (see learn/em.py); with
``hard=True`` it is classification EM. The objective is recorded per data point.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mixstream.learn.executor import Executor, summarize_batch
from mixstream.learn.history import FitResult, lap_record
from mixstream.model import Model

LapCallback = Callable[[Model, dict], None]


def fit_full_batch(
    model: Model,
    executor: Executor,
    max_laps: int = 100,
    tol: float = 1e-3,
    hard: bool = False,
    on_lap: LapCallback | None = None,
    result: FitResult | None = None,
) -> FitResult:
    """Run laps until the per-point objective changes by less than ``tol``.

    Parameters
    ----------
    model : Model
        Already initialised (``model.K`` > 0).
    executor : Executor
    max_laps : int
    tol : float
        Convergence threshold on the change of the per-point objective between laps.
    hard : bool
        One-hot responsibilities (classification EM).
    on_lap : callable(model, record), optional
        Called after each lap (checkpoints, progress bars, artifacts).
    result : FitResult, optional
        A result to continue (resume from a checkpoint).
    """
    result = result or FitResult()
    prev = result.history[-1]["elbo"] if result.history else None
    for lap in range(result.n_iter + 1, max_laps + 1):
        t0 = time.perf_counter()
        SS = executor.map_sum(summarize_batch, model, hard=hard)
        model.global_step(SS)
        elbo = model.elbo(SS) / SS.scalars["n_rows"]
        record = lap_record(lap, elbo, model.K, time.perf_counter() - t0)
        result.history.append(record)
        result.n_iter, result.lower_bound = lap, elbo
        if on_lap is not None:
            on_lap(model, record)
        if prev is not None and abs(elbo - prev) < tol:
            result.converged = True
            break
        prev = elbo
    return result
