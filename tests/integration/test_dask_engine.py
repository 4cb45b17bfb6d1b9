"""DaskExecutor on real LocalClusters of worker processes: bit-identical to LocalExecutor."""

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import psutil
import pytest
import zarr
from conftest import BLAS_ONE, dask_command, free_port, start_local_cluster, stop_processes
from distributed import Client, get_task_stream
from helpers.dask_batches import (
    blas_state,
    reverse_delay_probe,
    slow_kmeans_batch,
    weighted_count,
)

from mixstream import MixtureModel
from mixstream.alloc.dp import DPAlloc
from mixstream.data.array_source import ArraySource
from mixstream.data.synthetic import make_mixture, write_synthetic_zarr
from mixstream.data.zarr_source import ZarrSource
from mixstream.engine.dask import DaskExecutor, StoreNotVisibleError
from mixstream.engine.factory import make_executor
from mixstream.engine.local import LocalExecutor
from mixstream.engine.progress import batch_listener
from mixstream.learn.executor import kmeans_batch, summarize_batch
from mixstream.model import Model
from mixstream.suffstats import SUM_FAN_IN

N, D, K = 40_000, 4, 5


@pytest.fixture(scope="module")
def store(synthetic_store):
    return synthetic_store(
        "dask", N, D, K, "data.zarr", chunk_rows=1000, shard_rows=2000, seed=5, dtype="float64"
    )


@pytest.fixture(scope="module")
def centers():
    return np.random.default_rng(1).normal(size=(K, D)) * 5.0


def assert_same_stats(a, b, rtol=0.0):
    assert np.array_equal(a.uids, b.uids) and set(a.fields) == set(b.fields)
    for k in a.fields:
        if rtol:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=0, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a.scalars.keys() == b.scalars.keys()
    for k in a.scalars:
        if rtol:
            assert a.scalars[k] == pytest.approx(b.scalars[k], rel=rtol, abs=0), k
        else:
            assert a.scalars[k] == b.scalars[k], k
    np.testing.assert_array_equal(a.merge_pairs, b.merge_pairs)
    np.testing.assert_allclose(a.merge_Hresp, b.merge_Hresp, rtol=rtol, atol=0)


@pytest.mark.parametrize("batch_size", [4000, 6000, 2000])  # 10, 7 (odd tree) and 20 batches
def test_map_sum_kmeans_is_bit_identical_to_local(client, store, centers, batch_size):
    src = ZarrSource(store, batch_size=batch_size)
    expected = LocalExecutor(src).map_sum(kmeans_batch, centers)
    ex = DaskExecutor(src, client=client)
    assert ex._source_arg is src  # a ZarrSource is small: it travels inside each task
    got = ex.map_sum(kmeans_batch, centers)
    assert_same_stats(got, expected)
    assert got.n_total == N
    # answers in random order (jittered sleeps) do not change a bit either
    assert_same_stats(ex.map_sum(slow_kmeans_batch, centers, delay=0.05, jitter=True), expected)
    # subsets, in the caller's order, and a single batch
    ids = [5, 2, 3]
    local = LocalExecutor(src).map(kmeans_batch, centers, ids)
    for a, b in zip(ex.map(kmeans_batch, centers, ids), local):
        assert_same_stats(a, b)
    assert_same_stats(
        ex.map_sum(kmeans_batch, centers, ids),
        LocalExecutor(src).map_sum(kmeans_batch, centers, ids),
    )
    one = LocalExecutor(src).map(kmeans_batch, centers, [4])[0]
    assert_same_stats(ex.map_sum(kmeans_batch, centers, [4]), one)
    assert ex.map(kmeans_batch, centers, []) == []
    ex.close()
    with pytest.raises(RuntimeError, match="closed"):
        ex.map(kmeans_batch, centers)


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_batch_listener_hears_each_batch_as_it_finishes(client, store, centers, engine, caplog):
    """The executors' per-batch hook (progress bars): one report per batch, in the caller's
    thread for Dask, as the batches finish (not all at the end), and results unchanged."""
    src = ZarrSource(store, batch_size=4000)  # 10 batches
    expected = LocalExecutor(src).map_sum(kmeans_batch, centers)
    ex = LocalExecutor(src) if engine == "local" else DaskExecutor(src, client=client)
    heard, threads = [], set()

    def listen(event) -> None:
        heard.append((time.perf_counter(), event))
        threads.add(threading.get_ident())

    with batch_listener(listen):
        got = ex.map_sum(slow_kmeans_batch, centers, delay=0.05)
        ex.map(kmeans_batch, centers, [7, 2])
    assert_same_stats(got, expected)
    lap = [e for _, e in heard[:10]]
    assert sorted(e.batch for e in lap) == list(range(10))
    assert [e.done for e in lap] == list(range(1, 11))
    assert {(e.total, e.n_batches, e.rows) for e in lap} == {(10, 10, 4000)}
    assert [(e.batch, e.done, e.total) for _, e in heard[10:]] in (
        [(7, 1, 2), (2, 2, 2)],
        [(2, 1, 2), (7, 2, 2)],
    )
    # 10 batches of 0.05 s on 2 threads / workers: reported over the map, not at its end
    assert heard[9][0] - heard[0][0] > 0.1
    if engine == "dask":
        assert threads == {threading.get_ident()}
    # outside the context nothing is reported; a failing listener never stops a map
    ex.map_sum(kmeans_batch, centers)
    assert len(heard) == 12
    with caplog.at_level(logging.WARNING), batch_listener(lambda event: 1 / 0):
        assert_same_stats(ex.map_sum(kmeans_batch, centers), expected)
    assert "listener failed" in caplog.text
    ex.close()


def test_results_come_back_in_batch_order_not_answer_order(client, tmp_path):
    n = 8000
    data = np.column_stack([np.arange(n, dtype=np.float64), np.ones(n)])
    path = str(tmp_path / "rows.zarr")
    zarr.create_array(path, shape=data.shape, chunks=(500, 2), dtype="f8")[:] = data
    src = ZarrSource(path, batch_size=1000)
    with DaskExecutor(src, client=client) as ex:
        out = ex.map(reverse_delay_probe, None, n_rows=n, delay=0.4)
    firsts, finished, pids = zip(*out)
    assert list(firsts) == [float(s) for s, _ in src.batches]
    assert list(finished) != sorted(finished)  # later batches answered first
    worker_pids = set(client.run(os.getpid).values())
    assert set(pids) <= worker_pids and os.getpid() not in pids


def _model(obs, X, labels, k):
    model = Model(DPAlloc(), obs)
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(k)
    resp = np.eye(k)[labels]
    model.global_step(model.summarize(X, {"resp": resp, "log_norm": np.zeros(X.shape[0])}))
    return model


def _obs(kind):
    if kind == "zero_mean_gauss":
        from mixstream.obs.zero_mean_gauss import ZeroMeanGaussObs

        return ZeroMeanGaussObs(), "gauss"
    if kind == "bernoulli":
        from mixstream.obs.bernoulli import BernoulliObs

        return BernoulliObs(), "bernoulli"
    gauss = pytest.importorskip(
        "mixstream.obs.gauss", reason="mixstream/obs/gauss.py not written yet"
    )
    return gauss.GaussObs(covariance_type="diag"), "gauss"


@pytest.mark.parametrize("kind", ["zero_mean_gauss", "bernoulli", "gauss_diag"])
def test_summarize_batch_on_the_cluster_matches_in_process(client, tmp_path, kind):
    obs, likelihood = _obs(kind)
    n, d, k = 12_000, 3, 4
    X, z, _ = make_mixture(n, d, k, likelihood=likelihood, seed=2)
    path = write_synthetic_zarr(
        tmp_path / "s.zarr",
        n,
        d,
        k,
        chunk_rows=1000,
        seed=2,
        likelihood=likelihood,
        dtype="float64",
    )
    model = _model(obs, X, z, k)
    src = ZarrSource(path, batch_size=3000)
    pairs = [(int(model.uids[0]), int(model.uids[1]))]
    expected = LocalExecutor(src).map_sum(summarize_batch, model, merge_pairs=pairs)
    with DaskExecutor(src, client=client) as ex:
        got = ex.map_sum(summarize_batch, model, merge_pairs=pairs)
    assert_same_stats(got, expected, rtol=1e-10)
    assert got.merge_pairs.shape == (1, 2)


def test_weights_and_in_memory_sources(client, store, tmp_path):
    w = np.random.default_rng(0).uniform(0.5, 2.0, N)
    g = zarr.open_group(store, mode="a")
    if "w" not in g:
        g.create_array("w", shape=(N,), chunks=(3000,), dtype="f8")[:] = w
    src = ZarrSource(store, batch_size=6000, weights="w")
    with DaskExecutor(src, client=client) as ex:
        got = ex.map_sum(weighted_count, None)
    assert_same_stats(got, LocalExecutor(src).map_sum(weighted_count, None))
    assert got.N[0] == pytest.approx(w.sum(), rel=1e-12)

    X = zarr.open_group(store, mode="r")["X"][:]
    mem = ArraySource(X, batch_size=5000)  # too big to travel in every task: scattered once
    with DaskExecutor(mem, client=client) as ex:
        assert ex._source_arg is not mem and type(ex._source_arg).__name__ == "Future"
        got = ex.map_sum(kmeans_batch, np.eye(K, D))
    assert_same_stats(got, LocalExecutor(mem).map_sum(kmeans_batch, np.eye(K, D)))


def test_bad_rows_raise_from_the_worker_with_store_batch_and_rows(client, tmp_path):
    X = np.ones((4000, 2))
    X[2503, 1] = np.nan
    path = str(tmp_path / "nan.zarr")
    zarr.create_array(path, shape=X.shape, chunks=(1000, 2), dtype="f8")[:] = X
    with DaskExecutor(ZarrSource(path, batch_size=1000), client=client, retries=0) as ex:
        with pytest.raises(ValueError, match=r"nan\.zarr.*batch 2 .*\[2503\]"):
            ex.map_sum(kmeans_batch, np.zeros((1, 2)))


def _can_hide_a_directory() -> str | None:
    """None when this machine lets a process mount a tmpfs in a private mount namespace
    (root, util-linux unshare), else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"unshare --mount fails: {probe.stderr.strip()}"


@pytest.fixture(scope="module")
def hidden_store_cluster(tmp_path_factory):
    """A store the coordinator sees, and a `dask scheduler` + `dask worker` (2 worker
    processes) on 127.0.0.1 that do not: the workers run in a private mount namespace with an
    empty tmpfs mounted over the store's parent directory, as on a node where the data's file
    system is not mounted. Yields (address, store path)."""
    why = _can_hide_a_directory()
    if why is not None:
        pytest.skip(why)
    parent = tmp_path_factory.mktemp("node-local")
    path = write_synthetic_zarr(parent / "hidden.zarr", 4000, D, K, chunk_rows=1000, seed=1)
    dask_cmd = dask_command()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **BLAS_ONE}
    quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scheduler = [dask_cmd, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    worker = [dask_cmd, "worker", address, "--nworkers", "2", "--nthreads", "1"]
    hide = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    hide += ['mount -t tmpfs mixstream-test "$0" && exec "$@"', str(parent)]
    procs = [subprocess.Popen([*scheduler, "--dashboard-address", ":0", "--no-show"], **quiet)]
    try:
        procs.append(
            subprocess.Popen([*hide, *worker, "--no-dashboard", "--memory-limit", "0"], **quiet)
        )
        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
            # the premise: the store is there for the coordinator, not for the workers
            assert os.path.isdir(path)
            assert list(c.run(os.path.exists, path).values()) == [False, False]
            assert list(c.run(os.path.isdir, str(parent)).values()) == [True, True]
        yield address, path
    finally:
        stop_processes(procs)


def test_workers_that_cannot_see_the_store_give_a_clear_error(hidden_store_cluster, centers):
    address, path = hidden_store_cluster
    src = ZarrSource(path, batch_size=1000)
    assert src.read(0).shape == (1000, D)  # the coordinator reads it
    with pytest.raises(StoreNotVisibleError, match=r"2 of 2 Dask worker.*hidden\.zarr.*does not"):
        DaskExecutor(src, client=address)
    # without the up-front check, the first task that opens the store fails just as clearly
    ex = DaskExecutor(src, client=address, check_store=False, retries=0)
    with pytest.raises(StoreNotVisibleError, match=r"could not open the data at .*hidden\.zarr"):
        ex.map_sum(kmeans_batch, centers)
    ex.close()


def test_fit_and_cli_on_workers_that_cannot_see_the_store(hidden_store_cluster, tmp_path):
    """The same at the fit level: MixtureModel.fit and `mixstream fit --scheduler` stop before
    the first lap with an error naming the store, and write nothing."""
    address, path = hidden_store_cluster
    ckpt = tmp_path / "checkpoints"
    est = MixtureModel(K, algorithm="vb", max_laps=3, client=address, checkpoint_dir=ckpt)
    with pytest.raises(StoreNotVisibleError, match=r"worker.*cannot open the data at .*hidden"):
        est.fit(path)
    assert not ckpt.exists() or not any(ckpt.rglob("*"))

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mixstream.cli", "fit", path, "--out", str(out)]
    cmd += ["--no-prefect", "--scheduler", address, "--max-laps", "3"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("mixstream: error: ") and "Traceback" not in run.stderr
    assert re.search(r"2 of 2 Dask worker.*cannot open the data at .*hidden\.zarr", last), last
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def many_batches(tmp_path_factory):
    """160 batches of 200 rows: enough that 2 workers get them SUM_FAN_IN to a task."""
    path = tmp_path_factory.mktemp("many") / "many.zarr"
    write_synthetic_zarr(path, 32_000, D, K, chunk_rows=200, shard_rows=200, seed=3)
    return ZarrSource(path, batch_size=200)


def _batch_task_keys(stream, name):
    return sorted(r["key"] for r in stream.data if f"mixstream-{name}-" in r["key"])


def test_many_batches_run_several_to_a_task_with_the_same_bits(client, many_batches, centers):
    src = many_batches
    n = len(src.batches)
    ex = DaskExecutor(src, client=client)
    assert ex._group_size(n) == SUM_FAN_IN  # 20 tasks: 10 per worker thread
    assert ex._group_size(100) == 1  # 12 tasks would leave a thread idle at the end
    expected = LocalExecutor(src).map_sum(kmeans_batch, centers)
    with get_task_stream(client=client) as ts:
        got = ex.map_sum(kmeans_batch, centers)
    assert len(_batch_task_keys(ts, "kmeans-batch")) == n // SUM_FAN_IN
    assert_same_stats(got, expected)
    ungrouped = DaskExecutor(src, client=client, group_batches=False)
    with get_task_stream(client=client) as ts:
        assert_same_stats(ungrouped.map_sum(kmeans_batch, centers), expected)
    assert len(_batch_task_keys(ts, "kmeans-batch")) == n
    # a VB model's statistics too (entropy, log normaliser), through summarize_batch
    X = np.concatenate([src.read(i) for i in range(n)])
    from mixstream.obs.gauss import GaussObs

    model = Model(DPAlloc(1.0), GaussObs("diag"))
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(K)
    model.global_step(model.summarize(X, {"resp": np.eye(K)[np.arange(X.shape[0]) % K]}))
    assert_same_stats(
        ex.map_sum(summarize_batch, model), LocalExecutor(src).map_sum(summarize_batch, model)
    )
    # map: one result per batch, in the caller's (shuffled) order
    ids = [int(i) for i in np.random.default_rng(0).permutation(n)]
    local = LocalExecutor(src).map(kmeans_batch, centers, ids)
    grouped = ex.map(kmeans_batch, centers, ids)
    assert len(grouped) == n
    for a, b in zip(grouped, local):
        assert_same_stats(a, b)
    # progress: every batch reported once, as its task finishes
    heard = []
    with batch_listener(heard.append):
        ex.map_sum(kmeans_batch, centers)
    assert sorted(e.batch for e in heard) == list(range(n))
    assert [e.done for e in heard] == list(range(1, n + 1))
    ex.close()
    ungrouped.close()


@pytest.mark.parametrize(
    ("grouped", "delay", "kill_after"),
    # 20 batch tasks of 0.2 s, or 20 tasks of 8 batches of 0.02 s: ~2 s on 2 workers
    [(False, 0.2, 0.7), (True, 0.02, 0.6)],
    ids=["a-task-per-batch", "8-batches-per-task"],
)
def test_worker_killed_mid_map_gives_the_same_result(
    request, client, store, centers, grouped, delay, kill_after
):
    src = request.getfixturevalue("many_batches") if grouped else ZarrSource(store, batch_size=2000)
    expected = LocalExecutor(src).map_sum(kmeans_batch, centers)
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[0]]
    ex = DaskExecutor(src, client=client)
    assert ex._group_size(len(src.batches)) == (SUM_FAN_IN if grouped else 1)
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(ex.map_sum, slow_kmeans_batch, centers, None, delay=delay)
        time.sleep(kill_after)
        assert not fut.done()
        os.kill(victim, signal.SIGKILL)
        got = fut.result(timeout=120)
    assert_same_stats(got, expected)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the worker
    assert victim not in client.run(os.getpid).values()
    assert_same_stats(ex.map_sum(kmeans_batch, centers), expected)
    ex.close()


def test_address_string_connects_and_closes_only_its_client(cluster, client, store, centers):
    src = ZarrSource(store, batch_size=8000)
    before = client.run(os.getpid)
    ex = DaskExecutor(src, client=cluster.scheduler_address)
    assert ex.client is not client and ex.cluster is None
    assert_same_stats(
        ex.map_sum(kmeans_batch, centers), LocalExecutor(src).map_sum(kmeans_batch, centers)
    )
    assert all(s["max_threads"] == 1 for s in ex.client.run(blas_state).values())
    ex.close()
    assert client.run(os.getpid) == before  # the cluster is still there
    with pytest.raises(ValueError, match="engine='local'"):
        make_executor(src, client=client, engine="local")
    assert isinstance(make_executor(np.ones((10, 2))), LocalExecutor)
    ex = make_executor(store, client=client, batch_size=8000)
    assert isinstance(ex, DaskExecutor) and ex.cluster is None
    ex.close()
    assert client.run(os.getpid) == before


def _read_first_batch(src):
    return src.read(0).shape[0]


def _alive(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _worker_saturation(dask_scheduler=None):
    return dask_scheduler.WORKER_SATURATION


def test_own_local_cluster_starts_logs_and_leaves_nothing_running(store, centers, caplog):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    src = ZarrSource(store, batch_size=8000)
    with caplog.at_level(logging.INFO, logger="mixstream.engine.dask"):
        # a Zarr store over the (lowered) size threshold starts a LocalCluster under "auto"
        ex = make_executor(
            src,
            engine="auto",
            threshold_bytes=src.nbytes - 1,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=":0",
        )
    assert isinstance(ex, DaskExecutor) and ex.cluster is not None
    assert ex.dashboard_link.startswith("http") and ex.dashboard_link in caplog.text
    worker_pids = set(ex.client.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    for state in ex.client.run(blas_state).values():
        assert state["max_threads"] == 1 and state["env"]["OPENBLAS_NUM_THREADS"] == "1"
    # batch tasks go to the workers up front on a cluster of our own (no root-task queuing)
    saturation = ex.client.run_on_scheduler(_worker_saturation)
    assert saturation == float("inf")
    assert dask.config.get("distributed.scheduler.worker-saturation") != saturation
    assert_same_stats(
        ex.map_sum(kmeans_batch, centers), LocalExecutor(src).map_sum(kmeans_batch, centers)
    )
    ex.close()
    ex.close()  # idempotent
    new = {p.pid for p in me.children(recursive=True)} - before
    deadline = time.time() + 20
    while time.time() < deadline and _alive(worker_pids | new):
        time.sleep(0.2)
    leftover = [
        pid
        for pid in _alive(new)
        if "resource_tracker" not in " ".join(psutil.Process(pid).cmdline())
    ]
    assert _alive(worker_pids) == [] and leftover == []


def test_worker_setup_reaches_workers_that_restart(store):
    """BLAS cap, mixstream's own thread count, zarr's decode pool and the malloc thresholds are
    set by a worker plugin: a worker the nanny restarts gets them too, not only those alive at
    the start."""
    src = ZarrSource(store, batch_size=8000)
    with (
        start_local_cluster() as cl,
        Client(cl) as c,
        DaskExecutor(src, client=c, blas_threads=1),
    ):
        states = c.run(blas_state)
        for s in states.values():
            assert s["mixstream_threads"] == 1 and s["malloc_tuned"] and s["zarr_threads"] == 1
        victim = sorted(states)[0]
        c.restart_workers([victim])
        c.wait_for_workers(2, timeout=60)
        c.run(_read_first_batch, src)  # every worker reads: zarr makes its decode pool
        for s in c.run(blas_state).values():
            assert s["mixstream_threads"] == 1 and s["malloc_tuned"] and s["max_threads"] == 1
            assert s["zarr_threads"] == 1 and s["zarr_pool"] == 1
