"""Model selection's pieces: the block holdout, the split source, the grid, the criteria and
the choice, the options' checks, the table's files."""

from __future__ import annotations

import numpy as np
import pytest

from mixstream.app.select_fit import Candidate, criteria, score_split_batch
from mixstream.app.select_outputs import table_csv
from mixstream.app.selection import _mark_best, as_candidates, make_grid
from mixstream.data.array_source import ArraySource
from mixstream.data.holdout import SplitSource, make_split


def test_split_holds_out_whole_blocks_by_seed():
    split = make_split(10_000, 0.1, seed=3, block_rows=100)
    mask = split.test_mask(0, 10_000)
    assert mask.sum() == split.n_test == 1_000  # 10 of 100 blocks
    blocks = mask.reshape(100, 100)
    assert np.all(blocks.all(1) | ~blocks.any(1))  # whole blocks, never parts
    assert np.array_equal(split.held_blocks, make_split(10_000, 0.1, 3, 100).held_blocks)
    assert not np.array_equal(split.held_blocks, make_split(10_000, 0.1, 4, 100).held_blocks)
    # any row range agrees with the whole, and counts agree with masks
    assert np.array_equal(split.test_mask(250, 4_321), mask[250:4_321])
    assert split.count(250, 4_321, "train") == (~mask[250:4_321]).sum()


def test_split_edges():
    assert make_split(1000, 0.0).n_test == 0
    one = make_split(1000, 0.5, block_rows=1000)  # one block: nothing can be held out
    assert one.n_test == 0
    assert make_split(1000, 0.01, block_rows=10).n_test == 10  # at least one block
    with pytest.raises(ValueError, match="holdout must be a fraction"):
        make_split(1000, 0.7)


def test_split_source_reads_its_side_in_batches():
    X = np.arange(3000.0).reshape(1000, 3)
    w = np.linspace(1, 2, 1000)
    base = ArraySource(X, batch_size=300, sample_weight=w)
    split = make_split(1000, 0.2, seed=0, block_rows=50)
    held = split.test_mask(0, 1000)
    for side, rows in (("train", ~held), ("test", held)):
        src = SplitSource(base, split, side)
        got = np.concatenate([src.read(i) for i in range(len(src.batches))])
        weights = np.concatenate([src.read_weights(i) for i in range(len(src.batches))])
        assert np.array_equal(got, X[rows]) and np.array_equal(weights, w[rows])
        assert src.n_rows == rows.sum() and src.batches[-1][1] == src.n_rows
        assert all(b - a == src.read(i).shape[0] for i, (a, b) in enumerate(src.batches))


def test_split_pickles_small():
    import pickle

    split = make_split(10**8, 0.1, seed=0)
    again = pickle.loads(pickle.dumps(split))
    assert len(pickle.dumps(split)) < 5_000
    assert np.array_equal(again.held_blocks, split.held_blocks)


def test_grid_and_candidates():
    grid = make_grid(range(1, 3), ("full", "diag"), ("gauss", "bernoulli"))
    assert [c.label for c in grid] == [
        "K=1 full", "K=2 full", "K=1 diag", "K=2 diag", "K=1 bernoulli", "K=2 bernoulli",
    ]  # fmt: skip
    assert as_candidates([(3, "diag"), (2, "full", "bernoulli")]) == [
        Candidate(3, "diag"),
        Candidate(2, "full", "bernoulli"),
    ]
    with pytest.raises(ValueError, match="a candidate is"):
        as_candidates(["full"])


def test_criteria_and_choice():
    c = criteria({"train_loglik": -1000.0, "test_loglik": -30.0, "n_train": 100, "n_test": 10}, 5)
    assert c["bic"] == pytest.approx(2000 + 5 * np.log(100))
    assert c["aic"] == 2010 and c["log_likelihood"] == -10 and c["heldout_log_likelihood"] == -3
    rows = [
        {"bic": 5.0, "heldout_log_likelihood": -2.0, "best": False},
        {"bic": 3.0, "heldout_log_likelihood": -2.5, "best": False},
        {"bic": np.nan, "heldout_log_likelihood": -1.0, "best": False},
    ]
    assert _mark_best(rows, "bic") == 1 and rows[1]["best"]
    assert _mark_best([dict(r, best=False) for r in rows], "heldout") == 2


def test_score_batch_splits_the_sums():
    class Flat:  # every row has log-density -1
        def log_density(self, X):
            return -np.ones(X.shape[0])

    split = make_split(100, 0.2, seed=0, block_rows=10)
    SS = score_split_batch(([Flat()], split), np.zeros((50, 2)), None, rows=(50, 100))
    n_test = split.count(50, 100, "test")
    assert SS.scalars["n_test"] == n_test and SS.scalars["test_0"] == -n_test
    assert SS.scalars["train_0"] == -(50 - n_test)


def test_select_refuses_bad_options():
    from mixstream import select

    X = np.zeros((10, 2))
    for kw, match in (
        ({"criterion": "bayes"}, "criterion must be one of"),
        ({"holdout": 0.9}, "holdout must be a fraction"),
        ({"n_components": [0, 2]}, "n_components must be a positive integer"),
        ({"covariance_types": ("fll",)}, "covariance_type must be one of"),
        ({"criterion": "elbo"}, "criterion='elbo' needs a variational algorithm"),
        ({"criterion": "heldout", "holdout": 0.0}, "needs holdout > 0"),
    ):
        with pytest.raises(ValueError, match=match):
            select(X, **kw)


def test_table_csv():
    text = table_csv([{"model": "K=1 full", "bic": 1.5, "best": True}])
    assert text.splitlines() == ["model,bic,best", "K=1 full,1.5,True"]


def _count_rows(payload, X, w):
    from mixstream.suffstats import SuffStats

    return SuffStats({"N": np.array([payload * X.shape[0]])})


def test_lockstep_serves_every_fit_with_one_pass():
    from mixstream.app.select_lockstep import run_in_lockstep
    from mixstream.engine.local import LocalExecutor

    executor = LocalExecutor(ArraySource(np.zeros((100, 2)), batch_size=30), n_threads=1)

    def job(laps, factor):
        def run(ex):
            return [float(ex.map_sum(_count_rows, factor).N[0]) for _ in range(laps)]

        return run

    results, passes = run_in_lockstep(executor, [job(3, 1.0), job(1, 2.0), job(2, 3.0)])
    assert results == [[100.0] * 3, [200.0], [300.0] * 2] and passes == 3

    def fails(ex):
        raise RuntimeError("candidate failed")

    with pytest.raises(RuntimeError, match="candidate failed"):
        run_in_lockstep(executor, [job(2, 1.0), fails])
