"""Labelled and lazy inputs: pandas DataFrames (feature names), xarray DataArrays / Datasets
(sample dimension, per-row outputs as DataArrays), Dask-backed xarray streamed batch by batch,
and the Zarr stores mixstream writes opened by xarray.open_zarr."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from mixstream import MixtureModel
from mixstream.data.ingest import ingest

rng = np.random.default_rng(3)
X = np.r_[rng.normal(size=(400, 3)), rng.normal(size=(400, 3)) + 6.0]
NAMES = ["a", "b", "c"]


def est(**kw):
    return MixtureModel(2, allocation="finite", algorithm="em", random_state=0, **kw)


@pytest.fixture(scope="module")
def plain():
    return est().fit(X)


@pytest.fixture(scope="module")
def labelled():
    return xr.DataArray(
        X, dims=("time", "var"), coords={"time": np.arange(X.shape[0]) * 10, "var": NAMES}
    )


def test_dataframe_sets_feature_names_and_checks_them(plain):
    df = pd.DataFrame(X, columns=NAMES)
    m = est().fit(df)
    np.testing.assert_array_equal(m.feature_names_in_, NAMES)
    np.testing.assert_array_equal(m.predict(df), plain.predict(X))
    with pytest.raises(ValueError, match="feature names should match those that were passed"):
        m.predict(df[["b", "a", "c"]])
    with pytest.raises(ValueError, match="feature names should match"):
        m.score(df.rename(columns={"c": "z"}))
    m.fit(X)  # a refit on a plain array forgets the names
    assert not hasattr(m, "feature_names_in_")


def test_non_numeric_column_one_clear_line():
    df = pd.DataFrame(X, columns=NAMES).assign(city="x")
    with pytest.raises(ValueError, match=r"^DataFrame column 'city' has dtype \w+, not numbers"):
        est().fit(df)


def test_dataarray_and_dataset_keep_the_sample_dimension(plain, labelled):
    for data in (labelled, labelled.to_dataset(dim="var")):
        m = est().fit(data)
        assert m.sample_dim_ == "time"
        np.testing.assert_array_equal(m.feature_names_in_, NAMES)
        proba = m.predict_proba(data)
        assert isinstance(proba, xr.DataArray) and proba.dims == ("time", "component")
        np.testing.assert_array_equal(proba["time"], labelled["time"])
        np.testing.assert_allclose(proba.values, plain.predict_proba(X), atol=1e-12)
        dens = m.score_samples(data)
        assert dens.dims == ("time",)
        np.testing.assert_allclose(dens.values, plain.score_samples(X), rtol=1e-12)
        assert m.bic(data) == pytest.approx(plain.bic(X), rel=1e-12)
    with pytest.raises(ValueError, match=r"unseen at fit time \['z'\]"):
        m.predict(labelled.assign_coords(var=["a", "b", "z"]))


def test_dask_backed_dataarray_streams_batch_by_batch(plain, labelled, monkeypatch):
    import dask.array as da

    def refuse(*a, **k):
        raise AssertionError("the whole dask array was pulled into memory")

    monkeypatch.setattr(da.Array, "__array__", refuse)  # np.asarray(whole) would land here
    lazy = labelled.chunk({"time": 100})
    m = est(batch_size=200).fit(lazy)
    np.testing.assert_allclose(m.means_, plain.means_, rtol=1e-10, atol=1e-10)
    out = m.predict(lazy)
    assert out.dims == ("time",)
    np.testing.assert_array_equal(out.values, plain.predict(X))
    assert m.score(lazy) == pytest.approx(plain.score(X), rel=1e-12)


def test_feature_names_round_trip_through_save_load(labelled, tmp_path):
    m = est().fit(labelled)
    back = MixtureModel.load(m.save(tmp_path / "m.msz"))
    np.testing.assert_array_equal(back.feature_names_in_, NAMES)
    assert back.sample_dim_ == "time"
    with pytest.raises(ValueError, match="feature names should match"):
        back.predict(pd.DataFrame(X, columns=["x", "y", "z"]))


def test_every_store_mixstream_writes_opens_with_xarray(tmp_path, synthetic_store):
    synth = synthetic_store("xr", 500, 3, 2)
    pd.DataFrame(X, columns=NAMES).assign(w=1.0).to_csv(tmp_path / "p.csv", index=False)
    ingested = ingest(tmp_path / "p.csv", tmp_path / "p.zarr", weights="w", chunk_rows=100)
    m = est().fit(ingested)
    scores = m.score_store(ingested, tmp_path / "scores.zarr", proba=True)["path"]
    expect = {
        synth: {"X": ("sample", "feature"), "labels": ("sample",)},
        ingested: {"X": ("sample", "feature"), "sample_weight": ("sample",)},
        scores: {
            "labels": ("sample",),
            "log_likelihood": ("sample",),
            "proba": ("sample", "component"),
        },
    }
    for path, variables in expect.items():
        ds = xr.open_zarr(path, consolidated=False)
        assert {k: v.dims for k, v in ds.data_vars.items()} == variables
    # and a store read back through xarray fits like the store itself
    lazy = xr.open_zarr(ingested, consolidated=False)["X"]
    assert est().fit(lazy).bic(lazy) == pytest.approx(m.bic(ingested), rel=1e-10)
    assert zarr.open_group(ingested)["X"].metadata.dimension_names == ("sample", "feature")


def test_dask_backed_dataarray_on_a_cluster(plain, labelled, client):
    lazy = labelled.chunk({"time": 200})
    m = est(client=client, batch_size=200).fit(lazy)
    np.testing.assert_allclose(m.means_, plain.means_, rtol=1e-9, atol=1e-9)
    dens = m.score_samples(lazy)
    assert dens.dims == ("time",)
    np.testing.assert_allclose(dens.values, plain.score_samples(X), rtol=1e-9)
