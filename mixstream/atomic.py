"""Atomic writes: a reader sees the old content or the new, never a half-written file or a mix.

Files (``atomic_write_file``, ``atomic_write_bytes``, ``atomic_write_text``): the content goes
to a temporary file in the target's own directory (a rename is atomic only within one file
system), is flushed and fsync'ed, then renamed over the target with ``os.replace``; the
directory is fsync'ed after, so the rename itself survives a crash. On any error, the
exception included that a caller raises inside the ``with`` block, the temporary file is
removed and the target keeps its previous content (or stays absent).

Directories (``atomic_directory``): the caller writes a sibling directory; on success it is
exchanged with an existing target in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``)
and the old tree removed. Under the final name there is always one whole tree, the old or the
new, even for a process killed at any point (tests/system/test_faults.py kills writers with
SIGKILL).
Where the exchange is not available the old tree is moved aside first (for an instant there is
none). On error the sibling is removed and the target is left as it was.

Modes: the temporary file is created with ``os.open(..., 0o666)``, so the process umask
applies as for any ``open(path, "w")``: 0644 under the usual umask 022, for every output
(``tempfile.mkstemp`` would make them 0600). Temporary names start with a dot and end in
``.partial`` (files) or hold ``.partial-`` / ``.old-`` (directories): hidden from listings, and
recognisable as leftovers if a process is killed between creating and renaming them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: flags of a fresh temporary file; O_EXCL: never open someone else's file
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file next to ``path`` (mode 0o666 less the umask): (descriptor, its path)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
        try:
            return os.open(tmp, _CREATE, 0o666), tmp
        except FileExistsError:  # 48 random bits taken: draw again
            continue


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable; best effort (not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_write_file(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block ends without error.

    Parameters
    ----------
    path : str or PathLike
        The target; its directory is created if needed.
    mode : {"wb", "w"}
        Binary or text.
    encoding : str, optional
        Text mode only; default UTF-8.

    Yields
    ------
    The open temporary file. Do not close it; the context manager flushes, fsyncs and
    renames it.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        if mode == "w":
            fh = os.fdopen(fd, "w", encoding=encoding or "utf-8")
        else:
            fh = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (``atomic_write_file``); returns the path."""
    with atomic_write_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (``atomic_write_file``); returns the path."""
    with atomic_write_file(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


@contextmanager
def atomic_directory(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a sibling path to write a directory tree at; it becomes ``dest`` on success.

    Parameters
    ----------
    dest : str or PathLike
        The final directory (a local path; its parent is created if needed).
    overwrite : bool
        Replace an existing ``dest`` (only once the new tree is complete); without it an
        existing ``dest`` raises FileExistsError before anything is written.

    Yields
    ------
    str, an absolute path that does not exist yet (create it, e.g. with
    ``zarr.open_group(path, mode="w-")``). On any exception it is removed and ``dest`` is
    left as it was.
    """
    dest_path = Path(os.path.abspath(os.fspath(dest)))
    if os.path.lexists(dest_path) and not overwrite:
        raise FileExistsError(f"{dest_path} already exists; pass overwrite=True to replace it")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    partial = dest_path.with_name(f".{dest_path.name}.partial-{token}")
    try:
        yield str(partial)
        _swap_in(partial, dest_path, dest_path.with_name(f".{dest_path.name}.old-{token}"))
    except BaseException:
        _remove(partial)
        raise
    _fsync_dir(dest_path.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the platform or file system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _find_renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, or another libc
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_renameat2 = _find_renameat2()


def _swap_in(new: Path, dest: Path, old: Path) -> None:
    """Rename ``new`` to ``dest`` and remove the tree ``dest`` held.

    An existing ``dest`` is exchanged with ``new`` in one atomic step where the system allows
    (Linux), so the final name always holds a whole tree, the old or the new, even if the
    process is killed; elsewhere it is moved aside first (for an instant there is no tree
    under the final name) and put back if the second rename fails.
    """
    if not os.path.lexists(dest):
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        _remove(new)  # now the old tree
        return
    os.rename(dest, old)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    """Remove a file, link or directory tree if it exists; never raises."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            path.unlink()
    except OSError:
        pass


__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_file", "atomic_write_text"]
