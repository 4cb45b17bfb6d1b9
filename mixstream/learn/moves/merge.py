"""Merge move: two components become one when the whole-data ELBO says they should.

Design
------
Merging components j and k gives every data point the responsibility r_j + r_k. All statistics
add except the assignment entropy, whose merged value -sum_n (r_nj + r_nk) log(r_nj + r_nk) needs
the data. So merges take one lap:

1. **Select** (start of the lap): every pair is scored by a cheap closed-form gain computed from
   the memo total: the allocation term is recomputed for the merged masses, and the observation
   term, which is a sum of per-component terms for untied models, is recomputed for the merged
   component alone (one-component global steps); tied models score each pair with a full global
   step. The entropy is taken as H_j + H_k, an upper bound of the merged entropy, so the gain is
   an upper bound: pairs at or below zero cannot be accepted and are dropped. The best pairs
   (at most ``max_pairs``, each component in at most ``max_pairs_per_comp``) are tracked.
2. **Track** (the lap): every batch is summarized with ``merge_pairs=`` the tracked pairs, so
   its cached statistics carry the pair entropies of its own responsibilities.
3. **Accept** (end of the lap): pairs are ranked by the same closed-form gain, now with the exact
   pair entropy, and taken greedily, each component in at most one accepted merge per lap. Each
   candidate is ``SS_total.merge_pair(j, k)`` (exact: the tracked entropy is the sum of the
   batches' terms), scored by a global step on a model copy; accepted only if the ELBO rises.
   The merged component keeps the uid and the position of the earlier one (the larger stick).
4. **Cache**: on acceptance every cached batch is merged with its own tracked pair entropy, so
   each entry is exactly the statistics of its responsibilities with r_j + r_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mixstream.learn.moves.base import LapContext, LapPlan, Move, is_tied, min_gain, score
from mixstream.learn.words import MERGE
from mixstream.model import Model
from mixstream.suffstats import NONADDITIVE, SuffStats
from mixstream.vocabulary import ALLOWED_MOVES

DEFAULTS: dict[str, Any] = {
    # most pairs tracked in one lap (each costs one column of work in the local step)
    "max_pairs": 64,
    # most tracked pairs any one component takes part in
    "max_pairs_per_comp": 4,
}


def pair_gains(
    model: Model,
    SS: SuffStats,
    pairs: Sequence[tuple[int, int]],
    pair_entropy: Sequence[float] | None = None,
) -> np.ndarray:
    """ELBO change (summed) of merging each pair, from statistics, at fixed other components.

    Parameters
    ----------
    model : Model
        Supplies priors (its parameters are not changed).
    SS : SuffStats
        Whole-data statistics with the model's components.
    pairs : sequence of (uid_j, uid_k)
    pair_entropy : sequence of float, optional
        Merged entropy of each pair; when None, H_j + H_k (an upper bound), which makes every
        gain an upper bound of the true one.

    Returns
    -------
    gains : array (len(pairs),)
        Exact for untied likelihoods (the observation term is a sum over components); tied
        likelihoods use a full global step per pair.
    """
    pos = {int(u): i for i, u in enumerate(SS.uids)}
    H = SS["Hresp"] if "Hresp" in SS else np.zeros(SS.K)
    dH = np.zeros(len(pairs))
    if pair_entropy is not None:
        for i, (a, b) in enumerate(pairs):
            dH[i] = pair_entropy[i] - H[pos[int(a)]] - H[pos[int(b)]]
    if is_tied(model):
        return _full_gains(model, SS, pairs, dH, pos)
    N = SS.N
    alloc = model.alloc.copy()
    base = SuffStats({"N": N})
    alloc.update(base)
    a0 = alloc.elbo_term(base)
    obs = model.obs.copy()
    names = [f for f in SS.fields if f not in NONADDITIVE]

    def one(stats: dict[str, np.ndarray]) -> float:
        ss1 = SuffStats(stats)
        obs.update(ss1)
        return obs.elbo_term(ss1)

    single: dict[int, float] = {}
    gains = np.empty(len(pairs))
    for i, (a, b) in enumerate(pairs):
        j, k = sorted((pos[int(a)], pos[int(b)]))
        for c in (j, k):
            if c not in single:
                single[c] = one({f: SS[f][c : c + 1] for f in names})
        Nm = np.delete(N, k)
        Nm[j] += N[k]
        merged_n = SuffStats({"N": Nm})
        alloc.update(merged_n)
        da = alloc.elbo_term(merged_n) - a0
        do = one({f: SS[f][j : j + 1] + SS[f][k : k + 1] for f in names}) - single[j] - single[k]
        gains[i] = da + do + dH[i]
    return gains


def _full_gains(
    model: Model,
    SS: SuffStats,
    pairs: Sequence[tuple[int, int]],
    dH: np.ndarray,
    pos: dict[int, int],
) -> np.ndarray:
    base, _ = score(model, SS)
    gains = np.empty(len(pairs))
    H = SS["Hresp"] if "Hresp" in SS else None
    for i, (a, b) in enumerate(pairs):
        j, k = sorted((pos[int(a)], pos[int(b)]))
        h = None if H is None else H[j] + H[k] + dH[i]
        elbo, _ = score(model, SS.merge_pair(j, k, Hresp=h))
        gains[i] = elbo - base
    return gains


def select_pairs(
    model: Model, total: SuffStats, opts: dict[str, Any], ctx: LapContext | None = None
) -> list[tuple[int, int]]:
    """Candidate pairs to track this lap: positive upper-bound gain, best first.

    With ``ctx``, the tracked pairs count as tried, and when no pair qualifies the best bound
    is recorded as the lap's rejected merge (so "merge: 0 tried" says why)."""
    K = total.K
    if K < 2:
        return []
    uids = total.uids
    all_pairs = [(int(uids[j]), int(uids[k])) for j in range(K) for k in range(j + 1, K)]
    gains = pair_gains(model, total, all_pairs)
    order = np.argsort(-gains, kind="stable")
    chosen: list[tuple[int, int]] = []
    uses: dict[int, int] = {}
    for i in order:
        if gains[i] <= 0 or len(chosen) >= opts["max_pairs"]:
            break
        a, b = all_pairs[i]
        if (
            uses.get(a, 0) >= opts["max_pairs_per_comp"]
            or uses.get(b, 0) >= opts["max_pairs_per_comp"]
        ):
            continue
        chosen.append((a, b))
        uses[a] = uses.get(a, 0) + 1
        uses[b] = uses.get(b, 0) + 1
    if ctx is not None:
        ctx.count(MERGE, tried=len(chosen))
        if not chosen and len(gains):
            ctx.reject(MERGE, float(gains[order[0]]), 0.0, "no pair's gain bound is positive")
    return chosen


def evaluate(ctx: LapContext, opts: dict[str, Any]) -> None:
    """Accept tracked merges greedily at the end of a lap (see the module docstring)."""
    full = ctx.full
    pairs = [(int(a), int(b)) for a, b in full.merge_pairs]
    if not pairs:
        return
    gains = pair_gains(ctx.model, full, pairs, full.merge_Hresp)
    used: set[int] = set()
    for i in np.argsort(-gains, kind="stable"):
        if gains[i] <= -min_gain(ctx.elbo):
            ctx.reject(MERGE, gains[i], min_gain(ctx.elbo), "lowers the ELBO")
            break
        a, b = pairs[i]
        if a in used or b in used:
            continue
        full = ctx.full
        j, k = sorted((full.index_of(a), full.index_of(b)))
        keep, gone = int(full.uids[j]), int(full.uids[k])
        cand = full.merge_pair(j, k)
        elbo, model = score(ctx.model, cand)
        ok = elbo > ctx.elbo + min_gain(ctx.elbo)
        ctx.count(MERGE, accepted=int(ok))
        if not ok:
            ctx.reject(MERGE, elbo - ctx.elbo, min_gain(ctx.elbo), "lowers the ELBO")
            continue
        ctx.commit(MERGE, cand, model, elbo, uids=[keep, gone])
        used.update((a, b))
        _merge_entries(ctx.state.cache, keep, gone)
        if ctx.alt is not None:
            if {keep, gone} <= {int(u) for u in ctx.alt[next(iter(ctx.alt))].uids}:
                _merge_entries(ctx.alt, keep, gone)
            else:  # the delete proposal involved one of them: it no longer describes a state
                ctx.alt = None


def _merge_entries(entries: dict[int, SuffStats], keep: int, gone: int) -> None:
    """Merge uid ``gone`` into ``keep`` in every entry, with the entry's own pair entropy."""
    for b, ss in entries.items():
        entries[b] = ss.merge_pair(ss.index_of(keep), ss.index_of(gone))


class MergeMove(Move):
    """Merges: candidate pairs chosen at the start of a lap (``select_pairs``), their merged
    entropies tracked by the visits, accepted greedily at its end (``evaluate``)."""

    name = MERGE
    algorithms = frozenset(a for a, m in ALLOWED_MOVES.items() if MERGE in m)
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
            plan.pairs = select_pairs(ctx.model, ctx.state.total, opts, ctx)

    def judge(self, ctx: LapContext, plan: LapPlan, opts: dict[str, Any]) -> None:
        if plan.pairs:
            evaluate(ctx, opts)


#: the merge move of the registry (``mixstream.learn.moves.MOVES``)
MOVE = MergeMove()
