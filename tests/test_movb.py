"""Memoized VB: equality with full-batch VB, monotone ELBO, an exact memo through every move,
checkpointable state, DP MAP and classification EM in the same loop."""

from itertools import pairwise

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score

from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.data.array_source import ArraySource
from mixstream.engine.local import LocalExecutor
from mixstream.learn.em import fit_em
from mixstream.learn.executor import summarize_batch
from mixstream.learn.history import FitResult
from mixstream.learn.init import initialize
from mixstream.learn.kmeans import fit_cem
from mixstream.learn.movb import MemoState, fit_movb, memo_batch, refresh_lap
from mixstream.learn.vb import fit_full_batch
from mixstream.model import Model
from mixstream.obs.bernoulli import BernoulliObs
from mixstream.obs.gauss import GaussObs
from mixstream.suffstats import SuffStats

ALL_MOVES = ("birth", "merge", "delete")


def blobs(n, d, k, seed, scale=6.0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=scale, size=(k, d))
    labels = rng.integers(k, size=n)
    return means[labels] + rng.normal(size=(n, d)), labels


def binary(n, d, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(k, size=n)
    P = np.where(rng.uniform(size=(k, d)) < 0.5, 0.15, 0.85)
    return (rng.uniform(size=(n, d)) < P[labels]).astype(float), labels


def make(X, K, batch_size=None, obs=None, alloc=None, seed=0, executor=LocalExecutor):
    model = Model(alloc or DPAlloc(1.0), obs or GaussObs("full", reg_covar=0.0))
    ex = executor(ArraySource(X, batch_size))
    initialize(model, ex, K, "kmeans++", np.random.default_rng(seed))
    return model, ex


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind not in "biuf":
        assert np.array_equal(a, b)
        return 0.0
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300), initial=0.0))


def assert_monotone(history, rtol=1e-12):
    elbos = [h["elbo"] for h in history]
    for a, b in pairwise(elbos):
        assert b >= a - rtol * abs(a), (a, b)


# ---------------------------------------------------------------------- exactness audit
class RecordingExecutor(LocalExecutor):
    """Remembers the model each batch was last visited with (to recompute its responsibilities)."""

    def __init__(self, source):
        super().__init__(source)
        self.visits = {}

    def map(self, fn, payload, batch_ids=None, **kw):
        if fn is memo_batch:
            for b in batch_ids:
                self.visits[b] = payload.copy()
        return super().map(fn, payload, batch_ids, **kw)


class Auditor:
    """on_lap hook: rebuilds every batch's responsibilities from the data (the local step of its
    last visit, then the lap's accepted moves applied to them), re-summarizes them and checks
    the memo against them: each cached entry, the total and the recorded ELBO."""

    def __init__(self, executor, state):
        self.ex, self.state, self.log_resp = executor, state, {}
        self.worst = 0.0
        self.laps = 0

    def __call__(self, model, record):
        src = self.ex.source
        log = record["move_log"]
        if not any(e["move"] == "birth_revert" for e in log):  # else: last lap's memo restored
            lr = {
                b: ([int(u) for u in snap.uids], snap.local_step(src.read(b))["log_resp"].copy())
                for b, snap in self.ex.visits.items()
            }
            for e in log:
                for b, (uids, L) in lr.items():
                    lr[b] = _apply(e, uids, L)
            self.log_resp = lr
        parts = []
        for b in range(len(src.batches)):
            uids, L = self.log_resp[b]
            L = L[:, [uids.index(int(u)) for u in model.uids]]
            X = src.read(b)
            LP = {"resp": np.exp(L), "log_resp": L, "log_norm": np.zeros(len(X))}
            fresh = model.summarize(X, LP)
            cached = self.state.cache[b].align(model.uids)
            for name in fresh.fields:
                scale = max(float(np.abs(fresh[name]).max()), 1.0)
                err = float(np.abs(fresh[name] - cached[name]).max()) / scale
                self.worst = max(self.worst, err)
                assert err < 1e-8, (record["lap"], b, name, err)
            parts.append(fresh)
        total = SuffStats.sum(parts)
        elbo = model.elbo(total) / total.scalars["n_rows"]
        assert rel(record["elbo"], elbo) < 1e-8, (record["lap"], record["elbo"], elbo)
        memo_total = self.state.total.align(model.uids)
        for name in total.fields:
            np.testing.assert_allclose(memo_total[name], total[name], rtol=1e-8, atol=1e-7)
        self.laps += 1


def _apply(event, uids, L):
    """The responsibilities (log) after one accepted move."""
    move = event["move"]
    if move == "merge":
        keep, gone = event["uids"]
        i, j = uids.index(keep), uids.index(gone)
        L[:, i] = np.logaddexp(L[:, i], L[:, j])
        return uids[:j] + uids[j + 1 :], np.delete(L, j, axis=1)
    if move == "birth_undo":
        target, *new = event["uids"]
        i, js = uids.index(target), [uids.index(u) for u in new]
        L[:, i] = logsumexp(L[:, [i, *js]], axis=1)
        keep = [c for c in range(len(uids)) if c not in js]
        return [uids[c] for c in keep], L[:, keep]
    if move == "delete":
        keep = [c for c in range(len(uids)) if uids[c] not in event["uids"]]
        Lk = L[:, keep]
        return [uids[c] for c in keep], Lk - logsumexp(Lk, axis=1, keepdims=True)
    return uids, L  # birth creation (re-visited since), reorder (columns matched by uid)


def audited_fit(model, ex, **kw):
    state = MemoState()
    audit = Auditor(ex, state)
    result = fit_movb(model, ex, cache=state, on_lap=audit, **kw)
    assert audit.laps == result.n_iter
    return result, state


def accepted_moves(history):
    out = {}
    for h in history:
        for name, n in h["moves_accepted"].items():
            out[name] = out.get(name, 0) + n
    return out


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("alloc", [FiniteAlloc, DPAlloc])
def test_single_batch_equals_full_batch_vb(alloc):
    X, _ = blobs(1500, 3, 4, seed=0, scale=2.5)
    m_vb, ex = make(X, 6, alloc=alloc(1.0))
    m_memo = m_vb.copy()
    r_vb = fit_full_batch(m_vb, ex, max_laps=12, tol=0.0)
    r_memo = fit_movb(m_memo, ex, max_laps=12, tol=0.0, rng=0)
    e_vb = [h["elbo"] for h in r_vb.history]
    e_memo = [h["elbo"] for h in r_memo.history]
    assert len(e_vb) == len(e_memo) == 12
    assert e_vb[-1] - e_vb[1] > 1e-3  # the fit really moves over these laps
    assert rel(e_memo, e_vb) < 1e-10
    s_vb, s_memo = m_vb.get_state(), m_memo.get_state()
    for name, value in s_vb.items():
        assert rel(s_memo[name], value) < 1e-10, name


def test_single_batch_hard_equals_classification_em():
    X, _ = blobs(1500, 3, 4, seed=1, scale=2.5)
    obs = GaussObs("full", inference="em")
    m_cem, ex = make(X, 5, obs=obs, alloc=FiniteAlloc(1.0, inference="em"))
    m_memo = m_cem.copy()
    r_cem = fit_cem(m_cem, ex, max_laps=10, tol=0.0)
    r_memo = fit_movb(m_memo, ex, max_laps=10, tol=0.0, rng=0, hard=True)
    assert rel([h["elbo"] for h in r_memo.history], [h["elbo"] for h in r_cem.history]) < 1e-10
    for name, value in m_cem.get_state().items():
        assert rel(m_memo.get_state()[name], value) < 1e-10, name


@pytest.mark.parametrize("alloc", [FiniteAlloc, DPAlloc])
def test_ten_batches_monotone_and_memo_exact(alloc):
    X, _ = blobs(3000, 3, 5, seed=2, scale=2.5)
    model, ex = make(X, 8, batch_size=300, alloc=alloc(1.0), executor=RecordingExecutor)
    result, _ = audited_fit(model, ex, max_laps=15, tol=0.0, rng=0)
    assert result.n_iter == 15
    assert_monotone(result.history)


@pytest.mark.parametrize(
    ("K", "data"),
    [(12, "gauss"), (1, "gauss"), (8, "bernoulli")],
)
def test_ten_batches_with_moves_monotone_and_memo_exact(K, data):
    if data == "gauss":
        X, labels = blobs(3000, 4, 5, seed=3)
        obs = GaussObs("full", reg_covar=0.0)
    else:
        X, labels = binary(3000, 20, 4, seed=3)
        obs = BernoulliObs()
    model, ex = make(X, K, batch_size=300, obs=obs, executor=RecordingExecutor)
    result, _ = audited_fit(model, ex, max_laps=25, tol=1e-6, rng=0, moves=ALL_MOVES)
    assert_monotone(result.history)
    for h in result.history:
        for e in h["move_log"]:
            if e["move"] != "birth":  # lap-mode births are judged at the end of the lap
                assert e["elbo_after"] > e["elbo_before"], e
    acc = accepted_moves(result.history)
    if K == 1:
        assert acc["birth"] >= 1
    else:
        assert acc["merge"] >= 1
    assert result.converged
    assert model.K == len(np.unique(labels))
    pred = model.local_step(X)["resp"].argmax(1)
    # the Bernoulli clusters overlap: 0.971 is the ARI of the fit started from the true labels
    assert adjusted_rand_score(labels, pred) > (0.99 if data == "gauss" else 0.97)


def test_batch_mode_births_are_exact():
    # "batch" mode judges a birth on one batch: the batch must hold enough of each cluster
    X, _ = blobs(10000, 4, 5, seed=4)
    model, ex = make(X, 1, batch_size=1000, executor=RecordingExecutor)
    result, _ = audited_fit(
        model,
        ex,
        max_laps=20,
        tol=1e-6,
        rng=1,
        moves=ALL_MOVES,
        move_options={"birth": {"mode": "batch"}},
    )
    assert_monotone(result.history)
    for h in result.history:
        for e in h["move_log"]:
            assert e["elbo_after"] > e["elbo_before"], e
    assert model.K == 5


def test_refresh_lap_matches_fresh_summary():
    X, _ = blobs(2000, 3, 4, seed=5)
    model, ex = make(X, 6, batch_size=250)
    state = MemoState()
    fit_movb(model, ex, max_laps=6, tol=0.0, rng=0, moves=ALL_MOVES, cache=state)
    elbo = refresh_lap(model, ex, state)
    fresh = ex.map_sum(summarize_batch, model)
    for name in fresh.fields:
        np.testing.assert_allclose(state.total[name], fresh[name], rtol=1e-10, atol=1e-8)
    assert rel(elbo, model.elbo(fresh) / fresh.scalars["n_rows"]) < 1e-10


def test_memo_state_roundtrip_and_resume():
    X, _ = blobs(2000, 3, 4, seed=6)
    m_a, ex = make(X, 7, batch_size=200)
    m_b = m_a.copy()
    rng_a = np.random.default_rng(11)
    r_a = fit_movb(m_a, ex, max_laps=6, tol=0.0, rng=rng_a, moves=ALL_MOVES)

    rng_b = np.random.default_rng(11)
    state = MemoState()
    r_b = fit_movb(m_b, ex, max_laps=3, tol=0.0, rng=rng_b, moves=ALL_MOVES, cache=state)
    arrays = state.to_arrays()
    restored = MemoState.from_arrays(dict(arrays))
    assert set(restored.cache) == set(state.cache)
    for b, ss in state.cache.items():
        for name in ss.fields:
            np.testing.assert_array_equal(restored.cache[b][name], ss[name])
        np.testing.assert_array_equal(restored.cache[b].uids, ss.uids)
    assert restored.memory == state.memory
    m_c = Model(DPAlloc(1.0), GaussObs("full", reg_covar=0.0))
    m_c.obs.set_prior_from_data(X)
    m_c.set_state(m_b.get_state())
    result = FitResult(r_b.lower_bound, r_b.converged, r_b.n_iter, list(r_b.history))
    r_c = fit_movb(
        m_c, ex, max_laps=6, tol=0.0, rng=rng_b, moves=ALL_MOVES, cache=restored, result=result
    )
    assert [h["elbo"] for h in r_c.history] == pytest.approx(
        [h["elbo"] for h in r_a.history], rel=1e-12
    )
    assert m_c.K == m_a.K


def test_batches_per_step_is_monotone():
    X, _ = blobs(3000, 3, 5, seed=7, scale=2.5)
    model, ex = make(X, 8, batch_size=300, executor=RecordingExecutor)
    result, _ = audited_fit(model, ex, max_laps=10, tol=0.0, rng=0, batches_per_step=4)
    assert_monotone(result.history)


def test_dp_map_finds_planted_clusters_and_never_decreases():
    X, labels = blobs(4000, 3, 5, seed=8, scale=8.0)
    obs = GaussObs("full", inference="em", reg_covar=0.0)
    model, ex = make(X, 5, obs=obs, alloc=DPAlloc(1.0, inference="em"), seed=1)
    result = fit_em(model, ex, max_laps=100, tol=1e-10)
    assert_monotone(result.history)
    assert result.converged
    assert adjusted_rand_score(labels, model.local_step(X)["resp"].argmax(1)) > 0.99
    # the same DP MAP model through the memoized loop, 10 batches
    obs = GaussObs("full", inference="em", reg_covar=0.0)
    model, ex = make(X, 5, 400, obs=obs, alloc=DPAlloc(2.0, inference="em"), seed=1)
    result = fit_movb(model, ex, max_laps=30, tol=1e-10, rng=0)
    assert_monotone(result.history)
    assert adjusted_rand_score(labels, model.local_step(X)["resp"].argmax(1)) > 0.99


def test_classification_em_memoized_ten_batches():
    X, labels = blobs(3000, 3, 4, seed=9, scale=8.0)
    obs = GaussObs("full", inference="em")
    model, ex = make(X, 4, 300, obs=obs, alloc=FiniteAlloc(1.0, inference="em"), seed=2)
    result = fit_movb(model, ex, max_laps=20, tol=1e-10, rng=0, hard=True)
    assert_monotone(result.history)
    assert result.converged
    assert adjusted_rand_score(labels, model.local_step(X)["resp"].argmax(1)) > 0.99


def test_history_records_moves_and_time():
    X, _ = blobs(2000, 3, 4, seed=10)
    model, ex = make(X, 1, batch_size=500)
    result = fit_movb(model, ex, max_laps=8, tol=1e-6, rng=0, moves=ALL_MOVES)
    for i, h in enumerate(result.history, start=1):
        assert h["lap"] == i and h["seconds"] >= 0 and h["K"] >= 1
        assert set(h["moves_tried"]) == set(ALL_MOVES) == set(h["moves_accepted"])
        assert all(h["moves_accepted"][m] <= h["moves_tried"][m] for m in ALL_MOVES)
    assert result.history[-1]["K"] == model.K
    assert sum(h["moves_accepted"]["birth"] for h in result.history) >= 1
    assert result.lower_bound == result.history[-1]["elbo"]


def test_clear_errors():
    X, _ = blobs(500, 2, 2, seed=11)
    model, ex = make(X, 2)
    with pytest.raises(ValueError, match="unknown move"):
        fit_movb(model, ex, moves=("split",))
    with pytest.raises(ValueError, match="unknown birth option"):
        fit_movb(model, ex, moves=("birth",), move_options={"birth": {"n_kids": 3}})
    empty = Model(DPAlloc(1.0), GaussObs("full"))
    with pytest.raises(ValueError, match="initialised"):
        fit_movb(empty, ex)
