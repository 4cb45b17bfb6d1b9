"""Shared test set-up: Prefect settings for small offline machines, scipy's array API support
(for scikit-learn's array-API checks), one Prefect test server, and what tests/unit,
tests/integration and tests/system share (child-process helpers, free ports, the `dask` and
`prefect` commands, Dask LocalClusters, synthetic Zarr stores in temporary directories).

The environment defaults are set before anything imports Prefect: with no PREFECT_API_URL a
flow run starts a temporary server, which needs 11-22 s on 2 cores (Prefect's own limit is
20 s) and must not try to send analytics without internet.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# scikit-learn's array-API estimator checks (check_array_api_input) need scipy's array API
# support, which scipy reads once, when it is first imported: switch it on before anything
# imports scipy (tests/integration/test_sklearn_contract.py checks that it took effect)
os.environ["SCIPY_ARRAY_API"] = "1"

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `flows` is a top-level package of the checkout
    sys.path.insert(0, str(ROOT))
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:  # tests/helpers, importable as `helpers`
    sys.path.insert(0, str(TESTS))
# child processes (CLI runs, `dask worker`, Prefect servers) import the checkout too, installed
# or not, and Dask workers the test helpers their tasks were pickled from (helpers.*)
_paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
_missing = [str(p) for p in (ROOT, TESTS) if str(p) not in _paths]
if _missing:
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (*_missing, *_paths) if p)


#: ``python -m prefect``: the Prefect command line of this interpreter
PREFECT = [sys.executable, "-m", "prefect"]
#: one BLAS thread: the environment of the Dask processes the tests start
BLAS_ONE = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a scheduler or a server)."""
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_command() -> str | None:
    """The `dask` command of this virtual environment (else the first on PATH)."""
    return shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")


@contextlib.contextmanager
def start_local_cluster(**options: Any):
    """A Dask LocalCluster of 2 worker processes with 1 thread each and no fixed dashboard port;
    ``options`` change or add LocalCluster arguments."""
    from distributed import LocalCluster

    kw = dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    with LocalCluster(**{**kw, **options}) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory):
    """Writes a planted-mixture Zarr store in a new temporary directory and returns its path:
    ``synthetic_store(name, n_rows, n_features, n_components, filename="points.zarr", **kw)``
    (``kw`` as for ``write_synthetic_zarr``). A module's store fixture calls it once, so each
    module keeps its own store, as before."""
    from mixstream.data.synthetic import write_synthetic_zarr

    def make(
        name: str,
        n_rows: int,
        n_features: int,
        n_components: int,
        filename: str = "points.zarr",
        **kw: Any,
    ) -> str:
        path = tmp_path_factory.mktemp(name) / filename
        return write_synthetic_zarr(path, n_rows, n_features, n_components, **kw)

    return make


def subprocess_env(**extra: str | None) -> dict[str, str]:
    """The environment for a child Python: the checkout first on PYTHONPATH (the package need
    not be installed), the Prefect defaults above, and ``extra`` (None removes a variable)."""
    env = dict(os.environ)  # PYTHONPATH already starts with the checkout (above)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def own_prefect_env(home: Any, **extra: str | None) -> dict[str, str]:
    """``subprocess_env`` for a child that must start its own temporary Prefect server: no
    PREFECT_API_URL, and a PREFECT_HOME of its own (``home``)."""
    return subprocess_env(PREFECT_API_URL=None, PREFECT_HOME=str(home), **extra)


class TrackedRun:
    """A child process run to the end while its descendants are recorded (psutil), so that a
    test can check that it left none of them running."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Any = None) -> None:
        self.cmd, self.env, self.cwd = cmd, env, cwd
        self.seen: dict[int, Any] = {}
        self.cmdlines: dict[int, str] = {}
        self.returncode: int | None = None
        self.stdout = self.stderr = ""

    def run(self, timeout: float) -> TrackedRun:
        import psutil

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(
                self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=err, text=True
            )
            parent = psutil.Process(proc.pid)
            deadline = time.monotonic() + timeout
            try:
                while proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise subprocess.TimeoutExpired(self.cmd, timeout)
                    with contextlib.suppress(psutil.Error):
                        for child in parent.children(recursive=True):
                            if child.pid not in self.seen:
                                self.seen[child.pid] = child
                                with contextlib.suppress(psutil.Error):
                                    self.cmdlines[child.pid] = " ".join(child.cmdline())
                    time.sleep(0.1)
            finally:
                if proc.poll() is None:
                    for child in self.seen.values():
                        with contextlib.suppress(psutil.Error):
                            child.kill()
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
            out.seek(0)
            err.seek(0)
            self.stdout, self.stderr = out.read(), err.read()
        return self

    def survivors(self, grace: float = 15.0) -> list[str]:
        """Descendants still running after ``grace`` seconds (killed, then listed)."""
        import psutil

        alive = [p for p in self.seen.values() if p.is_running()]
        _, alive = psutil.wait_procs(alive, timeout=grace)
        names = []
        for p in alive:
            with contextlib.suppress(psutil.Error):
                names.append(f"{p.pid} {' '.join(p.cmdline())[:200]}")
                p.kill()
        return names


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite in a temp dir) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=None):
        yield


def check_move_rule(e: dict, birth_mode: str = "lap") -> None:
    """One moVB move_log entry against its acceptance rule.

    Lap-mode births are judged by their "birth_check" entry (kept only when the state with
    them beats the state without by more than ``min_gain``); batch-mode births are inserted
    only on such a rise, so their own entry carries the rule.
    """
    from mixstream.learn.moves.base import min_gain

    move, before, after = e["move"], e.get("elbo_before"), e.get("elbo_after")
    if move in ("merge", "delete") and not e.get("empty"):
        assert after - before > min_gain(before), e
    elif move == "delete":  # removing a component with no mass may leave the ELBO as it was
        assert after >= before, e
    elif move in ("reorder", "birth_revert"):
        assert after > before, e
    elif move == "birth" and birth_mode == "batch":
        assert after - before > min_gain(before), e
    elif move == "birth_check":
        gain = e["elbo_with"] - e["elbo_without"]
        assert e["kept"] == (gain > min_gain(e["elbo_with"])), e
    elif move == "birth_undo":  # the folded state was not worse by more than min_gain
        assert after >= before - min_gain(before), e


def stop_processes(procs: list) -> None:
    """Terminate processes started by a test (last started first), killing any that linger."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


# ---------------------------------------------------------------------- synthetic data
#: every move of moVB
ALL_MOVES = ("birth", "merge", "delete")
#: every covariance structure of the Gaussian observation model
COVS = ["full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical"]


def planted_blobs(n, d, k, seed=0, scale=5.0, offset=0.0):
    """k blobs with identity covariance, means ~ N(offset, scale^2 I): (X, labels). The draws
    come in one order (means, labels, noise), so a seed gives the same data in every test."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=scale, size=(k, d)) + offset
    labels = rng.integers(k, size=n)
    return means[labels] + rng.normal(size=(n, d)), labels


def planted_gauss(n, d=16, k=10, seed=0, sep=3.0, cov="full"):
    """k clusters, means ~ N(0, sep^2 I) (about 17 sd apart in 16-D), covariances near I
    (full: I + small random factors; diag: random per-feature scales; spherical: one scale)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.normal(scale=sep, size=(k, d))
    if cov == "full":
        A = np.eye(d) + rng.normal(scale=0.15, size=(k, d, d))
    elif cov == "diag":
        A = np.eye(d) * rng.uniform(0.5, 1.5, size=(k, 1, d))
    else:
        A = np.eye(d) * rng.uniform(0.5, 1.5, size=(k, 1, 1))
    labels = rng.integers(k, size=n)
    X = means[labels] + np.einsum("nd,nde->ne", rng.normal(size=(n, d)), A[labels])
    return X, labels


@functools.cache
def discovery_data():
    """The 100,000 x 16, 10-cluster data of the discovery tests (seed 0), made once (read-only,
    so no test can change it for the next)."""
    X, labels = planted_gauss(100_000, seed=0)
    X.setflags(write=False)
    labels.setflags(write=False)
    return X, labels


def with_holes(X: Any, frac: float, seed: int = 1) -> Any:
    """X (n, D) with a fraction ``frac`` of its entries NaN, missing completely at random;
    every row keeps at least one value (the missing-value tests)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    Xm = X.copy()
    mask = rng.random(X.shape) < frac
    mask[mask.all(axis=1), 0] = False
    Xm[mask] = np.nan
    return Xm
