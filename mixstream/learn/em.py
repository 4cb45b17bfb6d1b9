"""EM (maximum likelihood or MAP): the full-batch loop with point-estimate models.

Model(alloc, obs) built with inference="em" makes ``local_step`` compute exact posteriors over
the assignments and ``global_step`` the ML / MAP parameters; the loop is the same as VB's.
"""

from __future__ import annotations

from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult
from mixstream.learn.vb import LapCallback, fit_full_batch
from mixstream.model import Model


def fit_em(
    model: Model,
    executor: Executor,
    max_laps: int = 100,
    tol: float = 1e-3,
    on_lap: LapCallback | None = None,
    result: FitResult | None = None,
) -> FitResult:
    """EM laps until the per-point objective changes by less than ``tol``."""
    if model.inference != "em":
        raise ValueError("fit_em needs a model built with inference='em'")
    return fit_full_batch(model, executor, max_laps, tol, hard=False, on_lap=on_lap, result=result)
