"""Plots and the run report: ELBO and K per lap, cluster weights, a 2-D view of the clusters.

Figures are drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas, never through
``pyplot``: nothing is registered in pyplot's global figure list, no display is needed, no
backend is switched for the caller, and the code is safe in the threads a Prefect flow or a web
server runs it in. A ``plot_*`` function given ``ax`` draws on it (pyplot axes included); without
``ax`` it draws on a fresh Figure it returns the axes of.

    write_report("out/report.html", model.history_, model.weights_, model.means_,
                 model.covariances_, "full", X_sample=X[:5000], labels=model.predict(X[:5000]))

``write_report`` renders everything first and then writes one self-contained HTML file (figures
as base64 PNG) atomically: a temporary file in the target's directory, renamed into place, so a
reader never sees a half-written report and a failure leaves the previous one untouched.
``laps_table`` and ``clusters_table`` return plain rows (lists of dicts of str / int / float /
None), the shape Prefect's ``create_table_artifact`` publishes.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator

from mixstream.atomic import atomic_write_text
from mixstream.learn.history import rejected_text
from mixstream.obs.gauss import ALIASES as _ALIASES
from mixstream.obs.gauss import covariance_strategy

#: covariance types and how scikit-learn / mixstream store them (K components, D features)
COVARIANCE_SHAPES = {
    "full": "(K, D, D)",
    "diag": "(K, D)",
    "spherical": "(K,)",
    "tied_full": "(D, D)",
    "tied_diag": "(D,)",
    "tied_spherical": "() or (1,)",
}
#: markers of accepted moves on the ELBO plot
_MOVE_MARKERS = {"birth": "^", "merge": "v", "delete": "X"}
#: coordinates of a mean shown in the clusters table
_MEAN_COORDS = 4
_FIGSIZE = (6.4, 3.6)
_DPI = 100


# ---------------------------------------------------------------------- figures
def _axes(ax: Axes | None, figsize: tuple[float, float] = _FIGSIZE) -> Axes:
    """``ax``, or the axes of a new pyplot-free Figure with an Agg canvas."""
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _history_arrays(history: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, ...]:
    laps = np.array([int(h.get("lap", i + 1)) for i, h in enumerate(history)])
    elbo = np.array([float(h.get("elbo", np.nan)) for h in history])
    K = np.array([int(h.get("K", 0)) for h in history])
    return laps, elbo, K


def _no_data(ax: Axes, what: str) -> Axes:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)
    return ax


def plot_elbo(history: Sequence[Mapping[str, Any]], ax: Axes | None = None) -> Axes:
    """The objective per data point after each lap, with a marker where moves were accepted.

    Parameters
    ----------
    history : sequence of dict
        One record per lap (``MixtureModel.history_``): "lap", "elbo", and optionally
        "moves_accepted" {move name: count}.
    ax : matplotlib Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    ax.set(xlabel="lap", ylabel="ELBO per point", title="Objective")
    if not history:
        return _no_data(ax, "laps")
    laps, elbo, _ = _history_arrays(history)
    ax.plot(laps, elbo, "-", color="0.3", marker=".", label="ELBO")
    names = sorted({m for h in history for m, n in h.get("moves_accepted", {}).items() if n})
    for name in names:
        hit = np.array([bool(h.get("moves_accepted", {}).get(name, 0)) for h in history])
        ax.scatter(
            laps[hit],
            elbo[hit],
            marker=_MOVE_MARKERS.get(name, "o"),
            s=48,
            zorder=3,
            label=f"{name} accepted",
        )
    if names:
        ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_k(history: Sequence[Mapping[str, Any]], ax: Axes | None = None) -> Axes:
    """The number of components K after each lap.

    Parameters
    ----------
    history : sequence of dict with "lap" and "K"
    ax : matplotlib Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    ax.set(xlabel="lap", ylabel="K", title="Components")
    if not history:
        return _no_data(ax, "laps")
    laps, _, K = _history_arrays(history)
    ax.step(laps, K, where="post", marker=".", color="C0")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def plot_weights(weights: Any, ax: Axes | None = None) -> Axes:
    """Cluster weights as a bar chart, largest first; ticks name the component index.

    Parameters
    ----------
    weights : array (K,)
    ax : matplotlib Axes, optional

    Returns
    -------
    Axes
    """
    ax = _axes(ax)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    ax.set(xlabel="component", ylabel="weight", title="Cluster weights")
    if w.size == 0:
        return _no_data(ax, "components")
    order = np.argsort(-w, kind="stable")
    ax.bar(np.arange(w.size), w[order], color="C0")
    if w.size <= 30:
        ax.set_xticks(np.arange(w.size), [str(k) for k in order], fontsize="small")
    else:
        ax.set_xlabel("component rank")
    return ax


# ---------------------------------------------------------------------- projection math
def pca_basis(X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plane of the two leading principal axes of X.

    Parameters
    ----------
    X : array (N, D), N >= 1

    Returns
    -------
    center : array (D,), the mean of X
    basis : array (D, 2), orthonormal columns (a zero column when D == 1); each column's
        largest entry is positive, so the result is deterministic
    explained : array (2,), fraction of the variance along each axis
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"pca_basis needs a non-empty 2-D array, got shape {X.shape}")
    center = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - center, full_matrices=False)
    basis = np.zeros((X.shape[1], 2))
    m = min(2, vt.shape[0])
    basis[:, :m] = vt[:m].T
    flip = np.sign(basis[np.abs(basis).argmax(axis=0), [0, 1]])
    basis *= np.where(flip == 0, 1.0, flip)
    var = np.zeros(2)
    var[:m] = s[:m] ** 2
    total = float((s**2).sum())
    return center, basis, var / total if total > 0 else var


def _canonical(covariance_type: str) -> str:
    kind = _ALIASES.get(covariance_type, covariance_type)
    if kind not in COVARIANCE_SHAPES:
        raise ValueError(
            f"covariance_type must be one of {[*sorted(COVARIANCE_SHAPES), 'tied']}, "
            f"got {covariance_type!r}"
        )
    return kind


def project_covariances(
    covariances: Any, covariance_type: str, basis: np.ndarray, n_components: int
) -> np.ndarray:
    """Covariances of the components' projections onto the plane: B^T Sigma_k B.

    Parameters
    ----------
    covariances : array in scikit-learn's shape for ``covariance_type``: full (K, D, D),
        diag (K, D), spherical (K,), tied / tied_full (D, D), tied_diag (D,),
        tied_spherical () or (1,)
    covariance_type : str
    basis : array (D, 2), the plane (``pca_basis``)
    n_components : int, K

    Returns
    -------
    array (K, 2, 2)
    """
    kind = _canonical(covariance_type)
    C = np.asarray(covariances, dtype=np.float64)
    if kind == "tied_spherical" and C.shape == (1,):
        C = C.reshape(())
    D, K = basis.shape[0], n_components
    structure = covariance_strategy(kind)
    want = structure.user_shape(K, D)
    if C.shape != want:
        raise ValueError(
            f"covariance_type={covariance_type!r} needs covariances of shape "
            f"{COVARIANCE_SHAPES[kind]} = {want} for K={K}, D={D}; got {C.shape}"
        )
    return structure.project(C, basis, K)


def ellipse_params(cov2: Any, n_sigma: float = 2.0) -> tuple[float, float, float]:
    """Width, height and angle of the ``n_sigma`` contour of a 2-D Gaussian.

    The contour is {p : (p - m)^T cov2^{-1} (p - m) = n_sigma^2}: axes along the eigenvectors
    of ``cov2`` with half-lengths n_sigma sqrt(eigenvalue).

    Parameters
    ----------
    cov2 : array (2, 2), symmetric positive semi-definite
    n_sigma : float

    Returns
    -------
    width, height : float, full lengths of the major and minor axes
    angle : float, degrees from the x axis to the major axis, in [0, 180)
    """
    vals, vecs = np.linalg.eigh(0.5 * (np.asarray(cov2, float) + np.asarray(cov2, float).T))
    vals = np.clip(vals, 0.0, None)
    major = vecs[:, 1]
    angle = math.degrees(math.atan2(major[1], major[0])) % 180.0
    return 2 * n_sigma * math.sqrt(vals[1]), 2 * n_sigma * math.sqrt(vals[0]), angle


def _sample(
    X: np.ndarray, labels: np.ndarray | None, max_points: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """At most ``max_points`` rows of X (and their labels), a seeded uniform sample in order."""
    if X.shape[0] <= max_points:
        return X, labels
    idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_points, replace=False))
    return X[idx], None if labels is None else labels[idx]


def _cmap(n_colors: int) -> Any:
    return mpl.colormaps["tab10" if n_colors <= 10 else "tab20"]


def _draw_points(ax: Axes, P: np.ndarray, labels: np.ndarray | None, n_colors: int) -> None:
    if labels is None:
        ax.scatter(P[:, 0], P[:, 1], s=4, alpha=0.5, color="0.4", rasterized=True)
        return
    cmap = _cmap(n_colors)
    ax.scatter(P[:, 0], P[:, 1], s=4, alpha=0.5, c=cmap(labels % cmap.N), rasterized=True)


def plot_projection(
    X: Any,
    labels: Any = None,
    means: Any = None,
    covariances: Any = None,
    covariance_type: str = "full",
    ax: Axes | None = None,
    max_points: int = 5000,
    n_sigma: float = 2.0,
    random_state: int = 0,
) -> Axes:
    """The data in its leading principal plane, coloured by cluster, with Gaussian ellipses.

    Points, means and covariances are projected with the same basis: a mean m_k goes to
    B^T (m_k - c), a covariance Sigma_k to B^T Sigma_k B, and each component is drawn as its
    ``n_sigma`` contour in the plane (``ellipse_params``).

    Parameters
    ----------
    X : array (N, D), the data or a sample of it
    labels : array (N,) of int, optional, the cluster of each row
    means : array (K, D), optional
    covariances : array in scikit-learn's shape for ``covariance_type``, optional (needs means)
    covariance_type : {"full", "diag", "spherical", "tied", "tied_full", "tied_diag",
        "tied_spherical"}
    ax : matplotlib Axes, optional
    max_points : int, rows drawn at most (a seeded uniform sample of X beyond that)
    n_sigma : float, contour drawn for each component
    random_state : int, seed of that sample

    Returns
    -------
    Axes
    """
    X = np.asarray(X)
    lab = None if labels is None else np.asarray(labels).astype(np.int64).reshape(-1)
    if lab is not None and lab.shape[0] != X.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries; X has {X.shape[0]} rows")
    if covariances is not None and means is None:
        raise ValueError("covariances need means to place the ellipses")
    X, lab = _sample(X, lab, max_points, random_state)
    X = X.astype(np.float64, copy=False)
    center, basis, explained = pca_basis(X)
    ax = _axes(ax, (6.4, 5.2))
    n_colors = 0 if means is None else np.asarray(means).shape[0]
    n_colors = max(n_colors, 0 if lab is None or lab.size == 0 else int(lab.max()) + 1)
    _draw_points(ax, (X - center) @ basis, lab, n_colors)
    if means is not None:
        cmap = _cmap(n_colors)
        colors = [cmap(k % cmap.N) for k in range(np.asarray(means).shape[0])]
        _draw_components(ax, means, covariances, covariance_type, (center, basis), colors, n_sigma)
    ax.set(
        xlabel=f"PC1 ({explained[0]:.0%} of variance)",
        ylabel=f"PC2 ({explained[1]:.0%} of variance)",
        title="Clusters (PCA projection)",
    )
    ax.set_aspect("equal", adjustable="datalim")
    return ax


def _draw_components(
    ax: Axes,
    means: Any,
    covariances: Any,
    covariance_type: str,
    plane: tuple[np.ndarray, np.ndarray],
    colors: Sequence[Any],
    n_sigma: float,
) -> None:
    center, basis = plane
    M = np.asarray(means, dtype=np.float64)
    if M.ndim != 2 or M.shape[1] != basis.shape[0]:
        raise ValueError(f"means must have shape (K, {basis.shape[0]}), got {M.shape}")
    K = M.shape[0]
    m2 = (M - center) @ basis
    if covariances is not None:
        for k, c2 in enumerate(project_covariances(covariances, covariance_type, basis, K)):
            w, h, angle = ellipse_params(c2, n_sigma)
            ax.add_patch(
                Ellipse(tuple(m2[k]), w, h, angle=angle, fill=False, lw=1.5, edgecolor=colors[k])
            )
    ax.scatter(m2[:, 0], m2[:, 1], marker="x", s=40, c=colors, zorder=3)


# ---------------------------------------------------------------------- tables
def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _counts_text(counts: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k} {int(v)}" for k, v in sorted((counts or {}).items()) if v)


def laps_table(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One plain row per lap.

    Parameters
    ----------
    history : sequence of dict ("lap", "elbo", "K", "seconds", "moves_tried",
        "moves_accepted", "moves_rejected")

    Returns
    -------
    list of dict with keys "lap" (int), "elbo" (float or None when not finite), "K" (int),
    "moves_tried", "moves_accepted" (str such as "birth 3, merge 1"; "" for none),
    "moves_rejected" (str: per move, the best rejected proposal's gain, the threshold it had
    to exceed and why; "" for none) and "seconds" (float)
    """
    rows = []
    for i, h in enumerate(history):
        rows.append(
            {
                "lap": int(h.get("lap", i + 1)),
                "elbo": _finite(h.get("elbo", np.nan)),
                "K": int(h.get("K", 0)),
                "moves_tried": _counts_text(h.get("moves_tried")),
                "moves_accepted": _counts_text(h.get("moves_accepted")),
                "moves_rejected": rejected_text(h.get("moves_rejected")),
                "seconds": _finite(h.get("seconds", np.nan)),
            }
        )
    return rows


def _mean_text(mean: np.ndarray) -> str:
    head = ", ".join(f"{v:.4g}" for v in mean[:_MEAN_COORDS])
    more = f", … (D={mean.size})" if mean.size > _MEAN_COORDS else ""
    return f"[{head}{more}]"


def clusters_table(weights: Any, means: Any = None, counts: Any = None) -> list[dict[str, Any]]:
    """One plain row per cluster, heaviest first.

    Parameters
    ----------
    weights : array (K,)
    means : array (K, D), optional
    counts : array (K,), optional, the expected number of points of each cluster (N_k)

    Returns
    -------
    list of dict with keys "component" (int, the position in the model), "weight" (float),
    "expected_size" (float; only when ``counts`` is given) and "mean" (str, the first few
    coordinates; only when ``means`` is given)
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    M = None if means is None else np.asarray(means, dtype=np.float64)
    if M is not None and (M.ndim != 2 or M.shape[0] != w.size):
        raise ValueError(f"means must have shape (K={w.size}, D), got {M.shape}")
    n = None if counts is None else np.asarray(counts, dtype=np.float64).reshape(-1)
    if n is not None and n.size != w.size:
        raise ValueError(f"counts has {n.size} entries; weights has {w.size}")
    rows = []
    for k in np.argsort(-w, kind="stable"):
        row: dict[str, Any] = {"component": int(k), "weight": _finite(w[k])}
        if n is not None:
            row["expected_size"] = _finite(n[k])
        if M is not None:
            row["mean"] = _mean_text(M[k])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}
th{background:#f2f2f2}td.text{text-align:left;font-family:monospace}
figure{display:inline-block;margin:0.5em}img{max-width:100%}
"""


def figure_png(draw: Callable[[Axes], Any], figsize: tuple[float, float] = _FIGSIZE) -> bytes:
    """PNG bytes of a new Figure on which ``draw(ax)`` drew; the figure is released after."""
    fig = Figure(figsize=figsize, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    try:
        draw(fig.add_subplot())
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        fig.clear()


def _cell(value: Any) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, float):
        return f"<td>{value:.8g}</td>"
    if isinstance(value, int):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def _html_table(rows: Sequence[Mapping[str, Any]], table_id: str) -> str:
    if not rows:
        return f'<p id="{table_id}">(none)</p>'
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(_cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f'<table id="{table_id}">\n<tr>{head}</tr>\n{body}\n</table>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def covariance_type_of(est: Any) -> str | None:
    """The covariance type of a fitted estimator's ``covariances_``, asked of its model.

    The name of a Gaussian model's covariance structure, "full" for a zero-mean Gaussian
    (every component has a (D, D) covariance), None for other likelihoods. Pass it to
    ``write_report`` rather than letting the report guess from array shapes.
    """
    obs = est.model_.obs
    structure = getattr(obs, "covariance_structure", None)
    if structure is not None:
        return str(structure.name)
    return "full" if getattr(obs, "likelihood", None) == "zero_mean_gauss" else None


def _infer_covariance_type(C: np.ndarray, K: int, D: int) -> str:
    """Only for bare arrays given without a type: the one type whose shape matches, if any."""
    matches = [k for k in COVARIANCE_SHAPES if covariance_strategy(k).user_shape(K, D) == C.shape]
    if len(matches) != 1:
        raise ValueError(
            f"cannot tell the covariance type of shape {C.shape} for K={K}, D={D}; "
            "pass covariance_type"
        )
    return matches[0]


def _figures(
    history: Sequence[Mapping[str, Any]],
    weights: Any,
    means: Any,
    covariances: Any,
    covariance_type: str | None,
    X_sample: Any,
    labels: Any,
) -> list[str]:
    figs = [
        _img(figure_png(lambda ax: plot_elbo(history, ax)), "ELBO per lap"),
        _img(figure_png(lambda ax: plot_k(history, ax)), "K per lap"),
        _img(figure_png(lambda ax: plot_weights(weights, ax)), "cluster weights"),
    ]
    if X_sample is not None:
        if covariances is not None and covariance_type is None:
            M, C = np.asarray(means), np.asarray(covariances)
            covariance_type = _infer_covariance_type(C, M.shape[0], M.shape[1])

        def draw(ax: Axes) -> None:
            plot_projection(X_sample, labels, means, covariances, covariance_type or "full", ax)

        figs.append(_img(figure_png(draw, (6.4, 5.2)), "clusters in the PCA plane"))
    return figs


def render_report(
    history: Sequence[Mapping[str, Any]],
    weights: Any,
    means: Any = None,
    covariances: Any = None,
    covariance_type: str | None = None,
    X_sample: Any = None,
    labels: Any = None,
    title: str = "mixstream fit",
    extra: Mapping[str, Any] | None = None,
    counts: Any = None,
) -> str:
    """The report as one HTML string (see ``write_report`` for the parameters)."""
    figs = _figures(history, weights, means, covariances, covariance_type, X_sample, labels)
    info = [{"key": str(k), "value": str(v)} for k, v in (extra or {}).items()]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>written {stamp}</p>",
        _html_table(info, "run") if info else "",
        "<h2>Figures</h2>",
        "\n".join(figs),
        "<h2>Laps</h2>",
        _html_table(laps_table(history), "laps"),
        "<h2>Clusters</h2>",
        _html_table(clusters_table(weights, means, counts), "clusters"),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_report(
    path: str | os.PathLike,
    history: Sequence[Mapping[str, Any]],
    weights: Any,
    means: Any = None,
    covariances: Any = None,
    covariance_type: str | None = None,
    X_sample: Any = None,
    labels: Any = None,
    title: str = "mixstream fit",
    extra: Mapping[str, Any] | None = None,
    counts: Any = None,
) -> Path:
    """Write the run report: one self-contained HTML file, atomically.

    Parameters
    ----------
    path : str or PathLike, the HTML file (its directory is created if needed)
    history : sequence of dict, one record per lap (``MixtureModel.history_``)
    weights : array (K,)
    means : array (K, D), optional
    covariances : array, optional, scikit-learn's shape for ``covariance_type``
    covariance_type : str, optional; ``covariance_type_of(est)`` of a fitted estimator.
        Inferred from the shape of bare ``covariances`` when None (an error when ambiguous,
        e.g. K == D)
    X_sample : array (N, D), optional, data drawn in the PCA plane (at most 5000 rows are
        drawn)
    labels : array (N,), optional, the cluster of each row of ``X_sample``
    title : str
    extra : mapping, optional, run facts shown in a table at the top (data path, options, ...)
    counts : array (K,), optional, expected cluster sizes N_k for the clusters table

    Returns
    -------
    Path of the report. Figures: ELBO per lap, K per lap, weights, and the PCA projection when
    ``X_sample`` is given. Nothing is written if rendering fails.
    """
    text = render_report(
        history,
        weights,
        means,
        covariances,
        covariance_type,
        X_sample,
        labels,
        title,
        extra,
        counts,
    )
    return atomic_write_text(path, text)


__all__ = [
    "atomic_write_text",
    "clusters_table",
    "covariance_type_of",
    "ellipse_params",
    "figure_png",
    "laps_table",
    "pca_basis",
    "plot_elbo",
    "plot_k",
    "plot_projection",
    "plot_weights",
    "project_covariances",
    "render_report",
    "write_report",
]
