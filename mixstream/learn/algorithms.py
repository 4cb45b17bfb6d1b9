"""One lap of any algorithm, for drivers that step lap by lap (FitRun, the Prefect flows).

``advance`` runs exactly one more lap of the algorithm named by ``options.algorithm`` and
returns the updated FitResult together with the algorithm's carried state (the moVB memo, the
soVB step counter), which ``state_to_arrays`` / ``state_from_arrays`` turn into checkpointable
arrays. ``options`` is any object with the estimator's option names (duck-typed, so this module
does not depend on the estimator).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult, lap_record
from mixstream.learn.kmeans import lloyd, nearest
from mixstream.learn.vb import fit_full_batch
from mixstream.model import Model
from mixstream.suffstats import SuffStats


def advance(
    options: Any,
    model: Model,
    executor: Executor,
    result: FitResult,
    state: Any,
    rng: np.random.Generator,
) -> tuple[FitResult, Any]:
    """One more lap; returns (result, state)."""
    algorithm = options.algorithm
    until = result.n_iter + 1
    if algorithm in ("vb", "em", "cem"):
        hard = algorithm == "cem"
        return fit_full_batch(model, executor, until, options.tol, hard=hard, result=result), None
    if algorithm == "kmeans":
        return _kmeans(options, model, executor), None
    if algorithm == "movb":
        from mixstream.learn.movb import MemoState, fit_movb

        state = state if state is not None else MemoState()
        result = fit_movb(
            model,
            executor,
            until,
            options.tol,
            rng,
            moves=tuple(options.moves or ()),
            result=result,
            cache=state,
        )
        return result, state
    if algorithm == "sovb":
        from mixstream.learn.sovb import fit_sovb

        result = fit_sovb(
            model,
            executor,
            until,
            options.tol,
            rng,
            kappa=options.kappa,
            delay=options.delay,
            result=result,
        )
        return result, None
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _kmeans(options: Any, model: Model, executor: Executor) -> FitResult:
    """Lloyd's iterations from the initial means, then one hard M-step for all parameters."""
    t0 = time.perf_counter()
    means = model.obs.point_estimates()["means"]
    centers, _, n_iter = lloyd(executor, means, max_iter=options.max_laps, tol=options.tol)
    SS = executor.map_sum(hard_nearest_stats, (model, centers))
    model.global_step(SS)
    elbo = model.elbo(SS) / SS.scalars["n_rows"]
    record = lap_record(n_iter, elbo, model.K, time.perf_counter() - t0)
    return FitResult(elbo, n_iter < options.max_laps, n_iter, [record])


def hard_nearest_stats(payload: tuple[Model, np.ndarray], X: Any, w: Any) -> SuffStats:
    """Statistics of one batch with each row assigned to its nearest centre."""
    model, centers = payload
    labels = nearest(np.asarray(X), centers)
    resp = np.zeros((X.shape[0], centers.shape[0]))
    resp[np.arange(X.shape[0]), labels] = 1.0
    LP = {"resp": resp, "log_norm": np.zeros(X.shape[0]), "hard": True}
    return model.summarize(X, LP, sample_weight=w)


def state_to_arrays(state: Any) -> dict[str, np.ndarray]:
    if state is None:
        return {}
    return state.to_arrays()


def state_from_arrays(options: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not arrays:
        return None
    if options.algorithm == "movb":
        from mixstream.learn.movb import MemoState

        return MemoState.from_arrays(arrays)
    raise ValueError(f"no carried state is known for algorithm {options.algorithm!r}")
