"""What every algorithm returns: the per-lap record and the final state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitResult:
    """Outcome of one fit.

    Attributes
    ----------
    lower_bound : float
        Final objective per data point (ELBO for VB, log-likelihood bound for EM).
    converged : bool
    n_iter : int
        Laps (full passes over the data) run.
    history : list of dict
        One entry per lap: "lap", "elbo" (per point), "K", "seconds", "moves_tried",
        "moves_accepted".
    """

    lower_bound: float = float("-inf")
    converged: bool = False
    n_iter: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def lap_record(
    lap: int,
    elbo: float,
    K: int,
    seconds: float,
    tried: dict | None = None,
    accepted: dict | None = None,
) -> dict[str, Any]:
    return {
        "lap": lap,
        "elbo": float(elbo),
        "K": int(K),
        "seconds": float(seconds),
        "moves_tried": dict(tried or {}),
        "moves_accepted": dict(accepted or {}),
    }
