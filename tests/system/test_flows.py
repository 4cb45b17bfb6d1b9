"""The Prefect flows against a real Prefect server (the session's test harness), a real Dask
LocalCluster and real Zarr stores: same results as the estimator, artifacts, resuming after an
interruption, retries that never apply a lap twice, scoring, ingest, deployments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import zarr
from conftest import ROOT, start_local_cluster, subprocess_env

from mixstream import MixtureModel

pytestmark = pytest.mark.usefixtures("prefect_harness")

TOL = 1e-10
#: the fit every test here compares with: DP moVB with all moves from one component
OPTIONS = {
    "n_components": 1,
    "allocation": "dp",
    "likelihood": "gauss",
    "covariance_type": "full",
    "algorithm": "movb",
    "moves": ["birth", "merge", "delete"],
    "batch_size": 2000,
    "max_laps": 8,
    "tol": 1e-4,
    "random_state": 0,
}
FIT_KEYS = {
    "mixstream-laps",
    "mixstream-clusters",
    "mixstream-report",
    "mixstream-dask-dashboard",
    "mixstream-fit-progress",
}


@pytest.fixture(scope="module")
def dask_cluster():
    blas = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with start_local_cluster(env=blas) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def store(synthetic_store) -> str:
    return synthetic_store("flows", 8000, 3, 4, chunk_rows=1000, seed=3)


_REFERENCES: dict = {}


def _reference(store: str, **changes) -> MixtureModel:
    """The estimator fitted in-process on the same store with the same options."""
    key = (store, tuple(sorted(changes.items())))
    if key not in _REFERENCES:
        options = {**OPTIONS, **changes, "moves": tuple(OPTIONS["moves"])}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _REFERENCES[key] = MixtureModel(**options).fit(store)
    return _REFERENCES[key]


def _run(flow_fn, **params):
    """(result, flow run id) of a flow called in this process."""
    state = flow_fn(**params, return_state=True)
    return state.result(), state.state_details.flow_run_id


def _artifacts(flow_run_id) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def _table(artifact) -> list[dict]:
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def _assert_same_fit(est: MixtureModel, ref: MixtureModel) -> None:
    assert est.n_components_ == ref.n_components_
    np.testing.assert_allclose(est.weights_, ref.weights_, rtol=0, atol=TOL)
    np.testing.assert_allclose(est.means_, ref.means_, rtol=0, atol=TOL)
    np.testing.assert_allclose(est.covariances_, ref.covariances_, rtol=0, atol=TOL)
    assert est.lower_bound_ == pytest.approx(ref.lower_bound_, abs=TOL)
    assert [h["K"] for h in est.history_] == [h["K"] for h in ref.history_]
    np.testing.assert_allclose(
        [h["elbo"] for h in est.history_], [h["elbo"] for h in ref.history_], rtol=0, atol=TOL
    )


@pytest.fixture(scope="module")
def fitted(store, dask_cluster, tmp_path_factory):
    """fit_flow once on the module's cluster: (summary, flow run id, out directory)."""
    from flows.fit import fit_flow

    out = tmp_path_factory.mktemp("fit") / "run"
    summary, run_id = _run(
        fit_flow, data=store, out=str(out), scheduler=dask_cluster.scheduler_address, **OPTIONS
    )
    return summary, run_id, out


def test_fit_flow_equals_the_estimator_and_publishes(fitted, store):
    summary, run_id, out = fitted
    ref = _reference(store)
    est = MixtureModel.load(out / "model.msz")
    _assert_same_fit(est, ref)
    assert summary["n_components_"] == ref.n_components_ >= 2  # the moves found clusters
    assert summary["lower_bound_"] == pytest.approx(ref.lower_bound_, abs=TOL)
    assert summary["laps"] == len(ref.history_)
    assert summary["resumed_from_lap"] == 0
    assert summary["model"] == str(out / "model.msz")
    html = (out / "report.html").read_text()
    assert "<h1>mixstream fit" in html and html.count("<img") == 4  # ELBO, K, weights, PCA
    for name in ("elbo", "k", "weights", "projection"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    run = json.loads((out / "run.json").read_text())
    assert run["data"] == store and run["options"]["algorithm"] == "movb"
    assert not (out / "checkpoints" / "checkpoint.msz").exists()  # done: no resume of it

    artifacts = _artifacts(run_id)
    assert FIT_KEYS <= set(artifacts)
    laps = _table(artifacts["mixstream-laps"])
    assert [row["lap"] for row in laps] == list(range(1, len(ref.history_) + 1))
    assert [row["K"] for row in laps] == [h["K"] for h in ref.history_]
    np.testing.assert_allclose([row["elbo"] for row in laps], ref.lower_bounds_, atol=TOL)
    assert any(row["moves_accepted"] for row in laps)  # e.g. "birth 1"
    clusters = _table(artifacts["mixstream-clusters"])
    assert len(clusters) == ref.n_components_
    assert sum(row["weight"] for row in clusters) == pytest.approx(1.0)
    report = artifacts["mixstream-report"].data
    assert str(out / "report.html") in report
    assert report.count("data:image/png;base64,") == 4  # the report's four plots
    for title in ("ELBO per lap", "K per lap", "cluster weights", "PCA plane"):
        assert title in report
    assert "](http://" in artifacts["mixstream-dask-dashboard"].data  # a markdown link
    assert float(artifacts["mixstream-fit-progress"].data) == pytest.approx(100.0)


def test_interrupted_fit_resumes_from_its_checkpoint(store, dask_cluster, tmp_path):
    from flows.fit import fit_flow
    from mixstream.engine.progress import lap_listener

    out = tmp_path / "run"
    options = {**OPTIONS, "max_laps": 6, "tol": 0.0}  # tol 0: all six laps run

    def interrupt_after_lap_3(record, max_laps):
        if record["lap"] == 3:
            raise KeyboardInterrupt  # Ctrl-C right after lap 3's checkpoint

    params = {"data": store, "out": str(out), "scheduler": dask_cluster.scheduler_address}
    with lap_listener(interrupt_after_lap_3), pytest.raises(KeyboardInterrupt):
        fit_flow(**params, **options)
    assert (out / "checkpoints" / "checkpoint.msz").exists()
    assert not (out / "model.msz").exists()

    summary, run_id = _run(fit_flow, **params, **options)
    assert summary["resumed_from_lap"] == 3
    assert summary["laps"] == 6
    laps = _table(_artifacts(run_id)["mixstream-laps"])
    assert [row["lap"] for row in laps] == [1, 2, 3, 4, 5, 6]  # before and after the restart
    # resuming is exact: the same fit as one that was never interrupted
    _assert_same_fit(MixtureModel.load(out / "model.msz"), _reference(store, max_laps=6, tol=0.0))


def test_lap_retried_after_a_transient_failure_is_not_applied_twice(store, dask_cluster, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.fit import fit_flow
    from mixstream.engine.progress import lap_listener

    failures = []

    def connection_drops_once(record, max_laps):
        if record["lap"] == 2 and not failures:
            failures.append(record["lap"])
            raise ConnectionError("scheduler connection lost")  # after lap 2's checkpoint

    out = tmp_path / "run"
    with lap_listener(connection_drops_once):
        summary, run_id = _run(
            fit_flow,
            data=store,
            out=str(out),
            scheduler=dask_cluster.scheduler_address,
            **OPTIONS,
        )
    assert failures == [2]
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    runs = {t.name: t for t in task_runs}
    assert runs["lap-2"].run_count == 2 and runs["lap-2"].state.is_completed()
    assert runs["lap-3"].run_count == 1
    assert summary["laps"] == len(_reference(store).history_)
    _assert_same_fit(MixtureModel.load(out / "model.msz"), _reference(store))


def test_a_lap_failing_part_way_is_recomputed_from_the_checkpoint(store, tmp_path):
    """FitRun.ensure_lap (the lap task's body): a lap that failed after changing the in-memory
    state is recomputed from the checkpoint, never applied on top of the half-changed state."""
    from mixstream import app

    options = app.fit_options(**{**OPTIONS, "max_laps": 5, "tol": 0.0})
    source, _ = app.describe_data(store, options["batch_size"])
    with app.open_executor(source, engine="local") as executor:
        driver = app.start_run(options, executor, tmp_path / "ckpt")
        est = driver.est
        driver.ensure_lap(1)
        driver.ensure_lap(2)
        # lap 3 runs in memory, then "fails" before its checkpoint is written
        checkpoint_dir, driver.checkpoint_dir = driver.checkpoint_dir, None
        driver.step()
        driver.checkpoint_dir = checkpoint_dir
        driver._dirty = True
        assert driver.ensure_lap(3)["lap"] == 3  # rebuilt from lap 2's checkpoint, then lap 3
        assert driver.attempts == 3
        app.finish_run(driver.run())
    _assert_same_fit(est, _reference(store, max_laps=5, tol=0.0))


def test_score_flow_writes_labels_and_log_likelihoods(fitted, store, dask_cluster, tmp_path):
    from flows.score import score_flow

    _, _, fit_out = fitted
    model = MixtureModel.load(fit_out / "model.msz")
    X = np.asarray(zarr.open_group(store, mode="r")["X"][:], dtype=np.float64)
    out = tmp_path / "labels.zarr"
    params = {
        "model": str(fit_out / "model.msz"),
        "data": store,
        "out": str(out),
        "scheduler": dask_cluster.scheduler_address,
    }
    result, run_id = _run(score_flow, **params)
    group = zarr.open_group(str(out), mode="r")
    np.testing.assert_array_equal(group["labels"][:], model.predict(X))
    np.testing.assert_allclose(group["log_likelihood"][:], model.score_samples(X), atol=TOL)
    assert result["n_rows"] == X.shape[0] == sum(result["counts"])
    assert result["mean_log_likelihood"] == pytest.approx(model.score(X), abs=TOL)
    artifacts = _artifacts(run_id)
    assert {"mixstream-score-counts", "mixstream-score"} <= set(artifacts)
    assert sum(row["rows"] for row in _table(artifacts["mixstream-score-counts"])) == X.shape[0]

    _run(score_flow, **params)  # scheduled re-runs replace their output (atomically)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.zarr"]  # no leftovers
    with pytest.raises(FileExistsError):
        score_flow(**params, overwrite=False)


def test_ingest_flow_round_trips_a_npy_file(tmp_path):
    from flows.ingest import ingest_flow

    X = np.random.default_rng(0).normal(size=(1000, 5))
    np.save(tmp_path / "points.npy", X)
    dest = tmp_path / "points.zarr"
    state = ingest_flow(str(tmp_path / "points.npy"), str(dest), chunk_rows=128, return_state=True)
    assert state.result() == str(dest)
    arr = zarr.open_group(str(dest), mode="r")["X"]
    np.testing.assert_array_equal(arr[:], X)
    assert arr.chunks == (128, 5)
    assert "mixstream-ingest" in _artifacts(state.state_details.flow_run_id)


def test_ingest_flow_writes_a_weights_column(tmp_path):
    from flows.ingest import ingest_flow

    rng = np.random.default_rng(1)
    X, w = rng.normal(size=(200, 3)), rng.uniform(0.5, 2.0, 200)
    rows = ["a,b,c,w"] + [",".join(map(repr, [*x.tolist(), float(v)])) for x, v in zip(X, w)]
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    dest = tmp_path / "points.zarr"
    ingest_flow(str(tmp_path / "points.csv"), str(dest), header=True, weights="w")
    group = zarr.open_group(str(dest), mode="r")
    np.testing.assert_array_equal(group["X"][:], X)  # the weights column is not a feature
    np.testing.assert_array_equal(group["sample_weight"][:], w)


def test_flows_load_from_their_entrypoints(monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(ROOT)  # deployments run from the project directory
    names = {
        "flows/fit.py:fit_flow": "fit-flow",
        "flows/score.py:score_flow": "score-flow",
        "flows/ingest.py:ingest_flow": "ingest-flow",
    }
    for entrypoint, name in names.items():
        assert load_flow_from_entrypoint(entrypoint).name == name


def test_deployments_register_with_a_work_pool(monkeypatch):
    """`prefect deploy` of deploy/prefect.yaml, and fit_flow.to_deployment(...).apply(), against
    the test server with a process work pool; the deployments read back with their schedules.
    (No worker runs them here: the yaml's pull step points at the container's /opt/mixstream,
    and test_prefect_server.py runs fit_flow against a real server.)"""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    from flows.fit import fit_flow

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="mixstream-pool", type="process"))
    env = subprocess_env(PREFECT_API_URL=PREFECT_API_URL.value())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect",
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            "deploy/prefect.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    monkeypatch.chdir(ROOT)
    adhoc = fit_flow.to_deployment(
        name="fit-adhoc",
        cron="30 3 * * *",
        parameters={"data": "/data/train.zarr", "out": "/data/runs/adhoc", "max_laps": 5},
    )
    adhoc_id = adhoc.apply(work_pool_name="mixstream-pool")

    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("fit-flow/fit-nightly")
        scoring = client.read_deployment_by_name("score-flow/score-nightly")
        again = client.read_deployment(adhoc_id)
    assert nightly.entrypoint == "flows/fit.py:fit_flow"
    assert nightly.work_pool_name == "mixstream-pool"
    assert nightly.parameters["moves"] == ["birth", "merge", "delete"]
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert [s.schedule.cron for s in scoring.schedules] == ["0 5 * * *"]
    assert scoring.entrypoint == "flows/score.py:score_flow"
    assert again.entrypoint == "flows/fit.py:fit_flow"
    assert [s.schedule.cron for s in again.schedules] == ["30 3 * * *"]
    assert again.parameters["max_laps"] == 5
    assert os.path.isfile(ROOT / "flows" / "fit.py")
