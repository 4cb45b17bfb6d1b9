"""The Prefect API the command's flow runs report to, and running a flow.

``PrefectAPI`` uses PREFECT_API_URL when it is set; otherwise it starts a temporary server with
Prefect's documented command, ``prefect server start``, on 127.0.0.1 and a free port, waits for
its ``/api/health`` to answer, points this process at it, and stops it in ``close``. The runs
stay recorded in PREFECT_HOME's database, which a later ``prefect server start`` shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from mixstream.cli.progress import say

#: the temporary server runs no UI and no scheduling services (the command needs neither; the
#: services that record task runs and events stay on)
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with contextlib.closing(socket.socket()) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


#: the exception line of a Python traceback: "module.Name(Error|Exception): message"
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception): .+")


def explain_server_output(text: str) -> str:
    """What a failed ``prefect server start`` printed, for an error message: the last three
    lines, the traceback's exception line when those do not hold it, and a remedy when the
    database belongs to another Prefect version (alembic cannot find its revision)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    shown = lines[-3:]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if errors and errors[-1] not in shown:
        shown = [errors[-1], *shown]
    out = " / ".join(shown) or "no output"
    if "Can't locate revision" in text:
        home = os.environ.get("PREFECT_HOME", "~/.prefect")
        out += " " if out.endswith((".", "!")) else ". "
        out += (
            f"The database in PREFECT_HOME ({home}) was migrated by another Prefect version "
            "than the installed one: point PREFECT_HOME at a new folder (export "
            "PREFECT_HOME=$(mktemp -d)), or PREFECT_API_URL at a running server, or run "
            "'prefect server database reset -y' (which deletes the runs it records)"
        )
    return out


class TemporaryServer:
    """``prefect server start`` in a child process on 127.0.0.1 and a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}/api"
        self._log = tempfile.TemporaryFile("w+b")  # the server's output, shown if it fails
        env = {**os.environ, **SERVER_ENV}
        env.pop("PREFECT_API_URL", None)
        cmd = [sys.executable, "-m", "prefect", "server", "start"]
        cmd += ["--host", host, "--port", str(self.port)]
        self.process: subprocess.Popen | None = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait(self, timeout: float) -> str:
        """Block until ``/api/health`` answers; the API's URL. RuntimeError if the server
        exits or does not answer within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not _healthy(f"{self.url}/health"):
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"the temporary Prefect server exited: {self._tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the temporary Prefect server did not answer within {timeout:.0f} s "
                    f"(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS): {self._tail()}"
                )
            time.sleep(0.25)
        return self.url

    def _tail(self) -> str:
        self._log.seek(0)
        return explain_server_output(self._log.read().decode(errors="replace"))

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (SIGTERM: uvicorn shuts down cleanly), killing it if it lingers."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


class PrefectAPI:
    """The Prefect API flows report to: PREFECT_API_URL when set, else a temporary local
    server, started on construction (so other set-up overlaps its start) and stopped by
    ``close``."""

    def __init__(self) -> None:
        from prefect.settings import PREFECT_API_URL

        self.url: str | None = PREFECT_API_URL.value() or None
        self.server: TemporaryServer | None = None
        self._settings: Any = None
        if self.url is None:
            say("starting a temporary Prefect server (set PREFECT_API_URL to use your own) ...")
            self.server = TemporaryServer()

    def wait(self) -> str:
        """Block until the API answers; its URL."""
        if self.server is not None and self._settings is None:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 60))
            self.url = self.server.wait(timeout)
            self._settings = temporary_settings(updates={PREFECT_API_URL: self.url})
            self._settings.__enter__()
        return self.url

    @property
    def temporary(self) -> bool:
        return self.server is not None

    def close(self) -> None:
        if self._settings is not None:
            _drain_prefect_workers()  # logs and events still queued go out before it stops
            self._settings.__exit__(None, None, None)
            self._settings = None
        if self.server is not None:
            self.server.stop()

    def describe(self, flow_runs: Sequence[tuple[str, str]]) -> list[str]:
        """Where to see the flow runs (name, id)."""
        from prefect.settings import PREFECT_HOME, PREFECT_UI_URL

        runs = ", ".join(f"{name} ({run_id})" for name, run_id in flow_runs)
        if self.temporary:
            return [
                f"flow runs {runs}",
                f"recorded in {PREFECT_HOME.value()}; the temporary server has stopped: "
                "run `prefect server start` and open http://127.0.0.1:4200/runs to browse them",
            ]
        ui = PREFECT_UI_URL.value()
        lines = [f"flow runs {runs} on {self.url}"]
        if ui:
            lines += [f"{ui}/runs/flow-run/{run_id}" for _, run_id in flow_runs]
        return lines


def _drain_prefect_workers() -> None:
    """Send the log lines and events Prefect still queues; left for interpreter exit, they
    would retry against a stopped server for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    try:
        APILogHandler().flush()  # blocks until the queued logs are sent
        EventsWorker.drain_all(timeout=10)
    except Exception as e:  # never fail a finished command on its way out
        say(f"mixstream: warning: could not flush Prefect's logs: {e}")


def run_flow(flow_fn: Any, **params: Any) -> tuple[Any, tuple[str, str]]:
    """Call a flow; its result and (flow name, flow run id). Raises the flow's exception."""
    state = flow_fn(**params, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    result = state.result()  # raises the flow's exception when it failed
    return result, (flow_fn.name, run_id)


__all__ = ["PrefectAPI", "TemporaryServer", "free_port", "run_flow"]
