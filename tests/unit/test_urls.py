"""fsspec URLs (mixstream.urls, issue 17 item 3) on memory://, a real fsspec filesystem held
in this process: model files, checkpoints, run-directory states, and the one-line errors of an
unknown scheme and of a scheme whose package is missing."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from mixstream import MixtureModel, urls
from mixstream.app.rundir import describe_data, prepare_run_dir, run_state
from mixstream.engine.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def mem() -> str:
    return f"memory://mixstream-{uuid.uuid4().hex[:8]}"


def test_model_roundtrip_on_memory_url(mem):
    X = np.random.default_rng(0).normal(size=(200, 2))
    est = MixtureModel(n_components=2, algorithm="em", max_laps=50, random_state=0).fit(X)
    url = f"{mem}/m.msz"
    assert est.save(url) == url
    back = MixtureModel.load(url)
    np.testing.assert_array_equal(back.means_, est.means_)
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    with pytest.raises(FileNotFoundError, match="no model file"):
        MixtureModel.load(f"{mem}/absent.msz")


def test_write_bytes_replaces_whole_object(mem):
    url = f"{mem}/a/b.bin"
    urls.write_bytes(url, b"old")
    urls.write_bytes(url, b"new content")
    assert urls.read_bytes(url) == b"new content"
    assert urls.listdir(mem) == ["a/b.bin"]
    urls.remove(mem, recursive=True)
    assert not urls.exists(url)


def test_checkpoint_and_run_states_on_memory_url(mem):
    ckpt = f"{mem}/run/checkpoints"
    assert load_checkpoint(ckpt, {"n": 1}) is None
    save_checkpoint(ckpt, {"fingerprint": {"n": 1}}, {"x": np.arange(3.0)})
    _, arrays = load_checkpoint(ckpt, {"n": 1})
    np.testing.assert_array_equal(arrays["x"], np.arange(3.0))
    assert run_state(f"{mem}/run") == "unfinished"
    urls.remove(f"{ckpt}/checkpoint.msz")
    # a model without a finished run.json is not a finished run (run.json is the marker)
    urls.write_bytes(f"{mem}/run/model.msz", b"x")
    assert run_state(f"{mem}/run") == "none"
    urls.write_bytes(f"{mem}/run/run.json", b'{"status": "finished"}')
    assert run_state(f"{mem}/run") == "finished"
    with pytest.raises(FileExistsError, match="holds a finished run"):
        prepare_run_dir(f"{mem}/run", overwrite=False)
    assert prepare_run_dir(f"{mem}/run", overwrite=True) == "finished"
    assert urls.listdir(f"{mem}/run") == []


def test_unknown_scheme_one_clear_line():
    with pytest.raises(urls.UrlError, match="unknown URL scheme 'nosuch'") as err:
        describe_data("nosuch://bucket/data.zarr")
    assert "\n" not in str(err.value)


def test_scheme_without_its_package_names_it():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401

        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    with pytest.raises(urls.UrlError, match=r"'gs' needs the package gcsfs \(pip install gcsfs\)"):
        describe_data("gs://bucket/data.zarr")


def test_score_store_to_memory_url(mem):
    import zarr

    X = np.random.default_rng(1).normal(size=(300, 2))
    est = MixtureModel(n_components=2, algorithm="em", max_laps=50, random_state=0).fit(X)
    url = f"{mem}/labels.zarr"
    est.score_store(X, url)
    g = zarr.open_group(url, mode="r")
    np.testing.assert_array_equal(np.asarray(g["labels"]), est.predict(X))
    assert urls.listdir(url)[-1] == "zarr.json"  # (sorted) the marker is there
    with pytest.raises(FileExistsError, match="never written over"):
        est.score_store(X, url)


def test_select_writes_its_directory_to_a_memory_url(mem):
    from mixstream import select

    X = np.random.default_rng(2).normal(size=(400, 2))
    sel = select(X, [1, 2], ["diag"], holdout=0.0, n_seeds=1, max_laps=10, out=f"{mem}/sel")
    assert sel.out["model"] == f"{mem}/sel/model.msz"
    assert {"selection.json", "selection.csv", "model.msz", "report.html"} <= set(
        urls.listdir(f"{mem}/sel")
    )
    assert MixtureModel.load(sel.out["model"]).n_components_ == sel.best["K"]
    with pytest.raises(FileExistsError):
        select(X, [1], ["diag"], holdout=0.0, n_seeds=1, max_laps=10, out=f"{mem}/sel")


def test_ingest_to_memory_url(mem, tmp_path):
    import zarr

    from mixstream.data.ingest import ingest

    X = np.random.default_rng(3).normal(size=(250, 3))
    np.save(tmp_path / "x.npy", X)
    url = f"{mem}/x.zarr"
    urls.write_bytes(f"{url}/X/stale", b"left by an interrupted upload (no zarr.json)")
    assert ingest(tmp_path / "x.npy", url, chunk_rows=100) == url
    assert "X/stale" not in urls.listdir(url) and urls.listdir(url)[-1] == "zarr.json"
    np.testing.assert_array_equal(np.asarray(zarr.open_group(url, mode="r")["X"]), X)
    with pytest.raises(FileExistsError):
        ingest(tmp_path / "x.npy", url)
    ingest(tmp_path / "x.npy", url, chunk_rows=50, overwrite=True)
    assert zarr.open_group(url, mode="r")["X"].chunks == (50, 3)


@pytest.mark.filterwarnings("ignore:MixtureModel did not converge")
def test_estimator_checkpoints_to_a_url_as_to_a_directory(mem, tmp_path):
    """A checkpoint_dir URL behaves as a local directory: written after the laps, read back
    by the next fit with the same options (the same history and parameters)."""
    X = np.random.default_rng(4).normal(size=(300, 2))
    kw = {"n_components": 2, "algorithm": "em", "tol": 0.0, "random_state": 0}
    fits = {}
    for where in (f"{mem}/ckpt", str(tmp_path / "ckpt")):
        MixtureModel(**kw, max_laps=3, checkpoint_dir=where).fit(X)
        assert urls.exists(urls.join(where, "checkpoint.msz"))
        fits[where] = MixtureModel(**kw, max_laps=6, checkpoint_dir=where).fit(X)
    on_url, on_disk = fits.values()
    assert len(on_url.history_) == len(on_disk.history_) >= 3
    np.testing.assert_array_equal(on_url.means_, on_disk.means_)
