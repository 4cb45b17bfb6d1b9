"""Memoized variational Bayes (moVB): one batch at a time, exact whole-data statistics.

The memo
--------
``MemoState.cache[b]`` holds the statistics of batch b computed at its last visit;
``MemoState.total`` is their sum. Visiting batch b runs the local step with the current global
parameters and swaps its statistics in::

    SS_total <- SS_total - SS_b_old + SS_b_new        (aligned by component uid)
    model.global_step(SS_total)

Components born since batch b was cached have no entry in its statistics; ``SuffStats.align``
fills them with zeros, which is exactly their mass there (none). Every visit is a coordinate
ascent step on one objective, ``L(q_global, r_1, ..., r_B)``: the local step is the optimal
``r_b`` for the current global parameters and the global step the optimal global parameters for
the cached ``r``. So the ELBO never decreases, after every batch and hence lap over lap.

What the ELBO is
----------------
``model.elbo(SS_total)`` is the exact ELBO of the state (global parameters, the responsibilities
each batch had at its last visit): the observation and allocation terms are valid for any q and
the entropy term ``sum_k Hresp_k`` of ``SS_total`` is the sum of each batch's entropy computed from
*its cached responsibilities* (not from a fresh local step at the final parameters). A fresh pass
at fixed parameters can only raise it (the local step is optimal), and it equals the memo value
once a lap has been run with the parameters held fixed.

Laps
----
A lap visits every batch once, in an order drawn from ``rng`` each lap (``shuffle=True``, the
default; ``shuffle=False`` keeps batch order). The first lap of a fresh memo is a full pass
before the first global step (the cache must cover the data before statistics describe it), so it
is exactly one full-batch VB lap. After the visits the total is recomputed as the exact sum of
the cache (removing the rounding of the running swaps) and the moves run (see
``mixstream.learn.moves``): births at the start of the lap, merges, deletes and a size reordering
of the stick-breaking components at its end, each accepted only when the ELBO from statistics
rises, with every cached batch edited consistently. ``batches_per_step`` > 1 visits that many
batches with the same global parameters (in parallel on a distributed executor) before one global
step: still exact coordinate ascent.

``hard=True`` uses one-hot responsibilities (classification EM with an EM model, "hard VB" with
a VB model); the same memo, moves and monotonicity hold for the classification objective: a
merge of one-hot columns, a delete that sends each row to its best remaining component and a
birth that splits a target's rows are all one-hot again, with zero entropy.

With an EM model (memoized EM; DP MAP with a DP allocation) the objective is the (MAP)
log-likelihood of point estimates. Merges and deletes stay exact and monotone there, and with
``map_prior=True`` they can bring a larger K down (see ``mixstream.learn.em``). Births are
refused: a point estimate's likelihood rises with every extra component (from K=1 on the
100,000 x 16 test data, births under DP MAP reached K=355 with a higher objective than the
planted K=10), so births cannot choose K; use a VB model for that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mixstream.backend import get_namespace, logsumexp_rows, to_host
from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult, lap_record
from mixstream.learn.memo import FOLD_PREFIX, MemoState, core
from mixstream.learn.moves import MOVES, resolve_moves
from mixstream.learn.moves.base import LapContext, LapPlan, score
from mixstream.model import Model
from mixstream.suffstats import SuffStats

LapCallback = Callable[[Model, dict], None]

#: target number of (row, component) cells per block (as Model.local_summarize)
_BLOCK_CELLS = 1 << 21


# ---------------------------------------------------------------------- batch function
def memo_batch(
    model: Model,
    X: Any,
    w: Any,
    hard: bool = False,
    merge_pairs: Sequence[tuple[int, int]] | None = None,
    fold_groups: Sequence[Sequence[int]] | None = None,
    delete_uids: Sequence[int] | None = None,
) -> dict[str, SuffStats | None]:
    """One memoized visit of a batch: local step + statistics, and what this lap's moves need.

    Parameters
    ----------
    model : Model
    X : array (n, D); w : array (n,) or None
    hard : bool
        One-hot responsibilities.
    merge_pairs : sequence of (uid_j, uid_k), optional
        Pairs whose merged entropy is tracked (candidate merges).
    fold_groups : sequence of uid sequences, optional
        Groups (a birth's target first, then its new components) whose merged entropy
        -sum_n w_n R_n log R_n, R = the sum of the group's responsibilities, is stored in the
        scalar ``"fold/<target uid>"`` (to test the model without the births exactly).
    delete_uids : sequence of uid, optional
        Components of a delete proposal: also summarize the responsibilities with those
        components removed and the rows renormalized (the local step of the model without them).

    Returns
    -------
    dict with "ss" (SuffStats of the batch) and "ss_del" (statistics without ``delete_uids``, or
    None).
    """
    if not fold_groups and not delete_uids:
        ss = model.local_summarize(X, hard=hard, merge_pairs=merge_pairs, sample_weight=w)
        return {"ss": ss, "ss_del": None}
    xp = get_namespace(X)
    K = model.K
    pos = {int(u): i for i, u in enumerate(model.uids)}
    groups = [(int(g[0]), np.array([pos[int(u)] for u in g])) for g in (fold_groups or ())]
    keep, alt_pairs = None, None
    if delete_uids:
        gone = {pos[int(u)] for u in delete_uids}
        keep = np.array([k for k in range(K) if k not in gone])
        # the pairs and groups of the kept components, tracked for the alternative too, so
        # merges and birth checks accepted before the delete is judged can be applied to it
        dset = {int(u) for u in delete_uids}
        alt_pairs = [p for p in (merge_pairs or ()) if not dset & {int(p[0]), int(p[1])}]
        groups_alt = [g for g in groups if not dset & {int(model.uids[c]) for c in g[1]}]
        if len(groups_alt) != len(groups):
            raise ValueError("a birth group may not contain a component proposed for deletion")
    n = X.shape[0]
    if n == 0:
        raise ValueError("cannot summarize an empty batch (0 rows)")
    block = max(256, _BLOCK_CELLS // max(K, 1))
    total, alt = None, None
    for start in range(0, n, block):
        stop = min(start + block, n)
        Xb = X[start:stop]
        wb = None if w is None else w[start:stop]
        LP = model.local_step(Xb, hard=hard)
        ss = model.summarize(Xb, LP, merge_pairs=merge_pairs, sample_weight=wb)
        for key, cols in groups:
            ss.scalars[FOLD_PREFIX + str(key)] = group_entropy(LP["resp"], cols, wb, xp)
        total = ss if total is None else total + ss
        if keep is not None:
            part = _summarize_without(model, Xb, LP, keep, hard, wb, xp, alt_pairs, groups)
            alt = part if alt is None else alt + part
    return {"ss": total, "ss_del": alt}


def group_entropy(resp: Any, cols: np.ndarray, w: Any, xp: Any) -> float:
    """-sum_n w_n R_n log R_n with R_n = sum of resp[n, cols] (the merged group's entropy)."""
    R = resp[:, cols].sum(axis=1)
    h = -(R * xp.log(xp.maximum(R, 1e-300)))
    if w is not None:
        h = h * w
    return float(to_host(h.sum()))


def _summarize_without(
    model: Model,
    X: Any,
    LP: dict,
    keep: np.ndarray,
    hard: bool,
    w: Any,
    xp: Any,
    pairs: Sequence[tuple[int, int]] | None,
    groups: Sequence[tuple[int, np.ndarray]],
) -> SuffStats:
    """Statistics of the local step with the components outside ``keep`` removed (with the
    merge-pair and birth-group entropies of those responsibilities)."""
    K = LP["log_resp"].shape[1]
    drop = np.setdiff1d(np.arange(K), keep)
    lr = xp.array(LP["log_resp"], copy=True)
    lr[:, drop] = -np.inf
    extra, lr = logsumexp_rows(lr)
    if hard:
        labels = xp.argmax(lr, axis=1)
        resp = xp.zeros_like(lr)
        resp[xp.arange(lr.shape[0]), labels] = 1.0
    else:
        resp = xp.exp(lr)
    LP2 = {
        "resp": resp,
        "log_resp": lr,
        "log_norm": LP["log_norm"] + extra,
        "cache": LP.get("cache"),
        "hard": hard,
    }
    ss = model.summarize(X, LP2, merge_pairs=pairs or None, sample_weight=w)
    for key, cols in groups:
        ss.scalars[FOLD_PREFIX + str(key)] = group_entropy(resp, cols, w, xp)
    return SuffStats(
        {k: v[keep] for k, v in ss.fields.items()},
        ss.uids[keep],
        ss.scalars,
        ss.merge_pairs if pairs else None,
        ss.merge_Hresp if pairs else None,
    )


# ---------------------------------------------------------------------- the loop
def fit_movb(
    model: Model,
    executor: Executor,
    max_laps: int = 100,
    tol: float = 1e-3,
    rng: Any = None,
    moves: Sequence[str] = (),
    move_options: dict[str, dict[str, Any]] | None = None,
    on_lap: LapCallback | None = None,
    result: FitResult | None = None,
    cache: MemoState | None = None,
    hard: bool = False,
    shuffle: bool = True,
    batches_per_step: int = 1,
) -> FitResult:
    """Memoized VB (or EM / classification EM for an EM model) with optional DP moves.

    Parameters
    ----------
    model : Model
        Initialised (``model.K`` >= 1); edited in place.
    executor : Executor
    max_laps : int
    tol : float
        Converged when the per-point ELBO changes by less than ``tol`` over a lap in which no
        move was accepted and (with births) every component is settled (``birth.pending``).
    rng : numpy Generator, int or None
        Lap orders and move proposals.
    moves : sequence of {"birth", "merge", "delete"}
    move_options : dict move name -> dict of options (see ``mixstream.learn.moves.DEFAULTS``)
    on_lap : callable(model, record), optional
        Called after each lap; the memo (``cache``) is consistent then, for checkpoints.
    result : FitResult, optional
        Continue this result (resume); pass the matching ``cache`` too.
    cache : MemoState, optional
        The memo to continue; edited in place (a fresh one when None).
    hard : bool
        One-hot responsibilities (classification EM; K-means with a suitable EM model).
    shuffle : bool
        Visit batches in a new random order each lap (else in batch order).
    batches_per_step : int
        Batches visited with the same global parameters before a global step.

    Returns
    -------
    FitResult
        ``history`` records per lap: "elbo" (per point), "K", "seconds", "moves_tried",
        "moves_accepted" (dicts by move name), "moves_rejected" (per move, the lap's best
        rejected proposal: "gain", "threshold", "why") and "move_log" (one entry per accepted
        move).
    """
    if model.K < 1:
        raise ValueError("fit_movb needs an initialised model (model.K >= 1)")
    if batches_per_step < 1:
        raise ValueError(f"batches_per_step must be >= 1, got {batches_per_step}")
    moves, opts = resolve_moves(moves, move_options)
    for m in moves:
        MOVES[m].check(model)
    rng = np.random.default_rng(rng)
    state = cache if cache is not None else MemoState()
    result = result or FitResult()
    n_batches = len(executor.source.batches)
    prev = result.history[-1]["elbo"] if result.history else None
    for lap in range(result.n_iter + 1, max_laps + 1):
        t0 = time.perf_counter()
        ctx = LapContext(model, state, None, float("nan"), lap)
        for m in moves:
            ctx.tried[m], ctx.accepted[m] = 0, 0
        order = rng.permutation(n_batches) if shuffle else np.arange(n_batches)
        complete = state.complete(n_batches)
        plan = LapPlan()
        if complete:  # proposals need every batch in the memo
            for m in moves:
                MOVES[m].propose(ctx, plan, executor, rng, opts[m], hard)
        pairs, groups, del_uids = plan.pairs, plan.fold_groups(), plan.delete_uids
        alt: dict[int, SuffStats] = {}
        visited: set[int] = set()
        for start in range(0, n_batches, batches_per_step):
            chunk = [int(b) for b in order[start : start + batches_per_step]]
            outs = executor.map(
                memo_batch,
                model,
                batch_ids=chunk,
                hard=hard,
                merge_pairs=pairs or None,
                fold_groups=groups or None,
                delete_uids=del_uids or None,
            )
            for b, out in zip(chunk, outs):
                state.swap(b, out["ss"])
                visited.add(b)
                if del_uids:
                    alt[b] = out["ss_del"]
            if complete:
                total = state.total
                if ctx.boost is not None:
                    total = total + ctx.boost.stats(total, visited)
                model.global_step(total)
        ctx.boost = None
        full = state.exact_total(model.uids, n_batches)
        model.global_step(full)
        ctx.full, ctx.elbo = full, model.elbo(full)
        ctx.alt = alt if del_uids else None
        for name, move in MOVES.items():  # every move: one that proposed nothing does nothing
            move.judge(ctx, plan, opts[name])
        if moves:
            _reorder_by_size(ctx)
        state.strip()
        state.total = core(ctx.full)
        n_rows = ctx.full.scalars["n_rows"]
        elbo = ctx.elbo / n_rows
        record = lap_record(lap, elbo, model.K, time.perf_counter() - t0, ctx.tried, ctx.accepted)
        record["move_log"] = ctx.log
        record["moves_rejected"] = ctx.rejected
        result.history.append(record)
        result.n_iter, result.lower_bound = lap, elbo
        if on_lap is not None:
            on_lap(model, record)
        changed = any(ctx.accepted.values())
        unsettled = any(MOVES[m].unsettled(state, opts[m]) for m in moves)
        if prev is not None and abs(elbo - prev) < tol and not changed and not unsettled:
            result.converged = True
            break
        prev = elbo
    return result


def _reorder_by_size(ctx: LapContext) -> None:
    """Sort components by decreasing mass when that raises the ELBO (stick-breaking order)."""
    order = np.argsort(-ctx.full.N, kind="stable")
    if np.array_equal(order, np.arange(order.size)):
        return
    cand = ctx.full.reorder(order)
    elbo, model = score(ctx.model, cand)
    if elbo > ctx.elbo:
        ctx.commit("reorder", cand, model, elbo, uids=cand.uids.tolist())
        cache = ctx.state.cache
        for b, ss in cache.items():
            cache[b] = ss.reorder([ss.index_of(u) for u in cand.uids])


def refresh_lap(model: Model, executor: Executor, state: MemoState, hard: bool = False) -> float:
    """Visit every batch with the parameters held fixed (no global step) and return the
    per-point ELBO of the memo afterwards. Used to check that the memo total equals a fresh
    summary of the data at those parameters."""
    for b in range(len(executor.source.batches)):
        out = executor.map(memo_batch, model, batch_ids=[b], hard=hard)[0]
        state.swap(b, out["ss"])
    full = state.exact_total(model.uids, len(executor.source.batches))
    state.total = core(full)
    return model.elbo(full) / full.scalars["n_rows"]


__all__ = ["MemoState", "fit_movb", "memo_batch", "refresh_lap"]
