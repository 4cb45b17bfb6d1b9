"""Paths and fsspec URLs (s3://, gs://, az://, memory://, file://) behind one small interface.

Every input and output of mixstream may be a local path or an fsspec URL. This module is the
one place that tells them apart and reads, writes, lists and removes objects:

    write_bytes("s3://bucket/run/model.msz", data)   # one PUT: readers see old or new
    write_bytes("runs/today/model.msz", data)        # temporary file + rename (atomic.py)

A ``file://`` URL is a local path. Other URLs go through ``fsspec``; credentials come from
fsspec's own mechanisms only (environment variables such as AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL, FSSPEC_<PROTOCOL>_<OPTION> variables, the provider's
configuration files, or ``storage_options`` a caller passes), never from our own files.

Atomicity on object stores: an object written by one PUT (``fs.pipe_file``; a multipart upload
for large objects becomes visible only on its completion) is seen by readers whole or not at
all. A group of objects (a run directory, a Zarr store) has no atomic rename; it is made
visible by writing its marker object last (run.json for a run directory, the root zarr.json of
a Zarr group) and hidden first on replacement, by deleting the marker before the rest.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlparse

from mixstream.atomic import atomic_directory, atomic_write_bytes


class UrlError(ValueError):
    """A URL whose scheme is unknown or needs a package that is not installed."""


class ObjectStoreAccessError(PermissionError):
    """An object store refused access: no credentials, or credentials it does not accept."""


def is_url(target: Any) -> bool:
    """Whether ``target`` is a URL other than ``file://`` (a remote or in-memory object)."""
    if not isinstance(target, str | os.PathLike):
        return False
    s = os.fspath(target)
    return isinstance(s, str) and "://" in s and not s.startswith("file://")


def local_path(target: str | os.PathLike) -> str:
    """The absolute local path of a path or a ``file://`` URL."""
    s = os.fspath(target)
    if s.startswith("file://"):
        parsed = urlparse(s)
        return os.path.abspath(unquote(parsed.netloc + parsed.path))
    return os.path.abspath(os.path.expanduser(s))


def resolve(target: str | os.PathLike) -> str:
    """A URL as given (without a trailing slash), a local path made absolute."""
    return os.fspath(target).rstrip("/") if is_url(target) else local_path(target)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base`` / ``parts`` for a URL (posix) or a local path."""
    if is_url(base):
        return posixpath.join(os.fspath(base).rstrip("/"), *parts)
    return os.path.join(local_path(base), *parts)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0]


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of ``url``; UrlError, in one line naming the scheme
    and the package to install, when the scheme is unknown or its package missing."""
    import fsspec
    from fsspec.registry import known_implementations

    scheme = scheme_of(url)
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as err:
        impl = known_implementations.get(scheme, {})
        package = str(impl.get("class", scheme)).split(".", 1)[0]
        raise UrlError(
            f"cannot open {url!r}: the URL scheme {scheme!r} needs the package {package} "
            f"(pip install {package})"
        ) from err
    except ValueError as err:
        if "protocol" not in str(err).lower():
            raise
        raise UrlError(
            f"cannot open {url!r}: unknown URL scheme {scheme!r} (fsspec knows s3://, gs://, "
            "az://, memory://, file://, ... with their packages: s3fs, gcsfs, adlfs)"
        ) from err


def check_url(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Raise UrlError early for a URL whose scheme cannot be used; nothing for a path."""
    if is_url(url):
        filesystem(url, storage_options)


def access_error(err: BaseException, url: str) -> BaseException:
    """``err`` in one clear line when it is a credentials problem of an object store, else
    ``err`` itself."""
    name = type(err).__name__
    text = str(err)
    if name in ("NoCredentialsError", "PartialCredentialsError") or (
        "Unable to locate credentials" in text
    ):
        return ObjectStoreAccessError(
            f"no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE) in the environment, or pass storage_options (for gs:// and az:// "
            "their providers' usual variables)"
        )
    if isinstance(err, PermissionError) and not isinstance(err, ObjectStoreAccessError):
        return ObjectStoreAccessError(
            f"access to {url} was refused ({text.splitlines()[0] if text else name}): check "
            "the credentials in the environment or storage_options"
        )
    return err


def _call(url: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except Exception as err:
        clear = access_error(err, url)
        if clear is err:
            raise
        raise clear from err


def exists(target: str | os.PathLike) -> bool:
    if not is_url(target):
        return os.path.exists(local_path(target))
    fs, path = filesystem(os.fspath(target))
    return bool(_call(os.fspath(target), fs.exists, path))


def read_bytes(target: str | os.PathLike) -> bytes:
    """The whole content of a file or object (FileNotFoundError when there is none)."""
    if not is_url(target):
        with open(local_path(target), "rb") as fh:
            return fh.read()
    fs, path = filesystem(os.fspath(target))
    return _call(os.fspath(target), fs.cat_file, path)


def write_bytes(target: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` atomically: a temporary file renamed into place locally, one PUT of the
    complete object on an object store (readers see the old object or the new, never a part).
    Returns the target (resolved)."""
    if not is_url(target):
        return str(atomic_write_bytes(local_path(target), data))
    url = os.fspath(target)
    fs, path = filesystem(url)
    _call(url, fs.pipe_file, path, data)
    return url


def remove(target: str | os.PathLike, recursive: bool = False) -> None:
    """Remove a file or object (a tree when ``recursive``); nothing when it is absent."""
    if not is_url(target):
        import shutil

        p = local_path(target)
        if recursive and os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            os.unlink(p)
        return
    url = os.fspath(target)
    fs, path = filesystem(url)
    try:
        _call(url, fs.rm, path, recursive=recursive)
    except FileNotFoundError:
        pass
    fs.invalidate_cache()


def listdir(target: str | os.PathLike) -> list[str]:
    """Every file under ``target``, as paths relative to it (posix separators)."""
    if not is_url(target):
        root = local_path(target)
        out = []
        for d, _, files in os.walk(root):
            out += [os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/") for f in files]
        return sorted(out)
    url = os.fspath(target).rstrip("/")
    fs, path = filesystem(url)
    fs.invalidate_cache()
    try:
        found = _call(url, fs.find, path)
    except FileNotFoundError:
        return []
    path = path.rstrip("/")
    return sorted(f[len(path) + 1 :] for f in found if f.startswith(path + "/"))


def upload_tree(local_dir: str, url: str, last: tuple[str, ...] = ()) -> None:
    """Copy every file of ``local_dir`` to ``url`` (one PUT each), the files named in ``last``
    (relative paths) after all others, in that order: the marker that makes the tree visible
    to readers is written when everything it refers to is there."""
    files = listdir(local_dir)
    rest = [f for f in files if f not in last]
    for rel in rest + [f for f in last if f in files]:
        with open(os.path.join(local_dir, rel), "rb") as fh:
            write_bytes(join(url, rel), fh.read())


def publish_tree(local_dir: str, url: str, marker: str | None = None) -> str:
    """Replace what is under ``url`` with the files of ``local_dir``: the old ``marker``
    (the object that makes the tree visible to readers) is deleted first, then the rest, and
    the new tree uploaded with its ``marker`` last."""
    url = resolve(url)
    if marker:
        remove(join(url, marker))
    remove(url, recursive=True)
    upload_tree(local_dir, url, last=(marker,) if marker else ())
    return url


@contextmanager
def staged_directory(
    dest: str | os.PathLike, overwrite: bool = False, marker: str | None = None
) -> Iterator[str]:
    """A path (not yet existing) to write a directory tree at that becomes ``dest`` when the
    block ends without error: ``mixstream.atomic.atomic_directory`` for a local ``dest``; for a
    URL a local temporary directory, then ``publish_tree`` with ``marker`` last. An existing
    ``dest`` (for a URL with a marker: one whose marker exists) raises FileExistsError unless
    ``overwrite``."""
    if not is_url(dest):
        with atomic_directory(local_path(dest), overwrite=overwrite) as tmp:
            yield tmp
        return
    url = resolve(dest)
    check_url(url)
    # with a marker, a prefix without it holds only leftovers of an interrupted upload
    taken = exists(join(url, marker)) if marker else bool(listdir(url))
    if taken and not overwrite:
        raise FileExistsError(f"{url} already exists; pass overwrite=True to replace it")
    with tempfile.TemporaryDirectory(prefix="mixstream-stage-") as stage:
        tmp = os.path.join(stage, "out")
        yield tmp
        publish_tree(tmp, url, marker)


__all__ = [
    "ObjectStoreAccessError",
    "UrlError",
    "check_url",
    "exists",
    "filesystem",
    "is_url",
    "join",
    "listdir",
    "local_path",
    "publish_tree",
    "read_bytes",
    "remove",
    "resolve",
    "staged_directory",
    "upload_tree",
    "write_bytes",
]
