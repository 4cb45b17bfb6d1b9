"""Stochastic variational Bayes (soVB): one batch (or a few) per global step.

Each step summarizes a batch (or a random subset of batches) with the current global parameters,
amplifies its statistics to the size of the data (``SS.scale(N_total / N_b)``, so they look like
a whole data set of such batches) and moves the natural parameters a step of size
``rho_t = (t + delay) ** -kappa`` toward the global step of the amplified statistics::

    SS_b   = summarize(batch b)                         # executor.map_sum(summarize_batch, ...)
    model.global_step(SS_b.scale(N / N_b), rho=rho_t)

With kappa in (0.5, 1] and delay >= 0 the step sizes satisfy the Robbins-Monro conditions.
A lap is one pass over the batches in an order shuffled by the seeded ``rng``.

The ELBO reported for a lap is honest: a full pass summarizes every batch with the current q
without changing it and ``model.elbo(SS_full) / n_rows`` (the ELBO terms are valid for any q).
That pass costs as much as a lap of local steps, so ``eval_every`` sets how often it runs; laps
without it record ``elbo = nan`` and ``"evaluated": False``. Convergence compares consecutive
evaluations. With an EM model the same loop is stepwise (online) EM.

``sovb_step`` is the same step on a batch given in memory, for streaming (``partial_fit``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixstream.learn.executor import Executor, summarize_batch, total_weight
from mixstream.learn.history import FitResult, lap_record
from mixstream.model import Model
from mixstream.suffstats import SuffStats

LapCallback = Callable[[Model, dict], None]


def _check_schedule(kappa: float, delay: float) -> None:
    if not (np.isfinite(kappa) and 0.5 < kappa <= 1.0):
        raise ValueError(f"kappa must be in (0.5, 1] (Robbins-Monro), got {kappa!r}")
    if not (np.isfinite(delay) and delay >= 1.0):
        # the first step has t = 0: rho_0 = delay ** -kappa must not exceed 1
        raise ValueError(f"delay must be a number >= 1, got {delay!r}")


@dataclass
class SoVBState:
    """Step counter and schedule of a stochastic fit (what ``partial_fit`` keeps between calls).

    Attributes
    ----------
    t : int
        Global steps taken so far; the next step uses rho = (t + delay) ** -kappa.
    kappa, delay : float
    n_seen : float
        Rows (weighted) summarized by steps so far.
    """

    t: int = 0
    kappa: float = 0.6
    delay: float = 1.0
    n_seen: float = 0.0

    def __post_init__(self) -> None:
        _check_schedule(self.kappa, self.delay)

    def rho(self) -> float:
        """Step size of the next step."""
        return float((self.t + self.delay) ** -self.kappa)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "t": np.array(self.t),
            "kappa": np.array(self.kappa),
            "delay": np.array(self.delay),
            "n_seen": np.array(self.n_seen),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SoVBState:
        return cls(
            t=int(arrays["t"]),
            kappa=float(arrays["kappa"]),
            delay=float(arrays["delay"]),
            n_seen=float(arrays["n_seen"]),
        )


def _step(model: Model, SS_b: SuffStats, state: SoVBState, n_total: float) -> float:
    n_b = SS_b.scalars["n_rows"]
    if not n_b > 0:
        raise ValueError("a stochastic step needs a batch with positive total weight")
    rho = state.rho()
    model.global_step(SS_b.scale(n_total / n_b), rho=rho)
    state.t += 1
    state.n_seen += n_b
    return rho


def sovb_step(
    model: Model,
    X: Any,
    w: Any,
    state: SoVBState,
    n_total: float | None = None,
    hard: bool = False,
) -> SuffStats:
    """One stochastic step on the batch X (weights w or None); advances ``state``.

    Parameters
    ----------
    model : Model
        Initialised (``model.K`` >= 1).
    X : array (n, D); w : array (n,) or None
    state : SoVBState
    n_total : float, optional
        Size (total weight) of the data the stream stands for; the batch's statistics are
        amplified by n_total / n_b. When None, the rows seen so far including this batch (a
        growing stream is treated as the data so far).
    hard : bool

    Returns
    -------
    SuffStats of the batch (before amplification).
    """
    if model.K < 1:
        raise ValueError("sovb_step needs an initialised model (model.K >= 1)")
    SS_b = model.local_summarize(X, hard=hard, sample_weight=w)
    total = n_total if n_total is not None else state.n_seen + SS_b.scalars["n_rows"]
    _step(model, SS_b, state, float(total))
    return SS_b


def evaluate_elbo(model: Model, executor: Executor, hard: bool = False) -> float:
    """Per-point ELBO of the current q: a full pass of local steps, no update."""
    SS = executor.map_sum(summarize_batch, model, hard=hard)
    return model.elbo(SS) / SS.scalars["n_rows"]


def fit_sovb(
    model: Model,
    executor: Executor,
    max_laps: int = 100,
    tol: float = 1e-3,
    rng: Any = None,
    kappa: float = 0.6,
    delay: float = 1.0,
    on_lap: LapCallback | None = None,
    result: FitResult | None = None,
    batches_per_step: int = 1,
    eval_every: int = 1,
    state: SoVBState | None = None,
    hard: bool = False,
) -> FitResult:
    """Stochastic VB laps until the evaluated per-point ELBO changes by less than ``tol``.

    Parameters
    ----------
    model : Model
        Initialised; edited in place.
    executor : Executor
    max_laps : int
    tol : float
    rng : numpy Generator, int or None
        Shuffles the batches each lap.
    kappa, delay : float
        rho_t = (t + delay) ** -kappa, t = 0, 1, ... counts global steps over the whole fit.
    on_lap : callable(model, record), optional
    result : FitResult, optional
        Continue this result (with the matching ``state``).
    batches_per_step : int
        Batches summarized together per step (a random subset: consecutive in the shuffled
        order).
    eval_every : int
        Evaluate the full-data ELBO every this many laps (and at the last lap).
    state : SoVBState, optional
        Step counter to continue; a fresh one from ``kappa`` and ``delay`` when None.
    hard : bool

    Returns
    -------
    FitResult; history records also "rho" (the lap's last step size), "t" (global steps taken
    so far: the next step's rho is (t + delay) ** -kappa) and "evaluated".
    """
    if model.K < 1:
        raise ValueError("fit_sovb needs an initialised model (model.K >= 1)")
    if batches_per_step < 1 or eval_every < 1:
        raise ValueError("batches_per_step and eval_every must be >= 1")
    state = state if state is not None else SoVBState(kappa=kappa, delay=delay)
    rng = np.random.default_rng(rng)
    result = result or FitResult()
    n_total = total_weight(executor)
    n_batches = len(executor.source.batches)
    evaluated = [h["elbo"] for h in result.history if not math.isnan(h["elbo"])]
    prev = evaluated[-1] if evaluated else None
    for lap in range(result.n_iter + 1, max_laps + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n_batches)
        rho = float("nan")
        for start in range(0, n_batches, batches_per_step):
            ids = [int(b) for b in order[start : start + batches_per_step]]
            SS_b = executor.map_sum(summarize_batch, model, batch_ids=ids, hard=hard)
            rho = _step(model, SS_b, state, n_total)
        do_eval = lap % eval_every == 0 or lap == max_laps
        elbo = evaluate_elbo(model, executor, hard) if do_eval else float("nan")
        record = lap_record(lap, elbo, model.K, time.perf_counter() - t0)
        record["rho"] = rho
        record["t"] = state.t
        record["evaluated"] = do_eval
        result.history.append(record)
        result.n_iter = lap
        if do_eval:
            result.lower_bound = elbo
        if on_lap is not None:
            on_lap(model, record)
        if do_eval:
            if prev is not None and abs(elbo - prev) < tol:
                result.converged = True
                break
            prev = elbo
    return result


__all__ = ["SoVBState", "evaluate_elbo", "fit_sovb", "sovb_step", "total_weight"]
