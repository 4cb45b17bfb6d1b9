"""Figures of a fit: ELBO and K per lap, cluster weights, a 2-D (PCA) view of the clusters.

Figures are drawn on ``matplotlib.figure.Figure`` objects with an Agg canvas, never through
``pyplot``: nothing is registered in pyplot's global figure list, no display is needed, no
backend is switched for the caller, and the code is safe in the threads a Prefect flow or a web
server runs it in. A ``plot_*`` function given ``ax`` draws on it (pyplot axes included); without
``ax`` it draws on a fresh Figure it returns the axes of. ``figure_png`` renders one drawing to
PNG bytes. Covariances are read through the covariance type's strategy
(``mixstream.obs.gauss.covariance_strategy``). ``mixstream.report`` re-exports all of these.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator

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


__all__ = [
    "COVARIANCE_SHAPES",
    "ellipse_params",
    "figure_png",
    "pca_basis",
    "plot_elbo",
    "plot_k",
    "plot_projection",
    "plot_weights",
    "project_covariances",
]
