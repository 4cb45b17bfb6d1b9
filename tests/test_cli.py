"""The `mixstream` command line, run as a user runs it: `python -m mixstream.cli ...` in a child
process (the package need not be installed; the checkout is put on PYTHONPATH)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import zarr
from conftest import TrackedRun, subprocess_env

from mixstream import MixtureModel
from mixstream.data.synthetic import make_mixture, write_synthetic_zarr

CLI = [sys.executable, "-m", "mixstream.cli"]
COMMANDS = ("fit", "predict", "score", "ingest", "report", "demo", "bench")


def _start(args: list[str], cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *args],
        env=subprocess_env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _cli(*args: str, cwd=None, timeout: float = 300) -> tuple[int, str, str]:
    return _finish(_start(list(args), cwd), timeout)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cli") / "points.zarr"
    return write_synthetic_zarr(path, 3000, 2, 3, chunk_rows=500, seed=2)


def test_help_of_every_command_exits_0():
    procs = {cmd: _start([cmd, "--help"]) for cmd in COMMANDS}
    procs["(top)"] = _start(["--help"])
    for name, proc in procs.items():
        code, out, err = _finish(proc)
        assert code == 0, f"{name}: {err}"
        assert out.startswith("usage: mixstream"), name
        assert "example" in out, f"{name} --help has no examples"
        assert "Traceback" not in err
    code, out, _ = _cli("--help")
    assert all(cmd in out for cmd in COMMANDS)


def test_bad_arguments_give_one_line_and_a_non_zero_status(store, tmp_path):
    out = str(tmp_path / "never")
    cases = {
        "unknown algorithm": ["fit", store, "--out", out, "--algorithm", "nope"],
        "missing store": ["fit", str(tmp_path / "missing.zarr"), "--out", out],
        "negative max laps": ["fit", store, "--out", out, "--max-laps", "-1"],
        "unknown move": ["fit", store, "--out", out, "--moves", "birth,split"],
        "moves without movb": ["fit", store, "--out", out, "--algorithm", "vb", "--moves", "birth"],
        "bad tol": ["fit", store, "--out", out, "--tol", "-3"],
        "bad scheduler": ["fit", store, "--out", out, "--scheduler", "localhost:8786"],
        "no --out": ["fit", store],
        "missing model": ["score", str(tmp_path / "missing.msz"), store, "--out", out],
        "unknown command": ["frobnicate"],
        "unknown benchmark": ["bench", "nope"],
        "missing ingest source": ["ingest", str(tmp_path / "missing.npy"), out],
    }
    procs = {name: _start(args) for name, args in cases.items()}
    for name, proc in procs.items():
        code, stdout, stderr = _finish(proc)
        lines = stderr.strip().splitlines()
        assert code == 2, f"{name}: status {code}, stderr {stderr!r}"
        assert len(lines) == 1, f"{name}: {stderr!r}"
        assert lines[0].startswith("mixstream: error"), f"{name}: {stderr!r}"
        assert "Traceback" not in stderr + stdout, name
    assert not (tmp_path / "never").exists()  # nothing was started or written


def test_ingest_fit_without_prefect_report_predict(tmp_path):
    X, _, _ = make_mixture(3000, 2, 3, seed=5)
    np.save(tmp_path / "points.npy", X)
    store = str(tmp_path / "points.zarr")
    code, out, err = _cli("ingest", str(tmp_path / "points.npy"), store, "--chunk-rows", "500")
    assert code == 0, err
    assert "(3000, 2)" in out

    run = tmp_path / "run"
    code, out, err = _cli("fit", store, "--out", str(run), "--no-prefect", "--max-laps", "10")
    assert code == 0, err
    assert re.search(r"^lap +1/10 ", err, re.M), err  # a progress line per lap
    assert f"model            {run / 'model.msz'}" in out
    for name in ("model.msz", "report.html", "run.json", "figures/elbo.png"):
        assert (run / name).exists(), name
    assert not (run / "checkpoints" / "checkpoint.msz").exists()
    est = MixtureModel.load(run / "model.msz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixtureModel(
            n_components=1,
            algorithm="movb",
            moves=("birth", "merge", "delete"),
            max_laps=10,
            tol=1e-4,
            random_state=0,
        ).fit(store)
    assert est.n_components_ == ref.n_components_
    np.testing.assert_allclose(est.means_, ref.means_, atol=1e-10, rtol=0)
    np.testing.assert_allclose(est.weights_, ref.weights_, atol=1e-10, rtol=0)

    (run / "report.html").unlink()
    code, out, err = _cli("report", str(run))
    assert code == 0, err
    assert "<img" in (run / "report.html").read_text()

    labels = tmp_path / "labels.zarr"
    code, out, err = _cli("predict", str(run / "model.msz"), store, "--out", str(labels))
    assert code == 0, err
    np.testing.assert_array_equal(
        zarr.open_group(str(labels), mode="r")["labels"][:], est.predict(X)
    )
    code, out, err = _cli("predict", str(run), store, "--out", str(labels))
    assert code == 2 and err.startswith("mixstream: error") and "exists" in err
    assert len(err.strip().splitlines()) == 1


def test_bench_lists_and_runs_a_benchmark():
    code, out, err = _cli("bench")
    assert code == 0, err
    assert "core" in out and "core_vs_sklearn.py" in out
    code, out, err = _cli("bench", "core", "--n", "2000", "--d", "2", "--k", "2", "--iters", "1")
    assert code == 0, err
    assert "speed-up" in out


def test_demo_end_to_end_leaves_nothing_running(tmp_path):
    out = tmp_path / "demo"
    env = subprocess_env(PREFECT_API_URL=None, PREFECT_HOME=str(tmp_path / "prefect-home"))
    run = TrackedRun([*CLI, "demo", "--out", str(out), "--rows", "20000"], env).run(timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("report.html", "model.msz", "labels.zarr", "data.zarr", "run.json"):
        assert (out / name).exists(), name
    for path in ("report.html", "model.msz", "labels.zarr"):
        assert str(out / path) in run.stdout
    assert "Dask dashboard" in run.stdout and "Prefect" in run.stdout
    found = int(re.search(r"clusters found +(\d+)", run.stdout)[1])
    ari = float(re.search(r"adjusted Rand index ([0-9.]+)", run.stdout)[1])
    assert found >= 6 and ari > 0.9, run.stdout
    labels = zarr.open_group(str(out / "labels.zarr"), mode="r")
    assert labels["labels"].shape == (20000,)
    assert np.isfinite(labels["log_likelihood"][:]).all()
    assert "Traceback" not in run.stderr
    # what the demo started: a Prefect server (uvicorn) and Dask worker processes; none is left
    started = " | ".join(run.cmdlines.values())
    assert "uvicorn" in started, started
    assert "multiprocessing" in started, started
    assert run.survivors() == []


def test_cli_choices_match_the_estimator():
    from mixstream import cli, estimator
    from mixstream.alloc import ALLOCATIONS
    from mixstream.obs.registry import OBSERVATIONS

    assert set(cli.ALGORITHMS) == set(estimator.ALGORITHMS)
    assert set(cli.COVARIANCE_TYPES) == set(estimator.COVARIANCE_TYPES)
    assert set(cli.MOVES) == set(estimator.MOVES)
    assert set(cli.ALLOCATIONS) == set(ALLOCATIONS)
    assert set(cli.LIKELIHOODS) == set(OBSERVATIONS)
