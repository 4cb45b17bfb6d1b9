"""What the birth, merge and delete moves share: scoring from statistics and the lap context.

Every move is judged the same way: build candidate whole-data statistics ``SS`` (each batch's
cached statistics, edited as the move would edit them), run a global step on a copy of the model
and compare ``model.elbo(SS)``. Because the observation and allocation ELBO terms are valid for
any variational distribution and the statistics come from valid responsibilities, the candidate's
ELBO is the exact objective of a state the algorithm could be in, so accepting only on a rise
keeps the memoized objective monotone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mixstream.learn.memo import FOLD_PREFIX, MemoState
from mixstream.model import Model
from mixstream.suffstats import SuffStats

#: a move must raise the ELBO by more than this fraction of |ELBO| (and at least this much)
REL_GAIN = 1e-9


def min_gain(elbo: float) -> float:
    """Smallest rise of the (summed) ELBO that counts as an improvement."""
    return REL_GAIN * max(1.0, abs(elbo))


def score(model: Model, SS: SuffStats) -> tuple[float, Model]:
    """ELBO (summed over data points) after a global step on ``SS``, on a copy of ``model``.

    Returns the ELBO and the updated copy (adopt it with ``adopt`` when the move is accepted).
    """
    cand = model.copy()
    cand.global_step(SS)
    return cand.elbo(SS), cand


def adopt(model: Model, other: Model) -> None:
    """Make ``model`` (the caller's object) hold ``other``'s parameters and components."""
    next_uid = max(model.next_uid, other.next_uid)
    model.alloc, model.obs = other.alloc, other.obs
    model.uids = other.uids.copy()
    model.next_uid = next_uid


def subset(ss: SuffStats, keep_uids: Any) -> SuffStats:
    """The components of ``ss`` whose uids are in ``keep_uids`` (in ss's order), no extras."""
    keep = np.isin(ss.uids, np.asarray(list(keep_uids), np.int64))
    scalars = {k: v for k, v in ss.scalars.items() if not k.startswith(FOLD_PREFIX)}
    return SuffStats({k: v[keep] for k, v in ss.fields.items()}, ss.uids[keep], scalars)


def is_tied(model: Model) -> bool:
    """True when the observation model shares parameters across components (tied covariance),
    so its ELBO term does not split into per-component terms."""
    return bool(getattr(model.obs, "tied", False))


@dataclass
class LapContext:
    """The state moves read and edit at the end of a memoized lap.

    Attributes
    ----------
    model : Model
        The caller's model (edited in place through ``adopt``).
    state : MemoState
        Per-batch cache; moves keep every entry consistent with what they accept.
    full : SuffStats
        Whole-data statistics, the exact sum of the cache, with this lap's extras (merge-pair
        entropies, birth-group entropies).
    elbo : float
        Summed ELBO of (model, full).
    lap : int
    tried, accepted : dict move name -> count
    log : list of dict
        One entry per accepted move: "move", "uids", "elbo_before", "elbo_after" (summed);
        births also log their insertion ("birth", stage "create") and their judgement at the
        end of the lap ("birth_check": "elbo_with", "elbo_without", "kept").
    alt : dict batch id -> SuffStats, or None
        This lap's delete proposal: each batch's statistics without the proposed components
        (kept consistent with the merges and birth checks accepted before it is judged).
    snapshot : birth.Snapshot or None
        The memo and model at the start of a lap whose births are judged at its end.
    boost : birth.Boost or None
        Stand-in statistics of this lap's new components for its global steps.
    rejected : dict move name -> dict
        The lap's best rejected proposal of each move: "gain" (summed ELBO change, None when
        no proposal could be built), "threshold" (what it had to exceed) and "why".
    """

    model: Model
    state: MemoState
    full: SuffStats | None
    elbo: float
    lap: int
    tried: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    alt: dict[int, SuffStats] | None = None
    snapshot: Any = None
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    boost: Any = None

    def count(self, move: str, tried: int = 0, accepted: int = 0) -> None:
        """Add to the lap's counts of proposals tried and accepted for ``move``."""
        self.tried[move] = self.tried.get(move, 0) + tried
        self.accepted[move] = self.accepted.get(move, 0) + accepted

    def reject(self, move: str, gain: float | None, threshold: float, why: str) -> None:
        """Record a rejected proposal of ``move``; the lap keeps the one with the best gain, so
        a stalled fit shows how far its moves fell short (report, ``history_``)."""
        best = self.rejected.get(move)
        rank = -np.inf if gain is None else float(gain)
        if best is None or rank > (-np.inf if best["gain"] is None else best["gain"]):
            gain = None if gain is None else float(gain)
            self.rejected[move] = {"gain": gain, "threshold": float(threshold), "why": why}

    def commit(self, move: str, full: SuffStats, cand: Model, elbo: float, **detail: Any) -> None:
        """Adopt an accepted candidate (its whole-data statistics, model and ELBO)."""
        self.log.append(
            {"move": move, "lap": self.lap, "elbo_before": self.elbo, "elbo_after": elbo, **detail}
        )
        adopt(self.model, cand)
        self.full = full
        self.elbo = elbo


def memory_of(state: MemoState, move: str) -> dict[int, int]:
    """uid -> lap of the last rejected proposal involving it, for one move."""
    return state.memory.setdefault(move, {})


def recently_failed(memory: dict[int, int], uid: int, lap: int, retry_laps: int) -> bool:
    last = memory.get(int(uid))
    return last is not None and lap - last <= retry_laps


@dataclass
class LapPlan:
    """What a lap's moves proposed at its start: read by every batch visit (``memo_batch``)
    and by the judgements at the end of the lap.

    Attributes
    ----------
    births : list of birth.Birth
        The births inserted this lap (target uid, new uids).
    pairs : list of (uid, uid)
        Merge candidates whose merged entropy the visits track.
    delete_uids : list of uid
        The delete proposal whose restricted statistics the visits gather.
    """

    births: list[Any] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)
    delete_uids: list[int] = field(default_factory=list)

    def busy(self) -> set[int]:
        """uids of this lap's birth targets and new components (no other move touches them)."""
        return {u for bt in self.births for u in (bt.target, *bt.new)}

    def fold_groups(self) -> list[tuple[int, ...]]:
        """Per birth, its target then its new components (the visits track their fold)."""
        return [(bt.target, *bt.new) for bt in self.births]


class Move:
    """What every move of memoized VB is to ``fit_movb``: a name, the algorithms that allow
    it, its default options, and its hooks in the lap.

    A lap (``mixstream.learn.movb.fit_movb``) calls, for the moves it runs (in the registry's
    order, ``mixstream.learn.moves.MOVES``), ``check`` once before the first lap, ``propose``
    at the start of each lap whose memo is complete (recording the proposal in the lap's
    ``LapPlan``), and, after every batch has been visited, ``judge`` for *every* registered move
    (a move that proposed nothing does nothing); ``unsettled`` holds convergence back.
    """

    #: the move's word (``mixstream.vocabulary.MOVES``)
    name: ClassVar[str]
    #: the algorithms (``mixstream.vocabulary.ALGORITHMS``) that may run it
    algorithms: ClassVar[frozenset[str]]
    #: its options and their defaults (``move_options={name: {...}}``)
    defaults: ClassVar[Mapping[str, Any]]

    def check(self, model: Model) -> None:
        """Fail before the fit starts if the move cannot run with ``model``."""

    def propose(
        self,
        ctx: LapContext,
        plan: LapPlan,
        executor: Any,
        rng: np.random.Generator,
        opts: dict[str, Any],
        hard: bool,
    ) -> None:
        """Start of a lap with a complete memo: record this lap's proposal in ``plan``."""

    def judge(self, ctx: LapContext, plan: LapPlan, opts: dict[str, Any]) -> None:
        """End of the lap: accept or reject the proposal (editing ``ctx`` and the memo)."""

    def unsettled(self, state: MemoState, opts: dict[str, Any]) -> bool:
        """True while the move still has work that should keep the fit from converging."""
        return False

    def __repr__(self) -> str:
        return f"<move {self.name!r}>"
