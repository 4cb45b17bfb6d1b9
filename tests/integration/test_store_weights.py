"""Sample weights stored beside X ("sample_weight"): fit on every engine equals the in-memory
weighted fit; ``mixstream ingest --weights`` writes them; bad weights give one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from mixstream import MixtureModel
from mixstream.cli import main
from mixstream.data.ingest import ingest
from mixstream.engine.checkpoint import checkpoint_path
from mixstream.io import read_model_file

# a fixed number of EM laps with tol=0, so that every fit runs the same laps
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 2_400, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 4.0, 3.0]])
    X = centres[rng.integers(0, 3, N)] + rng.normal(size=(N, D))
    w = rng.integers(0, 4, N).astype(float) + rng.random(N)  # zeros, integers, fractions
    return X, w, centres


def write_store(path, X, w, chunk=400):
    g = zarr.open_group(path, mode="w")
    g.create_array("X", data=X, chunks=(chunk, X.shape[1]))
    if w is not None:
        g.create_array("sample_weight", data=w, chunks=(chunk,))
    return str(path)


def estimator(centres, **kw):
    return MixtureModel(
        3, allocation="finite", algorithm="em", init=centres, max_laps=15, tol=0.0, **kw
    )


def assert_same_fit(a, b, tol=1e-8):
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=tol, atol=tol)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=tol)


def test_store_weights_fit_equals_in_memory_weighted_fit(data, tmp_path, client):
    X, w, centres = data
    store = write_store(tmp_path / "w.zarr", X, w)
    ref = estimator(centres).fit(X, sample_weight=w)
    unweighted = estimator(centres).fit(X)
    assert not np.allclose(ref.means_, unweighted.means_, atol=1e-3)  # the weights matter
    local = estimator(centres, engine="local", batch_size=800).fit(store)
    assert_same_fit(local, ref)
    dask = estimator(centres, client=client, batch_size=800).fit(store)
    assert_same_fit(dask, ref)


def test_checkpoint_records_the_weights(data, tmp_path):
    X, w, centres = data
    store = write_store(tmp_path / "w.zarr", X, w)
    ckpt = tmp_path / "ckpt"
    estimator(centres, engine="local", batch_size=800, checkpoint_dir=str(ckpt)).fit(store)
    meta, _ = read_model_file(checkpoint_path(ckpt))
    assert meta["fingerprint"]["weights"] == "sample_weight"


def test_ingest_weights_column_csv_and_parquet(data, tmp_path):
    import pandas as pd

    X, w, centres = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(w=w)
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.to_parquet(tmp_path / "p.parquet", row_group_size=500)
    ref = estimator(centres).fit(X, sample_weight=w)
    for src in ("p.csv", "p.parquet"):
        dest = str(tmp_path / f"{src}.zarr")
        argv = ["ingest", str(tmp_path / src), dest, "--weights", "w", "--chunk-rows", "400"]
        assert main(argv) == 0
        g = zarr.open_group(dest, mode="r")
        assert g["X"].shape == (N, D) and g["sample_weight"].chunks == g["X"].chunks[:1]
        np.testing.assert_allclose(g["sample_weight"][:], w, rtol=1e-15)
        assert_same_fit(estimator(centres, engine="local", batch_size=800).fit(dest), ref)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(N - 1), r"sample_weight must have shape \(2400,\) to match"),
        (np.r_[np.ones(N - 1), -1.0], r"sample_weight batch \d+ \(rows .*\) holds negative"),
        (np.r_[np.nan, np.ones(N - 1)], r"sample_weight batch 0 \(rows 0:\d+\) holds NaN"),
    ],
    ids=["wrong-length", "negative", "nan"],
)
def test_bad_store_weights_one_clear_line(data, tmp_path, weights, match):
    X, _, centres = data
    store = write_store(tmp_path / "bad.zarr", X, None)
    zarr.open_group(store, mode="a").create_array("sample_weight", data=weights, chunks=(400,))
    with pytest.raises(ValueError, match=match) as err:
        estimator(centres, engine="local", batch_size=800).fit(store)
    assert store in str(err.value) and "\n" not in str(err.value)


def test_ingest_refuses_bad_weight_cells(tmp_path, capsys):
    src = tmp_path / "neg.csv"
    src.write_text("a,b,w\n1,2,1\n3,4,-2\n")
    dest = str(tmp_path / "n.zarr")
    with pytest.raises(ValueError, match=r"weights column 'w', data row 2: -2.0 is negative"):
        ingest(src, dest, weights="w")
    with pytest.raises(ValueError, match=r"has no weights column 'v'; it has \['a', 'b', 'w'\]"):
        ingest(src, dest, weights="v")
    assert main(["ingest", str(src), dest, "--weights", "w"]) == 2  # the command line: one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("mixstream: error: ingest:") and "\n" not in err
    assert not (tmp_path / "n.zarr").exists()


def test_select_reads_store_weights(tmp_path):
    """mixstream.select on a store with weights gives the table of the in-memory weighted
    selection (fits, BIC, held-out scores); a cluster whose rows weigh almost nothing is not
    chosen, where without the weights it is."""
    from mixstream import select

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    X = np.concatenate([rng.normal(c, 1.0, size=(800, 2)) for c in centres])
    w = np.where(np.arange(len(X)) >= 1600, 1e-6, 1.0)
    order = rng.permutation(len(X))
    X, w = X[order], w[order]
    store = write_store(tmp_path / "w.zarr", X, w)
    grid = {"n_components": range(1, 5), "covariance_types": ("full",)}
    on_store = select(store, **grid)
    in_memory = select(X, sample_weight=w, **grid)
    unweighted = select(X, **grid)
    for a, b in zip(on_store.table, in_memory.table):
        for key in ("bic", "aic", "log_likelihood", "heldout_log_likelihood"):
            assert a[key] == pytest.approx(b[key], rel=1e-9), (a["model"], key)
    assert on_store.best["K"] == in_memory.best["K"] == 2
    assert unweighted.best["K"] == 3
