"""What a finished fit writes into its run directory: model, report, figures, run.json.

Every file is written to a temporary name and renamed into place, so a reader never sees a
partial file and a failed publish leaves the previous one.
"""

from __future__ import annotations

import base64
import json
import math
import os
import posixpath
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mixstream import urls
from mixstream.app.rundir import (
    FIGURES_DIR,
    FINISHED,
    MODEL_FILE,
    OPTION_NAMES,
    REPORT_FILE,
    RUN_FILE,
    data_location,
)
from mixstream.atomic import atomic_write_bytes, atomic_write_text

#: rows of the data drawn in the report's PCA plane
SAMPLE_ROWS = 5000


def read_sample(source: Any, n: int = SAMPLE_ROWS) -> np.ndarray:
    """About ``n`` rows of a store for the report, read from at most 10 chunks spread over it."""
    n_rows = int(source.n_rows)
    chunk = int(getattr(source, "chunk_rows", 0) or 0)
    try:
        import zarr

        kw: dict[str, Any] = {"mode": "r"}
        if getattr(source, "array_path", ""):
            kw["path"] = source.array_path
        if getattr(source, "storage_options", None):
            kw["storage_options"] = source.storage_options
        arr = zarr.open_array(source.url, **kw)
        if n_rows <= n or chunk <= 0:
            X = np.asarray(arr[: min(n, n_rows)])
        else:
            n_chunks = math.ceil(n_rows / chunk)
            pieces = min(10, n_chunks)
            per = min(chunk, math.ceil(n / pieces))
            starts = [int(c) * chunk for c in np.linspace(0, n_chunks - 1, pieces).round()]
            X = np.concatenate([np.asarray(arr[s : min(s + per, n_rows)]) for s in starts])
    except Exception:  # any other source: the first batch
        X = np.asarray(source.read(0))[:n]
    return _plottable(np.asarray(X, dtype=np.float64))


#: complete rows a sample with missing values keeps for the report, when it has that many
_MIN_COMPLETE_ROWS = 200


def _plottable(X: np.ndarray) -> np.ndarray:
    """A sample without NaN (missing values, ``missing="marginalize"``) for the report's
    projections: its complete rows, or, when fewer than ``_MIN_COMPLETE_ROWS`` are complete,
    every row with its missing values at the feature's mean (for display only; the fit
    marginalises them)."""
    miss = np.isnan(X)
    if not miss.any():
        return X
    complete = ~miss.any(axis=1)
    if complete.sum() >= _MIN_COMPLETE_ROWS:
        return X[complete]
    from mixstream.learn.init import fill_missing

    return fill_missing(X)


#: likelihoods whose report draws the sample in its PCA plane with the components' ellipses
_PLANE = ("gauss", "hmog")


def _plane(est: Any, arrays: dict[str, Any]) -> bool:
    """Whether the report draws the sample in its PCA plane with the components' ellipses."""
    if est.likelihood == "hmog":
        return arrays["covariances"] is not None
    return est.likelihood in _PLANE


def _report_arrays(est: Any) -> dict[str, Any]:
    gauss = est.likelihood in ("gauss", "zero_mean_gauss", "hmog")
    means = getattr(est, "means_", None)
    if est.likelihood == "hmog":  # the components in x-space: W m_k + mu, W S_k W^T + Psi
        cov = getattr(est, "covariances_", None)  # omitted for very large K p^2
        return {"means": means, "covariances": cov, "covariance_type": "full"}
    return {
        "means": means,
        "covariances": getattr(est, "covariances_", None) if gauss and means is not None else None,
        "covariance_type": est.covariance_type if est.likelihood == "gauss" else None,
    }


def write_report_for(
    est: Any,
    path: str | os.PathLike,
    X_sample: np.ndarray | None = None,
    n_rows: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """report.html of a fitted estimator (with the sample drawn in the PCA plane if given)."""
    from mixstream.report import write_report

    arrays = _report_arrays(est)
    labels = None
    if X_sample is not None and (arrays["means"] is None or not _plane(est, arrays)):
        X_sample = None  # the PCA view draws Gaussian ellipses around means
    if X_sample is not None:
        labels = est.predict(X_sample)
    counts = None if n_rows is None else np.asarray(est.weights_) * n_rows
    return write_report(
        path,
        est.history_,
        est.weights_,
        arrays["means"],
        arrays["covariances"],
        arrays["covariance_type"],
        X_sample=X_sample,
        labels=labels,
        title=f"mixstream fit: K={est.n_components_}",
        extra=extra,
        counts=counts,
    )


def write_figures(
    est: Any, directory: str | os.PathLike, X_sample: np.ndarray | None = None
) -> dict[str, Path]:
    """The report's figures as PNG files: ELBO and K per lap, the weights, and (for a Gaussian
    fit, given a sample of the data) the sample in its PCA plane with the components' ellipses.
    """
    from mixstream.report import figure_png, plot_elbo, plot_k, plot_projection, plot_weights

    draws = {
        "elbo": lambda ax: plot_elbo(est.history_, ax),
        "k": lambda ax: plot_k(est.history_, ax),
        "weights": lambda ax: plot_weights(est.weights_, ax),
    }
    arrays = _report_arrays(est)
    if X_sample is not None and arrays["means"] is not None and _plane(est, arrays):
        labels = est.predict(X_sample)
        draws["projection"] = lambda ax: plot_projection(
            X_sample,
            labels,
            arrays["means"],
            arrays["covariances"],
            arrays["covariance_type"],
            ax=ax,
        )
    if X_sample is not None and est.likelihood == "hmog" and est.latent_dim >= 2:
        draws["latent"] = _latent_draw(est, X_sample, plot_projection)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in draws.items():
        png = figure_png(draw)
        path = directory / f"{name}.png"
        atomic_write_bytes(path, png)
        out[name] = path
    return out


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=1, default=str) + "\n")


def write_run_dir(
    est: Any,
    out: str | os.PathLike,
    data: str,
    source: Any,
    plan: dict[str, Any],
    resumed_from_lap: int = 0,
    dashboard: str | None = None,
    location: str | None = None,
) -> dict[str, Any]:
    """Save the model, write report.html, the figures and run.json into ``out``.

    ``out`` may be an fsspec URL (mixstream.app.remote: written locally, uploaded with run.json
    last). ``location``: the name under which ``out``'s files will be read (the URL they are
    uploaded to), for the summary and the report; default ``out``.

    Returns
    -------
    dict
        The summary also written to run.json (last: it marks the run finished): status
        ("finished"), fit_id (new for each publish), out, model, report, figures, data
        (absolute), n_rows, n_features, n_components_, lower_bound_, converged_, laps,
        resumed_from_lap, dashboard, options.
    """
    if urls.is_url(out):  # written in a local stage, uploaded one PUT a file, run.json last
        url = os.fspath(out).rstrip("/")
        with tempfile.TemporaryDirectory(prefix="mixstream-run-") as stage:
            summary = write_run_dir(
                est, stage, data, source, plan, resumed_from_lap, dashboard, location=url
            )
            urls.upload_tree(stage, url, last=(RUN_FILE,))
        return summary
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    where = location or str(out)

    def final(path: Any) -> str:  # a file's name where it will be read
        return str(path) if location is None else f"{where}/{Path(path).relative_to(out)}"

    # the published fit's id, carried by every file written here (and the labels it writes)
    fit_id = str(uuid.uuid4())
    est.fit_id_ = fit_id
    model_path = Path(est.save(out / MODEL_FILE))
    extra = {
        "fit id": fit_id,
        "data": plan.get("data", data),
        "rows x features": f"{plan['n_rows']} x {plan['n_features']}",
        "batches": f"{plan['n_batches']} x {plan['batch_rows']} rows",
        "algorithm": est.algorithm,
        "allocation": est.allocation,
        "likelihood": est.likelihood,
        "covariance_type": est.covariance_type,
        "moves": ", ".join(est.moves) or "none",
        **_latent_lines(est),
        "laps": len(est.history_),
        "resumed from lap": resumed_from_lap,
        "model": final(model_path),
    }
    sample = read_sample(source)
    report_path = write_report_for(est, out / REPORT_FILE, sample, plan["n_rows"], extra)
    figures = write_figures(est, out / FIGURES_DIR, sample)
    summary = {
        "status": FINISHED,
        "fit_id": fit_id,
        "out": where,
        "model": final(model_path),
        "report": final(report_path),
        "figures": {k: final(v) for k, v in figures.items()},
        "data": data_location(data),
        "n_rows": plan["n_rows"],
        "n_features": plan["n_features"],
        "n_components_": int(est.n_components_),
        "lower_bound_": float(est.lower_bound_),
        "converged_": bool(est.converged_),
        "laps": len(est.history_),
        "resumed_from_lap": int(resumed_from_lap),
        "dashboard": dashboard,
        "options": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in est.get_params().items()
            if k in OPTION_NAMES
        },
    }
    write_json(out / RUN_FILE, summary)
    return summary


def _png_markdown(path: str, alt: str) -> str:
    data = base64.b64encode(urls.read_bytes(path)).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


def report_markdown(summary: dict[str, Any]) -> str:
    """A fit's report as markdown: where the outputs are, and the report's plots inline."""
    report = Path(summary["report"]) if not urls.is_url(summary["report"]) else None
    link = (
        f"[{report.name}]({report.as_uri()}) `{report}`"
        if report is not None
        else f"`{summary['report']}`"
    )
    lines = [
        f"# mixstream fit: K = {summary['n_components_']}",
        "",
        "| | |",
        "| --- | --- |",
        f"| data | `{summary['data']}` ({summary['n_rows']} x {summary['n_features']}) |",
        f"| ELBO per point | {summary['lower_bound_']:.8g} |",
        f"| laps | {summary['laps']} (resumed from lap {summary['resumed_from_lap']}) |",
        f"| converged | {summary['converged_']} |",
        f"| model | `{summary['model']}` |",
        f"| report | {link} |",
        f"| Dask dashboard | {summary['dashboard'] or 'none'} |",
        "",
    ]
    titles = {
        "elbo": "ELBO per lap",
        "k": "K per lap",
        "weights": "cluster weights",
        "projection": "the data in its PCA plane, by cluster",
    }
    for name, path in summary["figures"].items():
        alt = titles.get(name, name)
        lines += [f"**{alt}** (`{path}`)", "", _png_markdown(path, alt), ""]
    return "\n".join(lines)


def rewrite_report(
    model_dir: str | os.PathLike, data: str | None = None, out: str | os.PathLike | None = None
) -> tuple[Path, str | None]:
    """Rewrite the report of a fit from its model file, with a sample of ``data`` (else of the
    store named in its run.json).

    Returns
    -------
    (Path, str or None)
        The report written, and a note when the fitted data is gone (no data view).
    """
    from mixstream import MixtureModel
    from mixstream.app.rundir import describe_data, model_path, read_run_file

    path = model_path(model_dir)
    est = MixtureModel.load(path)
    remote = urls.is_url(path)
    parent = posixpath.dirname(path) if remote else path.parent
    run = read_run_file(parent)
    store = data or run.get("data")
    X_sample, n_rows, note = None, None, None
    if store and data is None and not os.path.exists(store) and "://" not in store:
        note = f"the fitted data {store} is gone; the report has no data view (give --data)"
        store = None
    if store:
        source, plan = describe_data(store)
        X_sample, n_rows = read_sample(source), plan["n_rows"]
    extra = {"model": path if remote else str(path.resolve()), "data": store or "(none)"}
    if getattr(est, "fit_id_", None):
        extra["fit id"] = est.fit_id_
    extra.update(dict(run.get("options", {})))
    target = out if out else urls.join(parent, REPORT_FILE) if remote else parent / REPORT_FILE
    if urls.is_url(target):  # written locally, then one PUT
        with tempfile.TemporaryDirectory(prefix="mixstream-report-") as stage:
            local = write_report_for(est, os.path.join(stage, REPORT_FILE), X_sample, n_rows, extra)
            urls.write_bytes(target, local.read_bytes())
        return target, note  # type: ignore[return-value]
    return write_report_for(est, Path(target), X_sample, n_rows, extra), note


def _latent_lines(est: Any) -> dict[str, Any]:
    """The report's lines on an HMoG's latent space (none for other likelihoods)."""
    if est.likelihood != "hmog":
        return {}
    lm = np.asarray(est.latent_means_)
    return {
        "latent_dim": est.latent_dim,
        "latent component means (first 3 coordinates)": "; ".join(
            "[" + ", ".join(f"{v:.3g}" for v in row[:3]) + "]" for row in lm[:12]
        ),
    }


def _latent_draw(est: Any, X_sample: np.ndarray, plot_projection: Any) -> Any:
    """An HMoG's latent space: the sample's E[y | x] in its leading principal plane, with the
    latent components' ellipses (figures/latent.png)."""
    Y, labels = est.transform(X_sample), est.predict(X_sample)
    means, covs = est.latent_means_, est.latent_covariances_
    return lambda ax: plot_projection(Y, labels, means, covs, "full", ax=ax)
