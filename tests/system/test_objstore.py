"""Object stores (issue 17, item 3): store, run directory, model, labels and report on a real
S3-compatible server (moto's server mode on 127.0.0.1, tests/system/conftest.py), driven by
the command line in child processes as a user would.

- ingest -> fit -> score -> report with every path an s3:// URL;
- a fit killed with SIGKILL after its first checkpoint appears on S3 leaves no model.msz and
  no run.json under the final names, and a rerun resumes from the S3 checkpoint to the result
  of an uninterrupted run (1e-10);
- no credential reaches run.json (or any object mixstream writes);
- an unknown URL scheme, a scheme whose package is missing, and missing credentials each fail
  with one clear line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import subprocess_env

from mixstream import MixtureModel
from system.conftest import S3_KEY_ID, S3_SECRET

FIT = ["--algorithm", "em", "--n-components", "3", "--max-laps", "30", "--tol", "0", "--no-prefect"]


def _env(**extra: str | None) -> dict[str, str]:
    return subprocess_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", **extra)


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> tuple[int, str, str]:
    res = subprocess.run(
        [sys.executable, "-m", "mixstream.cli", *args],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return res.returncode, res.stdout, res.stderr


def _fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


@pytest.fixture(scope="module")
def s3_run(s3_bucket, tmp_path_factory):
    """ingest + fit + score + report on S3 through the command line; the URLs used."""
    from conftest import planted_blobs

    tmp = tmp_path_factory.mktemp("s3")
    X = planted_blobs(3000, 2, 3, seed=4)[0]
    np.save(tmp / "points.npy", X)
    store, run, labels = (f"{s3_bucket}/{n}" for n in ("points.zarr", "run", "labels.zarr"))
    code, out, err = _cli("ingest", str(tmp / "points.npy"), store, "--chunk-rows", "500")
    assert code == 0, err
    code, out, err = _cli("fit", store, "--out", run, *FIT)
    assert code == 0, err
    code, _, err = _cli("score", run, store, "--out", labels)
    assert code == 0, err
    fs = _fs()
    fs.rm(f"{run}/report.html")
    code, _, err = _cli("report", run)
    assert code == 0, err
    return {"store": store, "run": run, "labels": labels, "fit_out": out, "n": len(X), "X": X}


def test_fit_score_report_on_s3(s3_run):
    fs = _fs()
    run = s3_run["run"]
    for name in ("model.msz", "report.html", "run.json", "figures/elbo.png"):
        assert fs.exists(f"{run}/{name}"), name
    assert not fs.exists(f"{run}/checkpoints/checkpoint.msz")  # dropped once published
    summary = json.loads(fs.cat_file(f"{run}/run.json"))
    assert summary["status"] == "finished"
    assert summary["model"] == f"{run}/model.msz" and summary["data"] == s3_run["store"]
    assert f"model            {run}/model.msz" in s3_run["fit_out"]
    assert b"<img" in fs.cat_file(f"{run}/report.html")  # rewritten by `mixstream report`
    # the labels are a Zarr group on S3 that zarr opens from its URL
    import zarr

    g = zarr.open_group(s3_run["labels"], mode="r")
    assert g["labels"].shape == (s3_run["n"],)
    est = MixtureModel.load(f"{run}/model.msz")
    np.testing.assert_array_equal(np.asarray(g["labels"]), est.predict(s3_run["X"]))
    assert g.attrs["fit_id"] == summary["fit_id"]


def test_no_credentials_in_written_objects(s3_run):
    fs = _fs()
    for path in fs.find(s3_run["run"]) + fs.find(s3_run["labels"]):
        blob = fs.cat_file(path)
        assert S3_SECRET.encode() not in blob and S3_KEY_ID.encode() not in blob, path
    summary = fs.cat_file(f"{s3_run['run']}/run.json").decode()
    assert "secret" not in summary.lower() and "AWS_" not in summary


def _wait_for(fs, path: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not fs.exists(path):
        fs.invalidate_cache()
        assert proc.poll() is None, "the fit ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def test_killed_fit_leaves_nothing_final_and_resumes_on_s3(s3_run, s3_bucket):
    fs = _fs()
    run = f"{s3_bucket}/run-killed"
    ckpt = f"{run}/checkpoints/checkpoint.msz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixstream.cli", "fit", s3_run["store"], "--out", run, *FIT],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(fs, ckpt, proc)
        os.kill(proc.pid, signal.SIGKILL)  # mid-lap: a later lap is running
    finally:
        proc.kill()
        proc.wait()
    fs.invalidate_cache()
    assert fs.exists(ckpt)
    assert not fs.exists(f"{run}/model.msz")
    assert not fs.exists(f"{run}/run.json")
    code, _, err = _cli("fit", s3_run["store"], "--out", run, *FIT)
    assert code == 0, err
    assert "resum" in err
    summary = json.loads(fs.cat_file(f"{run}/run.json"))
    assert summary["status"] == "finished" and summary["resumed_from_lap"] >= 1
    resumed = MixtureModel.load(f"{run}/model.msz")
    ref = MixtureModel.load(f"{s3_run['run']}/model.msz")
    np.testing.assert_allclose(resumed.means_, ref.means_, atol=1e-10, rtol=0)
    np.testing.assert_allclose(resumed.weights_, ref.weights_, atol=1e-10, rtol=0)
    np.testing.assert_allclose(resumed.covariances_, ref.covariances_, atol=1e-10, rtol=0)
    # a second fit into the finished run is refused, with --overwrite it replaces it
    code, _, err = _cli("fit", s3_run["store"], "--out", run, *FIT)
    assert code != 0 and "holds a finished run" in err and "--overwrite" in err


def test_missing_credentials_one_line(s3_run, tmp_path):
    env = _env(
        AWS_ACCESS_KEY_ID=None,
        AWS_SECRET_ACCESS_KEY=None,
        AWS_SESSION_TOKEN=None,
        AWS_PROFILE=None,
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    code, _, err = _cli("fit", s3_run["store"], "--out", str(tmp_path / "r"), env=env)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no credentials" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0]
    assert "Traceback" not in err


@pytest.mark.filterwarnings("ignore:MixtureModel did not converge")
def test_dask_workers_open_the_s3_store_themselves(s3_run):
    """Workers (separate processes) read the store from its URL with their own environment's
    credentials: the fit on a LocalCluster equals the in-process fit of the same URL."""
    from conftest import start_local_cluster
    from distributed import Client, get_task_stream

    kw = {"n_components": 3, "algorithm": "em", "max_laps": 5, "tol": 0.0, "random_state": 0}
    local = MixtureModel(**kw).fit(s3_run["store"])
    with start_local_cluster(n_workers=1) as cluster, Client(cluster) as client:
        with get_task_stream(client) as tasks:
            on_dask = MixtureModel(**kw, client=client).fit(s3_run["store"])
        assert len(tasks.data) > 0  # the batches were read and processed on the worker
    np.testing.assert_allclose(on_dask.means_, local.means_, atol=1e-10, rtol=0)
    np.testing.assert_allclose(on_dask.weights_, local.weights_, atol=1e-10, rtol=0)


@pytest.mark.filterwarnings("ignore:MixtureModel did not converge")
def test_storage_options_are_used_and_never_written(s3_run, s3_server, s3_bucket):
    """Credentials a user passes as storage_options open the store (on the workers too, the
    source carries them in memory) but reach no object mixstream writes."""
    from mixstream.data.zarr_source import ZarrSource

    secret = "passed-secret-5d0c2e"
    opts = {"key": "passed-key-91ab", "secret": secret, "endpoint_url": s3_server}
    source = ZarrSource(s3_run["store"], storage_options=opts)
    ckpt = f"{s3_bucket}/opts/checkpoints"
    est = MixtureModel(n_components=3, algorithm="em", max_laps=3, checkpoint_dir=ckpt)
    est.fit(source)
    est.save(f"{s3_bucket}/opts/model.msz")
    fs = _fs()
    written = fs.find(f"{s3_bucket}/opts")
    assert f"{s3_bucket[5:]}/opts/model.msz" in written and len(written) == 2
    for path in written:
        blob = fs.cat_file(path)
        assert secret.encode() not in blob and b"passed-key-91ab" not in blob, path


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.filterwarnings("ignore:MixtureModel did not converge")
def test_flows_on_s3(s3_bucket, tmp_path):
    """The Prefect flows (the test harness's server) with every path an s3:// URL: ingest_flow
    writes the store, fit_flow fits it on a LocalCluster whose workers read it with their own
    environment's credentials and publishes the run directory, score_flow writes the labels;
    the model equals the in-memory fit of the same rows and the labels its predictions."""
    from conftest import planted_blobs, start_local_cluster

    from flows.fit import fit_flow
    from flows.ingest import ingest_flow
    from flows.score import score_flow

    X = planted_blobs(2000, 3, 3, seed=7)[0]
    np.save(tmp_path / "points.npy", X)
    store, run, labels = (f"{s3_bucket}/flows/{n}" for n in ("points.zarr", "run", "labels.zarr"))
    kw = {"n_components": 3, "algorithm": "em", "max_laps": 6, "tol": 0.0, "random_state": 0}
    assert ingest_flow(str(tmp_path / "points.npy"), store, chunk_rows=500) == store
    with start_local_cluster(n_workers=1) as cluster:
        summary = fit_flow(store, run, scheduler=cluster.scheduler_address, **kw)
        model_url = f"{run}/model.msz"
        result = score_flow(model_url, store, labels, scheduler=cluster.scheduler_address)
    fs = _fs()
    for name in ("model.msz", "report.html", "run.json", "figures/elbo.png"):
        assert fs.exists(f"{run}/{name}"), name
    assert json.loads(fs.cat_file(f"{run}/run.json"))["status"] == "finished"
    assert summary["status"] == "finished" and summary["n_rows"] == len(X)
    fitted = MixtureModel.load(model_url)
    reference = MixtureModel(**kw).fit(X)
    np.testing.assert_allclose(fitted.means_, reference.means_, atol=1e-8, rtol=0)
    np.testing.assert_allclose(fitted.weights_, reference.weights_, atol=1e-8, rtol=0)
    import zarr

    group = zarr.open_group(labels, mode="r")
    np.testing.assert_array_equal(group["labels"][:], fitted.predict(X))
    assert result["n_rows"] == len(X)
    # nothing but the three outputs under their final names (no staging leftovers)
    top = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{s3_bucket}/flows")}
    assert top == {"points.zarr", "run", "labels.zarr"}
