"""The steps of a fit and a scoring run, without Prefect.

The Prefect flows (flows/fit.py, flows/score.py) wrap these functions in tasks; ``mixstream fit
--no-prefect`` calls them directly. Nothing here imports Prefect.

    options = fit_options(n_components=1, algorithm="movb", moves=None)
    est = make_estimator(options, checkpoint_dir="out/checkpoints")     # validated
    source, plan = describe_data("data.zarr", options["batch_size"])
    with open_executor(source, scheduler=None, n_workers=2) as executor:
        driver = FitDriver(est, executor)          # resumes from the checkpoint if present
        while not driver.done:
            driver.ensure_lap(driver.laps_done + 1)  # idempotent: safe to retry
        driver.finish()
        paths = publish_files(est, "out", "data.zarr", source, ...)
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mixstream.learn.moves import default_moves

#: environment variable naming the Dask scheduler when no address is given
SCHEDULER_ENV = "MIXSTREAM_SCHEDULER"
#: file names inside a fit's output directory
MODEL_FILE = "model.msz"
REPORT_FILE = "report.html"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
FIGURES_DIR = "figures"
#: rows of the data drawn in the report's PCA plane
SAMPLE_ROWS = 5000

# ---------------------------------------------------------------------- lap listeners
_LISTENERS: contextvars.ContextVar[tuple[Callable[[dict, int], None], ...]] = (
    contextvars.ContextVar("mixstream_lap_listeners", default=())
)


@contextlib.contextmanager
def lap_listener(callback: Callable[[dict, int], None]) -> Iterator[None]:
    """Call ``callback(record, max_laps)`` after every lap that completes in this context.

    Works for fits run directly and for ``fit_flow`` called in this thread (the CLI's progress
    lines use it). An exception raised by the callback stops the fit after that lap's
    checkpoint, like an interruption: the next run on the same output resumes there.
    """
    token = _LISTENERS.set((*_LISTENERS.get(), callback))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def lap_line(record: dict, max_laps: int) -> str:
    """One progress line: lap, ELBO per point, K, accepted/tried moves, seconds."""
    moves = ""
    tried = record.get("moves_tried") or {}
    accepted = record.get("moves_accepted") or {}
    if tried:
        moves = "  " + " ".join(f"{m} {accepted.get(m, 0)}/{n}" for m, n in tried.items())
    return (
        f"lap {record['lap']:>3}/{max_laps}  ELBO {record['elbo']:.6g}  K {record['K']}"
        f"{moves}  {record['seconds']:.2f} s"
    )


# ---------------------------------------------------------------------- options
def fit_options(
    n_components: int = 1,
    allocation: str = "dp",
    likelihood: str = "gauss",
    covariance_type: str = "full",
    algorithm: str = "movb",
    moves: Any = None,
    batch_size: int | None = None,
    max_laps: int = 50,
    tol: float = 1e-4,
    random_state: int = 0,
) -> dict[str, Any]:
    """MixtureModel options of a fit; ``moves=None`` means all moves for moVB, none otherwise."""
    if moves is None:
        moves = list(default_moves(algorithm))
    elif isinstance(moves, str):
        moves = [m for m in moves.replace(",", " ").split() if m]
    return {
        "n_components": n_components,
        "allocation": allocation,
        "likelihood": likelihood,
        "covariance_type": covariance_type,
        "algorithm": algorithm,
        "moves": tuple(moves),
        "batch_size": batch_size,
        "max_laps": max_laps,
        "tol": tol,
        "random_state": random_state,
    }


def make_estimator(options: dict[str, Any], checkpoint_dir: Any = None) -> Any:
    """A MixtureModel with ``options``, validated (ValueError names the bad option)."""
    from mixstream import MixtureModel

    est = MixtureModel(
        **options, checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir)
    )
    est._validate_params()
    return est


def describe_data(data: str, batch_size: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Open ``data`` (a Zarr store's path or URL), check it and plan its batches.

    Returns the BatchSource and a small JSON-able description of it.
    """
    from mixstream.data.sources import open_source

    if not isinstance(data, str | os.PathLike):
        raise ValueError(f"data must be the path or URL of a Zarr store, got {type(data).__name__}")
    source = open_source(os.fspath(data), batch_size)
    plan = {
        "data": getattr(source, "name", os.fspath(data)),
        "n_rows": int(source.n_rows),
        "n_features": int(source.n_features),
        "dtype": str(getattr(source, "dtype", "")),
        "n_batches": len(source.batches),
        "batch_rows": int(source.batches[0][1] - source.batches[0][0]),
        "chunk_rows": getattr(source, "chunk_rows", None),
        "shard_rows": getattr(source, "shard_rows", None),
        "nbytes": int(getattr(source, "nbytes", 0)),
    }
    return source, plan


# ---------------------------------------------------------------------- the Dask cluster
def resolve_scheduler(scheduler: str | None) -> str | None:
    """The Dask scheduler address: ``scheduler``, else $MIXSTREAM_SCHEDULER, else None."""
    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is not None and "://" not in address:
        where = "scheduler" if scheduler else f"${SCHEDULER_ENV}"
        raise ValueError(
            f"{where} must be a Dask scheduler address such as tcp://host:8786, got {address!r}"
        )
    return address


def open_executor(
    source: Any,
    scheduler: str | None = None,
    n_workers: int | None = 2,
    engine: str = "dask",
) -> Any:
    """The executor a fit runs on (a context manager; closing it stops what it started).

    A scheduler address (``scheduler`` or $MIXSTREAM_SCHEDULER) connects to that cluster;
    otherwise, with ``engine="dask"``, a LocalCluster of ``n_workers`` single-threaded worker
    processes is started; ``engine="auto"`` lets mixstream choose (in-process for small data).
    """
    from mixstream.engine.factory import make_executor

    address = resolve_scheduler(scheduler)
    if address is not None:
        return make_executor(source, client=address, engine="dask")
    if engine == "dask":
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        return make_executor(source, engine="dask", n_workers=n_workers, threads_per_worker=1)
    return make_executor(source, engine=engine)


def dashboard_of(executor: Any) -> str | None:
    return getattr(executor, "dashboard_link", None)


# ---------------------------------------------------------------------- the fit, lap by lap
class FitDriver:
    """A FitRun stepped one lap at a time, safe to retry.

    ``ensure_lap(n)`` makes sure lap ``n`` is done and returns its record. If an earlier
    attempt failed part-way through a lap (a worker lost beyond Dask's own retries, a
    connection dropped), the in-memory state may be half-updated: the next attempt rebuilds the
    FitRun from the last checkpoint (the state after lap n - 1, or the initialisation, which is
    deterministic given the seed) and recomputes the lap, so a retried lap is never applied
    twice. If the failed attempt had already written lap n's checkpoint, nothing is recomputed.
    """

    def __init__(self, est: Any, executor: Any) -> None:
        if est.checkpoint_dir is None:
            raise ValueError("FitDriver needs an estimator with a checkpoint_dir")
        if est.n_init != 1:
            raise ValueError("FitDriver runs one restart (n_init=1)")
        self.est = est
        self.executor = executor
        self.est.n_features_in_ = executor.source.n_features
        self.run = est.start_fit(executor)
        self.resumed_from_lap = self.laps_done if self.run.done else self.run.resumed_from_lap
        self.attempts = 0  # laps started, retries included
        self.progress_id: Any = None  # a Prefect progress artifact, when run by fit_flow
        self._dirty = False

    # ---------------------------------------------------------------- state
    @property
    def history(self) -> list[dict[str, Any]]:
        run = self.run
        if run.done:
            return list(run.best[2].history) if run.best is not None else []
        return list(run.result.history)

    @property
    def laps_done(self) -> int:
        return len(self.history)

    @property
    def done(self) -> bool:
        return self.run.done and not self._dirty

    # ---------------------------------------------------------------- stepping
    def _reload(self) -> None:
        self.run = self.est.start_fit(self.executor)
        self._dirty = False

    def ensure_lap(self, lap: int) -> dict[str, Any]:
        """Run lap ``lap`` unless it is already done; its history record."""
        if self._dirty:
            self._reload()
        done = self.laps_done
        if lap <= done:
            return self.history[lap - 1]
        if self.run.done:
            raise RuntimeError(f"the fit finished after lap {done}; there is no lap {lap}")
        if lap != done + 1:
            raise RuntimeError(f"lap {lap} asked for, but only {done} lap(s) are done")
        self._dirty = True
        self.attempts += 1
        record = self.run.step()  # one lap, then an atomic checkpoint
        self._dirty = False
        for callback in _LISTENERS.get():
            callback(record, self.est.max_laps)
        return record

    def run_to_end(self) -> FitDriver:
        while not self.done:
            self.ensure_lap(self.laps_done + 1)
        return self

    def finish(self) -> dict[str, Any]:
        """Set the estimator's fitted attributes from the best restart; a summary of them."""
        if self._dirty:
            self._reload()
        model, result = self.run.finish()
        self.est.model_ = model
        self.est._set_fitted(result)
        return fitted_summary(self.est)


def fitted_summary(est: Any) -> dict[str, Any]:
    return {
        "n_components_": int(est.n_components_),
        "lower_bound_": float(est.lower_bound_),
        "converged_": bool(est.converged_),
        "n_iter_": int(est.n_iter_),
        "weights_": [float(w) for w in est.weights_],
    }


def remove_checkpoint(checkpoint_dir: str | os.PathLike) -> None:
    """Drop a finished fit's checkpoint (the model file holds the result), so that the next
    fit into the same output starts afresh instead of resuming a finished one."""
    from mixstream.engine.checkpoint import checkpoint_path

    path = checkpoint_path(checkpoint_dir)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(checkpoint_dir).rmdir()  # only when empty


# ---------------------------------------------------------------------- outputs
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
    return np.asarray(X, dtype=np.float64)


def _report_arrays(est: Any) -> dict[str, Any]:
    gauss = est.likelihood in ("gauss", "zero_mean_gauss")
    means = getattr(est, "means_", None)
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
    if X_sample is not None and (arrays["means"] is None or est.likelihood != "gauss"):
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
    if X_sample is not None and arrays["means"] is not None and est.likelihood == "gauss":
        labels = est.predict(X_sample)
        draws["projection"] = lambda ax: plot_projection(
            X_sample,
            labels,
            arrays["means"],
            arrays["covariances"],
            arrays["covariance_type"],
            ax=ax,
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in draws.items():
        png = figure_png(draw)
        path = directory / f"{name}.png"
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        out[name] = path
    return out


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    from mixstream.report import atomic_write_text

    return atomic_write_text(path, json.dumps(payload, indent=1, default=str) + "\n")


def publish_files(
    est: Any,
    out: str | os.PathLike,
    data: str,
    source: Any,
    plan: dict[str, Any],
    resumed_from_lap: int = 0,
    dashboard: str | None = None,
) -> dict[str, Any]:
    """Save the model, write report.html, the figures and run.json into ``out``; the summary.

    Every file is written to a temporary name and renamed into place.
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_path = Path(est.save(out / MODEL_FILE))
    extra = {
        "data": plan.get("data", data),
        "rows x features": f"{plan['n_rows']} x {plan['n_features']}",
        "batches": f"{plan['n_batches']} x {plan['batch_rows']} rows",
        "algorithm": est.algorithm,
        "allocation": est.allocation,
        "likelihood": est.likelihood,
        "covariance_type": est.covariance_type,
        "moves": ", ".join(est.moves) or "none",
        "laps": len(est.history_),
        "resumed from lap": resumed_from_lap,
        "model": str(model_path),
    }
    sample = read_sample(source)
    report_path = write_report_for(est, out / REPORT_FILE, sample, plan["n_rows"], extra)
    figures = write_figures(est, out / FIGURES_DIR, sample)
    summary = {
        "out": str(out),
        "model": str(model_path),
        "report": str(report_path),
        "figures": {k: str(v) for k, v in figures.items()},
        "data": data,
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
            if k in _OPTION_NAMES
        },
    }
    write_json(out / RUN_FILE, summary)
    return summary


_OPTION_NAMES = tuple(fit_options())


# ---------------------------------------------------------------------- scoring
def check_output(out: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite to replace it")
    return out


def score_into(
    est: Any, data: str, out: str | os.PathLike, overwrite: bool = False, proba: bool = False
) -> dict[str, Any]:
    """Labels and per-row log-likelihoods of ``data`` into the Zarr group ``out``.

    Written under a temporary name and renamed into place; with ``overwrite`` an existing
    ``out`` is replaced only once the new one is complete.
    """
    out = check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = out.with_name(f".{out.name}.new-{secrets.token_hex(4)}")
    try:
        result = est.score_store(data, fresh, proba=proba)
        result.pop("group", None)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
            os.rename(out, old)
            os.rename(fresh, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(fresh, out)
    finally:
        if fresh.exists():
            shutil.rmtree(fresh, ignore_errors=True)
    counts = np.asarray(result.get("counts", []), dtype=np.float64)
    return {
        "out": str(out),
        "model_K": int(est.n_components_),
        "n_rows": int(counts.sum()) if counts.size else None,
        "mean_log_likelihood": float(result["mean_log_likelihood"]),
        "counts": [int(c) for c in counts],
    }


def stderr_progress() -> Callable[[dict, int], None]:
    """A lap listener printing one line per lap to stderr."""

    def show(record: dict, max_laps: int) -> None:
        print(lap_line(record, max_laps), file=sys.stderr, flush=True)

    return show
