"""Run directories (issue 21, items 1, 2 and 5): a finished run is never overwritten without
``overwrite``; with it the old run is moved aside and removed before the new fit starts, so
model, report, figures, labels and run.json always belong to one fit (its ``fit_id``);
run.json records the data's absolute path; report, score and ingest run without Prefect."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from conftest import subprocess_env

from mixstream import MixtureModel, app
from mixstream.cli import main
from mixstream.data.synthetic import write_synthetic_zarr
from mixstream.io import read_model_file

OPTIONS = {"max_laps": 3, "batch_size": 1000, "random_state": 0, "algorithm": "vb"}
CLI = [sys.executable, "-m", "mixstream.cli"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("rundirs") / "points.zarr"
    return write_synthetic_zarr(path, 2000, 2, 3, chunk_rows=500, seed=3)


def _fit(store, out, overwrite=False, **options):
    return app.fit_to_dir(
        store, out, app.fit_options(**{**OPTIONS, **options}), overwrite=overwrite
    )


def _fit_ids(out: Path) -> dict[str, str | None]:
    """The fit_id each artifact of a run directory carries."""
    meta, _ = read_model_file(out / "model.msz")
    ids = {
        "run.json": json.loads((out / "run.json").read_text())["fit_id"],
        "model": meta.get("fit_id"),
        "report": None,
    }
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                      (out / "report.html").read_text())  # fmt: skip
    ids["report"] = found.group(0) if found else None
    if (out / "labels.zarr").exists():
        ids["labels"] = zarr.open_group(str(out / "labels.zarr"), mode="r").attrs.get("fit_id")
    return ids


def test_a_finished_run_is_refused_then_replaced_whole_with_overwrite(store, tmp_path):
    out = tmp_path / "run"
    _fit(store, out)
    app.score_to_store(out, store, out / "labels.zarr")
    first = _fit_ids(out)
    assert len(set(first.values())) == 1 and first["run.json"], first
    model_bytes = (out / "model.msz").read_bytes()
    # refused: nothing touched, the message names the directory and what to do
    with pytest.raises(FileExistsError, match=r"overwrite=True.*another out") as info:
        _fit(store, out, n_components=2)
    assert str(out) in str(info.value)
    assert (out / "model.msz").read_bytes() == model_bytes
    # with overwrite: the old run (labels included) is gone, the new one is whole
    summary = _fit(store, out, overwrite=True, n_components=2)
    assert not (out / "labels.zarr").exists()  # the old labels were of the old model
    second = _fit_ids(out)
    assert len(set(second.values())) == 1 and second["run.json"] != first["run.json"]
    assert summary["fit_id"] == second["run.json"]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["options"]["n_components"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.replaced")]
    # score records the fit_id of the model it used
    result = app.score_to_store(out, store, out / "labels.zarr")
    assert result["fit_id"] == second["run.json"] == _fit_ids(out)["labels"]


def test_an_unfinished_run_is_resumed_without_overwrite(store, tmp_path):
    """A checkpoint and no finished run: the fit resumes (no overwrite needed); a fit that
    stopped leaves only its checkpoint, and the resumed run's files share one fit_id."""
    from mixstream.engine.progress import lap_listener

    out = tmp_path / "run"

    def stop_after_lap_2(record, max_laps):
        if record["lap"] == 2:
            raise KeyboardInterrupt

    with lap_listener(stop_after_lap_2), pytest.raises(KeyboardInterrupt):
        _fit(store, out, max_laps=4, tol=0.0)
    assert app.run_state(out) == "unfinished"
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["checkpoint.msz"]
    # overwrite replaces finished runs only: an interrupted one is resumed all the same
    summary = _fit(store, out, overwrite=True, max_laps=4, tol=0.0)
    assert summary["resumed_from_lap"] == 2
    assert app.run_state(out) == "finished"
    assert set(_fit_ids(out).values()) == {summary["fit_id"]}


def test_move_aside_is_one_rename(tmp_path, monkeypatch):
    """The old run leaves ``out`` in one rename: a removal that fails half-way leaves nothing
    of it under ``out``."""
    out = tmp_path / "run"
    (out / "figures").mkdir(parents=True)
    (out / "model.msz").write_text("old")
    monkeypatch.setattr(app.rundir.shutil, "rmtree", lambda *a, **k: None)
    app.move_aside(out)
    assert not out.exists()
    assert [p.name.startswith(".run.replaced-") for p in tmp_path.iterdir()] == [True]


def test_run_json_records_the_data_path_absolute_and_report_finds_it(store, tmp_path):
    """A fit given a relative path; `mixstream report` from another directory still draws the
    data (no "is gone" note)."""
    data_dir = Path(store).parent
    cwd = os.getcwd()
    os.chdir(data_dir)
    try:
        _fit(Path(store).name, tmp_path / "run")
    finally:
        os.chdir(cwd)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["data"] == str(Path(store).resolve())
    assert app.data_location("s3://bucket/x.zarr") == "s3://bucket/x.zarr"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [*CLI, "report", str(tmp_path / "run")], env=subprocess_env(), cwd=elsewhere,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "is gone" not in proc.stderr
    assert "<img" in (tmp_path / "run" / "report.html").read_text()


def test_cli_fit_refuses_a_finished_run_naming_dir_and_flags(store, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", store, "--out", str(out), "--no-prefect", "--max-laps", "2", "--algorithm",
            "vb"]  # fmt: skip
    assert main(args) == 0
    fit_id = json.loads((out / "run.json").read_text())["fit_id"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and "--out" in err
    assert "overwrite=True" not in err
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["fit_id"] != fit_id


def test_fit_flow_refuses_a_finished_run_unless_overwrite(store, tmp_path, monkeypatch):
    """The flow calls the same ``prepare_run_dir`` before it starts anything."""
    pytest.importorskip("prefect")
    import flows.fit as fit_flow_module

    out = tmp_path / "run"
    _fit(store, out)
    calls = []
    real = app.prepare_run_dir

    def spy(*a, **k):
        calls.append(k.get("overwrite", a[3] if len(a) > 3 else False))
        return real(*a, **k)

    monkeypatch.setattr(fit_flow_module.app, "prepare_run_dir", spy)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fit_flow_module.fit_flow.fn(data=store, out=str(out), **OPTIONS)
    assert calls == [False]
    import inspect

    assert inspect.signature(fit_flow_module.fit_flow.fn).parameters["overwrite"].default is False


NO_PREFECT_CHECK = """
import sys
from mixstream.cli import main
status = main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "flows"})
print("imported:", loaded, file=sys.stderr)
sys.exit(status)
"""


def test_report_score_ingest_run_without_prefect_by_default(store, tmp_path):
    """`score` (without --prefect), `report` and `ingest`: no Prefect import, hence no
    temporary Prefect server (PREFECT_API_URL points nowhere: a flow run would fail)."""
    run = tmp_path / "run"
    _fit(store, run)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(100, 2)))
    for args in (
        ["score", str(run), store, "--out", str(tmp_path / "labels.zarr")],
        ["report", str(run)],
        ["ingest", str(tmp_path / "x.npy"), str(tmp_path / "x.zarr")],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", NO_PREFECT_CHECK, *args],
            env=subprocess_env(PREFECT_API_URL="http://127.0.0.1:9/api"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, (args[0], proc.stderr)
        assert "imported: []" in proc.stderr, (args[0], proc.stderr)
    fit_id = json.loads((run / "run.json").read_text())["fit_id"]
    assert zarr.open_group(str(tmp_path / "labels.zarr"), mode="r").attrs["fit_id"] == fit_id
    # asked for, a flow run imports Prefect (the probe can fail)
    proc = subprocess.run(
        [sys.executable, "-c", NO_PREFECT_CHECK, "score", str(run), store, "--out",
         str(tmp_path / "l2.zarr"), "--prefect"],
        env=subprocess_env(PREFECT_API_URL="http://127.0.0.1:9/api"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert re.search(r"imported: \[.*'prefect'", proc.stderr), proc.stderr


def test_loaded_model_keeps_its_fit_id(store, tmp_path):
    _fit(store, tmp_path / "run")
    est = MixtureModel.load(tmp_path / "run" / "model.msz")
    assert est.fit_id_ == json.loads((tmp_path / "run" / "run.json").read_text())["fit_id"]
