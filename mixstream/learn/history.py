"""What every algorithm returns: the per-lap record and the final state."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
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


def rejected_text(rejected: dict[str, Any] | None) -> str:
    """A lap's ``moves_rejected`` in words: "birth: gain -1.2e+04 <= 0.00019 (the fold-back
    scores higher)"; a proposal that could not be built has no gain. "" for none."""
    parts = []
    for move, r in sorted((rejected or {}).items()):
        if r.get("gain") is None:
            parts.append(f"{move}: {r.get('why', '')}")
        else:
            parts.append(f"{move}: gain {r['gain']:.3g} <= {r['threshold']:.3g} ({r['why']})")
    return "; ".join(parts)


def _why(history: list[dict[str, Any]]) -> str:
    return rejected_text(history[-1].get("moves_rejected"))


def move_warnings(
    history: list[dict[str, Any]],
    allocation: str,
    moves: tuple[str, ...],
    tol: float,
    converged: bool = False,
) -> list[str]:
    """Plain-language warnings for a moVB fit whose moves did not do their job.

    - a DP fit with births that ends at K=1 (every split was rejected);
    - a fit that did not converge although its ELBO stalled (changed by less than ``tol`` per
      point over its last two laps) while moves were tried and none was accepted. A converged
      fit's last laps always look like that (its moves are tried and rejected at the optimum);
      the real-data benchmark warned on most converged DP fits before this was checked.

    Each says why the last lap's proposals were rejected (gain against threshold).
    """
    if not history or not moves:
        return []
    out = []
    last = history[-1]
    if allocation == "dp" and "birth" in moves and last["K"] == 1:
        out.append(
            "the DP fit ended at K=1: no birth raised the ELBO, so the model prefers one "
            f"component for this data under its prior ({_why(history) or 'no move tried'}). "
            "If clusters are expected, start from more components or weaken the prior "
            "(degrees_of_freedom_prior, covariance_prior)."
        )
    tail = history[-3:]
    stalled = len(tail) == 3 and all(abs(b["elbo"] - a["elbo"]) < tol for a, b in pairwise(tail))
    tried = sum(sum(h.get("moves_tried", {}).values()) for h in tail)
    accepted = sum(sum(h.get("moves_accepted", {}).values()) for h in tail)
    if stalled and tried and not accepted and not converged:
        out.append(
            f"the ELBO stalled over the last laps with every move rejected ({tried} tried; "
            f"{_why(history)})"
        )
    return out
