"""Model selection end to end: the planted K and covariance type are found in memory and on a
Zarr store through a Dask LocalCluster of worker processes, the table and the BIC plot are in
the report, and a failing candidate leaves no output directory behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.selection_data import PLANTED_COV, PLANTED_K, planted, planted_store

from mixstream import MixtureModel, select

GRID = {"n_components": range(4, 9), "covariance_types": ("full", "diag")}


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory):
    out = tmp_path_factory.mktemp("select") / "sel"
    return select(planted(4000), range(1, 9), out=out, dp=True), out


def test_in_memory_finds_the_planted_model(in_memory):
    sel, _ = in_memory
    assert (sel.best["K"], sel.best["covariance_type"]) == (PLANTED_K, PLANTED_COV)
    assert sum(r["best"] for r in sel.table) == 1 and len(sel.table) == 24
    assert sel.dp["K"] == PLANTED_K and f"found K={PLANTED_K}" in sel.summary
    rows = {r["model"]: r for r in sel.table}
    # the planted model also predicts held-out rows better than its neighbours
    held = {k: rows[f"K={k} full"]["heldout_log_likelihood"] for k in (5, 6)}
    assert held[6] > held[5] + 0.05
    assert sel.split["held_out_rows"] == pytest.approx(400, abs=20)


def test_outputs_and_report(in_memory):
    sel, out = in_memory
    assert sorted(p.name for p in out.iterdir()) == [
        "figures", "model.msz", "report.html", "selection.csv", "selection.json",
    ]  # fmt: skip
    assert (out / "figures" / "bic.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "selection.json").read_text())
    assert saved["best"]["model"] == f"K={PLANTED_K} {PLANTED_COV}" and len(saved["table"]) == 24
    report = (out / "report.html").read_text()
    assert '<table id="selection">' in report and 'alt="BIC by model"' in report
    assert f"<h1>mixstream select: K={PLANTED_K} {PLANTED_COV}</h1>" in report
    assert sel.summary in report and report.count("<tr") > 24
    model = MixtureModel.load(out / "model.msz")
    assert (model.n_components_, model.covariance_type) == (PLANTED_K, PLANTED_COV)
    assert np.allclose(model.means_, sel.best_estimator.means_)


def test_store_through_dask_workers(tmp_path, client):
    store = planted_store(tmp_path / "planted.zarr", 4000)
    sel = select(store, **GRID, client=client)
    assert (sel.best["K"], sel.best["covariance_type"]) == (PLANTED_K, PLANTED_COV)
    # side by side: a pass over the store per lap serves every candidate still running
    assert sel.passes == max(r["laps"] for r in sel.table) < sum(r["laps"] for r in sel.table)
    # streamed over 8 chunks on the workers = in memory, one after the other (same rows)
    mem = select(planted(4000), **GRID, engine="local")
    for a, b in zip(sel.table, mem.table):
        assert a["bic"] == pytest.approx(b["bic"], rel=1e-6)
        assert a["heldout_log_likelihood"] == pytest.approx(b["heldout_log_likelihood"], rel=1e-6)


def test_a_failing_candidate_leaves_nothing(tmp_path):
    X = planted(1000)
    out = tmp_path / "sel"
    with pytest.raises(ValueError, match="bernoulli data must be 0 or 1"):
        select(X, candidates=[(2, "full"), (2, "full", "bernoulli")], out=out)
    assert list(tmp_path.iterdir()) == []
    # an existing selection survives a failure part-way through the grid of a new one
    select(X, [1, 2], ("diag",), out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def stop_after_two(row, seen=[]):  # noqa: B006 - counts the calls
        seen.append(row)
        if len(seen) == 2:
            raise RuntimeError("candidate failed")

    with pytest.raises(RuntimeError, match="candidate failed"):
        select(X, [1, 2, 3], ("full",), out=out, overwrite=True, on_fit=stop_after_two)
    assert [p.name for p in tmp_path.iterdir()] == ["sel"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_variational_candidates_report_and_choose_by_elbo():
    sel = select(planted(1500), [2, 6], ("full",), algorithm="vb", criterion="elbo")
    elbo = {r["K"]: r["elbo"] for r in sel.table}
    assert None not in elbo.values() and elbo[6] > elbo[2]
    assert sel.best["K"] == 6 and sel.summary.startswith("the ELBO chose K=6 full")


def test_the_chosen_model_is_refitted_on_every_row(in_memory):
    sel, out = in_memory
    best = sel.table.index(sel.best)
    trained, refit = sel.estimators[best], sel.best_estimator
    assert refit is not trained and sel.refit["rows"] == 4000
    # the held-out rows moved the parameters, and EM from the training fit over every row
    # can only raise their log-likelihood (monotone, up to the tolerance's last lap)
    assert not np.allclose(refit.means_, trained.means_, rtol=0, atol=1e-8)
    assert sel.refit["log_likelihood"] >= sel.refit["log_likelihood_before"] - 1e-9
    X = planted(4000)
    assert refit.score(X) == pytest.approx(sel.refit["log_likelihood"], rel=1e-9)
    assert trained.score(X) == pytest.approx(sel.refit["log_likelihood_before"], rel=1e-9)
    saved = json.loads((out / "selection.json").read_text())
    assert saved["refit"]["laps"] == sel.refit["laps"] >= 1
    assert 'id="selection-refit"' in (out / "report.html").read_text()
    # refit=False keeps the training fit, which is what the table judged
    kept = select(X, [PLANTED_K], (PLANTED_COV,), refit=False)
    assert kept.refit is None and kept.best_estimator is kept.estimators[0]
