"""The run report: real matplotlib rendering, the projection math, atomic writes."""

from __future__ import annotations

import base64
import gc
import io
import json
import math
import os
import re
import weakref
from html.parser import HTMLParser

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Ellipse

from mixstream import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COV_TYPES = ("full", "diag", "spherical", "tied", "tied_diag", "tied_spherical")


# ---------------------------------------------------------------------- fixtures
def _history(n_laps: int = 7) -> list[dict]:
    out = []
    for lap in range(1, n_laps + 1):
        out.append(
            {
                "lap": lap,
                "elbo": -4.0 + 1.0 - 1.0 / lap,
                "K": min(lap, 3),
                "seconds": 0.01 * lap,
                "moves_tried": {"birth": 2, "merge": 1, "delete": 1},
                "moves_accepted": {"birth": int(lap in (2, 3)), "merge": 0, "delete": 0},
            }
        )
    return out


def _gaussians(D: int, n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(3, D))
    labels = rng.integers(3, size=n)
    scales = rng.uniform(0.5, 2.0, size=(3, D))
    return centers[labels] + rng.normal(size=(n, D)) * scales[labels], labels


def _params(X: np.ndarray, labels: np.ndarray, cov_type: str) -> tuple[np.ndarray, ...]:
    """Weights, means and covariances in scikit-learn's shape for cov_type."""
    K, D = 3, X.shape[1]
    weights = np.bincount(labels, minlength=K) / labels.size
    means = np.array([X[labels == k].mean(0) for k in range(K)])
    full = np.array([np.cov(X[labels == k].T).reshape(D, D) for k in range(K)])
    tied = np.einsum("k,kij->ij", weights, full)
    cov = {
        "full": full,
        "diag": np.array([np.diag(c) for c in full]),
        "spherical": np.array([np.trace(c) / D for c in full]),
        "tied": tied,
        "tied_diag": np.diag(tied).copy(),
        "tied_spherical": np.array(np.trace(tied) / D),
    }[cov_type]
    return weights, means, cov


def _dense(cov: np.ndarray, cov_type: str, K: int, D: int) -> np.ndarray:
    """(K, D, D) matrices built entry by entry, independent of report.py."""
    out = np.zeros((K, D, D))
    for k in range(K):
        for d in range(D):
            for e in range(D):
                if cov_type == "full":
                    out[k, d, e] = cov[k, d, e]
                elif cov_type == "tied":
                    out[k, d, e] = cov[d, e]
                elif d == e and cov_type == "diag":
                    out[k, d, e] = cov[k, d]
                elif d == e and cov_type == "spherical":
                    out[k, d, e] = cov[k]
                elif d == e and cov_type == "tied_diag":
                    out[k, d, e] = cov[d]
                elif d == e and cov_type == "tied_spherical":
                    out[k, d, e] = float(cov)
    return out


class _Tables(HTMLParser):
    """Cell texts of every <table id=...>, by id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self._id = dict(attrs).get("id")
            self.tables[self._id] = []
        elif tag == "tr" and self._id is not None:
            self.tables[self._id].append([])
        elif tag in ("td", "th") and self._id is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._id][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _parse_tables(text: str) -> dict[str, list[dict[str, str]]]:
    p = _Tables()
    p.feed(text)
    return {k: [dict(zip(rows[0], r)) for r in rows[1:]] for k, rows in p.tables.items()}


def _pngs(text: str) -> list[bytes]:
    return [
        base64.b64decode(m, validate=True)
        for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    ]


@pytest.fixture(autouse=True)
def _no_pyplot_leak():
    plt.close("all")
    yield
    assert plt.get_fignums() == [], "a test left pyplot figures open"


# ---------------------------------------------------------------------- the report
@pytest.mark.parametrize("D", [2, 5])
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_write_report_renders_tables_and_pngs(tmp_path, cov_type, D):
    X, labels = _gaussians(D)
    weights, means, cov = _params(X, labels, cov_type)
    history = _history()
    counts = weights * X.shape[0]
    path = report.write_report(
        tmp_path / "run" / "report.html",
        history,
        weights,
        means,
        cov,
        cov_type,
        X_sample=X,
        labels=labels,
        title="synthetic <fit>",
        extra={"data": "s3://bucket/x.zarr", "algorithm": "movb"},
        counts=counts,
    )
    assert path == tmp_path / "run" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "synthetic &lt;fit&gt;" in text and "s3://bucket/x.zarr" in text

    pngs = _pngs(text)
    assert len(pngs) == 4  # ELBO, K, weights, projection
    for png in pngs:
        assert png.startswith(PNG_SIGNATURE)
        img = mpimg.imread(io.BytesIO(png), format="png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100

    tables = _parse_tables(text)
    laps = tables["laps"]
    assert [int(r["lap"]) for r in laps] == [h["lap"] for h in history]
    for row, h in zip(laps, history):
        assert math.isclose(float(row["elbo"]), h["elbo"], rel_tol=1e-7)
        assert int(row["K"]) == h["K"]
        assert math.isclose(float(row["seconds"]), h["seconds"], rel_tol=1e-7)
        assert row["moves_tried"] == "birth 2, delete 1, merge 1"
        assert row["moves_accepted"] == ("birth 1" if h["lap"] in (2, 3) else "")
    clusters = tables["clusters"]
    order = np.argsort(-weights, kind="stable")
    assert [int(r["component"]) for r in clusters] == order.tolist()
    for row, k in zip(clusters, order):
        assert math.isclose(float(row["weight"]), weights[k], rel_tol=1e-7)
        assert math.isclose(float(row["expected_size"]), counts[k], rel_tol=1e-7)
        first = [float(v) for v in row["mean"].strip("[]").split(",")[:2]]
        np.testing.assert_allclose(first, means[k, :2], rtol=1e-3)
        assert ("D=5" in row["mean"]) == (D == 5)


def test_report_without_data_sample_has_three_figures(tmp_path):
    path = report.write_report(tmp_path / "r.html", _history(3), [0.7, 0.3])
    text = path.read_text()
    assert len(_pngs(text)) == 3
    assert "mean" not in _parse_tables(text)["clusters"][0]


def test_covariance_type_is_inferred_or_refused_when_ambiguous(tmp_path):
    X, labels = _gaussians(5)
    weights, means, cov = _params(X, labels, "diag")
    report.write_report(tmp_path / "a.html", _history(), weights, means, cov, None, X, labels)
    X2, labels2 = _gaussians(3)  # K == D == 3: (K, D) diag and (D, D) tied look alike
    w2, m2, c2 = _params(X2, labels2, "diag")
    with pytest.raises(ValueError, match="pass covariance_type"):
        report.write_report(tmp_path / "b.html", _history(), w2, m2, c2, None, X2, labels2)
    assert not (tmp_path / "b.html").exists()


# ---------------------------------------------------------------------- projection math
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_projected_covariances_match_direct_computation(cov_type):
    X, labels = _gaussians(5, seed=1)
    _, means, cov = _params(X, labels, cov_type)
    _, basis, _ = report.pca_basis(X)
    got = report.project_covariances(cov, cov_type, basis, 3)
    dense = _dense(cov, cov_type, 3, 5)
    for k in range(3):
        direct = np.array(
            [[basis[:, i] @ dense[k] @ basis[:, j] for j in range(2)] for i in range(2)]
        )
        np.testing.assert_allclose(got[k], direct, rtol=1e-12, atol=1e-12)
        # and what the projection means: the covariance of projected draws
        draws = np.random.default_rng(k).multivariate_normal(means[k], dense[k], 200_000)
        np.testing.assert_allclose(np.cov((draws @ basis).T), got[k], rtol=0.03, atol=0.02)


def test_pca_basis_is_orthonormal_and_finds_the_leading_axes():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2]) + 10.0
    center, basis, explained = report.pca_basis(X)
    np.testing.assert_allclose(center, X.mean(0))
    np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(np.abs(basis[:2]), np.eye(2), atol=0.02)
    assert (basis[np.abs(basis).argmax(0), [0, 1]] > 0).all()  # deterministic signs
    assert explained[0] > explained[1] > 0 and explained.sum() < 1


def test_ellipse_of_known_axis_aligned_covariance():
    # +-s_d e_d for each axis d: centred, with exactly diagonal covariance, so the PCA plane
    # is exactly (e1, e2)
    scales = np.array([5.0, 3.0, 1.0, 0.5, 0.2])
    X = np.vstack([np.diag(scales), -np.diag(scales)])
    _, basis, _ = report.pca_basis(X)
    np.testing.assert_allclose(basis, np.eye(5)[:, :2], atol=1e-12)
    cov = np.diag([4.0, 1.0, 0.3, 0.2, 0.1])[None]
    ax = report.plot_projection(X, np.zeros(10, int), np.ones((1, 5)), cov, "full")
    (ell,) = [p for p in ax.patches if isinstance(p, Ellipse)]
    # the 2-sigma contour: full axes 2 * 2 * sqrt(4) along PC1 and 2 * 2 * sqrt(1) along PC2
    assert ell.width == pytest.approx(8.0, rel=1e-12)
    assert ell.height == pytest.approx(4.0, rel=1e-12)
    assert ell.angle == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(ell.center, [1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("D", [2, 5])
def test_ellipse_boundary_is_the_two_sigma_contour(D):
    X, labels = _gaussians(D, seed=2)
    _, means, cov = _params(X, labels, "full")
    ax = report.plot_projection(X, labels, means, cov, "full", max_points=len(X))
    center, basis, _ = report.pca_basis(X)
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 3
    for k, ell in enumerate(ellipses):
        m2 = basis.T @ (means[k] - center)
        c2 = basis.T @ cov[k] @ basis
        np.testing.assert_allclose(ell.center, m2, atol=1e-9)
        path = ell.get_patch_transform().transform_path(ell.get_path())
        pts = np.vstack([b(np.linspace(0, 1, 9)) for b, _ in path.iter_bezier()])
        r = np.sqrt(np.einsum("ni,ij,nj->n", pts - m2, np.linalg.inv(c2), pts - m2))
        np.testing.assert_allclose(r, 2.0, rtol=2e-3)  # cubic Bezier circles: ~3e-4 error
        w, h, _ = report.ellipse_params(c2)
        np.testing.assert_allclose(sorted([w, h]), 4 * np.sqrt(np.linalg.eigvalsh(c2)))


def test_projection_samples_at_most_max_points():
    X, labels = _gaussians(4, n=3000)
    ax = report.plot_projection(X, labels, max_points=500)
    (points,) = ax.collections[:1]
    assert points.get_offsets().shape == (500, 2)


def test_bad_covariance_shape_is_refused_by_name():
    X, labels = _gaussians(5)
    _, means, cov = _params(X, labels, "full")
    with pytest.raises(ValueError, match=r"covariance_type='diag' needs covariances of shape"):
        report.plot_projection(X, labels, means, cov, "diag")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        report.plot_projection(X, labels, means, cov, "banana")


# ---------------------------------------------------------------------- plots and tables
def test_plot_elbo_marks_laps_with_accepted_moves():
    history = _history()
    history[5]["moves_accepted"]["merge"] = 1
    ax = report.plot_elbo(history)
    marks = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert marks == {"birth accepted": [2.0, 3.0], "merge accepted": [6.0]}
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), [h["elbo"] for h in history])


def test_plot_k_and_weights():
    ax = report.plot_k(_history())
    assert list(ax.lines[0].get_ydata()) == [1, 2, 3, 3, 3, 3, 3]
    ax = report.plot_weights([0.1, 0.6, 0.3])
    assert [b.get_height() for b in ax.patches] == [0.6, 0.3, 0.1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "0"]


def test_tables_are_plain_json_rows():
    history = _history(3)
    history[0]["elbo"] = float("-inf")
    rows = report.laps_table(history)
    assert rows[0] == {
        "lap": 1,
        "elbo": None,
        "K": 1,
        "moves_tried": "birth 2, delete 1, merge 1",
        "moves_accepted": "",
        "moves_rejected": "",
        "seconds": 0.01,
    }
    clusters = report.clusters_table([0.2, 0.8], np.arange(12.0).reshape(2, 6), [20, 80])
    assert clusters == [
        {"component": 1, "weight": 0.8, "expected_size": 80.0, "mean": "[6, 7, 8, 9, … (D=6)]"},
        {"component": 0, "weight": 0.2, "expected_size": 20.0, "mean": "[0, 1, 2, 3, … (D=6)]"},
    ]
    json.dumps(rows + clusters, allow_nan=False)
    assert report.clusters_table([1.0], None) == [{"component": 0, "weight": 1.0}]


def test_empty_history_renders(tmp_path):
    path = report.write_report(tmp_path / "r.html", [], [1.0])
    assert len(_pngs(path.read_text())) == 3


# ---------------------------------------------------------------------- resources and failures
def test_figures_are_released():
    refs = []

    def draw(ax):
        refs.append(weakref.ref(ax.figure))
        report.plot_weights([0.5, 0.5], ax)

    assert report.figure_png(draw).startswith(PNG_SIGNATURE)
    gc.collect()
    assert refs[0]() is None
    for fn in (lambda: report.plot_elbo(_history()), lambda: report.plot_k(_history())):
        fn()
    assert plt.get_fignums() == []


def test_plot_on_pyplot_axes_is_left_to_the_caller():
    fig, ax = plt.subplots()
    try:
        assert report.plot_weights([1.0], ax) is ax
    finally:
        plt.close(fig)


def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "report.html"

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(target, _history(), [0.5, 0.5])
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_report(tmp_path, monkeypatch):
    target = report.write_report(tmp_path / "report.html", _history(2), [1.0])
    before = target.read_bytes()

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="rename failed"):
        report.write_report(target, _history(5), [0.5, 0.5])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_render_failure_writes_nothing(tmp_path):
    with pytest.raises(ValueError):
        report.write_report(
            tmp_path / "r.html",
            _history(),
            [0.5, 0.5],
            np.zeros((2, 3)),
            np.ones(5),
            "diag",
            X_sample=np.zeros((10, 3)),
        )
    assert list(tmp_path.iterdir()) == []
