"""Fits on Zarr stores through real Dask clusters equal the in-process fit.

Clusters: a LocalCluster with 2 worker processes, and a cluster made of a `dask scheduler`
and two `dask worker` processes started here on 127.0.0.1.
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from conftest import BLAS_ONE, dask_command, free_port, start_local_cluster, stop_processes
from distributed import Client

from mixstream import MixtureModel
from mixstream.data.synthetic import write_synthetic_zarr
from mixstream.data.zarr_source import StoreReadError
from mixstream.engine.checkpoint import CheckpointMismatch, checkpoint_path
from mixstream.engine.progress import batch_listener
from mixstream.io import read_model_file

N, D, K = 12_000, 3, 4

ALGORITHMS = {
    "em": dict(algorithm="em", allocation="finite"),
    "vb": dict(algorithm="vb"),
    "cem": dict(algorithm="cem", allocation="finite"),
    "kmeans": dict(algorithm="kmeans", allocation="finite"),
    "sovb": dict(algorithm="sovb"),
    "movb": dict(algorithm="movb", moves=("birth", "merge", "delete")),
}


@pytest.fixture(scope="module")
def store(synthetic_store):
    return synthetic_store("fit", N, D, K, "data.zarr", chunk_rows=500, shard_rows=1000, seed=2)


@pytest.fixture(scope="module")
def local_cluster(client):
    """The Client on the module's LocalCluster (tests/integration/conftest.py)."""
    return client


@pytest.fixture(scope="module")
def cli_cluster():
    """`dask scheduler` + two `dask worker` processes on 127.0.0.1, stopped afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_cmd = dask_command()
    env = {**os.environ, **BLAS_ONE}
    procs = [
        subprocess.Popen(
            [
                dask_cmd,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
                "--no-show",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        dask_cmd,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--memory-limit",
                        "0",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield address
    finally:
        stop_processes(procs)


def fit(store, client=None, **opts):
    kw = dict(n_components=K, batch_size=1000, max_laps=6, tol=0.0, random_state=0)
    kw.update(opts)
    if kw.get("moves"):
        kw["n_components"] = 1
    return MixtureModel(**kw, client=client).fit(store)


def assert_same(a, b):
    assert a.n_components_ == b.n_components_
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-10)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_same_fit_in_process_and_on_both_clusters(name, store, local_cluster, cli_cluster):
    opts = ALGORITHMS[name]
    here = fit(store, **opts)
    assert_same(fit(store, client=local_cluster, **opts), here)
    assert_same(fit(store, client=cli_cluster, **opts), here)


# the kill lands at different points of a lap: while the executor sets up, inside a batch task, in
# the sum tree, or while the coordinator sends the next payload (CI once caught that one); each
# case has its own cluster so no case depends on a nanny having restarted an earlier victim
@pytest.mark.parametrize("delay", [0.2, 0.6, 1.2])
def test_worker_killed_mid_lap_changes_nothing(store, delay):
    opts = dict(algorithm="vb", max_laps=20)
    here = fit(store, **opts)
    with (
        start_local_cluster() as cl,
        Client(cl) as client,
    ):
        pids = list(client.run(os.getpid).values())
        killed_at = []

        def killer():
            time.sleep(delay)
            os.kill(pids[0], signal.SIGKILL)
            killed_at.append(time.perf_counter())

        t = threading.Thread(target=killer)
        t.start()
        there = fit(store, client=client, **opts)
        finished_at = time.perf_counter()
        t.join()
        assert killed_at[0] < finished_at  # the kill really landed during the fit
    assert_same(there, here)


def test_zarr_array_dask_array_and_path_give_the_same_fit(store):
    by_path = fit(store, algorithm="vb")
    arr = zarr.open_group(store, mode="r")["X"]
    by_array = fit(arr, algorithm="vb")
    by_dask = fit(da.from_zarr(arr), algorithm="vb")
    assert_same(by_array, by_path)
    assert_same(by_dask, by_path)


def test_predict_and_score_on_a_store_write_zarr(store, tmp_path, local_cluster):
    model = fit(store, algorithm="vb")
    X = zarr.open_group(store, mode="r")["X"][:]
    labels = model.predict(store, out=tmp_path / "labels.zarr")
    np.testing.assert_array_equal(labels[:], model.predict(X))
    out = model.score_store(store, tmp_path / "scores.zarr", proba=True)
    np.testing.assert_allclose(out["group"]["log_likelihood"][:], model.score_samples(X))
    np.testing.assert_allclose(out["group"]["proba"][:], model.predict_proba(X), rtol=1e-12)
    assert model.score(store) == pytest.approx(model.score(X), rel=1e-12)
    # on the cluster the workers write their own chunks; same bytes
    remote = MixtureModel(**model.get_params())
    remote.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    remote.client = local_cluster
    labels2 = remote.predict(store, out=tmp_path / "labels2.zarr")
    np.testing.assert_array_equal(labels2[:], labels[:])
    with pytest.raises(FileExistsError, match=r"labels\.zarr"):
        model.predict(store, out=tmp_path / "labels.zarr")


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.zarr"):
        MixtureModel(2).fit(str(tmp_path / "nowhere.zarr"))


# ---------------------------------------------------------------------- bad data, no partial output
def nan_store(path, row=2503):
    """A store of N rows whose row ``row`` holds a NaN (in chunk row // 500)."""
    path = write_synthetic_zarr(path, N, D, K, chunk_rows=500, seed=3)
    zarr.open_group(path, mode="a")["X"][row, 1] = np.nan
    return path


def corrupted_store(path, chunk=5):
    """A store whose chunk ``chunk`` of X has its bytes overwritten on disk."""
    path = write_synthetic_zarr(path, N, D, K, chunk_rows=500, seed=3)
    chunk_file = Path(path) / "X" / "c" / str(chunk) / "0"
    size = chunk_file.stat().st_size
    chunk_file.write_bytes(
        np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    )
    return path


def written_files(directory) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file())


def assert_only_complete_checkpoint(directory) -> int:
    """``directory`` holds one checkpoint, complete (it reads back), and nothing else (no
    temporary or partial file); returns the laps it holds."""
    files = written_files(directory)
    assert files == [checkpoint_path(directory)], files
    meta, _ = read_model_file(files[0])
    return int(meta["result"]["n_iter"])


@pytest.fixture(params=["in-process", "local-cluster"])
def engine_client(request):
    return None if request.param == "in-process" else request.getfixturevalue("local_cluster")


BAD_FIT = dict(n_components=K, algorithm="vb", batch_size=1000, max_laps=20, tol=0.0)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            nan_store,
            ValueError,
            r"nan\.zarr/X.* batch 2 \(rows 2000:3000\) holds NaN.*first rows: \[2503\]",
        ),
        (
            corrupted_store,
            StoreReadError,
            r"corrupted\.zarr/X.* batch 2 \(rows 2000:3000\).*cannot read or decode",
        ),
    ],
    ids=["nan-chunk", "corrupted-chunk"],
)
def test_bad_chunk_stops_the_fit_with_store_batch_rows_and_writes_nothing(
    tmp_path, engine_client, make, error, message
):
    path = make(tmp_path / f"{make.__name__.split('_')[0]}.zarr")
    ckpt = tmp_path / "checkpoints"
    est = MixtureModel(**BAD_FIT, random_state=0, checkpoint_dir=ckpt, client=engine_client)
    with pytest.raises(error, match=message):
        est.fit(path)
    assert written_files(tmp_path / "checkpoints") == []  # no checkpoint, no temporary file
    assert not hasattr(est, "model_")


def test_store_resized_between_laps_stops_the_fit_and_keeps_only_complete_laps(
    tmp_path, engine_client
):
    """A second writer grows the array while the fit runs (after lap 1's checkpoint): the next
    batch read fails naming the store and both shapes; the checkpoint on disk is the complete
    one of an earlier lap, and a fit started again on the changed store refuses it."""
    path = write_synthetic_zarr(tmp_path / "grow.zarr", N, D, K, chunk_rows=500, seed=3)
    ckpt = tmp_path / "checkpoints"
    resized = []

    def grow_after_lap_1(event) -> None:
        # runs in the coordinator as each batch of the fit finishes
        if not resized and checkpoint_path(ckpt).exists():
            zarr.open_group(path, mode="a")["X"].resize((N + 500, D))
            resized.append(event.batch)

    est = MixtureModel(**BAD_FIT, random_state=0, checkpoint_dir=ckpt, client=engine_client)
    message = (
        rf"grow\.zarr/X.*changed since its batches were planned.*\({N}, {D}\).*\({N + 500}, {D}\)"
    )
    with batch_listener(grow_after_lap_1), pytest.raises(ValueError, match=message):
        est.fit(path)
    assert resized, "the store was never resized: the fit did not reach lap 2"
    laps = assert_only_complete_checkpoint(ckpt)
    assert 1 <= laps < BAD_FIT["max_laps"]
    with pytest.raises(CheckpointMismatch, match="n_rows"):
        MixtureModel(**BAD_FIT, random_state=0, checkpoint_dir=ckpt).fit(path)
    assert assert_only_complete_checkpoint(ckpt) == laps  # the refused resume changed nothing
