"""A fit's run directory, its options, its data and the cluster it runs on (no Prefect).

    options = fit_options(n_components=1, algorithm="movb", moves=None)
    est = make_estimator(options, checkpoint_dir="out/checkpoints")     # validated
    source, plan = describe_data("data.zarr", options["batch_size"])
    with open_executor(source, scheduler=None, n_workers=2) as executor:
        ...

A run directory holds model.msz, report.html, figures/*.png, run.json and, while a fit is
unfinished, checkpoints/checkpoint.msz (a fit run again into the same directory resumes it).

run.json, written last when a fit publishes its outputs, marks the run finished and names the
fit (``fit_id``, a uuid) that every artifact carries (model metadata, report, the labels the
model writes). A fit into a directory that holds a finished run is refused unless
``overwrite``; with it, the old run is renamed aside (one atomic rename) and removed before the
new fit starts, so the files in a run directory always belong to one fit
(``prepare_run_dir``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

from mixstream import urls
from mixstream.options import RUN_DEFAULTS, FitOptions, default_moves, split_moves

#: environment variable naming the Dask scheduler when no address is given
SCHEDULER_ENV = "MIXSTREAM_SCHEDULER"
#: file names inside a fit's output directory
MODEL_FILE = "model.msz"
REPORT_FILE = "report.html"
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
FIGURES_DIR = "figures"
#: run.json's "status" once a fit has published its outputs
FINISHED = "finished"


class RunExistsError(FileExistsError):
    """An output (a run directory, a labels store) exists and ``overwrite`` was not given.

    The message names the Python parameters (``overwrite=True``, ``out``);
    ``cli_message()`` names the command line's flags (``--overwrite``, ``--out``).
    """

    def __init__(self, path: str | os.PathLike, what: str = "exists") -> None:
        self.path, self.what = str(path), what
        super().__init__(self.message("overwrite=True", "out"))

    def message(self, overwrite: str, out: str) -> str:
        return f"{self.path} {self.what}; pass {overwrite} to replace it, or choose another {out}"

    def cli_message(self) -> str:
        return self.message("--overwrite", "--out")


def fit_options(
    n_components: int = RUN_DEFAULTS.n_components,
    allocation: str = RUN_DEFAULTS.allocation,
    likelihood: str = RUN_DEFAULTS.likelihood,
    covariance_type: str = RUN_DEFAULTS.covariance_type,
    algorithm: str = RUN_DEFAULTS.algorithm,
    moves: Any = RUN_DEFAULTS.moves,
    batch_size: int | None = RUN_DEFAULTS.batch_size,
    max_laps: int = RUN_DEFAULTS.max_laps,
    tol: float = RUN_DEFAULTS.tol,
    random_state: int = RUN_DEFAULTS.random_state,
    latent_dim: int | None = RUN_DEFAULTS.latent_dim,
    missing: str = RUN_DEFAULTS.missing,
) -> dict[str, Any]:
    """The options of a fit into a run directory (JSON-able, for run.json and flow tasks);
    the defaults are ``mixstream.options.RUN_DEFAULTS``; ``moves=None`` means the algorithm's
    default moves (all for moVB, none otherwise), a string is split ("birth,merge", "none")."""
    if moves is None:
        moves = default_moves(algorithm)
    elif isinstance(moves, str):
        moves = split_moves(moves)
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
        "latent_dim": latent_dim,
        "missing": missing,
    }


#: the option names a run.json records
OPTION_NAMES = tuple(inspect.signature(fit_options).parameters)


def make_estimator(options: dict[str, Any], checkpoint_dir: Any = None) -> Any:
    """A MixtureModel with ``options``, validated (ValueError names the bad option)."""
    from mixstream import MixtureModel

    checkpoint_dir = None if checkpoint_dir is None else str(checkpoint_dir)
    fit = FitOptions(**options, checkpoint_dir=checkpoint_dir).validated()
    return MixtureModel(**fit.params())


def describe_data(
    data: str, batch_size: int | None = None, missing: str = "error"
) -> tuple[Any, dict[str, Any]]:
    """Open ``data`` (a Zarr store's path or URL), check it and plan its batches;
    ``missing="marginalize"``: its batches may hold NaN (missing values).

    Returns
    -------
    (BatchSource, dict)
        The source and a small JSON-able description of it (rows, features, batches).
    """
    from mixstream.data.sources import open_source

    if not isinstance(data, str | os.PathLike):
        raise ValueError(f"data must be the path or URL of a Zarr store, got {type(data).__name__}")
    urls.check_url(os.fspath(data))  # an unusable scheme in one line, before zarr tries
    try:
        source = open_source(os.fspath(data), batch_size, missing=missing)
    except Exception as err:  # no credentials for an object store: one clear line
        clear = urls.access_error(err, os.fspath(data))
        if clear is err:
            raise
        raise clear from err
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
    """The Dask dashboard's address of an executor (None in-process)."""
    return getattr(executor, "dashboard_link", None)


def checkpoint_lap(directory: str | os.PathLike) -> int:
    """Laps done in the checkpoint in ``directory``, for progress displays only (0 when there
    is none or it is unreadable: the fit itself then reports the problem).

    Reads the file's meta.json alone (see mixstream.io): a moVB checkpoint also holds every
    batch's statistics, which need not be loaded twice.
    """
    from mixstream.engine.checkpoint import checkpoint_path

    path = checkpoint_path(directory)
    if not urls.exists(path):
        return 0
    try:
        with zipfile.ZipFile(io.BytesIO(urls.read_bytes(path))) as zf:
            header = json.loads(zf.read("meta.json"))
        return int(header["meta"]["result"]["n_iter"])
    except Exception:
        return 0


def has_checkpoint(directory: str | os.PathLike) -> bool:
    from mixstream.engine.checkpoint import checkpoint_exists

    return checkpoint_exists(directory)


def remove_checkpoint(checkpoint_dir: str | os.PathLike) -> None:
    """Drop a finished fit's checkpoint (the model file holds the result), so that the next
    fit into the same output starts afresh instead of resuming a finished one."""
    from mixstream.engine.checkpoint import checkpoint_path

    if urls.is_url(checkpoint_dir):
        urls.remove(checkpoint_path(checkpoint_dir))
        return
    checkpoint_path(checkpoint_dir).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(checkpoint_dir).rmdir()  # only when empty


def check_output(out: str | os.PathLike, overwrite: bool) -> Any:
    """``out`` made absolute (a URL: as given, a str); FileExistsError when it exists and may
    not be replaced."""
    if urls.is_url(out):
        return check_remote_output(os.fspath(out), overwrite)
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise RunExistsError(out)
    return out


def resolve_out(out: str | os.PathLike) -> Any:
    """An output made absolute: a Path, or a URL (str) as given."""
    return urls.resolve(out) if urls.is_url(out) else Path(out).resolve()


def data_location(data: Any) -> str:
    """The data of a run as run.json records it: a URL as given (it has a scheme), else the
    absolute path, so that the run can be read from any working directory."""
    text = os.fspath(data) if isinstance(data, str | os.PathLike) else str(data)
    return text if "://" in text else os.path.abspath(text)


def run_state(out: str | os.PathLike) -> str:
    """What ``out`` holds: "none", "unfinished" (a checkpoint: a fit into ``out`` resumes it)
    or "finished" (run.json or model.msz of a published fit, and no checkpoint). On an object
    store only a run.json with status "finished" marks a finished run (it is written last)."""
    if urls.is_url(out):
        return remote_run_state(os.fspath(out))
    out = Path(out)
    if has_checkpoint(out / CHECKPOINT_DIR):
        return "unfinished"
    if (out / RUN_FILE).exists() or (out / MODEL_FILE).exists():
        return "finished"
    return "none"


def move_aside(out: str | os.PathLike) -> None:
    """Rename ``out`` to a hidden sibling (one atomic rename), then remove that: after the
    rename nothing of the old run is left under ``out``, even if the removal is interrupted."""
    out = Path(out)
    aside = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:12]}"
    os.replace(out, aside)
    shutil.rmtree(aside, ignore_errors=True)


def prepare_run_dir(out: str | os.PathLike, overwrite: bool = False) -> str:
    """Make ``out`` ready for a fit; its state before ("none", "unfinished" or "finished").

    A finished run in ``out`` raises RunExistsError unless ``overwrite``; with it, ``out`` as a
    whole is moved aside (one rename) and removed before the fit starts. An unfinished run (a
    checkpoint) is left for the fit to resume, with or without ``overwrite`` (so that a
    scheduled refit with ``overwrite`` still resumes an interrupted night; a checkpoint of
    other options or data is refused by the fit with CheckpointMismatch). Nothing is written:
    a fit that fails before its first lap leaves ``out`` as it found it.
    """
    if urls.is_url(out):  # run.json deleted first, then the rest (mixstream.app.remote)
        return prepare_remote_run_dir(os.fspath(out), overwrite)
    out = Path(out).resolve()
    state = run_state(out)
    if state == "finished":
        if not overwrite:
            raise RunExistsError(out, "holds a finished run")
        move_aside(out)
    return state


def model_path(model: str | os.PathLike) -> Any:
    """A model file, or the model file in a fit's output directory (a str for a URL: one
    that does not name an existing object is taken as a run directory)."""
    if urls.is_url(model):
        return remote_model_path(os.fspath(model))
    path = Path(model)
    return path / MODEL_FILE if path.is_dir() else path


def read_run_file(directory: str | os.PathLike) -> dict[str, Any]:
    """The run.json of a run directory ({} when there is none)."""
    if urls.is_url(directory):
        target = urls.join(directory, RUN_FILE)
        return json.loads(urls.read_bytes(target)) if urls.exists(target) else {}
    path = Path(directory) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}


# ---------------------------------------------------------------------- on object stores
#: the object whose presence makes a Zarr group (v3) readable: written last, deleted first
ZARR_MARKER = "zarr.json"


def remote_model_path(url: str) -> str:
    """A model object, or the model.msz of a run directory at ``url``."""
    url = url.rstrip("/")
    if url.endswith(".msz"):
        return url
    fs, path = urls.filesystem(url)
    return url if fs.isfile(path) else urls.join(url, MODEL_FILE)


def remote_run_state(url: str) -> str:
    """ "unfinished" (a checkpoint), "finished" (run.json with status finished) or "none"."""
    if has_checkpoint(urls.join(url, CHECKPOINT_DIR)):
        return "unfinished"
    if read_run_file(url).get("status") == FINISHED:
        return "finished"
    return "none"


def prepare_remote_run_dir(url: str, overwrite: bool) -> str:
    """``prepare_run_dir`` on an object store: a finished run is refused without
    ``overwrite``; with it its run.json is deleted first (from then on no reader takes it for
    a result), then the rest. Leftovers of an unpublished run (no finished run.json, no
    checkpoint) are removed too. Returns the state found."""
    state = remote_run_state(url)
    if state == "finished" and not overwrite:
        raise RunExistsError(url, "holds a finished run")
    if state == "finished":
        urls.remove(urls.join(url, RUN_FILE))
        urls.remove(url, recursive=True)
    elif state == "none":
        for name in (RUN_FILE, MODEL_FILE, REPORT_FILE):
            urls.remove(urls.join(url, name))
        urls.remove(urls.join(url, FIGURES_DIR), recursive=True)
    return state


def check_remote_output(url: str, overwrite: bool) -> str:
    """``url`` (a Zarr group to write); RunExistsError when one is there and not
    ``overwrite``."""
    url = url.rstrip("/")
    urls.check_url(url)
    if not overwrite and urls.exists(urls.join(url, ZARR_MARKER)):
        raise RunExistsError(url)
    return url
