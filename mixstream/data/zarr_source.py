"""A Zarr v3 array as a BatchSource: opened by path or URL, validated, read batch by batch.

A batch is a contiguous run of whole shards (or whole chunks when the array is not sharded)
along axis 0, so every read touches each stored object once and two batches never share one.
The source pickles to its address and its plan only (a few hundred bytes): a Dask worker that
receives it opens the store itself on its first ``read``.

    src = ZarrSource("data.zarr", batch_size=100_000)    # a group: array "X"
    src.batches[:2]        # [(0, 98304), (98304, 196608)]: whole shards
    X0 = src.read(0)       # float64 (float32 stays float32), checked finite
"""

from __future__ import annotations

import math
import os
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from mixstream.data.validate import check_finite

#: when batch_size is None, batches hold about this many bytes (as float64), in whole shards
DEFAULT_BATCH_BYTES = 128 * 2**20
#: array read from a group store when ``array_path`` is not given
DEFAULT_ARRAY = "X"
#: the sibling array of X holding per-row sample weights, used by default when present
STORE_WEIGHTS = "sample_weight"


class StoreNotFoundError(FileNotFoundError, ValueError):
    """The Zarr store (or the array inside it) does not exist where it was looked for."""


class NotAStoreError(ValueError):
    """A path that is a plain file (a CSV, a .npy ...) where a Zarr store (a directory) was
    expected."""


#: file suffixes ``mixstream ingest`` reads
_INGESTIBLE = (".csv", ".tsv", ".txt", ".npy", ".parquet", ".pq")


def _not_a_store_message(path: str) -> str:
    stem, suffix = os.path.splitext(path)
    if suffix.lower() in _INGESTIBLE:
        return (
            f"{path} is a {suffix} file, not a Zarr store: fitting and scoring read Zarr stores "
            f"only. Convert it first, on the command line with `mixstream ingest {path} "
            f"{stem}.zarr` (in Python: mixstream.data.ingest.ingest({path!r}, "
            f"{stem + '.zarr'!r})), then use {stem}.zarr"
        )
    return (
        f"{path} is a file, not a Zarr store (a Zarr store is a directory); `mixstream ingest` "
        "converts .npy, CSV and Parquet files into one"
    )


class StoreReadError(OSError, ValueError):
    """Bytes of a Zarr store could not be read or decoded (a corrupted or truncated chunk)."""


def _is_url(s: str) -> bool:
    return "://" in s


def _local_path(s: str | os.PathLike) -> str | None:
    """Absolute local path for a path or a file:// URL, None for other URLs."""
    s = os.fspath(s)
    if _is_url(s):
        parsed = urlparse(s)
        if parsed.scheme != "file":
            return None
        return os.path.abspath(unquote(parsed.netloc + parsed.path))
    return os.path.abspath(os.path.expanduser(s))


def plan_zarr_batches(
    n_rows: int, unit_rows: int, batch_size: int | None, row_bytes: int
) -> tuple[int, list[tuple[int, int]]]:
    """Rows per batch (a multiple of ``unit_rows``) and the (start, stop) ranges.

    ``batch_size`` rounds to the nearest multiple >= 1 of ``unit_rows``; None aims at
    ``DEFAULT_BATCH_BYTES`` per batch. The last batch may be shorter.
    """
    if batch_size is None:
        target = max(1, DEFAULT_BATCH_BYTES // max(row_bytes, 1))
    else:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        target = int(batch_size)
    n_units = max(1, math.floor(target / unit_rows + 0.5))
    n_units = min(n_units, max(1, -(-n_rows // unit_rows)))  # no batch longer than the data
    batch_rows = n_units * unit_rows
    batches = [(s, min(s + batch_rows, n_rows)) for s in range(0, n_rows, batch_rows)]
    return batch_rows, batches


class ZarrSource:
    """Batches of a 2-D Zarr array (rows = data points), read on demand.

    Parameters
    ----------
    store : str, os.PathLike or zarr.Array
        A local path, a ``file://`` URL, another fsspec URL (``s3://...``, ``memory://...``;
        reading needs the matching fsspec filesystem), or an open ``zarr.Array``.
    batch_size : int, optional
        Rows per batch, rounded to the nearest multiple (>= 1) of the shard rows (the chunk
        rows when the array is not sharded). None: about 128 MiB (as float64) per batch.
    array_path : str, optional
        The array inside a group store; default ``"X"`` when the store is a group.
    weights : str or False, optional
        Name of a sibling 1-D array (same group, ``n_rows`` long) of non-negative sample
        weights. None: the sibling array ``"sample_weight"`` when the store has one (what
        ``mixstream ingest --weights`` writes), else unit weights. False: unit weights.
    storage_options : dict, optional
        Passed to fsspec for URLs.

    Attributes
    ----------
    n_rows, n_features, dtype, batches, name : see ``BatchSource``
    url : str, the store as given (a local path made absolute)
    array_path : str, the array inside the store ("" for an array at the root)
    batch_rows : int, rows per batch (the last batch may hold fewer)
    chunk_rows, shard_rows : int, rows per chunk / per shard (shard_rows == chunk_rows when
        the array is not sharded)
    """

    def __init__(
        self,
        store: Any,
        batch_size: int | None = None,
        array_path: str | None = None,
        weights: str | bool | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        import zarr

        self.storage_options = dict(storage_options or {})
        self._store_obj: Any = None  # only for stores that cannot be reopened by url
        self._store_cache: Any = None
        self._array_cache: dict[str, tuple[bytes, Any]] = {}  # path -> (metadata bytes, array)
        if isinstance(store, zarr.Array):
            arr = store
            self.url, self._store_obj = _address_of(arr.store)
            self.array_path = arr.path
            if array_path is not None:
                raise ValueError(
                    f"array_path={array_path!r} was given with an open zarr.Array "
                    f"({self.url!r}, path {arr.path!r}); pass the store's path instead"
                )
        elif isinstance(store, zarr.Group | zarr.abc.store.Store):
            is_group = isinstance(store, zarr.Group)
            self.url, self._store_obj = _address_of(store.store if is_group else store)
            arr = self._open_node(array_path, base=store.path if is_group else "")
            self.array_path = arr.path
        elif isinstance(store, str | os.PathLike):
            local = _local_path(store)
            self.url = (
                local if local is not None and not _is_url(os.fspath(store)) else (os.fspath(store))
            )
            if local is not None and not os.path.exists(local):
                raise StoreNotFoundError(f"Zarr store {self.url!r} does not exist (path {local})")
            if local is not None and os.path.isfile(local):
                raise NotAStoreError(_not_a_store_message(local))
            arr = self._open_node(array_path)
            self.array_path = arr.path
        else:
            raise ValueError(
                "store must be a path, a URL, a zarr.Array, a zarr.Group or a zarr store; got "
                f"{type(store).__module__}.{type(store).__name__}"
            )
        self.name = self.url if not self.array_path else f"{self.url}/{self.array_path}"
        self.weights = weights
        self._validate(arr)
        self.n_rows, self.n_features = (int(n) for n in arr.shape)
        self.dtype = np.dtype(arr.dtype)
        self.chunk_rows = int(arr.chunks[0])
        self.shard_rows = int(arr.shards[0]) if arr.shards is not None else self.chunk_rows
        row_bytes = 8 * self.n_features
        self.batch_rows, self.batches = plan_zarr_batches(
            self.n_rows, self.shard_rows, batch_size, row_bytes
        )
        self.weights_path: str | None = None
        if weights is None:  # the store's own weights, when it has them
            weights = self._default_weights()
        if weights:
            self.weights_path = self._check_weights(weights)
        self.validated = False
        #: NaN marks a missing value (missing="marginalize"); inf is refused all the same
        self.allow_nan = False

    # ------------------------------------------------------------------ opening
    def _store(self) -> Any:
        """A zarr store object for our address (cached per process)."""
        if self._store_obj is not None:
            return self._store_obj
        import zarr

        if self._store_cache is not None:
            return self._store_cache
        local = _local_path(self.url)
        if local is not None:
            st = zarr.storage.LocalStore(local, read_only=True)
        else:
            st = zarr.storage.FsspecStore.from_url(
                self.url, storage_options=self.storage_options or None, read_only=True
            )
        self._store_cache = st
        return st

    def _open_node(self, array_path: str | None, base: str = "") -> Any:
        """The array at ``base/array_path`` (or "X" when that is a group and no path is given)."""
        import zarr

        path = posixpath.join(base, array_path) if array_path else base
        try:
            node = zarr.open(self._store(), mode="r", path=path)
        except FileNotFoundError as e:
            where = f" at path {path!r}" if path else ""
            raise StoreNotFoundError(
                f"Zarr store {self.url!r} holds no Zarr array or group{where}: {e}"
            ) from e
        if isinstance(node, zarr.Group):
            if array_path:
                raise ValueError(
                    f"Zarr store {self.url!r}: {array_path!r} is a group, not an array; "
                    f"it holds {sorted(node.array_keys())}"
                )
            names = sorted(node.array_keys())
            if DEFAULT_ARRAY not in names:
                raise ValueError(
                    f"Zarr store {self.url!r} is a group without an array {DEFAULT_ARRAY!r}; "
                    f"pass array_path= one of {names}"
                )
            node = node[DEFAULT_ARRAY]
        return node

    def _validate(self, arr: Any) -> None:
        shape = tuple(arr.shape)
        dt = np.dtype(arr.dtype) if not isinstance(arr.dtype, np.dtype) else arr.dtype
        if dt.kind == "O" or not (np.issubdtype(dt, np.number) or np.issubdtype(dt, np.bool_)):
            raise ValueError(f"Zarr store {self.name!r} must hold numbers; its dtype is {dt}")
        if np.issubdtype(dt, np.complexfloating):
            raise ValueError(f"Zarr store {self.name!r} must hold real numbers; its dtype is {dt}")
        if len(shape) != 2:
            raise ValueError(
                f"Zarr store {self.name!r} must hold a 2-D array (rows = data points, columns = "
                f"features); it has {len(shape)} dimension(s), shape {shape}"
            )
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"Zarr store {self.name!r} is empty: shape {shape}")

    def _default_weights(self) -> str | None:
        """``STORE_WEIGHTS`` when the group holding X has an array of that name."""
        import zarr

        if not self.array_path:
            return None
        path = posixpath.join(posixpath.dirname(self.array_path), STORE_WEIGHTS)
        try:
            zarr.open_array(self._store(), mode="r", path=path)
        except (FileNotFoundError, zarr.errors.ContainsGroupError, KeyError):
            return None
        return STORE_WEIGHTS

    def _check_weights(self, weights: str) -> str:
        if not isinstance(weights, str) or not weights:
            raise ValueError(f"weights must name a sibling array of X, got {weights!r}")
        if not self.array_path:
            raise ValueError(
                f"Zarr store {self.name!r}: weights={weights!r} needs X to sit in a group "
                "(the weights are its sibling array)"
            )
        path = posixpath.join(posixpath.dirname(self.array_path), weights)
        import zarr

        try:
            w = zarr.open_array(self._store(), mode="r", path=path)
        except (FileNotFoundError, zarr.errors.ContainsGroupError) as e:
            raise ValueError(
                f"Zarr store {self.url!r} has no weights array {path!r} beside {self.array_path!r}"
            ) from e
        dt = np.dtype(w.dtype)
        if not (np.issubdtype(dt, np.number) or np.issubdtype(dt, np.bool_)) or (
            np.issubdtype(dt, np.complexfloating)
        ):
            raise ValueError(f"weights {self.url}/{path} must hold real numbers; dtype {dt}")
        if tuple(w.shape) != (self.n_rows,):
            raise ValueError(
                f"weights {self.url}/{path} must have shape ({self.n_rows},) to match "
                f"{self.name!r}; it has shape {tuple(w.shape)}"
            )
        return path

    def _array(self, path: str) -> Any:
        """The array at ``path`` with its current metadata.

        Opening an array parses its metadata (about 1.3 ms, a tenth of a 100,000-row batch's
        read), so on a local store the open array is kept while its metadata file's bytes stay
        the same; any other store is reopened at every read.
        """
        import zarr

        meta = self._metadata_bytes(path)
        cached = self._array_cache.get(path)
        if meta is not None and cached is not None and cached[0] == meta:
            return cached[1]
        try:
            arr = zarr.open_array(self._store(), mode="r", path=path)
        except FileNotFoundError as e:
            raise StoreNotFoundError(
                f"Zarr store {self.url!r}: the array {path!r} can no longer be found "
                f"(was the store moved or deleted?): {e}"
            ) from e
        if meta is not None:
            # the bytes were read before the open: a change in between only costs a reopen
            self._array_cache[path] = (meta, arr)
        return arr

    def _metadata_bytes(self, path: str) -> bytes | None:
        """The raw metadata of the local array at ``path``; None when it cannot be read."""
        local = None if self._store_obj is not None else _local_path(self.url)
        if local is None:
            return None
        for name in ("zarr.json", ".zarray"):  # zarr v3, zarr v2
            try:
                with open(os.path.join(local, path, name), "rb") as f:
                    return f.read()
            except OSError:
                continue
        return None

    # ------------------------------------------------------------------ BatchSource
    def _check_batch(self, i: int) -> tuple[int, int]:
        if not -len(self.batches) <= i < len(self.batches):
            raise IndexError(f"batch {i} out of range: {self.name!r} has {len(self.batches)}")
        return self.batches[i]

    def _read_rows(self, arr: Any, start: int, stop: int, i: int, what: str) -> np.ndarray:
        try:
            return np.asarray(arr[start:stop])
        except MemoryError:
            raise
        except FileNotFoundError as e:
            raise StoreNotFoundError(
                f"Zarr store {self.name!r} batch {i} (rows {start}:{stop}): {what} vanished: {e}"
            ) from e
        except Exception as e:
            raise StoreReadError(
                f"Zarr store {self.name!r} batch {i} (rows {start}:{stop}): cannot read or decode "
                f"the stored {what} (corrupted or truncated chunk?): {type(e).__name__}: {e}"
            ) from e

    def read(self, i: int) -> np.ndarray:
        """Rows of batch ``i``: float32 stays float32, every other dtype becomes float64."""
        start, stop = self._check_batch(i)
        arr = self._array(self.array_path)
        shape = tuple(int(n) for n in arr.shape)
        if shape != (self.n_rows, self.n_features) or np.dtype(arr.dtype) != self.dtype:
            raise ValueError(
                f"Zarr store {self.name!r} changed since its batches were planned: shape "
                f"{(self.n_rows, self.n_features)} dtype {self.dtype} then, shape {shape} dtype "
                f"{np.dtype(arr.dtype)} now; a fit cannot go on over data that changed under "
                "it: start it again on the data as it is now"
            )
        Xb = self._read_rows(arr, start, stop, i, "data")
        if Xb.dtype != np.float32:  # zarr hands over a new array: no copy where it is float64
            Xb = Xb.astype(np.float64, copy=False)
        if not self.validated:
            where = f"Zarr store {self.name!r} batch {i} (rows {start}:{stop})"
            check_finite(Xb, where, row_offset=start, allow_nan=self.allow_nan)
        return Xb

    def read_weights(self, i: int) -> np.ndarray | None:
        """Sample weights of batch ``i`` (float64), or None when the source has none."""
        if self.weights_path is None:
            return None
        start, stop = self._check_batch(i)
        arr = self._array(self.weights_path)
        if tuple(arr.shape) != (self.n_rows,):
            raise ValueError(
                f"weights {self.url}/{self.weights_path} changed since planning: shape "
                f"({self.n_rows},) then, {tuple(arr.shape)} now"
            )
        w = self._read_rows(arr, start, stop, i, "weights").astype(np.float64, copy=False)
        where = f"weights {self.url}/{self.weights_path} batch {i} (rows {start}:{stop})"
        check_finite(w, where, row_offset=start)
        if (w < 0).any():
            rows = (np.flatnonzero(w < 0)[:5] + start).tolist()
            raise ValueError(f"{where} holds negative values; first rows: {rows}")
        return w

    # ------------------------------------------------------------------ helpers
    @property
    def nbytes(self) -> int:
        """Size of the stored values (uncompressed)."""
        return self.n_rows * self.n_features * self.dtype.itemsize

    def check_visible(self) -> str | None:
        """None when this process can open the store, else why not (run on Dask workers)."""
        local = _local_path(self.url) if self._store_obj is None else None
        if local is not None and not os.path.exists(local):
            return f"path {local} does not exist"
        try:
            arr = self._array(self.array_path)
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        if tuple(arr.shape) != (self.n_rows, self.n_features):
            return (
                f"the array has shape {tuple(arr.shape)}, planned {(self.n_rows, self.n_features)}"
            )
        return None

    def describe(self) -> dict[str, Any]:
        """What this source reads, for logs."""
        return {
            "kind": "zarr",
            "store": self.url,
            "array": self.array_path,
            "shape": (self.n_rows, self.n_features),
            "dtype": str(self.dtype),
            "chunk_rows": self.chunk_rows,
            "shard_rows": self.shard_rows,
            "batch_rows": self.batch_rows,
            "n_batches": len(self.batches),
            "nbytes": self.nbytes,
            "weights": self.weights_path,
        }

    def __repr__(self) -> str:
        return (
            f"ZarrSource({self.name!r}, shape=({self.n_rows}, {self.n_features}), "
            f"dtype={self.dtype}, batches={len(self.batches)}x{self.batch_rows} rows)"
        )

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Address and plan only: no open store or array travels to a worker."""
        skip = ("_store_cache", "_array_cache", "batches")
        state = {k: v for k, v in self.__dict__.items() if k not in skip}
        state["n_batches"] = len(self.batches)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        n_batches = state.pop("n_batches")
        self.__dict__.update(state)
        self._store_cache = None
        self._array_cache = {}
        step = self.batch_rows
        self.batches = [(s, min(s + step, self.n_rows)) for s in range(0, self.n_rows, step)]
        assert len(self.batches) == n_batches

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.url, self.array_path, self.weights_path, self.batch_rows)


def _address_of(st: Any) -> tuple[str, Any]:
    """(url, store object or None) of a zarr store: None when the url reopens it."""
    import zarr

    if isinstance(st, zarr.storage.LocalStore):
        return str(Path(st.root).absolute()), None
    if isinstance(st, zarr.storage.FsspecStore):
        try:
            return st.fs.unstrip_protocol(st.path), st
        except Exception:
            return f"{type(st).__name__}:{st.path}", st
    return f"<{type(st).__name__} {id(st):#x}>", st
