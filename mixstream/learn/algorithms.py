"""One lap of any algorithm, for drivers that step lap by lap (FitRun, the Prefect flows).

``advance`` runs exactly one more lap of the algorithm named by ``options.algorithm`` and
returns the updated FitResult together with the algorithm's carried state (the moVB memo, the
soVB step counter), which ``state_to_arrays`` / ``state_from_arrays`` turn into checkpointable
arrays. ``options`` is any object with the estimator's option names (duck-typed, so this module
does not depend on the estimator).

Which loop runs
---------------
========================  ==================================================================
``algorithm``             loop
========================  ==================================================================
"vb"                      full-batch VB
"em"                      full-batch EM (DP MAP with allocation="dp"); memoized EM when
                          ``moves`` are given (merge / delete; see ``mixstream.learn.em``)
"cem"                     full-batch classification EM; memoized (``fit_movb(hard=True)``)
                          when ``batch_size`` is set or ``moves`` are given
"kmeans"                  Lloyd's iterations, then one hard M-step; memoized Lloyd
                          (``kmeans.memo_lloyd``) when ``batch_size`` is set
"sovb"                    stochastic VB; the step counter (``SoVBState``) is carried across
                          laps and checkpoints, so the schedule rho_t never restarts
"movb"                    memoized VB with the given moves
========================  ==================================================================

With one batch every memoized variant equals its full-batch counterpart lap for lap.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mixstream.backend import get_namespace
from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult, lap_record
from mixstream.learn.kmeans import lloyd, memo_lloyd, nearest
from mixstream.learn.moves import default_moves
from mixstream.learn.vb import fit_full_batch
from mixstream.model import Model
from mixstream.suffstats import SuffStats

#: the ``kind`` tag stored with a checkpointed state
_MEMO, _SOVB = "memo", "sovb"


def memoized(options: Any) -> bool:
    """True when ``options`` select a memoized loop (a per-batch cache of statistics)."""
    algorithm = options.algorithm
    moves = tuple(_moves(options))
    if algorithm == "movb":
        return True
    if algorithm in ("em", "cem") and moves:
        return True
    return algorithm in ("cem", "kmeans") and getattr(options, "batch_size", None) is not None


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
    if algorithm == "kmeans":
        return _kmeans(options, model, executor, rng), None
    if algorithm in ("movb", "em", "cem") and memoized(options):
        return _memoized(options, model, executor, result, state, rng, until)
    if algorithm in ("vb", "em", "cem"):
        hard = algorithm == "cem"
        return fit_full_batch(model, executor, until, options.tol, hard=hard, result=result), None
    if algorithm == "sovb":
        from mixstream.learn.sovb import SoVBState, fit_sovb

        state = state if state is not None else SoVBState(kappa=options.kappa, delay=options.delay)
        result = fit_sovb(
            model,
            executor,
            until,
            options.tol,
            rng,
            kappa=state.kappa,
            delay=state.delay,
            result=result,
            state=state,
        )
        return result, state
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _moves(options: Any) -> tuple[str, ...]:
    moves = getattr(options, "moves", None)
    if moves is None:
        return default_moves(getattr(options, "algorithm", None))
    return (moves,) if isinstance(moves, str) else tuple(moves)


def _memoized(
    options: Any,
    model: Model,
    executor: Executor,
    result: FitResult,
    state: Any,
    rng: np.random.Generator,
    until: int,
) -> tuple[FitResult, Any]:
    """One lap of memoized VB / EM / classification EM (with the options' moves)."""
    from mixstream.learn.movb import MemoState, fit_movb

    state = state if state is not None else MemoState()
    result = fit_movb(
        model,
        executor,
        until,
        options.tol,
        rng,
        moves=_moves(options),
        result=result,
        cache=state,
        hard=options.algorithm == "cem",
    )
    return result, state


def _kmeans(options: Any, model: Model, executor: Executor, rng: np.random.Generator) -> FitResult:
    """Lloyd's iterations from the initial means (memoized over the batches when
    ``batch_size`` is set), then one hard M-step for all parameters.

    The memoized form records one history entry per Lloyd lap ("inertia" per point, no ELBO);
    the last entry also holds the ELBO after the M-step.
    """
    t0 = time.perf_counter()
    means = model.obs.point_estimates()["means"]
    if memoized(options):
        centers, history, converged = memo_lloyd(
            executor, means, max_laps=options.max_laps, tol=options.tol, rng=rng
        )
        n_iter = len(history)
    else:
        centers, _, n_iter = lloyd(executor, means, max_iter=options.max_laps, tol=options.tol)
        history, converged = [], n_iter < options.max_laps
    SS = executor.map_sum(hard_nearest_stats, (model, centers))
    model.global_step(SS)
    elbo = model.elbo(SS) / SS.scalars["n_rows"]
    if history:
        last = history[-1]
        last["elbo"], last["K"] = float(elbo), int(model.K)
        last["seconds"] = time.perf_counter() - t0 - sum(h["seconds"] for h in history[:-1])
    else:
        history = [lap_record(n_iter, elbo, model.K, time.perf_counter() - t0)]
    return FitResult(elbo, converged, n_iter, history)


def hard_nearest_stats(payload: tuple[Model, np.ndarray], X: Any, w: Any) -> SuffStats:
    """Statistics of one batch with each row assigned to its nearest centre."""
    model, centers = payload
    xp = get_namespace(X)
    labels = nearest(X, centers)  # on X's device
    resp = xp.zeros((X.shape[0], centers.shape[0]))
    resp[xp.arange(X.shape[0]), labels] = 1.0
    LP = {"resp": resp, "log_norm": xp.zeros(X.shape[0]), "hard": True}
    return model.summarize(X, LP, sample_weight=w)


def state_to_arrays(state: Any) -> dict[str, np.ndarray]:
    """The carried state as a flat dict of arrays, tagged with its kind (for checkpoints)."""
    from mixstream.learn.movb import MemoState
    from mixstream.learn.sovb import SoVBState

    if state is None:
        return {}
    if isinstance(state, MemoState):
        kind = _MEMO
    elif isinstance(state, SoVBState):
        kind = _SOVB
    else:
        raise TypeError(f"no checkpoint format is known for a {type(state).__name__}")
    return {"kind": np.array(kind), **state.to_arrays()}


def state_from_arrays(options: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The state ``state_to_arrays`` wrote (None for an empty dict)."""
    if not arrays:
        return None
    arrays = dict(arrays)
    # checkpoints written before states were tagged held only moVB memos
    kind = str(np.asarray(arrays.pop("kind", _MEMO)).reshape(-1)[0])
    if kind == _MEMO and memoized(options):
        from mixstream.learn.movb import MemoState

        return MemoState.from_arrays(arrays)
    if kind == _SOVB and options.algorithm == "sovb":
        from mixstream.learn.sovb import SoVBState

        return SoVBState.from_arrays(arrays)
    raise ValueError(
        f"the checkpoint holds a {kind!r} state, which algorithm {options.algorithm!r} does "
        "not carry"
    )
