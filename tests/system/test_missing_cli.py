"""`mixstream fit --missing marginalize` in a child process, on a store holding NaN: the
default refuses the store naming the batch and rows; the flag fits it, and `score` writes
per-row log-likelihoods that the fitted model reproduces in memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr
from conftest import subprocess_env

from mixstream import MixtureModel
from mixstream.data.ingest import ingest

CLI = [sys.executable, "-m", "mixstream.cli"]


def _cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [*CLI, *args], env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_fit_and_score_a_store_with_missing_values(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(600, 4)) + c for c in (-4.0, 0.0, 4.0)])
    X[rng.random(X.shape) < 0.1] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    np.save(tmp_path / "x.npy", X)
    store = ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=600)
    run = tmp_path / "run"
    common = ["--no-prefect", "--max-laps", "5", "--algorithm", "em", "--allocation", "finite"]
    code, _, err = _cli("fit", store, "--out", str(tmp_path / "refused"), *common)
    assert code != 0 and "NaN or infinite" in err and "batch 0" in err
    code, _, err = _cli("fit", store, "--out", str(run), "--n-components", "3", *common,
                        "--missing", "marginalize")  # fmt: skip
    assert code == 0, err
    labels = tmp_path / "labels.zarr"
    code, _, err = _cli("score", str(run), store, "--out", str(labels), "--no-prefect")
    assert code == 0, err
    est = MixtureModel.load(run / "model.msz")
    assert est.missing == "marginalize"
    ll = zarr.open_group(str(labels), mode="r")["log_likelihood"][:]
    assert np.allclose(ll, est.score_samples(X), rtol=0, atol=1e-9)


@pytest.mark.usefixtures("prefect_harness")
def test_fit_flow_marginalizes_a_store_with_missing_values(tmp_path) -> None:
    """The Prefect fit flow takes missing="marginalize" and equals the in-process fit."""
    from flows.fit import fit_flow

    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(500, 3)) + c for c in (-4.0, 4.0)])
    X[rng.random(X.shape) < 0.15] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0
    np.save(tmp_path / "x.npy", X)
    store = ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=250)
    options = dict(
        n_components=2, allocation="finite", algorithm="em", moves=[], max_laps=4, tol=0.0,
        batch_size=250, missing="marginalize",
    )  # fmt: skip
    summary = fit_flow(data=store, out=str(tmp_path / "run"), n_workers=1, **options)
    est = MixtureModel.load(tmp_path / "run" / "model.msz")
    ref = MixtureModel(
        2, allocation="finite", algorithm="em", moves=(), max_laps=4, tol=0.0, batch_size=250,
        missing="marginalize", random_state=0, engine="local",
    ).fit(store)  # fmt: skip
    assert summary["n_components_"] == 2
    assert np.allclose(est.means_, ref.means_, rtol=0, atol=1e-8)
