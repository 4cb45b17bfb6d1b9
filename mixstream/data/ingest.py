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

import csv
import itertools
import logging
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from mixstream.atomic import atomic_directory

logger = logging.getLogger(__name__)

#: default chunk size (uncompressed) when chunk_rows is not given
CHUNK_BYTES = 4 * 2**20
#: without sharding, each write covers whole chunks adding up to about this many bytes
WRITE_BYTES = 32 * 2**20
#: CSV lines parsed per block
CSV_BLOCK_LINES = 65_536
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
    reads as NaN and is caught by the finiteness check instead of passing as zeros.
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
) -> str:
    """Copy a .npy, CSV or Parquet file into a Zarr v3 group (array ``"X"``), atomically.

    Parameters
    ----------
    src : path
        ``.npy`` (read through a memory map), ``.csv`` / ``.tsv`` / ``.txt`` (read in blocks of
        lines) or ``.parquet`` / ``.pq`` (read in record batches; needs pyarrow).
    dest : path or file:// URL
        The Zarr store to create.
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

    Returns
    -------
    str : the absolute path of ``dest``.
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
    dest_path = local_dest(dest)

    if fmt == "npy":
        reader: _Reader = _NpyReader(src_path, dtype)
    elif fmt == "csv":
        if delimiter is None:
            delimiter = "\t" if src_path.lower().endswith(".tsv") else ","
        reader = _CsvReader(src_path, dtype, header, delimiter)
    else:
        reader = _ParquetReader(src_path, dtype, columns)

    n_cols, out_dtype = reader.n_cols, reader.dtype
    if chunk_rows is None:
        chunk_rows = auto_chunk_rows(n_cols, out_dtype.itemsize)
        if shard_rows is not None:
            chunk_rows = _largest_divisor_at_most(shard_rows, chunk_rows)
    unit = write_unit_rows(chunk_rows, shard_rows, n_cols * out_dtype.itemsize)

    with atomic_directory(dest_path, overwrite) as partial:
        attrs = {"mixstream_ingest": {"source": os.path.abspath(src_path), "format": fmt}}
        if reader.names is not None:
            attrs["mixstream_ingest"]["columns"] = reader.names
        group = zarr.open_group(partial, mode="w-", attributes=attrs)
        n_known = reader.n_rows
        arr = create_rows_array(
            group, "X", n_known or 0, n_cols, out_dtype, chunk_rows, shard_rows, compressors
        )
        writer = RowWriter(arr, unit, grow=n_known is None)
        for block in reader.blocks(unit):
            writer.append(block)
        n_written = writer.close()
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


def _numeric_dtype(dt: Any, where: str) -> np.dtype:
    dt = np.dtype(dt)
    if not (np.issubdtype(dt, np.number) or np.issubdtype(dt, np.bool_)) or np.issubdtype(
        dt, np.complexfloating
    ):
        raise ValueError(f"ingest: {where} must hold real numbers; its dtype is {dt}")
    return dt


class _Reader:
    n_rows: int | None
    n_cols: int
    dtype: np.dtype
    names: list[str] | None = None

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        raise NotImplementedError


class _NpyReader(_Reader):
    def __init__(self, path: str, dtype: Any) -> None:
        self.path = path
        if os.path.getsize(path) == 0:
            raise ValueError(f"ingest: {path} is empty (0 bytes): it holds no .npy array")
        try:
            self.mm = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError) as e:
            raise ValueError(
                f"ingest: cannot read {path} as a numeric .npy file ({type(e).__name__}: {e}); "
                "is it truncated, or not a .npy file?"
            ) from e
        if self.mm.ndim != 2:
            raise ValueError(
                f"ingest: {path} must hold a 2-D array (rows = data points); it has shape "
                f"{self.mm.shape}"
            )
        _numeric_dtype(self.mm.dtype, path)
        self.n_rows, self.n_cols = (int(n) for n in self.mm.shape)
        self.dtype = _numeric_dtype(dtype if dtype is not None else self.mm.dtype, "dtype")

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        for s in range(0, self.n_rows, rows):
            yield np.asarray(self.mm[s : s + rows], dtype=self.dtype)


class _CsvReader(_Reader):
    def __init__(self, path: str, dtype: Any, header: bool | None, delimiter: str) -> None:
        self.path = path
        self.delimiter = delimiter
        self.dtype = _numeric_dtype(dtype if dtype is not None else np.float64, "dtype")
        self.n_rows = None
        first = None
        with open(path, newline="") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    first = (lineno, line)
                    break
        if first is None:
            raise ValueError(f"ingest: CSV {path} is empty")
        fields = next(csv.reader([first[1]], delimiter=delimiter))
        if header is None:
            text = [j for j, x in enumerate(fields) if x.strip() and not _is_number(x)]
            if text and any(_is_number(x) for x in fields):
                raise AmbiguousHeaderError(path, first[0], text[0] + 1, fields[text[0]])
            header = bool(text)  # a guess only when no cell is a number, or none is text
        elif header not in (True, False):
            raise ValueError(f"ingest: header must be True, False or None, got {header!r}")
        self.header = bool(header)
        self.header_line = first[0] if self.header else 0
        self.names = [x.strip() for x in fields] if self.header else None
        self.n_cols = len(fields)

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        rows = max(1, min(rows, CSV_BLOCK_LINES))
        with open(self.path, newline="") as f:
            numbered = (
                (n, line)
                for n, line in enumerate(f, start=1)
                if n > self.header_line and line.strip()
            )
            while True:
                block = list(itertools.islice(numbered, rows))
                if not block:
                    return
                yield self._parse(block)

    def _parse(self, block: list[tuple[int, str]]) -> np.ndarray:
        lines = [line for _, line in block]
        try:
            out = np.loadtxt(
                lines,
                delimiter=self.delimiter,
                dtype=np.float64,
                ndmin=2,
                comments=None,
                quotechar='"',
            )
        except ValueError as e:
            self._explain(block, e)
            raise  # _explain always raises; kept for type checkers
        if out.shape[1] != self.n_cols:
            self._explain(block, ValueError(f"{out.shape[1]} columns"))
        return out.astype(self.dtype, copy=False)

    def _explain(self, block: list[tuple[int, str]], err: Exception) -> None:
        """Raise a ValueError naming the first bad line and field of a block."""
        for lineno, line in block:
            fields = next(csv.reader([line], delimiter=self.delimiter))
            if len(fields) != self.n_cols:
                raise ValueError(
                    f"ingest: CSV {self.path} line {lineno}: {len(fields)} field(s), expected "
                    f"{self.n_cols}: {line.rstrip()[:200]!r}"
                ) from err
            for j, x in enumerate(fields):
                if not _is_number(x):
                    col = f" ({self.names[j]!r})" if self.names else ""
                    raise ValueError(
                        f"ingest: CSV {self.path} line {lineno}, column {j + 1}{col}: cannot "
                        f"read {x!r} as a number"
                    ) from err
        raise ValueError(
            f"ingest: CSV {self.path} lines {block[0][0]}-{block[-1][0]}: {err}"
        ) from err


class AmbiguousHeaderError(ValueError):
    """The first line of a CSV mixes text and numbers: a header or data? ``header`` decides.

    The message names the option of the Python API (``header=``); ``cli_message`` names the
    command line's flags.
    """

    def __init__(self, path: str, line: int, column: int, cell: str) -> None:
        self.path, self.line, self.column, self.cell = path, line, column, cell
        super().__init__(self._message("header=True", "header=False"))

    def _message(self, yes: str, no: str) -> str:
        return (
            f"ingest: CSV {self.path} line {self.line}, column {self.column}: {self.cell!r} is "
            f"not a number, but other cells of line {self.line} are: is it a header or data? "
            f"Pass {yes} if line {self.line} names the columns, or {no} if it is data "
            "(nothing is dropped without being asked)"
        )

    def cli_message(self) -> str:
        return self._message("--header", "--no-header")


def _is_number(s: str) -> bool:
    s = s.strip()
    if not s or "_" in s:
        return False
    try:
        float(s)
    except ValueError:
        return False
    return True


class _ParquetReader(_Reader):
    def __init__(self, path: str, dtype: Any, columns: list[str] | None) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(
                "reading Parquet needs pyarrow: pip install 'mixstream[parquet]' "
                "(or pip install pyarrow)"
            ) from e
        self.pa = pa
        self.path = path
        self.pf = pq.ParquetFile(path)
        schema = self.pf.schema_arrow
        names = list(columns) if columns is not None else list(schema.names)
        missing = [c for c in names if c not in schema.names]
        if missing:
            raise ValueError(
                f"ingest: Parquet {path} has no column(s) {missing}; it has {schema.names}"
            )
        dts = []
        for c in names:
            t = schema.field(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise ValueError(
                    f"ingest: Parquet {path} column {c!r} has type {t}, not a number; pass "
                    "columns= to choose numeric columns"
                )
            dts.append(np.dtype(t.to_pandas_dtype()))
        if not names:
            raise ValueError(f"ingest: Parquet {path} has no columns")
        self.names = names
        self.n_cols = len(names)
        self.n_rows = int(self.pf.metadata.num_rows)
        default = np.result_type(*dts)
        if not np.issubdtype(default, np.floating):
            default = np.dtype(np.float64)
        self.dtype = _numeric_dtype(dtype if dtype is not None else default, "dtype")

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        pa = self.pa
        for i in range(self.pf.num_row_groups):
            # one row group at a time, in record batches of at most `rows` rows
            for rb in self.pf.iter_batches(
                batch_size=max(1, min(rows, 1 << 16)), row_groups=[i], columns=self.names
            ):
                cols = []
                for c in self.names:
                    col = rb.column(c)
                    if col.null_count:
                        col = col.cast(pa.float64())  # nulls become NaN, caught at read time
                    cols.append(col.to_numpy(zero_copy_only=False))
                yield np.column_stack(cols).astype(self.dtype, copy=False)
