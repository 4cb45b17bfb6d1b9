"""The start's sample: bounded by ``n_rows`` whatever the batches, and de-duplicated exactly as
``np.unique(X, axis=0)`` would, without its copies."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mixstream import MixtureModel
from mixstream.learn.executor import RowsExecutor
from mixstream.learn.init import canonical_rows, draw_sample


def _unique_rows(X, w):
    weights = np.ones(X.shape[0]) if w is None else np.asarray(w, np.float64)
    keep = weights > 0
    rows, inverse = np.unique(X[keep], axis=0, return_inverse=True)
    return rows, np.bincount(inverse.ravel(), weights=weights[keep], minlength=rows.shape[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.normal(size=(3000, 5)),  # continuous: no ties in the first column
        lambda rng: rng.integers(0, 3, size=(3000, 4)).astype(float),  # ties and repeats
        lambda rng: rng.normal(size=(2000, 2)).round(1),
        lambda rng: rng.integers(0, 2, size=(500, 6)).astype(np.float32),
        lambda rng: np.array([[0.0, 1.0], [-0.0, 1.0], [2.0, 1.0], [2.0, 1.0]]),
        lambda rng: np.zeros((0, 3)),
    ],
)
def test_canonical_rows_equal_numpy_unique(make):
    rng = np.random.default_rng(0)
    X = make(rng)
    for w in (None, rng.random(X.shape[0]) * (rng.random(X.shape[0]) > 0.2)):
        rows, summed = canonical_rows(X, w)
        ref_rows, ref_summed = _unique_rows(X, w)
        assert rows.dtype == X.dtype
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_array_equal(summed, ref_summed)


def test_draw_sample_is_bounded_when_one_batch_holds_every_row():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5000, 3))
    S, w, scale = draw_sample(RowsExecutor(X), 1000, np.random.default_rng(0))
    assert S.shape == (1000, 3) and w is None and scale == 5.0
    # distinct rows of X, in their order
    idx = np.flatnonzero(np.isin(X[:, 0], S[:, 0]))
    np.testing.assert_array_equal(X[idx], S)
    weights = rng.random(5000)
    S, w, scale = draw_sample(RowsExecutor(X, sample_weight=weights), 1000, rng)
    assert S.shape == (1000, 3) and w.shape == (1000,)
    assert scale == pytest.approx(weights.sum() / w.sum(), rel=1e-12)
    # fewer rows than asked: all of them, as they are
    S, w, scale = draw_sample(RowsExecutor(X[:500]), 1000, rng)
    assert np.shares_memory(S, X)
    assert S.shape == (500, 3) and scale == 1.0


def _fit_peak(X: np.ndarray) -> int:
    est = MixtureModel(8, covariance_type="diag", algorithm="em", max_laps=1, tol=0)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # one lap is the point
            est.fit(X)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_what_a_fit_holds_does_not_grow_with_the_rows():
    # one in-memory batch of every row: the start reads a sample of 200,000 of them and the
    # lap's statistics are added as the row blocks finish, so doubling the rows (400,000 ->
    # 800,000, +49 MiB of data) adds almost nothing. Before, the start de-duplicated every row
    # (np.unique's copies, about 4x the data) and a lap held the statistics of every block
    X = np.random.default_rng(2).normal(size=(800_000, 16))
    small, large = _fit_peak(X[:400_000]), _fit_peak(X)
    added = X[400_000:].nbytes
    assert large - small < 0.2 * added, f"{small / 2**20:.0f} -> {large / 2**20:.0f} MiB"
