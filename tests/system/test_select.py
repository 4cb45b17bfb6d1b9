"""``mixstream select`` in a child process and ``select_flow`` on the Prefect test server, on
a Zarr store of the planted data: both choose the planted model and write the same files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import subprocess_env
from helpers.selection_data import PLANTED_COV, PLANTED_K, planted_store

CHOICE = f"K={PLANTED_K} {PLANTED_COV}"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return planted_store(tmp_path_factory.mktemp("select") / "planted.zarr", 3000)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixstream.cli", *args],
        env=subprocess_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_select(store, tmp_path):
    out = tmp_path / "sel"
    proc = _cli("select", store, "--out", str(out), "--k", "4-7", "--covariance-types", "full,diag")
    assert proc.returncode == 0, proc.stderr
    assert f"chosen           BIC chose {CHOICE}" in proc.stdout
    assert "refit            on all " in proc.stdout
    assert proc.stdout.count("\n") >= 9 and "fitted K=7 diag" in proc.stderr
    saved = json.loads((out / "selection.json").read_text())
    assert saved["best"]["model"] == CHOICE and saved["refit"]["rows"] == saved["split"]["n_rows"]
    # a second run into the same --out is refused in one line; bad K values too
    for args in (["--k", "2-3"], ["--k", "0-3", "--overwrite"], ["--covariance-types", "ful"]):
        bad = _cli("select", store, "--out", str(out), *args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert bad.stderr.startswith("mixstream: error")


@pytest.mark.usefixtures("prefect_harness")
def test_select_flow(store, tmp_path):
    from flows.select import select_flow

    out = tmp_path / "sel"
    summary = select_flow(
        store, str(out), n_components=[5, 6, 7], covariance_types=["full", "diag"],
        n_workers=1, refit=False,
    )  # fmt: skip
    assert summary["best"]["model"] == CHOICE and summary["summary"].startswith("BIC chose")
    assert (out / "model.msz").exists() and (out / "figures" / "bic.png").exists()
    assert '<table id="selection">' in (out / "report.html").read_text()
    assert json.loads((out / "selection.json").read_text())["refit"] is None is summary["refit"]
