"""Birth move: new components grown from the data of one existing component.

Design (exact from statistics, monotone)
----------------------------------------
A birth is proposed on one batch at the start of a lap, carried through the lap, and judged at
the end of the lap on whole-data ELBOs computed from the memoized statistics.

1. **Targets.** Drawn with probability proportional to their squared mass (large components are
   the likely mixtures of several clusters) among the *unsettled* components: a component is
   settled once ``settle_after`` births from it have failed in a row while its mass moved by
   less than ``settle_tol`` (it is retried after ``retry_laps`` laps). A fit with births does not
   declare convergence while unsettled components remain (``pending``).

2. **Proposal.** The birth batches: ``b0`` (drawn by the targets' mass, ``choose_batch``),
   then the batches holding most of the targets' mass until they hold ``max_rows`` rows per
   target or number ``gather_batches`` (``gather_batches``; on large data ``b0`` alone). The
   workers return each target's rows there (r_nt > 0.5, weighted by r_nt; ``target_rows``) and
   the coordinator fits the proposal to them (``fit_proposal``): candidate splits into 1, 2, ...
   ``n_new + 1`` pieces are fitted to half the distinct rows (Lloyd from k-means++ seeds, then
   ``n_iters`` restricted local/global steps of a copy of the model holding only the pieces,
   statistics amplified to the target's whole-data mass, then ``cleanup``: greedy exact merges
   judged on those rows alone) and judged by their posterior-predictive score on the other
   half (``heldout_score``). When one piece wins there is no birth (on enough held-out rows,
   ``decisive_rows`` per feature, the target is settled at once); pieces with less than
   ``min_new_mass`` of the rows are dropped (``_prune``).

   Then each birth batch is visited (``birth_batch``): its ordinary statistics and, per
   proposal, the statistics of the target's responsibilities split among the pieces. The
   split keeps the target's total mass: row n's r_nt is split among the target (which keeps
   its uid) and the new components (fresh uids from ``model.new_uids``), r_nt s_nj with
   sum_j s_nj = 1; every other column is untouched, so it is a valid responsibility matrix.

3. **Insertion, on the coordinator.** The proposal's whole-data statistics are
   ``SS_total - sum_b SS_b_cached + sum_b SS_b_split`` over the birth batches: the other
   batches' cached statistics have zero mass for the new components, which is exactly what
   their responsibilities say. So the state after insertion is a valid memo state and the lap
   that follows (every batch visited, the new components gathering their statistics as it
   goes) is ordinary coordinate ascent from it.

   - ``mode="lap"`` (default): every proposal is inserted. The lap's starting state (cache,
     total, model: a shallow snapshot) is kept until the end of the lap.
   - ``mode="batch"``: a proposal is inserted only if its ELBO beats the ordinary visits of
     the birth batches, so insertion itself is an ascent
     step. Cheap and strictly monotone at every step, but biased against births: a new
     component holds only one batch's share of its data, so its weight (and the label cost
     of its rows) is B times too small; it finds only clusters that are obvious in one batch.

4. **Judgement at the end of the lap, against the model without the births.** Each visit also
   records, per birth, the entropy of the *folded* responsibilities R = r_t + sum_j r_new_j
   (the scalar ``"fold/<target uid>"``). The memo without a birth is the memo with its new
   components merged back into the target: all statistics add and the merged entropy is the
   tracked group entropy, so its ELBO is exact. If the folded state is better the birth is
   undone (the fold is applied to the whole-data statistics and to every cached batch with its
   own group entropy). A birth is kept only when the ELBO with it beats the folded ELBO by
   more than ``base.min_gain`` (the threshold every move must clear); each decision is logged
   as a "birth_check" record with both ELBOs. In "lap" mode, if the result is still below the
   ELBO the lap started from, the starting state is restored (``birth_revert``: the lap's visits
   are discarded). Either way the lap ends at an ELBO no lower than the previous lap's.

Birth laps cost two extra visits of each birth batch (one to gather rows, one to split; one
batch on large data) plus the proposal's restricted steps on at most ``max_rows`` rows per
target, on the coordinator; a lap carrying births runs its local steps with the extra
components.

This module schedules births over a lap (targets, batches, insertion, judgement); fitting a
proposal (step 2: ``target_rows``, ``fit_proposal``, ``birth_batch``) is in ``proposal.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mixstream.learn.memo import FOLD_PREFIX, core
from mixstream.learn.moves.base import LapContext, LapPlan, Move, adopt, memory_of, min_gain, score
from mixstream.learn.moves.proposal import (
    UNSPLIT,
    UNSPLIT_FEW,
    birth_batch,
    fit_proposal,
    target_rows,
)
from mixstream.learn.words import BIRTH
from mixstream.model import Model
from mixstream.suffstats import NONADDITIVE, SuffStats
from mixstream.vocabulary import ALLOWED_MOVES

DEFAULTS: dict[str, Any] = {
    # targets tried per lap, at least ...
    "n_targets": 3,
    # ... and at most, when a quarter of the unsettled components is more
    "max_targets": 12,
    # new components per birth, at most (the target keeps one more piece)
    "n_new": 9,
    # candidate splits per target, from 2 pieces to n_new + 1, and the unsplit target ...
    "candidates": 3,
    # ... fitted to half the target's rows and judged on the other half (False: only the
    # n_new + 1 split, fitted to all of them)
    "heldout": True,
    # rows of each target (from the birth batches) its proposal is fitted to, at most
    "max_rows": 5000,
    # restricted local/global steps of the proposal
    "n_iters": 10,
    # whole-data mass below which a component is not a target
    "min_size": 20.0,
    # target rows (r > 0.5) a proposal needs
    "min_rows": 10,
    # batches the target rows are gathered from, at most (the birth batch first)
    "gather_batches": 4,
    # ... stopping once they hold this many rows per feature for each target
    "rows_per_feature": 50,
    # proposal pieces with less mass in the birth batch are dropped
    "min_new_mass": 5.0,
    # held-out rows per feature an unsplit verdict needs to settle the target at once (with
    # fewer it counts as one failed birth: on wine, 13-D with ~50 held-out rows, one verdict
    # settled a K=1 fit that later tries split)
    "decisive_rows": 10,
    # a target is settled after this many failed births in a row at the same mass ...
    "settle_after": 3,
    # ... and tried again once its mass changes by this fraction ...
    "settle_tol": 0.05,
    # ... or after this many laps
    "retry_laps": 10,
    # merge the proposal's pieces greedily on the target's rows before inserting it
    "cleanup": True,
    # stand-in statistics for the new components during their first lap (``Boost``)
    "boost": True,
    # stage 2: compare with the model without the births at the end of the lap
    "verify": True,
    # "lap": insert proposals, judge at the end of the lap (against the fold and the lap's
    # starting state); "batch": insert only proposals that raise the ELBO on the birth batch
    "mode": "lap",
}


@dataclass
class Birth:
    """A birth carried through the lap: the target's uid and the new components' uids."""

    target: int
    new: list[int]


@dataclass
class Boost:
    """Stand-in statistics for new components in the lap they are born in.

    A new component starts with the birth batch's share of its data only, so in the first
    visits of the other batches its weight (and its pull on its rows) is about B times too
    small; on two clusters 6 sd apart in 50-D the target kept most of the other batches' rows
    and one lap was not enough to show the split's worth (the whole data's optimum is 5,800
    nats better; the lap ended 600-900 below the fold-back). So during the lap the global steps
    (never the ELBO) add, for each new component, its birth-batch statistics times the
    target's cached mass in the batches not yet visited over its mass in the birth batch: the
    statistics those batches will most likely bring. The stand-in shrinks to zero as the lap
    visits them; the end-of-lap judgement uses the exact memo total.
    """

    pieces: dict[int, list[int]]  # target uid -> new uids
    rows: dict[int, dict[str, np.ndarray]]  # new uid -> its birth-batch statistics (per field)
    left: dict[int, dict[int, float]]  # target uid -> {batch: the target's cached mass there}
    born_mass: dict[int, float]  # target uid -> the target's mass in the birth batch

    def stats(self, total: SuffStats, visited: set[int]) -> SuffStats:
        """The stand-in, aligned to ``total`` (zeros outside the new components)."""
        fields = {k: np.zeros_like(v) for k, v in total.fields.items()}
        pos = {int(u): i for i, u in enumerate(total.uids)}
        for t, new in self.pieces.items():
            left = sum(m for b, m in self.left[t].items() if b not in visited)
            factor = left / self.born_mass[t] if self.born_mass[t] > 0 else 0.0
            for u in new:
                if factor <= 0 or u not in pos:
                    continue
                for k, row in self.rows[u].items():
                    fields[k][pos[u]] += factor * row
        return SuffStats(fields, total.uids)

    @classmethod
    def of(cls, state: Any, batches: list[int], born_ss: SuffStats, births: list[Birth]) -> Boost:
        """From the memo before the birth batches' new statistics are stored and their sum
        ``born_ss``."""
        pieces = {bt.target: list(bt.new) for bt in births}
        rows, left, born = {}, {}, {}
        additive = [k for k in born_ss.fields if k not in NONADDITIVE]
        for t, new in pieces.items():
            for u in new:
                i = born_ss.index_of(u)
                rows[u] = {k: np.array(born_ss.fields[k][i]) for k in additive}
            born[t] = float(sum(born_ss.N[born_ss.index_of(u)] for u in (t, *new)))
            left[t] = {}
            for b, ss in state.cache.items():
                hit = np.flatnonzero(ss.uids == t)
                if b not in batches and hit.size:
                    left[t][b] = max(float(ss.N[hit[0]]), 0.0)
        return cls(pieces, rows, left, born)


@dataclass
class Snapshot:
    """The memo and model at the start of a lap with "lap"-mode births (to restore)."""

    cache: dict[int, SuffStats]
    total: SuffStats
    model: Model
    elbo: float


# ---------------------------------------------------------------------- coordinator side
def select_targets(
    total: SuffStats, state: Any, rng: np.random.Generator, opts: dict[str, Any], lap: int
) -> list[int]:
    """Target uids for this lap's births, drawn by squared mass without replacement: first the
    unsettled components (the fit cannot converge while they remain), then those whose last
    failure is more than ``retry_laps`` laps old. Up to ``n_targets``, or a quarter of the
    unsettled (at most ``max_targets``): at 1M x 64 with 50 clusters, three a lap took 28 laps
    of failed births to settle K=50, and the retries took slots from the unsettled."""
    fresh = eligible(total, state, opts)
    due = [k for k in eligible(total, state, opts, lap) if k not in set(fresh)]
    n = max(int(opts["n_targets"]), min(-(-len(fresh) // 4), int(opts["max_targets"])))
    picks = []
    for pool in (fresh, due):
        take = min(n - len(picks), len(pool))
        if take <= 0:
            break
        N = total.N[pool]
        chosen = rng.choice(len(pool), size=take, replace=False, p=N * N / (N * N).sum())
        picks += [pool[i] for i in chosen]
    return [int(total.uids[k]) for k in picks]


def eligible(
    total: SuffStats, state: Any, opts: dict[str, Any], lap: int | None = None
) -> list[int]:
    """Positions of the components births may target: large enough and not settled (with
    ``lap``: or settled more than ``retry_laps`` laps ago)."""
    failed = memory_of(state, BIRTH)
    sizes = memory_of(state, "birth_mass")
    fails = memory_of(state, "birth_fails")
    out = []
    for k in range(total.K):
        uid, n = int(total.uids[k]), float(total.N[k])
        if n < opts["min_size"]:
            continue
        same = abs(n - sizes.get(uid, -1e300)) <= opts["settle_tol"] * n
        settled = uid in failed and same and fails.get(uid, 1) >= opts["settle_after"]
        if settled and (lap is None or lap - failed[uid] <= opts["retry_laps"]):
            continue
        out.append(k)
    return out


def pending(state: Any, opts: dict[str, Any]) -> bool:
    """True while some component is unsettled (a fit with births does not converge then)."""
    return state.total is not None and bool(eligible(state.total, state, opts))


def _failed(
    state: Any,
    uid: int,
    lap: int,
    opts: dict[str, Any],
    decisive: bool = False,
    total: SuffStats | None = None,
) -> None:
    """Record a failed birth from ``uid`` with its mass in ``total`` (default: the memo
    total); count failures in a row at about that mass (a proposal is random: one failure does
    not show a component is one cluster, ``settle_after`` of them in a row settle it until its
    mass moves). A ``decisive`` failure (no split beat the target on held-out rows) settles it
    at once."""
    total, uid = state.total if total is None else total, int(uid)
    memory_of(state, BIRTH)[uid] = lap
    hit = np.flatnonzero(total.uids == uid)
    if not hit.size:
        return
    n = float(total.N[hit[0]])
    sizes, fails = memory_of(state, "birth_mass"), memory_of(state, "birth_fails")
    same = uid in sizes and abs(n - sizes[uid]) <= opts["settle_tol"] * max(n, 1.0)
    fails[uid] = fails.get(uid, 0) + 1 if same else 1
    if decisive:
        fails[uid] = max(fails[uid], opts["settle_after"])
    sizes[uid] = round(n)


def splice(ss: SuffStats, prop: SuffStats) -> SuffStats:
    """``ss`` with the target's row replaced by the proposal's and its new components appended."""
    pos = ss.index_of(int(prop.uids[0]))
    fields = {}
    for name, v in ss.fields.items():
        arr = v.copy()
        arr[pos] = prop.fields[name][0]
        fields[name] = np.concatenate([arr, prop.fields[name][1:]])
    return SuffStats(fields, np.concatenate([ss.uids, prop.uids[1:]]), ss.scalars)


def fold(ss: SuffStats, target: int, new: list[int], entropy: float) -> SuffStats:
    """The new components merged back into the target, whose entropy becomes ``entropy``."""
    out = ss
    for i, u in enumerate(new):
        h = entropy if i == len(new) - 1 else 0.0  # intermediate values are overwritten
        out = out.merge_pair(out.index_of(target), out.index_of(u), Hresp=h)
    return out


def target_mass(state: Any, targets: list[int]) -> dict[int, float]:
    """The targets' cached mass in each batch of the memo, by batch id."""
    tset = np.asarray(targets, np.int64)
    return {
        b: float(np.maximum(ss.N[np.isin(ss.uids, tset)], 0.0).sum())
        for b, ss in state.cache.items()
    }


def choose_batch(state: Any, targets: list[int], rng: np.random.Generator) -> int:
    """The birth batch: drawn with probability proportional to the targets' cached mass in it.

    The proposals start from this batch's target rows (``gather_batches`` adds others only
    while they are short), so it must hold many of them: a batch drawn uniformly may be a short
    last batch (one row of 1,293 on digits with batch_size=323, where every birth from K=1 then
    failed) or hold little of a target.
    """
    held = target_mass(state, targets)
    ids = sorted(held)
    mass = np.array([held[b] for b in ids])
    if not mass.sum() > 0:
        return int(rng.choice(ids))
    return int(ids[rng.choice(len(ids), p=mass / mass.sum())])


def gather_batches(
    state: Any, targets: list[int], b0: int, opts: dict[str, Any], n_features: int | None = None
) -> list[int]:
    """The batches whose target rows feed the proposals: ``b0``, then those holding most of the
    targets' cached mass, until they hold ``max_rows`` per target (at most
    ``rows_per_feature`` per feature) or there are ``gather_batches`` of them.

    One batch is enough on large data; on a few hundred rows in 4 batches, the proposals saw
    tens of a target's rows in 64-D and the held-out judge half of those, and DP from K=1 on
    digits (full covariances) ended 2-4 nats per row below DP from K=10; with its rows from
    every batch it ends level or above. The cap per feature keeps large data at one batch:
    with 10,000-row batches in 16-D, gathering 5,000 rows per target made the planted-cluster
    discovery 2-3x slower for splits that 800 rows found as well.
    """
    held = target_mass(state, targets)
    others = sorted((b for b in held if b != b0), key=lambda b: (-held[b], b))
    chosen, have = [b0], held[b0]
    per_target = opts["max_rows"]
    if n_features:
        per_target = min(per_target, opts["rows_per_feature"] * n_features)
    need = per_target * len(targets)
    for b in others:
        if have >= need or len(chosen) >= opts["gather_batches"]:
            break
        chosen.append(b)
        have += held[b]
    return chosen


def _proposals(
    model: Model,
    executor: Any,
    targets: list[int],
    batches: list[int],
    mass: dict[int, float],
    rng: np.random.Generator,
    opts: dict[str, Any],
    hard: bool,
) -> list[Model | str | None]:
    """Per target, the proposal fitted on the coordinator to its rows from ``batches`` (a
    sub-model over [target, new...]) or the verdict that there is none."""
    cap = int(opts["max_rows"])
    got = executor.map(
        target_rows, (model, targets, cap, int(rng.integers(2**62))), batch_ids=batches, hard=hard
    )
    subs: list[Model | str | None] = []
    for i, t in enumerate(targets):
        X_h = np.concatenate([g[i][0] for g in got])
        m_h = np.concatenate([g[i][1] for g in got])
        if X_h.shape[0] > cap:
            keep = np.sort(rng.choice(X_h.shape[0], size=cap, replace=False))
            X_h, m_h = X_h[keep], m_h[keep]
        new = model.new_uids(int(opts["n_new"])).tolist()
        seed = int(rng.integers(2**62))
        subs.append(fit_proposal(model, X_h, m_h, t, new, seed, mass[t], opts, hard))
    return subs


def create(
    ctx: LapContext,
    executor: Any,
    rng: np.random.Generator,
    opts: dict[str, Any],
    hard: bool = False,
) -> list[Birth]:
    """Stage 1: propose births on one batch and insert them (see the module docstring).

    Visits the birth batch (``choose_batch``; its cache entry and the memo total are updated
    whatever is inserted) and leaves the model at the global step of the new total.
    """
    model, state = ctx.model, ctx.state
    targets = select_targets(state.total, state, rng, opts, ctx.lap)
    if not targets:
        return []
    b0 = choose_batch(state, targets, rng)
    mode = opts["mode"]
    if mode not in ("lap", "batch"):
        raise ValueError(f"birth mode must be 'lap' or 'batch', got {mode!r}")
    mass = {int(u): float(n) for u, n in zip(state.total.uids, state.total.N)}
    batches = gather_batches(state, targets, b0, opts, getattr(model.obs, "n_features", None))
    subs = _proposals(model, executor, targets, batches, mass, rng, opts, hard)
    fitted = [(t, sub) for t, sub in zip(targets, subs) if isinstance(sub, Model)]
    outs = executor.map(birth_batch, (model, fitted), batch_ids=batches, hard=hard)
    # per target: its split statistics in each birth batch, or the verdict that there is none
    props, j = [], 0
    for sub in subs:
        if isinstance(sub, Model):
            props.append([o["props"][j] for o in outs])
            j += 1
        else:
            props.append(sub)
    uids = state.total.uids
    base = state.total
    for b in batches:
        old = core(state.cache[b])
        base = base - (old if np.array_equal(old.uids, uids) else old.align(uids))
    if mode == "lap":
        ctx.snapshot = Snapshot(
            dict(state.cache), state.total, model.copy(), model.elbo(state.total)
        )
    cur = {b: o["ss"] for b, o in zip(batches, outs)}
    cur_total = _memo_total(base, cur)
    cur_elbo, cur_model = score(model, cur_total)
    births = []
    for t, prop in zip(targets, props):
        ctx.count(BIRTH, tried=1)
        # compared by value: a verdict that came back from a Dask worker is a new str object
        unsplit = isinstance(prop, str) and prop in (UNSPLIT, UNSPLIT_FEW)
        if prop is None or unsplit:
            if prop is None:
                ctx.reject(BIRTH, None, 0.0, "no split: too few target rows or pieces")
            else:
                ctx.reject(BIRTH, None, 0.0, "no split beat the target on held-out rows")
            # a held-out verdict on enough rows is a judgement of the target itself, not of
            # one random proposal: it settles the target at once
            _failed(state, t, ctx.lap, opts, decisive=prop == UNSPLIT)
            continue
        cand = {b: splice(cur[b], p) for b, p in zip(batches, prop)}
        cand_total = _memo_total(base, cand)
        elbo, cand_model = score(model, cand_total)
        if mode == "lap" or elbo > cur_elbo + min_gain(cur_elbo):
            new_uids = [int(u) for u in prop[0].uids[1:]]
            ctx.log.append(
                {
                    "move": BIRTH,
                    "lap": ctx.lap,
                    "stage": "create",
                    "batch": b0,
                    "batches": list(batches),
                    "uids": [int(t), *new_uids],
                    "elbo_before": cur_elbo,
                    "elbo_after": elbo,
                }
            )
            cur, cur_total, cur_elbo, cur_model = cand, cand_total, elbo, cand_model
            births.append(Birth(int(t), new_uids))
        else:
            ctx.reject(BIRTH, elbo - cur_elbo, min_gain(cur_elbo), "lowers the ELBO on insertion")
            _failed(state, t, ctx.lap, opts)
    if not births:
        ctx.snapshot = None  # nothing inserted: the visits were ordinary ones
    elif opts["boost"]:
        born = _memo_total(None, cur)
        ctx.boost = Boost.of(state, batches, born, births)
    state.cache.update(cur)
    state.total = cur_total
    adopt(model, cur_model)
    return births


def _memo_total(base: SuffStats | None, visits: dict[int, SuffStats]) -> SuffStats:
    """``base`` (aligned to the visits' components) plus the visits' statistics."""
    total = None
    for ss in visits.values():
        total = core(ss) if total is None else total + core(ss)
    return total if base is None else base.align(total.uids) + total


def verify(ctx: LapContext, births: list[Birth], opts: dict[str, Any]) -> None:
    """Stage 2 (end of lap): keep a birth only if the ELBO with it exceeds the ELBO of the same
    state with it folded back by more than ``min_gain`` (else fold it back); in "lap" mode,
    restore the lap's starting state if it is still better than the result.

    Each judgement is logged as a "birth_check" record ("elbo_with", "elbo_without", "kept"),
    both ELBOs exact from statistics. Folding back a birth whose gain is positive but below
    ``min_gain`` lowers the ELBO by less than ``min_gain``; the lap still ends no lower than it
    started (the snapshot in "lap" mode; in "batch" mode every birth was inserted with a gain
    above ``min_gain``).
    """
    kept = []
    for bt in births:
        key = FOLD_PREFIX + str(bt.target)
        H = ctx.full.scalars.get(key)
        if not opts["verify"] or H is None:
            kept.append(bt)
            continue
        folded = fold(ctx.full, bt.target, bt.new, H)
        elbo, model = score(ctx.model, folded)
        keep = ctx.elbo - elbo > min_gain(ctx.elbo)
        ctx.log.append(
            {
                "move": "birth_check",
                "lap": ctx.lap,
                "uids": [bt.target, *bt.new],
                "elbo_with": ctx.elbo,
                "elbo_without": elbo,
                "kept": keep,
            }
        )
        if keep:
            kept.append(bt)
            continue
        ctx.reject(BIRTH, ctx.elbo - elbo, min_gain(ctx.elbo), "the fold-back scores higher")
        ctx.commit("birth_undo", folded, model, elbo, uids=[bt.target, *bt.new])
        for entries in (ctx.state.cache, ctx.alt or {}):
            for b, ss in entries.items():
                entries[b] = fold(ss, bt.target, bt.new, ss.scalars[key])
        # the folded mass: the memo total still holds the split (its pieces took a varying
        # share of the target's rows each lap, so a failure recorded at the split mass never
        # matched the last one, the target never settled and births went on for 100 laps)
        _failed(ctx.state, bt.target, ctx.lap, opts, total=folded)
    snap, ctx.snapshot = ctx.snapshot, None
    if snap is not None and ctx.elbo < snap.elbo:
        if kept:
            ctx.reject(BIRTH, ctx.elbo - snap.elbo, 0.0, "the lap ended below its start")
        ctx.log.append(
            {
                "move": "birth_revert",
                "lap": ctx.lap,
                "uids": [u for bt in kept for u in (bt.target, *bt.new)],
                "elbo_before": ctx.elbo,
                "elbo_after": snap.elbo,
            }
        )
        ctx.state.cache = snap.cache
        ctx.state.total = snap.total
        adopt(ctx.model, snap.model)
        ctx.full, ctx.elbo, ctx.alt = snap.total, snap.elbo, None
        for bt in kept:
            _failed(ctx.state, bt.target, ctx.lap, opts)
        return
    ctx.count(BIRTH, accepted=len(kept))


class BirthMove(Move):
    """Births: proposed and inserted at the start of a lap (``create``), judged at its end
    (``verify``); a fit with unsettled targets does not converge (``pending``)."""

    name = BIRTH
    #: VB only: the objective of point estimates rises with every extra component
    algorithms = frozenset(a for a, m in ALLOWED_MOVES.items() if BIRTH in m)
    defaults = DEFAULTS

    def check(self, model: Model) -> None:
        if model.inference == "em":
            raise ValueError(
                "birth moves need a VB model: the objective of point estimates (EM, DP MAP, "
                "classification EM) rises with every extra component, so births would never "
                "stop; use merge / delete moves, or algorithm='movb'"
            )

    def propose(
        self,
        ctx: LapContext,
        plan: LapPlan,
        executor: Any,
        rng: np.random.Generator,
        opts: dict[str, Any],
        hard: bool,
    ) -> None:
        plan.births = create(ctx, executor, rng, opts, hard)

    def judge(self, ctx: LapContext, plan: LapPlan, opts: dict[str, Any]) -> None:
        verify(ctx, plan.births, opts)

    def unsettled(self, state: Any, opts: dict[str, Any]) -> bool:
        return pending(state, opts)


#: the birth move of the registry (``mixstream.learn.moves.MOVES``)
MOVE = BirthMove()
