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


ROOT = Path(__file__).resolve().parents[1]
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
