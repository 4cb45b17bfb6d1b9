"""Delete move: small components removed, their mass given to the others, over one lap.

Design
------
1. **Select** (start of the lap): components below ``max_size_frac`` of the average mass,
   excluding this lap's birth targets and new components and those whose deletion was rejected
   in the last ``retry_laps`` laps. All nearly empty ones (mass <= ``empty_mass``) are proposed
   together; otherwise the single smallest.
2. **Restricted local step** (the lap): at each batch's visit ``memo_batch`` also summarizes the
   responsibilities with the candidates' columns removed and each row renormalized (the local
   step of the model without them: log r_nk - log sum_{l kept} r_nl), i.e. their mass is moved
   onto the other components in proportion to how well each explains the row.
3. **Accept** (end of the lap): the alternative whole-data statistics are the sum over batches
   of those restricted statistics: valid responsibilities for every row, so their ELBO (after a
   global step) is exact. Accepted only if it rises above the lap's ELBO (or, for components
   with no mass at all, does not fall: removing them changes nothing); then every cached batch
   is replaced by its restricted statistics.

The delete is judged last. Merges and birth checks accepted earlier at the end of the same lap
are applied to the alternative as well: ``memo_batch`` tracks the lap's merge-pair and
birth-group entropies of the alternative's own responsibilities (pairs not involving the
candidates), so the alternative stays an exact memo state. A merge that involves a candidate
cancels the delete proposal for that lap.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from mixstream.learn.moves.base import (
    LapContext,
    LapPlan,
    Move,
    memory_of,
    min_gain,
    recently_failed,
    score,
)
from mixstream.learn.words import DELETE
from mixstream.model import Model
from mixstream.suffstats import SuffStats
from mixstream.vocabulary import ALLOWED_MOVES

DEFAULTS: dict[str, Any] = {
    # candidates have mass below this fraction of the average component mass N / K
    "max_size_frac": 0.5,
    # components at or below this mass are proposed together
    "empty_mass": 1.0,
    # most components in one proposal
    "max_comps": 10,
    # a rejected component is not proposed again for this many laps
    "retry_laps": 2,
    # components with at most this mass are empty: deleting them may leave the ELBO unchanged
    "empty_mass_exact": 1e-8,
}


def select(
    model: Model, state: Any, lap: int, opts: dict[str, Any], exclude: Collection[int] = ()
) -> list[int]:
    """uids of the components to try deleting this lap (empty list: none)."""
    total = state.total
    K = total.K
    if K < 2:
        return []
    memory = memory_of(state, DELETE)
    N = total.N
    limit = opts["max_size_frac"] * N.sum() / K
    cand = [
        k
        for k in np.argsort(N, kind="stable")
        if N[k] <= limit
        and int(total.uids[k]) not in exclude
        and not recently_failed(memory, int(total.uids[k]), lap, opts["retry_laps"])
    ]
    if not cand:
        return []
    empty = [k for k in cand if N[k] <= opts["empty_mass"]]
    chosen = empty if empty else cand[:1]
    chosen = chosen[: min(opts["max_comps"], K - 1)]
    return [int(total.uids[k]) for k in chosen]


def evaluate(ctx: LapContext, uids: list[int], opts: dict[str, Any]) -> bool:
    """Accept the delete if the ELBO of the restricted statistics (``ctx.alt``) rises.

    Returns whether it was accepted; ``ctx.alt`` is consumed either way.
    """
    alt, ctx.alt = ctx.alt, None
    if alt is None:
        return False
    gone = {int(u) for u in uids}
    keep = np.array([u for u in ctx.full.uids if int(u) not in gone], np.int64)
    if set(alt) != set(ctx.state.cache):
        raise RuntimeError("the delete proposal misses the statistics of some batches")
    cand = SuffStats.sum(
        alt[b] if np.array_equal(alt[b].uids, keep) else alt[b].align(keep) for b in sorted(alt)
    )
    elbo, model = score(ctx.model, cand)
    # an empty component (no mass in any batch) changes nothing when removed: accept a tie
    pos = [ctx.full.index_of(u) for u in gone]
    empty = float(np.max(ctx.full.N[pos])) <= opts["empty_mass_exact"]
    ok = elbo > ctx.elbo + min_gain(ctx.elbo) or (empty and elbo >= ctx.elbo)
    ctx.count(DELETE, tried=1, accepted=int(ok))
    if not ok:
        ctx.reject(DELETE, elbo - ctx.elbo, min_gain(ctx.elbo), "lowers the ELBO")
        memory = memory_of(ctx.state, DELETE)
        for u in uids:
            memory[int(u)] = ctx.lap
        return False
    ctx.commit(DELETE, cand, model, elbo, uids=list(uids), empty=empty)
    for b in alt:
        ctx.state.cache[b] = alt[b]
    return True


class DeleteMove(Move):
    """Deletes: small components proposed at the start of a lap (``select``, never this lap's
    birth components), the visits gather the statistics without them, judged last at its end
    (``evaluate``)."""

    name = DELETE
    algorithms = frozenset(a for a, m in ALLOWED_MOVES.items() if DELETE in m)
    defaults = DEFAULTS

    def propose(
        self,
        ctx: LapContext,
        plan: LapPlan,
        executor: Any,
        rng: np.random.Generator,
        opts: dict[str, Any],
        hard: bool,
    ) -> None:
        if ctx.model.K >= 2:
            plan.delete_uids = select(ctx.model, ctx.state, ctx.lap, opts, exclude=plan.busy())

    def judge(self, ctx: LapContext, plan: LapPlan, opts: dict[str, Any]) -> None:
        if ctx.alt is not None:
            evaluate(ctx, plan.delete_uids, opts)


#: the delete move of the registry (``mixstream.learn.moves.MOVES``)
MOVE = DeleteMove()
