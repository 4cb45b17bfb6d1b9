"""Turn .npy, CSV and Parquet files into chunked Zarr v3 stores, in bounded memory.

    ingest("points.csv", "points.zarr", chunk_rows=65_536, shard_rows=1_048_576)
    ZarrSource("points.zarr")          # the data is the group's array "X"

The output is a Zarr group whose array ``"X"`` holds the rows. It is written under
a hidden sibling ``.<name>.partial-<random>`` and renamed to ``dest`` only once complete
(``mixstream.atomic.atomic_directory``), so ``dest`` either does not exist or holds the whole
input; a failure removes the partial directory. Writes go
one whole shard (or a run of whole chunks) at a time: no two writes touch the same stored
object, which Zarr v3 needs for sharded arrays to be written safely.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from mixstream import urls
from mixstream.data.readers import (  # re-exported: the readers lived here
    AmbiguousHeaderError as AmbiguousHeaderError,
)
from mixstream.data.readers import CsvReader, NpyReader, ParquetReader, Reader
from mixstream.data.readers import is_number as _is_number  # noqa: F401  (old name)

logger = logging.getLogger(__name__)

#: default chunk size (uncompressed) when chunk_rows is not given
CHUNK_BYTES = 4 * 2**20
#: without sharding, each write covers whole chunks adding up to about this many bytes
WRITE_BYTES = 32 * 2**20
#: CSV lines parsed per block by the line parser (the fallback of pyarrow's CSV reader)
CSV_BLOCK_LINES = 65_536
#: the store's array of per-row sample weights (``ZarrSource`` reads it by default)
WEIGHTS_ARRAY = "sample_weight"
#: the dimension names of every row array mixstream writes (rows, then columns)
DIMENSION_NAMES = ("sample", "feature")
FORMATS = ("npy", "csv", "parquet")


# ---------------------------------------------------------------------- shared writing helpers
def local_dest(dest: str | os.PathLike) -> str:
    """Absolute local path of ``dest`` (a path or a file:// URL); other URLs are refused."""
    s = os.fspath(dest)
    if "://" in s:
        parsed = urlparse(s)
        if parsed.scheme != "file":
            raise ValueError(
                f"dest must be a local path or a file:// URL (atomic renames need a local file "
                f"system), got {s!r}"
            )
        s = unquote(parsed.netloc + parsed.path)
    return os.path.abspath(os.path.expanduser(s))


def make_compressors(compressor: Any) -> Any:
    """Zarr v3 compressors for a name ("zstd", "blosc", "gzip", None) or a codec object."""
    from zarr import codecs

    if compressor is None or compressor == "none":
        return None
    if isinstance(compressor, str):
        name = compressor.lower()
        if name == "zstd":
            return [codecs.ZstdCodec(level=3)]
        if name == "blosc":
            return [codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]
        if name == "gzip":
            return [codecs.GzipCodec(level=5)]
        raise ValueError(
            f"compressor must be 'zstd', 'blosc', 'gzip', None or a codec, got {compressor!r}"
        )
    return compressor if isinstance(compressor, list | tuple) else [compressor]


def auto_chunk_rows(n_features: int, itemsize: int) -> int:
    """About CHUNK_BYTES per chunk, a multiple of 1024 rows when that many fit."""
    rows = max(1, CHUNK_BYTES // max(1, n_features * itemsize))
    return rows - rows % 1024 if rows >= 1024 else rows


def check_layout(chunk_rows: int, shard_rows: int | None) -> None:
    """chunk_rows >= 1; shard_rows, when given, a whole multiple of chunk_rows."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer):
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows}")
    if shard_rows is not None:
        if isinstance(shard_rows, bool) or not isinstance(shard_rows, int | np.integer):
            raise ValueError(f"shard_rows must be a positive integer or None, got {shard_rows!r}")
        if shard_rows < chunk_rows or shard_rows % chunk_rows:
            raise ValueError(
                f"shard_rows ({shard_rows}) must be a whole multiple of chunk_rows ({chunk_rows})"
            )


def write_unit_rows(chunk_rows: int, shard_rows: int | None, row_bytes: int) -> int:
    """Rows per write: one whole shard, or a run of whole chunks of about WRITE_BYTES."""
    if shard_rows is not None:
        return int(shard_rows)
    return chunk_rows * max(1, WRITE_BYTES // max(1, chunk_rows * row_bytes))


def create_rows_array(
    group: Any,
    name: str,
    n_rows: int,
    n_cols: int | None,
    dtype: Any,
    chunk_rows: int,
    shard_rows: int | None,
    compressors: Any,
) -> Any:
    """A (n_rows, n_cols) array (1-D when n_cols is None) chunked and sharded along rows.

    Floating arrays are filled with NaN, so a chunk that was never written (or went missing)
    reads as NaN and is caught by the finiteness check instead of passing as zeros. The
    dimensions are named (``DIMENSION_NAMES``), so ``xarray.open_zarr`` opens the group.
    """
    dtype = np.dtype(dtype)
    shape: tuple[int, ...] = (n_rows,) if n_cols is None else (n_rows, n_cols)
    chunks = (chunk_rows,) if n_cols is None else (chunk_rows, n_cols)
    shards = None
    if shard_rows is not None:
        shards = (shard_rows,) if n_cols is None else (shard_rows, n_cols)
    fill = np.nan if np.issubdtype(dtype, np.floating) else 0
    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        shards=shards,
        dimension_names=DIMENSION_NAMES[: len(shape)],
        dtype=dtype,
        compressors=compressors,
        fill_value=fill,
    )


class RowWriter:
    """Buffers row blocks and writes them one whole write unit at a time.

    With ``grow=True`` the array starts with 0 rows and is resized before each write (for
    inputs whose length is not known up front, such as CSV).
    """

    def __init__(self, array: Any, unit_rows: int, grow: bool = False) -> None:
        self.array = array
        self.unit = unit_rows
        self.grow = grow
        self.written = 0
        self._blocks: list[np.ndarray] = []
        self._buffered = 0

    def append(self, block: np.ndarray) -> None:
        if block.shape[0] == 0:
            return
        self._blocks.append(block)
        self._buffered += block.shape[0]
        if self._buffered >= self.unit:
            data = np.concatenate(self._blocks) if len(self._blocks) > 1 else self._blocks[0]
            n_full = (data.shape[0] // self.unit) * self.unit
            self._write(data[:n_full])
            rest = data[n_full:]
            self._blocks = [rest.copy()] if rest.shape[0] else []
            self._buffered = rest.shape[0]

    def _write(self, data: np.ndarray) -> None:
        for s in range(0, data.shape[0], self.unit):
            part = data[s : s + self.unit]
            start, stop = self.written, self.written + part.shape[0]
            if self.grow:
                self.array.resize((stop, *self.array.shape[1:]))
            self.array[start:stop] = part
            self.written = stop

    @property
    def buffered(self) -> int:
        """Rows appended but not yet written."""
        return self._buffered

    def close(self) -> int:
        if self._buffered:
            data = np.concatenate(self._blocks) if len(self._blocks) > 1 else self._blocks[0]
            self._write(data)
            self._blocks, self._buffered = [], 0
        return self.written


# ---------------------------------------------------------------------- ingest
def ingest(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    chunk_rows: int | None = None,
    shard_rows: int | None = None,
    compressor: Any = "zstd",
    dtype: Any = None,
    overwrite: bool = False,
    *,
    format: str | None = None,
    header: bool | None = None,
    delimiter: str | None = None,
    columns: list[str] | None = None,
    weights: str | None = None,
    na_values: Sequence[str] | None = (),
) -> str:
    """Copy a .npy, CSV or Parquet file into a Zarr v3 group (array ``"X"``), atomically.

    Parameters
    ----------
    src : path
        ``.npy`` (read through a memory map), ``.csv`` / ``.tsv`` / ``.txt`` (read in blocks of
        lines) or ``.parquet`` / ``.pq`` (read in record batches; needs pyarrow).
    dest : path or URL
        The Zarr store to create; an object-store URL (s3://...) is written in a local
        temporary directory and uploaded one PUT per file, the root zarr.json last (the store
        opens only once it is complete; mixstream.urls.staged_directory).
    chunk_rows : int, optional
        Rows per chunk; default about 4 MiB per chunk.
    shard_rows : int, optional
        Rows per shard, a whole multiple of ``chunk_rows``; None writes no shards.
    compressor : "zstd" | "blosc" | "gzip" | None | zarr codec
    dtype : numpy dtype, optional
        Stored dtype. Default: the .npy dtype; float64 for CSV; the common numeric type of the
        Parquet columns.
    overwrite : bool
        Replace an existing ``dest`` (only once the new store is complete).
    format : {"npy", "csv", "parquet"}, optional
        Overrides the guess from the file name.
    header : bool, optional (CSV)
        Whether the first non-blank line names the columns (True: it is skipped; False: it is
        data). None guesses, only where the guess is safe: a header when every cell of that
        line is text, data when every cell is a number; a line that mixes both raises
        AmbiguousHeaderError (naming file, line and column) rather than drop a row.
    delimiter : str, optional (CSV)
        Default "," (tab for .tsv).
    columns : list of str, optional (Parquet)
        Columns to read; default all.
    weights : str, optional (CSV with a header, Parquet)
        A column of non-negative per-row sample weights: written to the array
        ``"sample_weight"`` beside ``"X"`` (chunked alike, not part of ``"X"``), which ``fit``
        then uses as ``sample_weight``.
    na_values : sequence of str, optional (CSV)
        Cells read as NaN, a missing value (e.g. ``("", "NA")``; "nan" always is). Default
        none: an empty cell is an error naming its line and column. A store with NaN is fitted
        with ``missing="marginalize"``; Parquet nulls are NaN either way.

    Returns
    -------
    str : the absolute path of ``dest`` (a URL as given).
    """
    import zarr

    src_path = os.fspath(src)
    if not os.path.exists(src_path):
        raise FileNotFoundError(f"ingest: source file {src_path} does not exist")
    fmt = format or _guess_format(src_path)
    if fmt not in FORMATS:
        raise ValueError(f"ingest: format must be one of {FORMATS}, got {fmt!r}")
    if chunk_rows is not None:
        check_layout(chunk_rows, shard_rows)
    elif shard_rows is not None:
        check_layout(1, shard_rows)
    compressors = make_compressors(compressor)
    # an object-store URL: written locally, uploaded with the root zarr.json last
    dest_path = urls.resolve(dest) if urls.is_url(dest) else local_dest(dest)

    if fmt == "npy":
        reader: Reader = NpyReader(src_path, dtype, weights)
    elif fmt == "csv":
        if delimiter is None:
            delimiter = "\t" if src_path.lower().endswith(".tsv") else ","
        reader = CsvReader(
            src_path,
            dtype,
            header,
            delimiter,
            weights,
            CSV_BLOCK_LINES,
            na_values=tuple(na_values or ()),
        )
    else:
        reader = ParquetReader(src_path, dtype, columns, weights)

    n_cols, out_dtype = reader.n_cols, reader.dtype
    if chunk_rows is None:
        chunk_rows = auto_chunk_rows(n_cols, out_dtype.itemsize)
        if shard_rows is not None:
            chunk_rows = _largest_divisor_at_most(shard_rows, chunk_rows)
    unit = write_unit_rows(chunk_rows, shard_rows, n_cols * out_dtype.itemsize)

    with urls.staged_directory(dest_path, overwrite, marker="zarr.json") as partial:
        attrs = {"mixstream_ingest": {"source": os.path.abspath(src_path), "format": fmt}}
        if reader.names is not None:
            attrs["mixstream_ingest"]["columns"] = reader.names
        group = zarr.open_group(partial, mode="w-", attributes=attrs)
        n_known = reader.n_rows
        arr = create_rows_array(
            group, "X", n_known or 0, n_cols, out_dtype, chunk_rows, shard_rows, compressors
        )
        writer = RowWriter(arr, unit, grow=n_known is None)
        w_writer = None
        if weights is not None:
            attrs["mixstream_ingest"]["weights"] = weights
            group.attrs.update(attrs)
            w_arr = create_rows_array(
                group, WEIGHTS_ARRAY, n_known or 0, None, np.float64, chunk_rows, shard_rows,
                compressors,
            )  # fmt: skip
            w_writer = RowWriter(w_arr, unit, grow=n_known is None)
        for block, w in reader.blocks(unit):
            if w_writer is not None:
                check_weights_block(w, src_path, weights, writer.written + writer.buffered)
                w_writer.append(w)
            writer.append(block)
        n_written = writer.close()
        if w_writer is not None:
            w_writer.close()
        if n_known is not None and n_written != n_known:
            raise ValueError(f"ingest: {src_path} yielded {n_written} rows, expected {n_known}")
        if n_written == 0:
            raise ValueError(f"ingest: {src_path} holds no data rows")
        logger.info(
            "ingested %s (%s, %d x %d %s) into %s",
            src_path,
            fmt,
            n_written,
            n_cols,
            out_dtype,
            dest_path,
        )
    return dest_path


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(n, cap), 0, -1):
        if n % d == 0:
            return d
    return 1


def _guess_format(path: str) -> str:
    low = path.lower()
    for suffix, fmt in (
        (".npy", "npy"),
        (".csv", "csv"),
        (".tsv", "csv"),
        (".txt", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if low.endswith(suffix):
            return fmt
    raise ValueError(
        f"ingest: cannot tell the format of {path} from its name; pass format= one of {FORMATS}"
    )


def check_weights_block(w: np.ndarray, src: str, column: str, row0: int) -> None:
    """A block of weights, its first row ``row0`` (0-based data row): finite, non-negative."""
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        what = "not a finite number" if not np.isfinite(w[j]) else "negative"
        raise ValueError(
            f"ingest: {src} weights column {column!r}, data row {row0 + j + 1}: {float(w[j])!r} is "
            f"{what}; sample weights must be finite and non-negative"
        )
