"""HMoG (likelihood="hmog") end to end: a DP fit from one component finds the clusters planted in
a latent space, in memory and from a Zarr store through the Dask engine, with the same result."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mixstream import MixtureModel
from mixstream.data.ingest import ingest

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

P, D, K, N = 256, 8, 12, 3000
BATCH = 750


def planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N rows in R^256 from 12 clusters in an 8-D latent space under a random linear map."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(P, D))
    centres = 4.0 * rng.normal(size=(K, D))
    z = rng.integers(K, size=N)
    Y = centres[z] + 0.5 * rng.normal(size=(N, D))
    return Y @ W.T + 0.5 * rng.normal(size=(N, P)), z


def dp_fit(data, client=None) -> MixtureModel:
    return MixtureModel(
        1,
        likelihood="hmog",
        latent_dim=D,
        covariance_type="diag",
        algorithm="movb",
        batch_size=BATCH,
        max_laps=20,
        tol=1e-4,
        random_state=0,
        client=client,
    ).fit(data)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    X, z = planted()
    return X, z, dp_fit(X)


def test_dp_hmog_from_one_component_recovers_the_planted_clusters(fitted):
    X, z, m = fitted
    assert m.n_components_ == K
    assert adjusted_rand_score(z, m.predict(X)) >= 0.99
    lb = np.array(m.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))  # moVB with moves: monotone
    assert m.means_.shape == (K, P) and m.latent_means_.shape == (K, D)


def test_the_same_fit_from_a_zarr_store_through_dask(fitted, tmp_path, client):
    X, z, here = fitted
    np.save(tmp_path / "x.npy", X)
    store = ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=BATCH)
    there = dp_fit(store, client=client)
    assert there.n_components_ == here.n_components_
    np.testing.assert_allclose(there.lower_bounds_, here.lower_bounds_, rtol=1e-8)
    np.testing.assert_allclose(there.means_, here.means_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(there.weights_, here.weights_, rtol=1e-8)
    assert adjusted_rand_score(z, there.predict(X)) >= 0.99


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_components=3, algorithm="em", allocation="finite"),  # whitening every lap
        dict(n_components=1, algorithm="movb"),  # births, merges, deletes
    ],
)
def test_an_interrupted_hmog_fit_resumes_to_the_same_result(tmp_path, kw):
    from mixstream.data.sources import open_source
    from mixstream.engine.local import LocalExecutor

    rng = np.random.default_rng(4)
    W = rng.normal(size=(20, 3))
    z = rng.integers(3, size=1200)
    X = (4 * rng.normal(size=(3, 3))[z] + 0.5 * rng.normal(size=(1200, 3))) @ W.T
    X += 0.5 * rng.normal(size=(1200, 20))
    options = dict(
        likelihood="hmog", latent_dim=3, covariance_type="diag", batch_size=300, max_laps=6,
        tol=0.0, random_state=0, **kw,
    )  # fmt: skip
    full = MixtureModel(**options).fit(X)
    run = MixtureModel(**options, checkpoint_dir=tmp_path).start_fit(
        LocalExecutor(open_source(X, 300))
    )
    for _ in range(3):
        run.step()
    del run  # the coordinator "dies" after lap 3
    resumed = MixtureModel(**options, checkpoint_dir=tmp_path).fit(X)
    assert [h["elbo"] for h in resumed.history_] == [h["elbo"] for h in full.history_]
    np.testing.assert_array_equal(resumed.means_, full.means_)


@pytest.mark.parametrize("algorithm", ["em", "movb"])
def test_missing_values_from_a_zarr_store_equal_the_in_memory_fit(tmp_path, algorithm):
    """missing="marginalize": a store holding NaN, streamed in batches by the in-process engine,
    fits as the array does (EM whitening every lap; memoized VB with its moves)."""
    rng = np.random.default_rng(5)
    W = rng.normal(size=(20, 3))
    z = rng.integers(3, size=1200)
    X = (4 * rng.normal(size=(3, 3))[z] + 0.5 * rng.normal(size=(1200, 3))) @ W.T
    X += 0.5 * rng.normal(size=(1200, 20))
    X[rng.uniform(size=X.shape) < 0.1] = np.nan
    np.save(tmp_path / "x.npy", X)
    store = ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=300)
    options = dict(
        likelihood="hmog", latent_dim=3, covariance_type="diag", batch_size=300, max_laps=6,
        tol=0.0, random_state=0, missing="marginalize", algorithm=algorithm,
        n_components=3 if algorithm == "em" else 1,
        allocation="finite" if algorithm == "em" else "dp",
    )  # fmt: skip
    memory = MixtureModel(**options).fit(X)
    streamed = MixtureModel(**options, engine="local").fit(store)
    np.testing.assert_allclose(streamed.lower_bounds_, memory.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(streamed.means_, memory.means_, rtol=0, atol=1e-8)
    lb = np.array(memory.lower_bounds_)
    assert np.diff(lb).min() >= -1e-9 * np.abs(lb).max()
    assert abs(streamed.score(store) - memory.score_samples(X).mean()) < 1e-9
