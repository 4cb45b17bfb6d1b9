"""Save and load fitted models: arrays plus JSON metadata, never pickle.

A model file is a zip archive (``.msz`` by convention) holding ``meta.json`` and one ``.npy``
member per array. Loading reads the JSON, checks the format version, and reads each array with
``allow_pickle=False``, checking its dtype and shape against the metadata, so a file from
someone else can never run code and a damaged or tampered file is refused with a clear message.
The values are checked too (``mixstream.model_check``): finite arrays, weights on the simplex,
positive concentrations, positive-definite covariances, metadata that agrees with the arrays.
Files are written atomically (``mixstream.atomic``): a reader sees the old file or the new.
A path may be an fsspec URL (``s3://bucket/model.msz``, see ``mixstream.urls``): the archive is
built in memory and written by one PUT of the complete object, atomic for readers too.
"""

from __future__ import annotations

import io as _io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mixstream import urls
from mixstream.atomic import atomic_write_file
from mixstream.model_check import ValueProblem, check_model_values

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
    if urls.is_url(path):  # the complete archive, then one PUT
        blob = _io.BytesIO()
        _write_archive(blob, header, arrays)
        return urls.write_bytes(path, blob.getvalue())  # type: ignore[return-value]
    path = Path(path)
    with atomic_write_file(path) as fh:
        # the archive is closed (its directory written) before the file is synced and renamed
        _write_archive(fh, header, arrays)
    return path


def _write_archive(fh: Any, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(header, indent=1))
        for k, v in arrays.items():
            buf = _io.BytesIO()
            np.save(buf, v, allow_pickle=False)
            zf.writestr(f"arrays/{k}.npy", buf.getvalue())


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by ``write_model_file``; raise ModelFileError if it is not sound."""
    if urls.is_url(path):
        try:
            source: Any = _io.BytesIO(urls.read_bytes(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"no model file at {path}") from None
    else:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no model file at {path}")
        source = path
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile as err:
        raise ModelFileError(f"{path} is not a mixstream model file (not a zip archive)") from err
    with zf:
        try:
            header = json.loads(zf.read("meta.json"))
        except Exception as err:  # missing member, bad zip entry, bad UTF-8 or bad JSON
            raise ModelFileError(f"{path} has no readable meta.json: {err}") from err
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = header.get("format") if isinstance(header, dict) else type(header).__name__
            raise ModelFileError(f"{path} is not a mixstream model file (format {found!r})")
        _check_format_version(path, header)
        specs = header.get("arrays")
        if not isinstance(specs, dict) or not isinstance(header.get("meta"), dict):
            raise ModelFileError(
                f"{path}: meta.json lacks its 'meta' or 'arrays' table: the file was altered or "
                "damaged"
            )
        arrays = {}
        for name, spec in specs.items():
            if not _is_array_spec(spec):
                raise ModelFileError(
                    f"{path}: the metadata of array {name!r} is malformed ({spec!r}): the file "
                    "was altered or damaged"
                )
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
    meta = _from_json(header["meta"])
    try:
        check_model_values(meta, arrays)
    except ValueProblem as err:
        raise ModelFileError(
            f"{path}: {err}; the file was altered or damaged, or was written by a faulty fit"
        ) from None
    return meta, arrays


def _check_format_version(path: Any, header: dict[str, Any]) -> None:
    """Refuse a missing, malformed, non-positive or newer ``format_version``."""
    if "format_version" not in header:
        raise ModelFileError(f"{path} has no model format version: the file was altered or damaged")
    version = header["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(
            f"{path} has an invalid model format version {version!r}: versions are integers "
            f"from 1 to {FORMAT_VERSION}; the file was altered or damaged"
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {version}, newer than this mixstream reads "
            f"({FORMAT_VERSION}); upgrade mixstream to load it"
        )


def _is_array_spec(spec: Any) -> bool:
    """Whether ``spec`` is {"dtype": str, "shape": [non-negative ints]}."""
    if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str):
        return False
    shape = spec.get("shape")
    return isinstance(shape, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    )
