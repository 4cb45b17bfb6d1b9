"""bench/peers.py end to end on a small case: every installed library runs in its subprocess
from the shared start, and all of them reach the same log-likelihood (they run the same EM).

scikit-learn and mixstream are always installed; the torch peers (the ``peers`` extra) only
where they are, and that test is skipped without torch.
"""

import importlib.util

import numpy as np
import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "bench" / "peers.py")
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)

ARGS = ["--n", "2000", "--d", "4", "--k", "3", "--cov", "full", "--iters", "1", "--threads", "1"]


def check_same_model(case: dict, libs: list[str]) -> None:
    rows = {r["library"]: r for r in case["rows"]}
    assert sorted(rows) == sorted(libs)
    for lib in libs:
        assert "skipped" not in rows[lib], rows[lib]
        assert rows[lib]["peak_mib"] >= 0.0
        assert np.isfinite(rows[lib]["s_per_iter"])
    ll = np.array([rows[lib]["loglik"] for lib in libs])
    # two EM iterations from one start move the log-likelihood; every library lands on the same
    # value (float64 EM with the same reg_covar; pomegranate has none: 1e-6 of a variance of ~1)
    assert ll.min() > case["start_loglik"]
    np.testing.assert_allclose(ll, ll[0], rtol=0, atol=1e-5)
    assert "speedup_vs_sklearn" in rows["mixstream"]


def test_sklearn_and_mixstream_fit_the_same_model():
    (case,) = peers.main([*ARGS, "--libs", "sklearn", "mixstream"])
    check_same_model(case, ["sklearn", "mixstream"])


def test_torch_peers_fit_the_same_model():
    pytest.importorskip("torch")
    libs = [lib for lib in peers.LIBRARIES if peers.installed(lib)]
    (case,) = peers.main([*ARGS, "--libs", *libs])
    check_same_model(case, libs)


def test_a_missing_library_is_skipped_not_fatal(monkeypatch):
    monkeypatch.setitem(peers.NEEDS, "tgmm", "no_such_module_for_peers")
    (case,) = peers.main([*ARGS, "--libs", "sklearn", "tgmm"])
    rows = {r["library"]: r for r in case["rows"]}
    assert rows["tgmm"] == {"library": "tgmm", "skipped": "not installed"}
    assert "loglik" in rows["sklearn"]


def test_local_step_rate_reports_every_case():
    from mixstream.benchmarks import local_step_rate

    args = ["--n", "3000", "--d", "3", "--k", "3", "--square", "128"]
    rows = local_step_rate.main(args)
    assert [(r["cov"], r["dtype"]) for r in rows] == [
        ("full", "float64"),
        ("full", "float32"),
        ("diag", "float64"),
        ("diag", "float32"),
    ]
    for r in rows:
        assert r["gflops"] > 0 and r["square"] > 0 and r["same_shapes"] > 0
        assert r["phases"] is not None and all(v > 0 for v in r["phases"].values())
