"""Save and load fitted models: arrays plus JSON metadata, never pickle.

A model file is a zip archive (``.msz`` by convention) holding ``meta.json`` and one ``.npy``
member per array. Loading reads the JSON, checks the format version, and reads each array with
``allow_pickle=False``, checking its dtype and shape against the metadata, so a file from
someone else can never run code and a damaged or tampered file is refused with a clear message.
Files are written to a temporary name beside the target and renamed into place.
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mixstream-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read: damaged, tampered, or of an unknown format."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a model file")


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return np.asarray(value["__ndarray__"], dtype=np.float64)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def write_model_file(
    path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    """Write ``meta`` (JSON-able) and ``arrays`` atomically to ``path``."""
    from mixstream import __version__

    path = Path(path)
    arrays = {k: np.array(v, order="C", copy=None) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"array {k!r} has dtype object; model files hold numeric arrays only")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mixstream_version": __version__,
        "meta": _jsonable(meta),
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("meta.json", json.dumps(header, indent=1))
            for k, v in arrays.items():
                buf = _io.BytesIO()
                np.save(buf, v, allow_pickle=False)
                zf.writestr(f"arrays/{k}.npy", buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by ``write_model_file``; raise ModelFileError if it is not sound."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise ModelFileError(f"{path} is not a mixstream model file (not a zip archive)") from err
    with zf:
        try:
            header = json.loads(zf.read("meta.json"))
        except (KeyError, json.JSONDecodeError) as err:
            raise ModelFileError(f"{path} has no readable meta.json: {err}") from err
        if header.get("format") != FORMAT:
            raise ModelFileError(
                f"{path} is not a mixstream model file (format {header.get('format')!r})"
            )
        version = header.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path} has model format version {version!r}, newer than this mixstream "
                f"reads ({FORMAT_VERSION}); upgrade mixstream to load it"
            )
        arrays = {}
        for name, spec in header.get("arrays", {}).items():
            try:
                raw = zf.read(f"arrays/{name}.npy")
                arr = np.load(_io.BytesIO(raw), allow_pickle=False)
            except Exception as err:
                raise ModelFileError(
                    f"{path}: array {name!r} is missing or damaged ({err})"
                ) from err
            if list(arr.shape) != list(spec["shape"]) or arr.dtype.str != spec["dtype"]:
                raise ModelFileError(
                    f"{path}: array {name!r} has shape {list(arr.shape)} and dtype "
                    f"{arr.dtype.str}, "
                    f"but the file's metadata says {spec['shape']} and {spec['dtype']}: the file "
                    "was altered or damaged"
                )
            arrays[name] = arr
    return _from_json(header["meta"]), arrays
