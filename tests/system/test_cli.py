"""The `mixstream` command line, run as a user runs it: `python -m mixstream.cli ...` in a child
process (the package need not be installed; the checkout is put on PYTHONPATH), and the demo
through the installed `mixstream` console script of this virtual environment."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import TrackedRun, own_prefect_env, subprocess_env

from mixstream import MixtureModel
from mixstream.data.synthetic import make_mixture, write_synthetic_zarr
from mixstream.engine.checkpoint import checkpoint_path
from mixstream.io import read_model_file

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
def store(synthetic_store) -> str:
    return synthetic_store("cli", 3000, 2, 3, chunk_rows=500, seed=2)


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
    assert "batches" not in err  # per-batch progress only on a terminal or with --progress
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


# ---------------------------------------------------------------------- bad data, no partial output
def _bad_store(path: Path, kind: str) -> str:
    """A 6000 x 2 store (chunks of 1000 rows) with a NaN at row 2503 or chunk 2's bytes
    overwritten on disk."""
    path = write_synthetic_zarr(path, 6000, 2, 3, chunk_rows=1000, seed=2)
    if kind == "nan":
        zarr.open_group(path, mode="a")["X"][2503, 1] = np.nan
    else:
        chunk = Path(path) / "X" / "c" / "2" / "0"
        chunk.write_bytes(bytes(reversed(chunk.read_bytes())))
    return path


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.exists() else []


def _error_line(stderr: str) -> str:
    """The one error line a failed command ends with (and no traceback)."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    assert [ln for ln in lines if ln.startswith("mixstream: error")] == lines[-1:], stderr
    return lines[-1]


def test_fit_on_bad_chunks_names_store_batch_rows_and_writes_nothing(tmp_path):
    cases = {
        "nan": r"nan\.zarr/X.* batch 2 \(rows 2000:3000\) holds NaN.*first rows: \[2503\]",
        "corrupted": r"corrupted\.zarr/X.* batch 2 \(rows 2000:3000\).*cannot read or decode",
    }
    procs = {}
    for kind in cases:
        store = _bad_store(tmp_path / f"{kind}.zarr", kind)
        out = str(tmp_path / kind)
        procs[kind] = _start(["fit", store, "--out", out, "--no-prefect", "--batch-size", "1000"])
    for kind, proc in procs.items():
        code, _, err = _finish(proc)
        assert code == 2, err
        assert re.search(cases[kind], _error_line(err)), err
        assert _files(tmp_path / kind) == []  # no model, report, run.json or checkpoint


def test_fit_on_a_store_resized_between_laps_stops_and_keeps_only_complete_laps(tmp_path):
    """A second process (this test) grows the store after lap 1 of `mixstream fit` on a
    LocalCluster: the fit stops with one line naming the store and both shapes, leaves the
    checkpoint of its last complete lap and nothing else; run again, it refuses to resume a
    checkpoint of the store as it was."""
    store = write_synthetic_zarr(tmp_path / "grow.zarr", 6000, 2, 3, chunk_rows=1000, seed=2)
    out = tmp_path / "run"
    fit = ["fit", store, "--out", str(out), "--no-prefect", "--batch-size", "1000"]
    fit += ["--max-laps", "30", "--tol", "0"]
    err_file = tmp_path / "fit.stderr"
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [*CLI, *fit, "--workers", "2"],
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while not re.search(r"^lap +1/30 ", err_file.read_text(), re.M):
            assert proc.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, err_file.read_text()
            time.sleep(0.02)
        zarr.open_group(store, mode="a")["X"].resize((6500, 2))
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err_file.read_text()
    assert proc.returncode == 2, stderr
    message = r"grow\.zarr/X.*changed since its batches were planned.*\(6000, 2\).*\(6500, 2\)"
    assert re.search(message, _error_line(stderr)), stderr
    laps = [int(n) for n in re.findall(r"^lap +(\d+)/30 ", stderr, re.M)]
    assert laps and laps[-1] < 30
    ckpt = checkpoint_path(out / "checkpoints")
    assert _files(out) == [ckpt]  # no model, report, figures, run.json, nor a partial file
    meta, _ = read_model_file(ckpt)  # complete: it reads back
    assert meta["result"]["n_iter"] == laps[-1]

    code, _, err = _cli(*fit)
    assert code == 2
    assert re.search(r"belongs to a different fit \(differs in: .*n_rows", _error_line(err)), err
    assert _files(out) == [ckpt]


# ---------------------------------------------------------------------- per-batch progress
# no moves: a birth lap also reports the visits that gather its target's rows from up to four
# batches, so a lap's lines would no longer be exactly one per batch
PROGRESS_FIT = [
    "--batch-size", "1000", "--max-laps", "2", "--tol", "0", "--no-prefect", "--moves", "none"
]  # fmt: skip


class _OnATerminal:
    """``cmd`` started with its stderr on a pseudo-terminal of 120 columns; ``finish`` gives
    (status, stdout, what the terminal received)."""

    def __init__(self, cmd: list[str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            cmd,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        self.received: list[bytes] = []
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not chunk:
                return
            self.received.append(chunk)

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.reader.join(timeout=10)
            os.close(self.master)
        terminal = b"".join(self.received).decode(errors="replace")
        return self.proc.returncode, out.decode(), terminal


def test_fit_shows_per_batch_progress_on_a_terminal_or_with_progress(store, tmp_path):
    """Per-batch progress, driven by the executor as each batch finishes: with --progress and
    stderr not a terminal, a line per tenth of the batches between the lap lines; on a
    terminal without being asked, a status line rewritten in place (tqdm's bar when it is
    installed). Without either, none (test_ingest_fit_without_prefect_report_predict)."""
    piped = _start(["fit", store, "--out", str(tmp_path / "piped"), *PROGRESS_FIT, "--progress"])
    tty = _OnATerminal([*CLI, "fit", store, "--out", str(tmp_path / "tty"), *PROGRESS_FIT])

    code, _, err = _finish(piped)
    assert code == 0, err
    lines = err.splitlines()
    for lap in (1, 2):
        batch_lines = [ln for ln in lines if ln.startswith(f"lap {lap}  batches ")]
        assert batch_lines == [f"lap {lap}  batches {b}/3 ({100 * b // 3}%)" for b in (1, 2, 3)]
        # the lap's batches come before its lap line
        lap_line = next(i for i, ln in enumerate(lines) if re.match(rf"lap +{lap}/2 ", ln))
        assert lines.index(batch_lines[-1]) < lap_line

    code, out, terminal = tty.finish()
    assert code == 0, terminal
    assert "model.msz" in out and "batches" not in out  # stdout keeps the summary only
    for lap in (1, 2):
        assert re.search(rf"lap {lap}(  batches 3/3 \(100%\)|:.*\| *3/3)", terminal), terminal
    assert "\r" in terminal and "Traceback" not in terminal


def test_bench_lists_and_runs_a_benchmark():
    code, out, err = _cli("bench")
    assert code == 0, err
    assert "core" in out and "core_vs_sklearn.py" in out
    code, out, err = _cli("bench", "core", "--n", "2000", "--d", "2", "--k", "2", "--iters", "1")
    assert code == 0, err
    assert "speed-up" in out


def _console_script() -> str:
    """The `mixstream` entry point that `pip install -e .[test]` put beside this Python."""
    script = shutil.which("mixstream", path=str(Path(sys.executable).parent))
    assert script, f"no mixstream console script in {Path(sys.executable).parent}: pip install -e ."
    return script


def test_demo_end_to_end_leaves_nothing_running(tmp_path):
    out = tmp_path / "demo"
    # the installed command, from a directory outside the checkout, with no PYTHONPATH: what a
    # user who ran the README's set-up runs
    env = own_prefect_env(tmp_path / "prefect-home", PYTHONPATH=None)
    cmd = [_console_script(), "demo", "--out", str(out), "--rows", "20000"]
    run = TrackedRun(cmd, env, cwd=tmp_path).run(timeout=240)
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
    assert "prefect server start" in started, started  # the temporary Prefect server
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


# ---------------------------------------------------------------------- the cli package
NO_PREFECT_CHECK = """
import sys
from mixstream.cli import main
status = main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "flows"})
print("imported:", loaded, file=sys.stderr)
sys.exit(status)
"""


def test_no_prefect_commands_never_import_prefect(store, tmp_path):
    """`mixstream fit --no-prefect` (and predict, report, ingest) in a fresh interpreter: the
    command line's own `main`, then a look at sys.modules; neither Prefect nor the flows."""
    run = tmp_path / "run"
    fit = ["fit", store, "--out", str(run), "--no-prefect", "--max-laps", "3"]
    X = np.random.default_rng(1).normal(size=(200, 2))
    np.save(tmp_path / "x.npy", X)
    commands = [
        fit,
        ["predict", str(run), store, "--out", str(tmp_path / "labels.zarr")],
        ["score", str(run), store, "--out", str(tmp_path / "l2.zarr"), "--no-prefect"],
        ["report", str(run)],
        ["ingest", str(tmp_path / "x.npy"), str(tmp_path / "x.zarr")],
        ["bench"],
    ]
    for args in commands:
        proc = subprocess.run(
            [sys.executable, "-c", NO_PREFECT_CHECK, *args],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert "imported: []" in proc.stderr, (args[0], proc.stderr)
    # the check can fail: the same probe around a command that runs a flow sees Prefect
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_PREFECT_CHECK,
            "score",
            str(run),
            store,
            "--out",
            "x",
            "--prefect",
        ],
        env=subprocess_env(PREFECT_API_URL="http://127.0.0.1:9/api"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert re.search(r"imported: \[.*'prefect'", proc.stderr), proc.stderr


def test_verbose_adds_lap_detail_and_tables(store, tmp_path):
    fit = ["fit", store, "--no-prefect", "--max-laps", "3", "--tol", "0"]
    quiet = _start([*fit, "--out", str(tmp_path / "quiet")])
    loud = _start([*fit, "--out", str(tmp_path / "loud"), "--verbose"])
    code, _, err = _finish(quiet)
    assert code == 0, err
    assert not re.search(r"^lap \d+ detail:", err, re.M)
    assert "clusters, heaviest first" not in err
    code, out, err = _finish(loud)
    assert code == 0, err
    details = re.findall(r"^lap (\d) detail: (.*)$", err, re.M)
    assert [int(n) for n, _ in details] == [1, 2, 3], err
    assert "ELBO change" in details[1][1] and "rejected moves:" in details[0][1]
    assert "clusters, heaviest first" in err  # the clusters table, through the Publisher
    assert "model.msz" in out


def test_bench_runs_from_the_package_alone(tmp_path):
    """The benchmarks come with the package: a copy of mixstream/ alone (no checkout, no
    bench/ directory, no pyproject.toml) lists and runs them from another directory."""
    from conftest import ROOT

    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "mixstream", site / "mixstream", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = subprocess_env(PYTHONPATH=str(site))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run(
        [*CLI, "bench"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "core_vs_sklearn.py" in proc.stdout and "checkout only" not in proc.stdout
    args = ["bench", "core", "--n", "2000", "--d", "2", "--k", "2", "--iters", "1"]
    proc = subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "speed-up" in proc.stdout
    assert str(site / "mixstream" / "benchmarks") in subprocess.run(
        [sys.executable, "-c", "import mixstream.benchmarks as b; print(b.__file__)"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
