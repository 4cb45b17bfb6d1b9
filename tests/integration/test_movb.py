"""Memoized VB: equality with full-batch VB, monotone ELBO, an exact memo through every move,
checkpointable state, DP MAP and classification EM in the same loop."""

import warnings
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ALL_MOVES, check_move_rule, planted_blobs
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score

from mixstream import MixtureModel
from mixstream.alloc import DPAlloc, FiniteAlloc
from mixstream.data.array_source import ArraySource
from mixstream.engine.local import LocalExecutor
from mixstream.learn.algorithms import advance, state_from_arrays, state_to_arrays
from mixstream.learn.em import fit_em
from mixstream.learn.executor import kmeans_batch, summarize_batch
from mixstream.learn.history import FitResult
from mixstream.learn.init import initialize
from mixstream.learn.kmeans import fit_cem, memo_inertia, memo_lloyd
from mixstream.learn.movb import MemoState, fit_movb, memo_batch, refresh_lap
from mixstream.learn.moves.base import score
from mixstream.learn.vb import fit_full_batch
from mixstream.model import Model
from mixstream.obs.bernoulli import BernoulliObs
from mixstream.obs.gauss import GaussObs
from mixstream.suffstats import SuffStats


def blobs(n, d, k, seed, scale=6.0):
    return planted_blobs(n, d, k, seed, scale)


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


class Replay:
    """One batch's responsibilities as the memo should hold them, rebuilt from the data: the
    local step of the batch's last visit (log-responsibilities over that visit's components),
    then the lap's accepted moves applied to them in order. ``hard``: one-hot at the argmax."""

    def __init__(self, uids, log_resp, hard=False):
        self.uids0 = [int(u) for u in uids]
        self.L, self.hard = log_resp, hard
        self.owner = {u: u for u in self.uids0}  # visit component -> component it is now part of
        self.deleted = set()  # visit components deleted (their rows renormalized over the rest)
        self.order = list(self.uids0)  # components now, in the model's order

    def copy(self):
        out = Replay(self.uids0, self.L, self.hard)
        out.owner, out.deleted, out.order = dict(self.owner), set(self.deleted), list(self.order)
        return out

    def _relabel(self, old, new):
        for u, o in self.owner.items():
            if o in old:
                self.owner[u] = new
        self.order = [u for u in self.order if u not in old]

    def apply(self, event):
        move, uids = event["move"], event.get("uids")
        if move == "merge":  # the merged component keeps the first uid (the earlier position)
            self._relabel({uids[1]}, uids[0])
        elif move == "birth_undo":  # new components folded back into their target
            self._relabel(set(uids[1:]), uids[0])
        elif move == "delete":
            gone = set(uids)
            self.deleted |= {u for u, o in self.owner.items() if o in gone}
            self.order = [u for u in self.order if u not in gone]
        elif move == "reorder":
            assert sorted(uids) == sorted(self.order)
            self.order = list(uids)
        # "birth" (created at the lap's start, visited since) and "birth_check": no change

    def stats(self, model, X):
        """Statistics of these responsibilities, components in ``self.order``."""
        cols = [j for j, u in enumerate(self.uids0) if u not in self.deleted]
        L = self.L[:, cols]
        L = L - logsumexp(L, axis=1, keepdims=True)  # a delete renormalizes over the rest
        where = {u: i for i, u in enumerate(self.order)}
        col_of = np.array([where[self.owner[self.uids0[j]]] for j in cols])
        n, K = X.shape[0], len(self.order)
        if self.hard:
            R = np.zeros((n, K))
            R[np.arange(n), col_of[L.argmax(axis=1)]] = 1.0
            LP = {"resp": R, "log_norm": np.zeros(n), "hard": True}
        else:
            out = np.full((n, K), -np.inf)
            for c in range(K):
                out[:, c] = logsumexp(L[:, col_of == c], axis=1)
            LP = {"resp": np.exp(out), "log_resp": out, "log_norm": np.zeros(n)}
        m = model.copy()
        m.uids = np.array(self.order, np.int64)
        return m.summarize(X, LP)


class Auditor:
    """on_lap hook: replays every batch's responsibilities from the data (``Replay``) and checks
    the memo against them: each cached entry, the total and the recorded ELBO; and every
    logged move: its recorded ELBO equals the ELBO of the replayed state it names, and it meets
    its acceptance rule (merges, deletes, reorders and kept births raise the ELBO; a birth is
    kept exactly when the ELBO with it beats the ELBO with it folded back by more than
    ``min_gain``)."""

    def __init__(self, executor, state, hard=False, birth_mode="lap"):
        self.ex, self.state, self.hard, self.birth_mode = executor, state, hard, birth_mode
        self.replays = {}
        self.worst = 0.0
        self.laps = 0
        self.checked = {}  # move name -> events checked against the data

    def _elbo(self, model, replays):
        src = self.ex.source
        SS = SuffStats.sum(r.stats(model, src.read(b)) for b, r in sorted(replays.items()))
        return score(model, SS)[0]

    def _count(self, move):
        self.checked[move] = self.checked.get(move, 0) + 1

    def _check_rule(self, e):
        check_move_rule(e, self.birth_mode)

    def _replay_moves(self, model, record, replays):
        """Apply the lap's moves to the replays, checking each; False if the lap was reverted."""
        kept = 0
        for e in record["move_log"]:
            self._check_rule(e)
            if e["move"] == "birth_revert":
                return False
            if e["move"] == "birth_check":
                assert rel(e["elbo_with"], self._elbo(model, replays)) < 1e-8, e
                folded = {b: r.copy() for b, r in replays.items()}
                for r in folded.values():
                    r.apply({"move": "birth_undo", "uids": e["uids"]})
                assert rel(e["elbo_without"], self._elbo(model, folded)) < 1e-8, e
                kept += int(e["kept"])
                self._count("birth")
            for r in replays.values():
                r.apply(e)
            if e["move"] in ("merge", "delete", "birth_undo", "reorder"):
                assert rel(e["elbo_after"], self._elbo(model, replays)) < 1e-8, e
                self._count(e["move"])
        assert kept == record["moves_accepted"].get("birth", 0)
        return True

    def __call__(self, model, record):
        src = self.ex.source
        replays = {
            b: Replay(snap.uids, snap.local_step(src.read(b))["log_resp"].copy(), self.hard)
            for b, snap in self.ex.visits.items()
        }
        if self._replay_moves(model, record, replays):
            self.replays = replays  # else: the memo of the lap before was restored
        parts = []
        for b in range(len(src.batches)):
            replay = self.replays[b]
            assert replay.order == [int(u) for u in model.uids]
            fresh = replay.stats(model, src.read(b))
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


def audited_fit(model, ex, **kw):
    state = MemoState()
    mode = kw.get("move_options", {}).get("birth", {}).get("mode", "lap")
    audit = Auditor(ex, state, hard=kw.get("hard", False), birth_mode=mode)
    result = fit_movb(model, ex, cache=state, on_lap=audit, **kw)
    assert audit.laps == result.n_iter
    return result, state, audit


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
    result, _, _ = audited_fit(model, ex, max_laps=15, tol=0.0, rng=0)
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
    result, _, audit = audited_fit(model, ex, max_laps=25, tol=1e-6, rng=0, moves=ALL_MOVES)
    assert_monotone(result.history)
    # every accepted move was checked against the data (births by their end-of-lap judgement)
    assert audit.checked.get("birth" if K == 1 else "merge", 0) >= 1
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
    result, _, audit = audited_fit(
        model,
        ex,
        max_laps=20,
        tol=1e-6,
        rng=1,
        moves=ALL_MOVES,
        move_options={"birth": {"mode": "batch"}},
    )
    assert_monotone(result.history)
    assert accepted_moves(result.history)["birth"] >= 1
    assert audit.checked["birth"] >= 1
    assert model.K == 5


@pytest.mark.parametrize("K", [1, 12])
def test_moves_with_hard_assignments_are_exact(K):
    # one-hot responsibilities ("hard" VB): a merge of one-hot columns, a delete that sends each
    # row to its best remaining component and a birth that splits a target's rows stay one-hot,
    # so the moves are exact for the classification objective; the Auditor replays them hard
    X, labels = blobs(3000, 4, 5, seed=3)
    model, ex = make(X, K, batch_size=300, executor=RecordingExecutor)
    result, state, audit = audited_fit(
        model, ex, max_laps=25, tol=1e-6, rng=0, moves=ALL_MOVES, hard=True
    )
    assert_monotone(result.history)
    assert result.converged and model.K == 5
    assert audit.checked.get("birth" if K == 1 else "merge", 0) >= 1
    assert all(np.all(ss["Hresp"] == 0.0) for ss in state.cache.values())
    assert adjusted_rand_score(labels, model.local_step(X, hard=True)["resp"].argmax(1)) > 0.99


@pytest.mark.parametrize("moves", [("merge", "delete"), ("delete",)])
def test_memoized_classification_em_with_merge_and_delete(moves):
    # classification EM (an EM model, hard) from a larger K: merges and deletes are exact and
    # monotone there too. With both moves on, merges alone bring 12 to 5 (7 merges), so
    # deletes are also run on their own (7 deletes); a component emptied there has DP MAP
    # weight 0 (log -inf), which the local step must carry without NaN.
    X, labels = blobs(3000, 4, 5, seed=3)
    obs = GaussObs("full", inference="em", map_prior=True)
    alloc = DPAlloc(1.0, inference="em")
    model, ex = make(X, 12, batch_size=300, obs=obs, alloc=alloc, executor=RecordingExecutor)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result, _, audit = audited_fit(
            model, ex, max_laps=25, tol=1e-6, rng=0, moves=moves, hard=True
        )
    assert_monotone(result.history)
    assert audit.checked[moves[0]] >= 1
    assert model.K == 5
    assert adjusted_rand_score(labels, model.local_step(X, hard=True)["resp"].argmax(1)) > 0.99


def test_births_are_refused_for_point_estimates():
    X, _ = blobs(500, 2, 2, seed=12)
    obs = GaussObs("full", inference="em")
    model, ex = make(X, 1, obs=obs, alloc=DPAlloc(1.0, inference="em"))
    with pytest.raises(ValueError, match="birth moves need a VB model"):
        fit_movb(model, ex, moves=("birth", "merge"))


# ---------------------------------------------------------------------- memoized hard variants
HARD_OPTIONS = dict(n_components=5, random_state=0, max_laps=40, tol=1e-9)


@pytest.mark.parametrize("algorithm", ["cem", "kmeans"])
def test_estimator_memoized_hard_variant_single_batch_equals_full_batch(algorithm):
    X, _ = blobs(3000, 3, 4, seed=13, scale=2.5)
    full = MixtureModel(algorithm=algorithm, **HARD_OPTIONS).fit(X)
    one = MixtureModel(algorithm=algorithm, batch_size=len(X), **HARD_OPTIONS).fit(X)
    # batch_size routes to the memoized loop (its records say so) ...
    assert ("inertia" if algorithm == "kmeans" else "move_log") in one.history_[-1]
    assert "move_log" not in full.history_[-1] and "inertia" not in full.history_[-1]
    # ... which with one batch is the full-batch algorithm, lap for lap
    assert one.n_iter_ == full.n_iter_ > 2
    assert one.converged_ and full.converged_
    assert rel(one.lower_bound_, full.lower_bound_) < 1e-10
    if algorithm == "cem":
        assert rel([h["elbo"] for h in one.history_], [h["elbo"] for h in full.history_]) < 1e-10
    for name in ("weights_", "means_", "covariances_"):
        assert rel(getattr(one, name), getattr(full, name)) < 1e-10, name


@pytest.mark.parametrize("algorithm", ["cem", "kmeans"])
def test_estimator_memoized_hard_variant_ten_batches_is_monotone(algorithm):
    X, labels = blobs(3000, 3, 4, seed=14, scale=2.5)
    est = MixtureModel(algorithm=algorithm, batch_size=300, **HARD_OPTIONS).fit(X)
    history = est.history_
    assert len(history) == est.n_iter_ > 2 and est.converged_
    if algorithm == "cem":
        assert_monotone(history)
    else:  # the inertia of memoized Lloyd never increases
        inertia = [h["inertia"] for h in history]
        assert all(b <= a * (1 + 1e-12) for a, b in pairwise(inertia)), inertia
        assert inertia[-1] < inertia[0]
    assert adjusted_rand_score(labels, est.predict(X)) > 0.9


def test_memo_lloyd_inertia_is_exact():
    X, _ = blobs(2000, 3, 4, seed=15, scale=2.5)
    ex = LocalExecutor(ArraySource(X, 200))
    centers, history, _ = memo_lloyd(ex, X[:4].copy(), max_laps=3, tol=0.0, rng=0)
    assert len(history) == 3
    d2 = ((X[:, None, :] - centers[None]) ** 2).sum(-1)
    # the recorded inertia is that of the cached assignments (made while the centres moved) at
    # the final centres: a fresh nearest-centre assignment can only be lower ...
    assert history[-1]["inertia"] >= d2.min(1).mean() - 1e-12
    # ... and the statistics of a pass at fixed centres give exactly the direct value
    SS = ex.map_sum(kmeans_batch, centers)
    assert rel(memo_inertia(SS, centers) / len(X), d2.min(1).mean()) < 1e-10


def test_advance_routes_dp_map_with_moves_to_memoized_em():
    # what MixtureModel(algorithm="em", allocation="dp", moves=("merge", "delete")) runs
    X, labels = blobs(3000, 4, 5, seed=3)
    obs = GaussObs("full", inference="em", map_prior=True)
    model, ex = make(X, 12, batch_size=300, obs=obs, alloc=DPAlloc(1.0, inference="em"))
    options = SimpleNamespace(algorithm="em", moves=("merge", "delete"), tol=1e-6, batch_size=300)
    result, state, rng = FitResult(), None, np.random.default_rng(0)
    while not result.converged and result.n_iter < 25:
        result, state = advance(options, model, ex, result, state, rng)
        state = state_from_arrays(options, state_to_arrays(state))  # as a checkpoint would
    assert isinstance(state, MemoState)
    assert_monotone(result.history)
    assert result.converged and model.K == 5
    assert accepted_moves(result.history)["merge"] >= 1
    assert adjusted_rand_score(labels, model.local_step(X)["resp"].argmax(1)) > 0.99


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
    result, _, _ = audited_fit(model, ex, max_laps=10, tol=0.0, rng=0, batches_per_step=4)
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
