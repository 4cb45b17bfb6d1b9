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

The registry
------------
Each algorithm is an ``Algorithm`` in ``ALGORITHMS`` (keyed by the words of
``mixstream.vocabulary.ALGORITHMS``): whether it is memoized for given options, which moves it
allows (each move says which algorithms allow it: ``mixstream.learn.moves.MOVES``), how it runs
one lap (``advance``) and which kind of carried state it checkpoints. The module-level
functions (``memoized``, ``advance``, ``state_to_arrays``, ``state_from_arrays``) are thin
look-ups in it, so drivers need not know which algorithm runs. Adding an algorithm is one class
here plus its word in the vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from mixstream import vocabulary
from mixstream.backend import get_namespace
from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult, lap_record
from mixstream.learn.kmeans import lloyd, memo_lloyd, nearest
from mixstream.learn.memo import MemoState
from mixstream.learn.movb import fit_movb
from mixstream.learn.moves import allowed_moves, default_moves
from mixstream.learn.sovb import SoVBState, fit_sovb
from mixstream.learn.vb import fit_full_batch
from mixstream.learn.words import CEM, EM, KMEANS, MOVB, SOVB, VB
from mixstream.model import Model
from mixstream.suffstats import SuffStats

#: the ``kind`` tag stored with a checkpointed state, and the state class of each kind
_MEMO, _SOVB = "memo", "sovb"
STATES: dict[str, type] = {_MEMO: MemoState, _SOVB: SoVBState}


class Algorithm:
    """One fitting algorithm, as drivers see it (one lap at a time).

    ``options`` is any object with the estimator's option names (``algorithm``, ``moves``,
    ``batch_size``, ``tol``, ``max_laps``, ``kappa``, ``delay`` ...), duck-typed.
    """

    #: the algorithm's word (``mixstream.vocabulary.ALGORITHMS``)
    name: ClassVar[str]

    @property
    def moves(self) -> tuple[str, ...]:
        """The moves this algorithm allows (from each move's ``algorithms``)."""
        return allowed_moves(self.name)

    def memoized(self, options: Any) -> bool:
        """True when ``options`` select a memoized loop (a per-batch cache of statistics)."""
        return False

    def state_kind(self, options: Any) -> str | None:
        """The kind of state (a key of ``STATES``) its laps carry, or None."""
        return _MEMO if self.memoized(options) else None

    def advance(
        self,
        options: Any,
        model: Model,
        executor: Executor,
        result: FitResult,
        state: Any,
        rng: np.random.Generator,
    ) -> tuple[FitResult, Any]:
        """One more lap; returns (result, state)."""
        raise NotImplementedError

    def state_to_arrays(self, state: Any) -> dict[str, np.ndarray]:
        """Its carried state as a flat dict of arrays, tagged with its kind (checkpoints)."""
        return state_to_arrays(state)

    def state_from_arrays(self, options: Any, arrays: dict[str, np.ndarray]) -> Any:
        """The state ``state_to_arrays`` wrote (None for an empty dict); a ValueError when the
        checkpoint holds a kind of state these options do not carry."""
        if not arrays:
            return None
        arrays = dict(arrays)
        kind = _kind_of(arrays.pop("kind", None))
        if kind in STATES and kind == self.state_kind(options):
            return STATES[kind].from_arrays(arrays)
        raise ValueError(
            f"the checkpoint holds a {kind!r} state, which algorithm {options.algorithm!r} does "
            "not carry"
        )

    def __repr__(self) -> str:
        return f"<algorithm {self.name!r}>"


class _SummaryLoop(Algorithm):
    """Full-batch laps over summary statistics, or their memoized form (``fit_movb``)."""

    #: one-hot responsibilities
    hard: ClassVar[bool] = False

    def advance(
        self,
        options: Any,
        model: Model,
        executor: Executor,
        result: FitResult,
        state: Any,
        rng: np.random.Generator,
    ) -> tuple[FitResult, Any]:
        until = result.n_iter + 1
        if self.memoized(options):
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
                hard=self.hard,
            )
            return result, state
        result = fit_full_batch(model, executor, until, options.tol, hard=self.hard, result=result)
        return result, None


class VBAlgorithm(_SummaryLoop):
    """Full-batch variational Bayes."""

    name = VB


class EMAlgorithm(_SummaryLoop):
    """Full-batch EM (DP MAP with allocation="dp"); memoized EM when moves are given."""

    name = EM

    def memoized(self, options: Any) -> bool:
        return bool(_moves(options))


class CEMAlgorithm(_SummaryLoop):
    """Classification EM; memoized when ``batch_size`` is set or moves are given."""

    name = CEM
    hard = True

    def memoized(self, options: Any) -> bool:
        return bool(_moves(options)) or getattr(options, "batch_size", None) is not None


class MoVBAlgorithm(_SummaryLoop):
    """Memoized VB with the given moves."""

    name = MOVB

    def memoized(self, options: Any) -> bool:
        return True


class KMeansAlgorithm(Algorithm):
    """Lloyd's iterations, then one hard M-step; memoized Lloyd when ``batch_size`` is set.
    Its laps carry no state (each ``advance`` runs Lloyd to the end)."""

    name = KMEANS

    def memoized(self, options: Any) -> bool:
        return getattr(options, "batch_size", None) is not None

    def advance(
        self,
        options: Any,
        model: Model,
        executor: Executor,
        result: FitResult,
        state: Any,
        rng: np.random.Generator,
    ) -> tuple[FitResult, Any]:
        return _kmeans(options, model, executor, rng, self.memoized(options)), None


class SoVBAlgorithm(Algorithm):
    """Stochastic VB; the step counter (``SoVBState``) is carried across laps and checkpoints."""

    name = SOVB

    def state_kind(self, options: Any) -> str | None:
        return _SOVB

    def advance(
        self,
        options: Any,
        model: Model,
        executor: Executor,
        result: FitResult,
        state: Any,
        rng: np.random.Generator,
    ) -> tuple[FitResult, Any]:
        state = state if state is not None else SoVBState(kappa=options.kappa, delay=options.delay)
        result = fit_sovb(
            model,
            executor,
            result.n_iter + 1,
            options.tol,
            rng,
            kappa=state.kappa,
            delay=state.delay,
            result=result,
            state=state,
        )
        return result, state


def _registry(*algorithms: Algorithm) -> dict[str, Algorithm]:
    by_name = {a.name: a for a in algorithms}
    return {name: by_name[name] for name in vocabulary.ALGORITHMS}


#: the algorithms by name, in the vocabulary's order
ALGORITHMS: Mapping[str, Algorithm] = _registry(
    EMAlgorithm(),
    VBAlgorithm(),
    KMeansAlgorithm(),
    CEMAlgorithm(),
    SoVBAlgorithm(),
    MoVBAlgorithm(),
)


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name`` (ValueError for an unknown name)."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}") from None


# ---------------------------------------------------------------------- thin functions
def memoized(options: Any) -> bool:
    """True when ``options`` select a memoized loop (a per-batch cache of statistics)."""
    algorithm = ALGORITHMS.get(options.algorithm)
    return algorithm is not None and algorithm.memoized(options)


def advance(
    options: Any,
    model: Model,
    executor: Executor,
    result: FitResult,
    state: Any,
    rng: np.random.Generator,
) -> tuple[FitResult, Any]:
    """One more lap of ``options.algorithm``; returns (result, state)."""
    return get_algorithm(options.algorithm).advance(options, model, executor, result, state, rng)


def _moves(options: Any) -> tuple[str, ...]:
    moves = getattr(options, "moves", None)
    if moves is None:
        return default_moves(getattr(options, "algorithm", None))
    return (moves,) if isinstance(moves, str) else tuple(moves)


def _kmeans(
    options: Any, model: Model, executor: Executor, rng: np.random.Generator, memo: bool
) -> FitResult:
    """Lloyd's iterations from the initial means (memoized over the batches when
    ``batch_size`` is set), then one hard M-step for all parameters.

    The memoized form records one history entry per Lloyd lap ("inertia" per point, no ELBO);
    the last entry also holds the ELBO after the M-step.
    """
    t0 = time.perf_counter()
    means = model.obs.point_estimates()["means"]
    if memo:
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
    if state is None:
        return {}
    for kind, cls in STATES.items():
        if isinstance(state, cls):
            return {"kind": np.array(kind), **state.to_arrays()}
    raise TypeError(f"no checkpoint format is known for a {type(state).__name__}")


def state_from_arrays(options: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The state ``state_to_arrays`` wrote (None for an empty dict)."""
    if not arrays:
        return None
    algorithm = ALGORITHMS.get(options.algorithm)
    if algorithm is not None:
        return algorithm.state_from_arrays(options, arrays)
    raise ValueError(
        f"the checkpoint holds a {_kind_of(arrays.get('kind'))!r} state, which algorithm "
        f"{options.algorithm!r} does not carry"
    )


def _kind_of(tag: Any) -> str:
    # checkpoints written before states were tagged held only moVB memos
    return _MEMO if tag is None else str(np.asarray(tag).reshape(-1)[0])
