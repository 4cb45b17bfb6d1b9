"""The estimator's verbs on stores, zarr.Arrays and dask arrays: streamed through the engine
(in-process and on Dask) and equal to the same verbs on the rows in memory."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from mixstream import MixtureModel


@pytest.fixture(scope="module")
def store(synthetic_store):
    return synthetic_store("verbs", 3_000, 3, 3, chunk_rows=500, dtype="float64")


@pytest.fixture(scope="module")
def fitted(store):
    X = zarr.open_group(store, mode="r")["X"][:]
    est = MixtureModel(3, allocation="finite", algorithm="em", random_state=0, max_laps=30)
    est.fit(X)
    return est, X


VERBS = ("score_samples", "predict_proba", "predict", "score", "bic", "aic")


def _assert_same(got, want, tol):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    if want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_verbs_on_store_local_equal_in_memory(fitted, store):
    est, X = fitted
    est.set_params(engine="local", batch_size=1_000)
    arr = zarr.open_group(store, mode="r")["X"]
    for data in (store, arr):
        for verb in VERBS:
            _assert_same(getattr(est, verb)(data), getattr(est, verb)(X), 1e-12)
    est.set_params(engine="auto", batch_size=None)


def test_verbs_on_dask_array_and_cluster(fitted, store, client):
    import dask.array as da

    est, X = fitted
    lazy = da.from_array(X, chunks=(700, 3))
    est.set_params(client=client, batch_size=1_000)
    try:
        for data in (store, lazy):
            for verb in VERBS:
                _assert_same(getattr(est, verb)(data), getattr(est, verb)(X), 1e-9)
    finally:
        est.set_params(client=None, batch_size=None)


def test_store_weights_are_not_used_by_verbs(fitted, store, tmp_path):
    # a verb gives each row's own value; the store's weights are for fit only
    est, X = fitted
    g = zarr.open_group(tmp_path / "w.zarr", mode="w")
    g.create_array("X", data=X, chunks=(500, 3))
    g.create_array("sample_weight", data=np.arange(X.shape[0], dtype=float), chunks=(500,))
    assert est.score(str(tmp_path / "w.zarr")) == pytest.approx(est.score(X), rel=1e-12)


def test_store_with_other_width_is_refused(fitted, tmp_path):
    est, _ = fitted
    g = zarr.open_group(tmp_path / "narrow.zarr", mode="w")
    g.create_array("X", data=np.zeros((10, 2)), chunks=(5, 2))
    with pytest.raises(ValueError, match="X has 2 features, but MixtureModel is expecting 3"):
        est.bic(str(tmp_path / "narrow.zarr"))


def test_scoring_a_store_ignores_its_weights(fitted, tmp_path):
    # negative weights would stop a fit; scoring never reads them
    est, X = fitted
    g = zarr.open_group(tmp_path / "neg.zarr", mode="w")
    g.create_array("X", data=X, chunks=(500, 3))
    g.create_array("sample_weight", data=-np.ones(X.shape[0]), chunks=(500,))
    labels = est.predict(str(tmp_path / "neg.zarr"), out=tmp_path / "labels.zarr")
    np.testing.assert_array_equal(labels[:], est.predict(X))
