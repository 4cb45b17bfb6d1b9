"""`mixstream fit --likelihood hmog --latent-dim D` as a user runs it (a child process): the run
directory, the model file and the report; bad HMoG options are one error line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from conftest import subprocess_env
from sklearn.metrics import adjusted_rand_score

from mixstream import MixtureModel
from mixstream.data.ingest import ingest

CLI = [sys.executable, "-m", "mixstream.cli"]
P, D, K, N = 32, 3, 4, 2000


def _cli(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [*CLI, *args], env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    return proc.returncode, proc.stdout, proc.stderr


def _store(tmp_path) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    W = rng.normal(size=(P, D))
    z = rng.integers(K, size=N)
    Y = 4.0 * rng.normal(size=(K, D))[z] + 0.5 * rng.normal(size=(N, D))
    X = Y @ W.T + 0.5 * rng.normal(size=(N, P))
    np.save(tmp_path / "x.npy", X)
    return ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=500), X, z


def test_fit_hmog_into_a_run_directory(tmp_path):
    store, X, z = _store(tmp_path)
    run = tmp_path / "run"
    flags = ["--likelihood", "hmog", "--latent-dim", str(D), "--covariance-type", "diag"]
    code, out, err = _cli("fit", store, "--out", str(run), "--no-prefect", *flags)
    assert code == 0, err
    assert f"K                {K}" in out
    for name in (
        "model.msz",
        "report.html",
        "run.json",
        "figures/projection.png",
        "figures/latent.png",
    ):
        assert (run / name).exists(), name
    assert json.loads((run / "run.json").read_text())["options"]["latent_dim"] == D
    est = MixtureModel.load(run / "model.msz")
    assert est.likelihood == "hmog" and est.n_components_ == K
    assert adjusted_rand_score(z, est.predict(X)) >= 0.99
    assert est.transform(X).shape == (N, D)
    assert "latent_dim" in (run / "report.html").read_text()


def test_bad_latent_dim_is_one_error_line(tmp_path):
    store, _, _ = _store(tmp_path)
    code, _, err = _cli(
        "fit", store, "--out", str(tmp_path / "r"), "--no-prefect", "--likelihood", "hmog",
        "--latent-dim", str(P),
    )  # fmt: skip
    assert code != 0
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [
        f"mixstream: error: --latent-dim must be smaller than n_features = {P}, got {P}"
    ], err
