"""The application layer (mixstream.app) used without Prefect: a fit into a run directory, its
artifacts through a Publisher, scoring into Zarr; and the layering (nothing below app/cli
imports them, and app imports neither Prefect nor the command line)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import ROOT, subprocess_env

from mixstream import MixtureModel, app

OPTIONS = {"max_laps": 6, "batch_size": 1000, "random_state": 0}


@pytest.fixture(scope="module")
def store(synthetic_store) -> str:
    return synthetic_store("app", 4000, 2, 3, chunk_rows=500, seed=7)


class Recorder:
    """A Publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def link(self, key, url, text, description):
        self.calls.append(("link", key, url))

    def table(self, key, rows, description):
        self.calls.append(("table", key, rows))

    def markdown(self, key, text, description):
        self.calls.append(("markdown", key, text))

    def progress(self, key, percent, description):
        self.calls.append(("progress", key, percent))


def test_fit_to_dir_writes_the_run_directory_and_publishes(store, tmp_path):
    recorder = Recorder()
    assert isinstance(recorder, app.Publisher)
    options = app.fit_options(**OPTIONS)
    started = []
    summary = app.fit_to_dir(
        store, tmp_path / "run", options, publisher=recorder, on_start=started.append
    )
    run_dir = tmp_path / "run"
    for name in ("model.msz", "report.html", "run.json", "figures/elbo.png"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "checkpoints" / "checkpoint.msz").exists()
    assert json.loads((run_dir / "run.json").read_text())["laps"] == summary["laps"]
    assert len(started) == 1 and started[0].resumed_from_lap == 0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = MixtureModel(**{**options, "moves": tuple(options["moves"])}).fit(store)
    est = MixtureModel.load(run_dir / "model.msz")
    assert est.n_components_ == ref.n_components_
    np.testing.assert_allclose(est.means_, ref.means_, atol=1e-10, rtol=0)

    keys = {(kind, key) for kind, key, _ in recorder.calls}
    assert {
        ("table", "mixstream-laps"),
        ("table", "mixstream-clusters"),
        ("markdown", "mixstream-report"),
        ("progress", "mixstream-fit-progress"),
    } <= keys
    progress = [v for kind, _, v in recorder.calls if kind == "progress"]
    assert progress[0] == 0.0 and progress[-1] == 100.0 and progress == sorted(progress)
    laps = next(rows for kind, key, rows in recorder.calls if key == "mixstream-laps")
    assert [row["lap"] for row in laps] == list(range(1, summary["laps"] + 1))


def test_score_to_store_and_rewrite_report(store, tmp_path):
    options = app.fit_options(**OPTIONS)
    app.fit_to_dir(store, tmp_path / "run", options)
    result = app.score_to_store(tmp_path / "run", store, tmp_path / "labels.zarr")
    est = MixtureModel.load(tmp_path / "run" / "model.msz")
    X = np.asarray(zarr.open_group(store, mode="r")["X"][:])
    np.testing.assert_array_equal(
        zarr.open_group(str(tmp_path / "labels.zarr"), mode="r")["labels"][:], est.predict(X)
    )
    assert result["n_rows"] == 4000
    with pytest.raises(FileExistsError):
        app.score_to_store(tmp_path / "run", store, tmp_path / "labels.zarr")
    (tmp_path / "run" / "report.html").unlink()
    path, note = app.rewrite_report(tmp_path / "run")
    assert note is None and "<img" in path.read_text()


def test_the_app_layer_runs_without_importing_prefect(store, tmp_path):
    """A whole fit and scoring run through mixstream.app in a fresh interpreter: Prefect, the
    flows and the command line are never imported."""
    code = f"""
import sys
from mixstream import app
app.fit_to_dir({store!r}, {str(tmp_path / "run")!r}, app.fit_options(max_laps=3))
app.score_to_store({str(tmp_path / "run")!r}, {store!r}, {str(tmp_path / "labels.zarr")!r})
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & {{"prefect", "flows"}})
print("loaded:", loaded, "cli" if "mixstream.cli" in sys.modules else "")
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "loaded: []", proc.stdout
    assert (tmp_path / "run" / "model.msz").exists()


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            if node.module == "mixstream":
                names.update(f"mixstream.{a.name}" for a in node.names)
    return names


def test_layering_lower_layers_never_import_app_or_cli():
    package = ROOT / "mixstream"
    for path in package.rglob("*.py"):
        layer = path.relative_to(package).parts[0]
        imported = _imports(path)
        up = {
            n for n in imported if n.split(".")[:2] in (["mixstream", "app"], ["mixstream", "cli"])
        }
        if layer not in ("app", "cli"):
            assert not up, f"{path} imports {up} (a lower layer importing app/cli)"
        if layer == "app":
            bad = {n for n in imported if n.split(".")[0] in ("prefect", "flows")}
            bad |= {n for n in up if n.startswith("mixstream.cli")}
            assert not bad, f"{path} imports {bad}"
