"""FitRun: a fit driven one lap at a time, with a checkpoint after every lap.

The one lap driver of mixstream: ``MixtureModel.fit`` runs a ``FitRun`` to the end in one call;
the application layer (``mixstream.app``, used by the command line) and the Prefect flows drive
the same object lap by lap with ``ensure_lap`` (one task per lap), which is safe to retry.
Restarts (``n_init``) run one after the other; the best final objective wins. Every completed
lap is reported to ``on_lap`` and to the lap listeners in context
(``mixstream.engine.progress.lap_listener``).

A FitRun reads its options from a ``FitOptions`` (mixstream.options) and builds its models with
a factory (``mixstream.build.build_model`` by default); it knows nothing of the estimator, which
copies the result of ``finish`` onto itself.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from mixstream.engine.checkpoint import (
    load_checkpoint,
    prefixed,
    save_checkpoint,
    unprefixed,
)
from mixstream.engine.progress import notify_lap
from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult
from mixstream.learn.init import initialize
from mixstream.model import Model
from mixstream.options import FitOptions


class FitRun:
    """One fit with ``options`` over the data behind ``executor``.

    Parameters
    ----------
    options : FitOptions
        The fit's options, validated.
    executor : Executor
    checkpoint_dir : path, optional
        Where the checkpoint lives; an existing one for the same fit is resumed.
    fingerprint : dict
        What identifies this fit (data shape, batch plan, options) for resuming safely.
    on_lap : callable(record), optional
        Called after each lap with its history record (progress bars, artifacts).
    build_model : callable() -> Model, optional
        Makes a fresh model (each restart, and when resuming); default
        ``mixstream.build.build_model(options)``.
    warm_model : Model, optional
        A fitted model to continue from (``warm_start``): one run starting from a copy of it.
    owner : optional
        What the fit is for (the estimator), kept as ``est`` for drivers that copy the result
        onto it; the run itself never reads it.
    """

    def __init__(
        self,
        options: FitOptions,
        executor: Executor,
        checkpoint_dir: Any = None,
        fingerprint: dict[str, Any] | None = None,
        on_lap: Callable[[dict], None] | None = None,
        *,
        build_model: Callable[[], Model] | None = None,
        warm_model: Model | None = None,
        owner: Any = None,
    ) -> None:
        if build_model is None:
            from mixstream.build import build_model as factory

            build_model = partial(factory, options)
        self.options = options
        self.build_model = build_model
        self.warm_model = warm_model
        self.est = owner
        self.executor = executor
        self.checkpoint_dir = checkpoint_dir
        self.fingerprint = fingerprint or {}
        self.on_lap = on_lap
        self.resumed_from_lap = 0
        self.attempts = 0  # laps started by ensure_lap, retries included
        self._reset()

    def _reset(self) -> None:
        self.rng = np.random.default_rng(seed_of(self.options.random_state))
        self.restart = 0
        self.model: Model | None = None
        self.result = FitResult()
        self.state: Any = None  # algorithm state carried between laps (moVB memo, soVB t)
        self.best: tuple[float, Model, FitResult] | None = None
        # set while a lap changes the in-memory state, cleared once its checkpoint is written:
        # a lap that failed in between left a half-updated state behind
        self._dirty = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FitRun:
        """Resume from the checkpoint if one exists, else initialise restart 0."""
        if self.checkpoint_dir is not None:
            found = load_checkpoint(self.checkpoint_dir, self.fingerprint)
            if found is not None:
                self._restore(*found)
                self.resumed_from_lap = self.laps_done
                return self
        self._begin_restart()
        return self

    @property
    def history(self) -> list[dict[str, Any]]:
        """The history records of the laps done (the best restart's once the fit is done)."""
        if self.restart >= self.n_restarts:
            return list(self.best[2].history) if self.best is not None else []
        return list(self.result.history)

    @property
    def laps_done(self) -> int:
        return len(self.history)

    @property
    def n_restarts(self) -> int:
        # warm starts continue the previous solution: one run, as in scikit-learn
        return 1 if self.warm_model is not None else self.options.n_init

    @property
    def done(self) -> bool:
        return self.restart >= self.n_restarts and not self._dirty

    def step(self) -> dict:
        """Run one lap of the current restart; returns its history record."""
        if self.done:
            raise RuntimeError("this fit has finished; call finish()")
        from mixstream.learn import algorithms

        self._dirty = True
        self.result, self.state = algorithms.advance(
            self.options, self.model, self.executor, self.result, self.state, self.rng
        )
        record = self.result.history[-1]
        if self.result.converged or self.result.n_iter >= self._lap_limit():
            self._end_restart()
        self._checkpoint()
        self._dirty = False
        # after the checkpoint: a listener that raises stops the fit with this lap kept
        if self.on_lap is not None:
            self.on_lap(record)
        notify_lap(record, self.options.max_laps)
        return record

    def ensure_lap(self, lap: int) -> dict:
        """Make sure lap ``lap`` is done; its history record. Safe to retry.

        If an earlier attempt failed part-way through a lap (a worker lost beyond Dask's own
        retries, a connection dropped), the in-memory state may be half-updated: the state is
        rebuilt from the last checkpoint (the state after lap ``lap - 1``, or the
        initialisation, which is deterministic given the seed) and the lap recomputed, so a
        retried lap is never applied twice. A lap whose checkpoint was written is not rerun.
        """
        if self._dirty:
            self._reload()
        done = self.laps_done
        if lap <= done:
            return self.history[lap - 1]
        if self.done:
            raise RuntimeError(f"the fit finished after lap {done}; there is no lap {lap}")
        if lap != done + 1:
            raise RuntimeError(f"lap {lap} asked for, but only {done} lap(s) are done")
        self.attempts += 1
        return self.step()

    def _reload(self) -> None:
        if self.checkpoint_dir is None:
            raise RuntimeError("a lap failed part-way and there is no checkpoint to rebuild from")
        resumed = self.resumed_from_lap
        self._reset()
        self.start()
        self.resumed_from_lap = resumed  # where this process began, not where it reloaded

    def run(self) -> FitRun:
        while not self.done:
            self.step()
        return self

    def finish(self) -> tuple[Model, FitResult]:
        """The best restart's model and result."""
        if self._dirty:
            self._reload()
        if not self.done:
            raise RuntimeError("the fit has laps left; call step() or run() first")
        _, model, result = self.best
        return model, result

    # ------------------------------------------------------------------ restarts
    def _lap_limit(self) -> int:
        return 1 if self.options.algorithm == "kmeans" else self.options.max_laps

    def _begin_restart(self) -> None:
        if self.warm_model is not None:
            self.model = self.warm_model.copy()
            self.result = FitResult()
            self.state = None
            return
        self.model = self.build_model()
        init = self.options.init
        if isinstance(init, list | tuple):
            init = np.asarray(init, dtype=np.float64)
        initialize(self.model, self.executor, self.options.n_components, init, self.rng)
        self.result = FitResult()
        self.state = None

    def _end_restart(self) -> None:
        bound = self.result.lower_bound
        if self.best is None or bound > self.best[0]:
            self.best = (bound, self.model, self.result)
        self.restart += 1
        # not ``done``: inside a lap _dirty hides the last restart's end, and a start after
        # it would read a sample and initialise a model no one uses
        if self.restart < self.n_restarts:
            self._begin_restart()

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        from mixstream.learn import algorithms

        meta = {
            "fingerprint": self.fingerprint,
            "restart": self.restart,
            "rng": self.rng.bit_generator.state,
            "result": _result_meta(self.result),
            "best": None if self.best is None else _result_meta(self.best[2]),
        }
        arrays: dict[str, np.ndarray] = {}
        if self.restart < self.n_restarts:  # a restart in progress (see _end_restart)
            arrays.update(prefixed("model", self.model.get_state()))
            arrays.update(prefixed("state", algorithms.state_to_arrays(self.state)))
        if self.best is not None:
            arrays.update(prefixed("best", self.best[1].get_state()))
        save_checkpoint(self.checkpoint_dir, meta, arrays)

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from mixstream.learn import algorithms

        self.restart = int(meta["restart"])
        self.rng.bit_generator.state = meta["rng"]
        if meta["best"] is not None:
            best_model = self.build_model()
            best_model.set_state(unprefixed("best", arrays))
            best_result = _result_from_meta(meta["best"])
            self.best = (best_result.lower_bound, best_model, best_result)
        if not self.done:
            self.model = self.build_model()
            self.model.set_state(unprefixed("model", arrays))
            self.result = _result_from_meta(meta["result"])
            self.state = algorithms.state_from_arrays(self.options, unprefixed("state", arrays))


def _result_meta(result: FitResult) -> dict[str, Any]:
    return {
        "lower_bound": result.lower_bound,
        "converged": result.converged,
        "n_iter": result.n_iter,
        "history": result.history,
    }


def _result_from_meta(meta: dict[str, Any]) -> FitResult:
    return FitResult(meta["lower_bound"], meta["converged"], meta["n_iter"], list(meta["history"]))


def seed_of(random_state: Any) -> Any:
    """A seed numpy's default_rng accepts, from any scikit-learn style random_state."""
    if isinstance(random_state, np.random.RandomState):
        return random_state.randint(2**31)
    return random_state
