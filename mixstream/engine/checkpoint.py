"""Checkpoints: the state of a fit after a complete lap, written atomically.

One file, ``<dir>/checkpoint.msz``, in the same no-pickle format as saved models (JSON metadata
plus arrays; see mixstream.io). It is written to a temporary name in the same directory and
renamed over the previous one, so a reader sees either the last complete lap or the one before,
never a half-written file. A fit given the same directory again resumes from it. The directory
may be an fsspec URL (``s3://bucket/run/checkpoints``): the checkpoint is then one object
replaced by one PUT of the complete file (see mixstream.urls), atomic for readers as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mixstream import urls
from mixstream.io import ModelFileError, _jsonable, read_model_file, write_model_file

CHECKPOINT_NAME = "checkpoint.msz"


class CheckpointMismatch(ValueError):
    """A checkpoint exists but belongs to a different fit (other data or options)."""


def checkpoint_path(directory: str | os.PathLike) -> Any:
    """The checkpoint file in ``directory``: a Path, or a str for a URL."""
    if urls.is_url(directory):
        return urls.join(directory, CHECKPOINT_NAME)
    return Path(directory) / CHECKPOINT_NAME


def checkpoint_exists(directory: str | os.PathLike) -> bool:
    return urls.exists(checkpoint_path(directory))


def save_checkpoint(
    directory: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Any:
    """Atomically replace the checkpoint in ``directory`` with (meta, arrays)."""
    return write_model_file(checkpoint_path(directory), {"kind": "checkpoint", **meta}, arrays)


def load_checkpoint(
    directory: str | os.PathLike, fingerprint: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The checkpoint in ``directory``, or None if there is none.

    Raises CheckpointMismatch when it was written by a fit whose ``fingerprint`` (data shape,
    batch plan, options) differs, rather than silently resuming the wrong fit, and
    ModelFileError, saying to delete it, when it is damaged: truncated, altered, or holding
    values no fit writes (the checks of ``mixstream.io.read_model_file``).
    """
    path = checkpoint_path(directory)
    if not urls.exists(path):
        return None
    try:
        meta, arrays = read_model_file(path)
        if meta.get("kind") != "checkpoint":
            raise ModelFileError(f"{path} is not a checkpoint (its metadata has no kind)")
    except ModelFileError as err:
        raise ModelFileError(
            f"cannot resume from the checkpoint: {err}. Delete {path} to start the fit over "
            "(the laps it recorded are lost), or fit into another output directory"
        ) from err
    # compare in JSON form: arrays in the stored fingerprint come back as ndarrays
    old, new = _jsonable(meta.get("fingerprint", {})), _jsonable(fingerprint)
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise CheckpointMismatch(
            f"{path} belongs to a different fit (differs in: {', '.join(diff)}); use another "
            "output directory or delete the checkpoint to start over"
        )
    return meta, arrays


def prefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def unprefixed(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
