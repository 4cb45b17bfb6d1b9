"""Run directories, labels and ingested stores on object stores (fsspec URLs such as s3://).

An object store has no directory and no rename: a group of objects cannot appear at once.
What a reader may rely on is one object written by one PUT (whole or absent). So every output
made of several objects is written in an order that makes one *marker* object the commit:

- a run directory: model.msz, report.html and figures/*.png first (each one PUT), run.json
  (status "finished") last. A run directory without a finished run.json is unfinished: it is
  resumed from its checkpoint (checkpoints/checkpoint.msz, one PUT per lap) or refitted, never
  read as a result. Replacing a finished run deletes its run.json first, then the rest.
- a Zarr group (labels from ``score``, a store from ``ingest``): written to a local staging
  directory, then uploaded with the root ``zarr.json`` last; replacing one deletes the root
  ``zarr.json`` first. Without its root ``zarr.json`` the group does not open.

The files are produced in a local temporary directory and uploaded (the same code that writes
local run directories writes them); they never hold credentials.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from typing import Any

from mixstream import urls
from mixstream.app.rundir import (
    CHECKPOINT_DIR,
    FIGURES_DIR,
    FINISHED,
    MODEL_FILE,
    REPORT_FILE,
    RUN_FILE,
    RunExistsError,
    has_checkpoint,
    read_run_file,
)

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
    """"unfinished" (a checkpoint), "finished" (run.json with status finished) or "none"."""
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


def write_remote_run_dir(
    est: Any,
    url: str,
    data: str,
    source: Any,
    plan: dict[str, Any],
    resumed_from_lap: int = 0,
    dashboard: str | None = None,
) -> dict[str, Any]:
    """``write_run_dir`` into the object-store prefix ``url``: written in a local staging
    directory, uploaded one PUT per file, run.json last. The summary names the objects."""
    from mixstream.app.outputs import write_run_dir

    url = url.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="mixstream-run-") as stage:
        summary = write_run_dir(
            est, stage, data, source, plan, resumed_from_lap, dashboard, location=url
        )
        urls.upload_tree(stage, url, last=(RUN_FILE,))
    return summary


def check_remote_output(url: str, overwrite: bool) -> str:
    """``url`` (a Zarr group to write); RunExistsError when one is there and not
    ``overwrite``."""
    url = url.rstrip("/")
    urls.check_url(url)
    if not overwrite and urls.exists(urls.join(url, ZARR_MARKER)):
        raise RunExistsError(url)
    return url


def publish_zarr_tree(local_dir: str, url: str) -> str:
    """Upload the Zarr group in ``local_dir`` to ``url``, replacing what is there: the old
    root zarr.json is deleted first, the new one uploaded last."""
    return urls.publish_tree(local_dir, url, ZARR_MARKER)


def staged_store(url: str) -> tempfile.TemporaryDirectory:
    """A local temporary directory to build the Zarr group for ``url`` in."""
    return tempfile.TemporaryDirectory(prefix="mixstream-" + posixpath.basename(url) + "-")


def stage_path(stage: str) -> str:
    """The (not yet existing) store path inside a staging directory."""
    return os.path.join(stage, "store.zarr")
