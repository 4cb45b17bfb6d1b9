"""fit_flow against a real `prefect server start`, from another process, read back through the
Prefect API; the server and everything the flow started are gone afterwards."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from conftest import PREFECT, TrackedRun, free_port, own_prefect_env, subprocess_env

from mixstream.data.synthetic import write_synthetic_zarr

FLOW_SCRIPT = """
import json, sys
from flows.fit import fit_flow

if __name__ == "__main__":
    summary = fit_flow(data=sys.argv[1], out=sys.argv[2], algorithm="vb", n_components=3,
                       max_laps=4, tol=0.0, batch_size=1000, n_workers=1)
    print(json.dumps(summary))
"""


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server start exited with status {server.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"the Prefect server did not answer {url} within {timeout} s")


def _stop(server: subprocess.Popen) -> list[psutil.Process]:
    """Terminate the server (kill if it lingers); its processes, for the final check."""
    procs = [psutil.Process(server.pid)]
    with contextlib.suppress(psutil.Error):
        procs += procs[0].children(recursive=True)
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=30)
    _, alive = psutil.wait_procs(procs[1:], timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return alive


def test_fit_flow_runs_against_a_prefect_server(tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "prefect-home"
    env = subprocess_env(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=None,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
    )
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(f"{api}/health", server, timeout=120)

        store = write_synthetic_zarr(tmp_path / "points.zarr", 4000, 2, 3, chunk_rows=500, seed=0)
        script = tmp_path / "run_fit.py"
        script.write_text(FLOW_SCRIPT)
        out = tmp_path / "run"
        flow_env = subprocess_env(PREFECT_HOME=str(home), PREFECT_API_URL=api)
        run = TrackedRun([sys.executable, str(script), store, str(out)], flow_env).run(240)
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert summary["laps"] == 4 and summary["n_components_"] == 3
        assert (out / "model.msz").exists() and (out / "report.html").exists()
        # the flow's own LocalCluster (worker processes, nanny) was closed with the flow
        assert run.seen, "the flow started no Dask worker processes"
        assert run.survivors() == []

        with (
            temporary_settings(updates={PREFECT_API_URL: api}),
            get_client(sync_client=True) as client,
        ):
            (flow_run,) = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["fit-flow"]))
            )
            assert flow_run.state.is_completed(), flow_run.state
            assert flow_run.parameters["algorithm"] == "vb"
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
            )
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])
                )
            )
        names = sorted(t.name for t in task_runs)
        expected = ["evaluate", "init", "lap-1", "lap-2", "lap-3", "lap-4", "publish", "validate"]
        assert names == expected
        assert all(t.state.is_completed() for t in task_runs)
        keys = {a.key for a in artifacts}
        assert {"mixstream-laps", "mixstream-clusters", "mixstream-report"} <= keys
        laps = next(a for a in artifacts if a.key == "mixstream-laps").data
        laps = json.loads(laps) if isinstance(laps, str) else laps
        assert [row["lap"] for row in laps] == [1, 2, 3, 4]
    finally:
        alive = _stop(server)
    assert server.returncode is not None
    assert alive == [], f"processes of the Prefect server left running: {alive}"
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == "zombie"


def test_temporary_server_is_prefect_server_start_and_stops_cleanly(tmp_path, monkeypatch):
    """mixstream.cli.prefect_server.TemporaryServer: Prefect's documented `prefect server start`
    on 127.0.0.1 and a free port, healthy on /api/health, and gone (with any children) after
    stop()."""
    from mixstream.cli.prefect_server import TemporaryServer

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    server = TemporaryServer()
    proc = psutil.Process(server.process.pid)
    try:
        url = server.wait(timeout=120)
        # read once it answers: right after the fork the command line may not be set yet
        assert "server start" in " ".join(proc.cmdline())
        assert url == f"http://127.0.0.1:{server.port}/api"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        children = proc.children(recursive=True)
    finally:
        server.stop()
    _, alive = psutil.wait_procs([proc, *children], timeout=15)
    assert alive == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_cli_fit_with_prefect_runs_on_a_temporary_server_and_leaves_nothing(tmp_path):
    """`mixstream fit` without --no-prefect and without PREFECT_API_URL: fit_flow runs against
    a temporary `prefect server start`, which is stopped afterwards with the flow's cluster."""
    store = write_synthetic_zarr(tmp_path / "points.zarr", 3000, 2, 3, chunk_rows=500, seed=1)
    env = own_prefect_env(tmp_path / "prefect-home")
    cmd = [sys.executable, "-m", "mixstream.cli", "fit", store, "--out", str(tmp_path / "run")]
    run = TrackedRun([*cmd, "--max-laps", "3", "--workers", "1"], env, cwd=tmp_path).run(300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Prefect          flow runs fit-flow (" in run.stdout
    assert (tmp_path / "run" / "model.msz").exists()
    started = " | ".join(run.cmdlines.values())
    assert "prefect server start --host 127.0.0.1 --port" in started, started
    assert run.survivors() == []


def test_a_database_of_another_prefect_version_is_named_with_a_remedy(tmp_path, monkeypatch):
    """A PREFECT_HOME whose database another Prefect version migrated (its alembic revision is
    unknown here): `prefect server start` exits, and the error gives alembic's message and
    says how to get past it, not only uvicorn's "Application startup failed"."""
    import sqlite3

    from mixstream.cli.prefect_server import TemporaryServer

    home = tmp_path / "prefect-home"
    home.mkdir()
    with contextlib.closing(sqlite3.connect(home / "prefect.db")) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('0123456789ab')")
        db.commit()
    monkeypatch.setenv("PREFECT_HOME", str(home))
    server = TemporaryServer()
    try:
        with pytest.raises(RuntimeError) as err:
            server.wait(timeout=120)
    finally:
        server.stop()
    message = str(err.value)
    assert "the temporary Prefect server exited" in message
    assert "Can't locate revision identified by '0123456789ab'" in message
    assert f"PREFECT_HOME ({home})" in message and "mktemp -d" in message
