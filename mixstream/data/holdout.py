"""A seeded split of a dataset's rows into training and held-out rows, by whole blocks.

Model selection (``mixstream.select``) fits every candidate on the training rows and scores it
on the held-out rows. Rows are held out in whole blocks of ``block_rows`` consecutive rows
(row // block_rows), drawn by the seed, so the split is a function of (n_rows, fraction,
seed) alone, not of the batch plan, and a store is still read batch by batch, in order:

    split = make_split(n_rows=200_000, fraction=0.1, seed=0)
    train = SplitSource(source, split, "train")     # a BatchSource of the training rows
    held = split.test_mask(0, 4096)                  # bool (4096,): held-out rows of 0:4096

``SplitSource`` reads each batch of the source it wraps and keeps the rows of its side, so it
has the same batches (fewer rows in each) and pickles small when its source does (the split
travels as a bitmask of the blocks: 30 KB for a billion rows).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: rows per block of the split (fewer for small data, so that there are enough blocks)
BLOCK_ROWS = 4096
#: at least this many blocks when the data allow it
MIN_BLOCKS = 256
#: the sides of a split
SIDES = ("train", "test")


class HoldoutSplit:
    """Which blocks of rows are held out.

    Parameters
    ----------
    n_rows : int
    block_rows : int
        Rows per block; block b holds rows [b * block_rows, (b + 1) * block_rows).
    held_blocks : array of int
        Indices of the held-out blocks.
    """

    def __init__(self, n_rows: int, block_rows: int, held_blocks: Any) -> None:
        self.n_rows = int(n_rows)
        self.block_rows = int(block_rows)
        self.n_blocks = math.ceil(self.n_rows / self.block_rows)
        flags = np.zeros(self.n_blocks, dtype=bool)
        flags[np.asarray(held_blocks, dtype=np.int64)] = True
        self._packed = np.packbits(flags)
        self._flags: np.ndarray | None = flags

    @property
    def flags(self) -> np.ndarray:
        """Held-out flag of each block, shape (n_blocks,)."""
        if self._flags is None:
            self._flags = np.unpackbits(self._packed, count=self.n_blocks).astype(bool)
        return self._flags

    @property
    def held_blocks(self) -> np.ndarray:
        return np.flatnonzero(self.flags)

    def _overlaps(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(flags, rows in [start, stop)) of each block that [start, stop) touches."""
        br = self.block_rows
        blocks = np.arange(start // br, (max(stop, start + 1) - 1) // br + 1)
        lo = np.maximum(blocks * br, start)
        hi = np.minimum((blocks + 1) * br, stop)
        return self.flags[blocks], np.maximum(hi - lo, 0)

    def test_mask(self, start: int, stop: int) -> np.ndarray:
        """Held-out flag of each row in [start, stop), shape (stop - start,)."""
        flags, lengths = self._overlaps(start, stop)
        return np.repeat(flags, lengths)

    def count(self, start: int, stop: int, side: str) -> int:
        """Rows of ``side`` ("train" or "test") in [start, stop)."""
        flags, lengths = self._overlaps(start, stop)
        held = int(lengths[flags].sum())
        return held if side == "test" else int(lengths.sum()) - held

    @property
    def n_test(self) -> int:
        return self.count(0, self.n_rows, "test")

    def __getstate__(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "block_rows": self.block_rows, "packed": self._packed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.n_rows, self.block_rows = state["n_rows"], state["block_rows"]
        self.n_blocks = math.ceil(self.n_rows / self.block_rows)
        self._packed, self._flags = state["packed"], None

    def describe(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "block_rows": self.block_rows,
            "n_blocks": self.n_blocks,
            "held_out_blocks": int(self.flags.sum()),
            "held_out_rows": self.n_test,
        }


def make_split(
    n_rows: int, fraction: float, seed: Any = 0, block_rows: int | None = None
) -> HoldoutSplit:
    """Hold out ``round(fraction * n_blocks)`` blocks drawn by ``seed`` (at least one and at
    most all but one when ``fraction`` > 0; none when it is 0).

    Parameters
    ----------
    n_rows : int
    fraction : float in [0, 0.5]
    seed : int or numpy Generator
    block_rows : int, optional
        Default: ``BLOCK_ROWS``, fewer when that would give under ``MIN_BLOCKS`` blocks.
    """
    if not 0.0 <= float(fraction) <= 0.5:
        raise ValueError(f"holdout must be a fraction in [0, 0.5], got {fraction!r}")
    if block_rows is None:
        block_rows = max(1, min(BLOCK_ROWS, n_rows // MIN_BLOCKS))
    n_blocks = math.ceil(n_rows / block_rows)
    n_held = 0
    if fraction > 0:
        n_held = min(max(1, round(fraction * n_blocks)), n_blocks - 1)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    held = rng.permutation(n_blocks)[:n_held]
    return HoldoutSplit(n_rows, block_rows, np.sort(held))


class SplitSource:
    """The rows of one side of a split of a BatchSource, batch by batch.

    Batch i of this source is the ``side`` rows of a batch of ``source`` (batches without such
    rows are left out); its (start, stop) count rows of this source, 0..n_rows in order, as a
    BatchSource's do.

    Parameters
    ----------
    source : BatchSource
    split : HoldoutSplit
    side : {"train", "test"}
    """

    def __init__(self, source: Any, split: HoldoutSplit, side: str = "train") -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        if split.n_rows != source.n_rows:
            raise ValueError(f"the split has {split.n_rows} rows; {source.name} {source.n_rows}")
        self.source, self.split, self.side = source, split, side
        counts = [split.count(a, b, side) for a, b in source.batches]
        self.base_ids = [i for i, c in enumerate(counts) if c > 0]
        ends = np.cumsum([counts[i] for i in self.base_ids]).tolist()
        self.batches = list(zip([0, *ends[:-1]], ends))
        self.n_rows = int(ends[-1]) if ends else 0
        self.n_features = source.n_features
        self.dtype = source.dtype
        self.name = f"{source.name} ({side} rows)"
        self.chunk_rows = getattr(source, "chunk_rows", None)

    def _mask(self, i: int) -> np.ndarray | None:
        """Rows of base batch ``base_ids[i]`` on this side; None when it is all of them."""
        start, stop = self.source.batches[self.base_ids[i]]
        held = self.split.test_mask(start, stop)
        mask = held if self.side == "test" else ~held
        return None if mask.all() else mask

    def read(self, i: int) -> np.ndarray:
        X = self.source.read(self.base_ids[i])
        mask = self._mask(i)
        return X if mask is None else X[mask]

    def read_weights(self, i: int) -> np.ndarray | None:
        w = self.source.read_weights(self.base_ids[i])
        mask = None if w is None else self._mask(i)
        return w if mask is None else w[mask]

    @property
    def nbytes(self) -> int:
        return int(getattr(self.source, "nbytes", 0) * self.n_rows / max(self.source.n_rows, 1))

    def check_visible(self) -> str | None:
        """None when this process can open the data (asked on Dask workers)."""
        check = getattr(self.source, "check_visible", None)
        return None if check is None else check()

    def __repr__(self) -> str:
        return f"SplitSource({self.source!r}, {self.side}: {self.n_rows} rows)"
