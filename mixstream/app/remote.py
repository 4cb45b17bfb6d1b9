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
local run directories writes them); they never hold credentials. The run directory's states
and its replacement are in mixstream.app.rundir, its upload in mixstream.app.outputs; this
module stages and publishes Zarr groups.
"""

from __future__ import annotations

import os
import posixpath
import tempfile

from mixstream import urls
from mixstream.app.rundir import ZARR_MARKER


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
