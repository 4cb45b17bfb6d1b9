"""Checkpoints: atomic, resumable, refused when they belong to another fit."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from mixstream import MixtureModel
from mixstream.data.sources import open_source
from mixstream.engine.checkpoint import CheckpointMismatch, checkpoint_path
from mixstream.engine.local import LocalExecutor
from mixstream.io import ModelFileError


def data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(4, 3))
    return means[rng.integers(4, size=n)] + rng.normal(size=(n, 3))


OPTIONS = dict(n_components=4, algorithm="vb", tol=0.0, max_laps=8, batch_size=500, random_state=3)


def test_interrupted_fit_resumes_to_the_same_result(tmp_path):
    X = data()
    full = MixtureModel(**OPTIONS).fit(X)
    est = MixtureModel(**OPTIONS, checkpoint_dir=tmp_path)
    run = est.start_fit(LocalExecutor(open_source(X, 500)))
    for _ in range(3):
        run.step()
    del run  # the coordinator "dies" after lap 3
    assert checkpoint_path(tmp_path).exists()
    again = MixtureModel(**OPTIONS, checkpoint_dir=tmp_path)
    run = again.start_fit(LocalExecutor(open_source(X, 500)))
    assert run.resumed_from_lap == 3
    resumed = again.fit(X)
    np.testing.assert_array_equal(resumed.means_, full.means_)
    np.testing.assert_array_equal(resumed.weights_, full.weights_)
    assert [h["elbo"] for h in resumed.history_] == [h["elbo"] for h in full.history_]


def test_checkpoint_of_another_fit_is_refused(tmp_path):
    X = data()
    MixtureModel(**{**OPTIONS, "max_laps": 2}, checkpoint_dir=tmp_path).fit(X)
    with pytest.raises(CheckpointMismatch, match="n_components"):
        MixtureModel(**{**OPTIONS, "n_components": 5}, checkpoint_dir=tmp_path).fit(X)
    with pytest.raises(CheckpointMismatch, match="n_rows"):
        MixtureModel(**OPTIONS, checkpoint_dir=tmp_path).fit(X[:2000])


def test_half_written_checkpoint_is_never_read(tmp_path):
    X = data()
    est = MixtureModel(**{**OPTIONS, "max_laps": 2}, checkpoint_dir=tmp_path).fit(X)
    # a writer killed mid-write leaves only its temporary file, which is ignored
    (tmp_path / ".checkpoint.msz.abc123.partial").write_bytes(b"PK\x03\x04 truncated")
    again = MixtureModel(**{**OPTIONS, "max_laps": 2}, checkpoint_dir=tmp_path).fit(X)
    np.testing.assert_array_equal(again.means_, est.means_)
    # a damaged checkpoint (not produced by us) is refused with its path in the message
    checkpoint_path(tmp_path).write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match=r"checkpoint\.msz"):
        MixtureModel(**OPTIONS, checkpoint_dir=tmp_path).fit(X)


SOVB_OPTIONS = dict(
    n_components=4, algorithm="sovb", tol=0.0, max_laps=6, batch_size=300, random_state=3
)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_interrupted_sovb_fit_resumes_its_step_size_schedule(tmp_path):
    X = data()  # 10 batches of 300 rows: 10 stochastic steps per lap
    full = MixtureModel(**SOVB_OPTIONS).fit(X)
    est = MixtureModel(**SOVB_OPTIONS, checkpoint_dir=tmp_path)
    run = est.start_fit(LocalExecutor(open_source(X, 300)))
    for _ in range(2):
        run.step()
    del run  # the coordinator "dies" after lap 2
    again = MixtureModel(**SOVB_OPTIONS, checkpoint_dir=tmp_path)
    run = again.start_fit(LocalExecutor(open_source(X, 300)))
    assert run.resumed_from_lap == 2
    assert run.state.t == 20  # the step counter came back with the checkpoint
    resumed = again.fit(X)
    np.testing.assert_array_equal(resumed.means_, full.means_)
    np.testing.assert_array_equal(resumed.weights_, full.weights_)
    for key in ("elbo", "rho"):
        assert [h[key] for h in resumed.history_] == [h[key] for h in full.history_]
    rho = [h["rho"] for h in resumed.history_]
    assert np.all(np.diff(rho) < 0), rho


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mixstream import MixtureModel
    rng = np.random.default_rng(0)
    means = rng.normal(scale=6.0, size=(4, 3))
    X = means[rng.integers(4, size=3000)] + rng.normal(size=(3000, 3))
    slow = sys.argv[2] == "slow"
    est = MixtureModel(n_components=4, algorithm="movb", moves=("merge",), tol=0.0, max_laps=8,
                       batch_size=500, random_state=3, checkpoint_dir=sys.argv[1])
    from mixstream.engine.local import LocalExecutor
    from mixstream.data.sources import open_source
    run = est.start_fit(LocalExecutor(open_source(X, 500)),
                        on_lap=lambda r: time.sleep(0.5 if slow else 0))
    run.run()
    model, result = run.finish()
    np.save(sys.argv[1] + "/means.npy", model.obs.point_estimates()["means"])
    """
)


ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_coordinator_killed_mid_fit_resumes(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ref.mkdir()
    cut.mkdir()
    subprocess.run([sys.executable, script, ref, "fast"], check=True, timeout=300, env=ENV)
    proc = subprocess.Popen([sys.executable, script, cut, "slow"], env=ENV)
    deadline = time.time() + 120
    while not checkpoint_path(cut).exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.6)  # at least one more lap
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not Path(cut / "means.npy").exists()  # it really died before finishing
    subprocess.run([sys.executable, script, cut, "fast"], check=True, timeout=300, env=ENV)
    np.testing.assert_array_equal(np.load(cut / "means.npy"), np.load(ref / "means.npy"))


# ---------------------------------------------------------------------- the real command, killed
CLI_LAPS = 10


def _mixstream_command() -> list[str]:
    """The installed console script of this venv (the package's own entry point), else the
    module."""
    import shutil

    script = shutil.which("mixstream", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "mixstream.cli"]


def _lap_numbers(text: str) -> list[int]:
    import re

    return [int(n) for n in re.findall(r"^lap +(\d+)/\d+ ", text, re.M)]


@pytest.mark.slow
def test_cli_fit_on_a_local_cluster_killed_mid_fit_resumes_from_its_last_lap(tmp_path):
    """`mixstream fit STORE --out DIR` on a Zarr store with a Dask LocalCluster, SIGKILLed after
    its second checkpointed lap, then run again: it resumes from the last complete lap, ends
    with the parameters of an uninterrupted fit, and leaves no Dask process running."""
    import json
    import re
    import warnings

    import psutil
    from conftest import TrackedRun, subprocess_env

    from mixstream import app as pipeline
    from mixstream.data.synthetic import write_synthetic_zarr
    from mixstream.io import read_model_file

    store = write_synthetic_zarr(tmp_path / "points.zarr", 6000, 2, 3, chunk_rows=1000, seed=4)
    out = tmp_path / "run"
    cmd = [
        *_mixstream_command(),
        "fit",
        store,
        "--out",
        str(out),
        "--no-prefect",
        "--workers",
        "2",
        "--batch-size",
        "1000",
        "--max-laps",
        str(CLI_LAPS),
        "--tol",
        "0",
        "--seed",
        "1",
        "--progress",
    ]
    env = subprocess_env()
    err_file = tmp_path / "killed.stderr"
    with open(err_file, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    parent = psutil.Process(proc.pid)
    started: dict[int, psutil.Process] = {}
    cmdlines: dict[int, str] = {}

    def record_children() -> None:
        try:
            for child in parent.children(recursive=True):
                if child.pid not in started:
                    started[child.pid] = child
                    cmdlines[child.pid] = " ".join(_cmdline(child))
        except psutil.Error:
            pass

    deadline = time.monotonic() + 180
    try:
        # a lap's line is printed after its checkpoint is on disk
        while not [n for n in _lap_numbers(err_file.read_text()) if n >= 2]:
            assert proc.poll() is None, f"the fit ended early: {err_file.read_text()[-2000:]}"
            assert time.monotonic() < deadline, err_file.read_text()[-2000:]
            record_children()
            time.sleep(0.02)
        record_children()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    printed = _lap_numbers(err_file.read_text())
    workers = [pid for pid, line in cmdlines.items() if "spawn_main" in line]
    assert len(workers) >= 2, cmdlines  # the worker processes of a real LocalCluster
    # the killed coordinator's LocalCluster goes with it: no worker (or nanny) outlives it
    assert _still_running(started.values()) == []

    assert not (out / "model.msz").exists()  # it died before finishing
    meta, _ = read_model_file(checkpoint_path(out / "checkpoints"))
    last = int(meta["result"]["n_iter"])
    assert max(printed) <= last < CLI_LAPS, (printed, last)
    assert [h["lap"] for h in meta["result"]["history"]] == list(range(1, last + 1))

    again = TrackedRun(cmd, env).run(timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from the checkpoint after lap {last}" in again.stderr
    assert f"resumed          from the checkpoint after lap {last}" in again.stdout
    # the rerun ran only the laps after the checkpoint, and the workers' batches of each
    # (--progress: per-batch lines from the Dask executor)
    assert _lap_numbers(again.stderr) == list(range(last + 1, CLI_LAPS + 1)), again.stderr
    done = re.findall(r"^lap (\d+)  batches 6/6 \(100%\)$", again.stderr, re.M)
    assert [int(n) for n in done] == list(range(last + 1, CLI_LAPS + 1)), again.stderr
    assert json.loads((out / "run.json").read_text())["resumed_from_lap"] == last
    assert not checkpoint_path(out / "checkpoints").exists()  # a finished fit drops it
    assert again.survivors() == []

    options = pipeline.fit_options(max_laps=CLI_LAPS, tol=0.0, batch_size=1000, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged: tol=0 runs every lap
        uninterrupted = MixtureModel(**options).fit(store)
    resumed = MixtureModel.load(out / "model.msz")
    assert [h["lap"] for h in resumed.history_] == list(range(1, CLI_LAPS + 1))
    assert resumed.n_components_ == uninterrupted.n_components_
    for name in ("means_", "weights_", "covariances_", "lower_bounds_"):
        np.testing.assert_allclose(
            getattr(resumed, name), getattr(uninterrupted, name), rtol=1e-10, err_msg=name
        )


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _still_running(procs, grace: float = 30.0) -> list[str]:
    """Those of ``procs`` still running (zombies count as gone) after ``grace`` seconds; they
    are killed before returning."""
    import psutil

    deadline = time.monotonic() + grace
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.2)
    names = []
    for p in alive:
        names.append(f"{p.pid} {' '.join(_cmdline(p))[:200]}")
        try:
            p.kill()
        except psutil.Error:
            pass
    return names


def _running(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.parametrize("n_init", [1, 3])
def test_each_restart_initialises_once(monkeypatch, n_init):
    """The last restart's end starts no further restart (it read a sample and built a model
    no one used, inside the final lap where ``done`` is still False)."""
    import mixstream.fit_run as fit_run

    calls = []
    real = fit_run.initialize
    monkeypatch.setattr(fit_run, "initialize", lambda *a, **k: calls.append(1) or real(*a, **k))
    X = np.random.default_rng(0).normal(size=(300, 3))
    MixtureModel(2, algorithm="em", n_init=n_init, max_laps=5, random_state=0).fit(X)
    assert len(calls) == n_init
