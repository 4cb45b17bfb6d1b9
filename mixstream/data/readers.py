"""Readers of the files ``mixstream ingest`` copies into Zarr: .npy, CSV, Parquet.

Each reader streams its file in bounded blocks: ``.npy`` through a memory map, CSV through
pyarrow's streaming CSV reader (``pyarrow.csv.open_csv``, fixed-size blocks of
``ARROW_BLOCK_BYTES`` of text) with the line parser (``np.loadtxt`` over blocks of lines) as
fallback, Parquet by record batches (``ParquetFile.iter_batches``). So a file larger than
memory ingests with flat memory. ``blocks(rows)`` yields ``(X_block, w_block)`` pairs: the rows
of the data columns and, when a weights column was named, its values (else None).

The CSV fallback: any block pyarrow refuses (a cell that is not a number, a short line, ...)
hands over to the line parser, which skips the rows already read and parses the rest line by
line, so every error names the file, the line and the column as it always has.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

#: bytes of CSV text per pyarrow block (memory per block is a small multiple of this)
ARROW_BLOCK_BYTES = 4 * 2**20
#: CSV lines parsed per block by the line parser
CSV_BLOCK_LINES = 65_536
#: read CSV with pyarrow first (False: the line parser only; for benchmarks and comparisons)
USE_ARROW = True

Block = tuple[np.ndarray, "np.ndarray | None"]


def numeric_dtype(dt: Any, where: str) -> np.dtype:
    """``dt`` as a numpy dtype of real numbers (or bool); anything else is refused."""
    dt = np.dtype(dt)
    if not (np.issubdtype(dt, np.number) or np.issubdtype(dt, np.bool_)) or np.issubdtype(
        dt, np.complexfloating
    ):
        raise ValueError(f"ingest: {where} must hold real numbers; its dtype is {dt}")
    return dt


def is_number(s: str) -> bool:
    """Whether a CSV cell reads as a number (Python's float syntax, no underscores)."""
    s = s.strip()
    if not s or "_" in s:
        return False
    try:
        float(s)
    except ValueError:
        return False
    return True


class Reader:
    """Rows of a file, block by block.

    Attributes
    ----------
    n_rows : int or None (unknown until read: CSV)
    n_cols : int, data columns (the weights column excluded)
    dtype : numpy dtype of the stored data
    names : list of str or None, the data columns' names
    weights : str or None, the weights column
    """

    n_rows: int | None
    n_cols: int
    dtype: np.dtype
    names: list[str] | None = None
    weights: str | None = None

    def blocks(self, rows: int) -> Iterator[Block]:
        raise NotImplementedError


def _weights_index(path: str, names: list[str] | None, weights: str) -> int:
    if names is None:
        raise ValueError(
            f"ingest: weights column {weights!r} needs named columns, and {path} has no header"
        )
    if weights not in names:
        raise ValueError(f"ingest: {path} has no weights column {weights!r}; it has {names}")
    return names.index(weights)


def _split(block: np.ndarray, j: int | None) -> Block:
    """(data columns, weights column j) of a parsed block."""
    if j is None:
        return block, None
    return np.delete(block, j, axis=1), block[:, j].astype(np.float64)


class NpyReader(Reader):
    def __init__(self, path: str, dtype: Any, weights: str | None = None) -> None:
        import os

        self.path = path
        if weights is not None:
            raise ValueError(f"ingest: {path} is a .npy file: it has no named weights column")
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
        numeric_dtype(self.mm.dtype, path)
        self.n_rows, self.n_cols = (int(n) for n in self.mm.shape)
        self.dtype = numeric_dtype(dtype if dtype is not None else self.mm.dtype, "dtype")

    def blocks(self, rows: int) -> Iterator[Block]:
        for s in range(0, self.n_rows, rows):
            yield np.asarray(self.mm[s : s + rows], dtype=self.dtype), None


class CsvReader(Reader):
    """A CSV file: a header guessed or told, then rows of numbers.

    Parameters
    ----------
    path : str
    dtype : numpy dtype, optional (float64)
    header : bool or None (guess; see ``mixstream.data.ingest.ingest``)
    delimiter : str
    weights : str, optional
        The header's name of a column of sample weights.
    block_lines : int
        Lines per block of the line parser.
    arrow : bool, optional
        Read with pyarrow's streaming reader first (the line parser only as fallback);
        default ``USE_ARROW``.
    """

    def __init__(
        self,
        path: str,
        dtype: Any,
        header: bool | None,
        delimiter: str,
        weights: str | None = None,
        block_lines: int = CSV_BLOCK_LINES,
        arrow: bool | None = None,
        na_values: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        # cells read as NaN (missing values); none by default: an empty cell is an error
        self.na_values = tuple(str(v).strip() for v in na_values)
        self.delimiter = delimiter
        self.block_lines = block_lines
        self.arrow = USE_ARROW if arrow is None else arrow
        self.used_fallback = False
        self.dtype = numeric_dtype(dtype if dtype is not None else np.float64, "dtype")
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
            text = [
                j
                for j, x in enumerate(fields)
                if x.strip() and not is_number(x) and x.strip() not in self.na_values
            ]
            if text and any(is_number(x) for x in fields):
                raise AmbiguousHeaderError(path, first[0], text[0] + 1, fields[text[0]])
            header = bool(text)  # a guess only when no cell is a number, or none is text
        elif header not in (True, False):
            raise ValueError(f"ingest: header must be True, False or None, got {header!r}")
        self.header = bool(header)
        self.header_line = first[0] if self.header else 0
        self.all_names = [x.strip() for x in fields] if self.header else None
        self.n_fields = len(fields)
        self.weights = weights
        self.w_index = None if weights is None else _weights_index(path, self.all_names, weights)
        self.names = self.all_names
        if self.all_names is not None and self.w_index is not None:
            self.names = [n for j, n in enumerate(self.all_names) if j != self.w_index]
        self.n_cols = self.n_fields - (self.w_index is not None)

    def blocks(self, rows: int) -> Iterator[Block]:
        done = 0
        if self.arrow:
            try:
                for block in self._arrow_blocks():
                    done += block.shape[0]
                    yield _split(block.astype(self.dtype, copy=False), self.w_index)
                return
            except _ArrowRefused:
                self.used_fallback = True  # the line parser goes on from row `done`
        for block in self._line_blocks(rows, skip=done):
            yield _split(block, self.w_index)

    def _arrow_blocks(self) -> Iterator[np.ndarray]:
        try:
            import pyarrow as pa
            import pyarrow.csv as pacsv
        except ImportError:
            raise _ArrowRefused() from None
        names = [f"c{j}" for j in range(self.n_fields)]
        try:
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    block_size=ARROW_BLOCK_BYTES, column_names=names, skip_rows=self.header_line
                ),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char='"'),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.float64() for n in names},
                    null_values=list(self.na_values),  # nulls become NaN in to_numpy
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                cols = [batch.column(j).to_numpy(zero_copy_only=False) for j in range(len(names))]
                yield np.column_stack(cols) if cols else np.empty((batch.num_rows, 0))
        except (pa.ArrowException, ValueError):
            raise _ArrowRefused() from None

    def _line_blocks(self, rows: int, skip: int = 0) -> Iterator[np.ndarray]:
        rows = max(1, min(rows, self.block_lines))
        with open(self.path, newline="") as f:
            numbered = (
                (n, line)
                for n, line in enumerate(f, start=1)
                if n > self.header_line and line.strip()
            )
            numbered = itertools.islice(numbered, skip, None)
            while True:
                block = list(itertools.islice(numbered, rows))
                if not block:
                    return
                yield self._parse(block)

    def _parse(self, block: list[tuple[int, str]]) -> np.ndarray:
        lines = [line for _, line in block]
        if self.na_values:
            lines = [self._with_nan(line) for line in lines]
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
        if out.shape[1] != self.n_fields:
            self._explain(block, ValueError(f"{out.shape[1]} columns"))
        return out.astype(self.dtype, copy=False)

    def _with_nan(self, line: str) -> str:
        fields = next(csv.reader([line], delimiter=self.delimiter), [])
        cells = ["nan" if x.strip() in self.na_values else x for x in fields]
        return self.delimiter.join(cells)

    def _explain(self, block: list[tuple[int, str]], err: Exception) -> None:
        """Raise a ValueError naming the first bad line and field of a block."""
        for lineno, line in block:
            fields = next(csv.reader([line], delimiter=self.delimiter))
            if len(fields) != self.n_fields:
                raise ValueError(
                    f"ingest: CSV {self.path} line {lineno}: {len(fields)} field(s), expected "
                    f"{self.n_fields}: {line.rstrip()[:200]!r}"
                ) from err
            for j, x in enumerate(fields):
                if not is_number(x) and x.strip() not in self.na_values:
                    col = f" ({self.all_names[j]!r})" if self.all_names else ""
                    what = "an empty cell" if not x.strip() else "if it marks a missing value"
                    hint = f" ({what}: pass na_values to read such cells as NaN and fit the"
                    hint += " store with missing='marginalize')"
                    raise ValueError(
                        f"ingest: CSV {self.path} line {lineno}, column {j + 1}{col}: cannot "
                        f"read {x!r} as a number{hint}"
                    ) from err
        raise ValueError(
            f"ingest: CSV {self.path} lines {block[0][0]}-{block[-1][0]}: {err}"
        ) from err


class _ArrowRefused(Exception):
    """pyarrow could not read (the rest of) a CSV: the line parser takes over."""


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


class ParquetReader(Reader):
    """A Parquet file, by record batches of its row groups; ``columns`` chooses the data
    columns (default: every column but the weights)."""

    def __init__(
        self, path: str, dtype: Any, columns: list[str] | None, weights: str | None = None
    ) -> None:
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
        if weights is not None:
            if weights not in schema.names:
                raise ValueError(
                    f"ingest: {path} has no weights column {weights!r}; it has {schema.names}"
                )
            names = [c for c in names if c != weights]
        missing = [c for c in names if c not in schema.names]
        if missing:
            raise ValueError(
                f"ingest: Parquet {path} has no column(s) {missing}; it has {schema.names}"
            )
        dts = [self._column_dtype(schema, c) for c in names]
        if weights is not None:
            self._column_dtype(schema, weights)
        if not names:
            raise ValueError(f"ingest: Parquet {path} has no columns")
        self.names = names
        self.weights = weights
        self.n_cols = len(names)
        self.n_rows = int(self.pf.metadata.num_rows)
        default = np.result_type(*dts)
        if not np.issubdtype(default, np.floating):
            default = np.dtype(np.float64)
        self.dtype = numeric_dtype(dtype if dtype is not None else default, "dtype")

    def _column_dtype(self, schema: Any, c: str) -> np.dtype:
        pa = self.pa
        t = schema.field(c).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise ValueError(
                f"ingest: Parquet {self.path} column {c!r} has type {t}, not a number; pass "
                "columns= to choose numeric columns"
            )
        return np.dtype(t.to_pandas_dtype())

    def _numpy(self, rb: Any, c: str) -> np.ndarray:
        col = rb.column(c)
        if col.null_count:
            col = col.cast(self.pa.float64())  # nulls become NaN, caught at read time
        return col.to_numpy(zero_copy_only=False)

    def blocks(self, rows: int) -> Iterator[Block]:
        wanted = self.names + ([self.weights] if self.weights is not None else [])
        for i in range(self.pf.num_row_groups):
            # one row group at a time, in record batches of at most `rows` rows
            for rb in self.pf.iter_batches(
                batch_size=max(1, min(rows, 1 << 16)), row_groups=[i], columns=wanted
            ):
                X = np.column_stack([self._numpy(rb, c) for c in self.names])
                w = None if self.weights is None else self._numpy(rb, self.weights)
                yield (
                    X.astype(self.dtype, copy=False),
                    (None if w is None else w.astype(np.float64)),
                )
