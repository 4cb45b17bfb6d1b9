"""The run report: ELBO and K per lap, cluster weights, a 2-D view of the clusters, tables.

The figures come from ``mixstream.plots`` (re-exported here: ``plot_elbo``, ``plot_k``,
``plot_weights``, ``plot_projection``, ``figure_png``, ...).

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
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from mixstream.atomic import atomic_write_text
from mixstream.learn.history import rejected_text
from mixstream.obs.gauss import covariance_strategy
from mixstream.plots import (
    COVARIANCE_SHAPES,
    ellipse_params,
    figure_png,
    pca_basis,
    plot_elbo,
    plot_k,
    plot_projection,
    plot_weights,
    project_covariances,
)

#: coordinates of a mean shown in the clusters table
_MEAN_COORDS = 4


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
