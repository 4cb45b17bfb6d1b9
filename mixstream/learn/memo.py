"""The memo of a memoized fit: each batch's statistics from its last visit, and their sum.

Memoized VB / EM (``mixstream.learn.movb``), the moves (``mixstream.learn.moves``) and the
checkpoints of the algorithm registry all work on a ``MemoState``; it lives here, below all of
them, so that none of them needs to import another to know it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mixstream.suffstats import SuffStats

#: scalars whose name starts with this hold the merged entropy of a birth's group, per batch
FOLD_PREFIX = "fold/"


def core(ss: SuffStats) -> SuffStats:
    """Statistics without the lap's extras (merge-pair entropies, birth-group entropies)."""
    scalars = {k: v for k, v in ss.scalars.items() if not k.startswith(FOLD_PREFIX)}
    return SuffStats(ss.fields, ss.uids, scalars)


@dataclass
class MemoState:
    """The memoized statistics of a fit, restartable from a checkpoint.

    Attributes
    ----------
    cache : dict batch id -> SuffStats
        Each batch's statistics from its last visit (component uids identify columns).
    total : SuffStats or None
        Their sum, without the per-lap extras (merge-pair and birth-group entropies).
    memory : dict move name -> {uid: lap}
        When a proposal involving each component was last rejected (moves retry later).
    """

    cache: dict[int, SuffStats] = field(default_factory=dict)
    total: SuffStats | None = None
    memory: dict[str, dict[int, int]] = field(default_factory=dict)

    def complete(self, n_batches: int) -> bool:
        """True when every batch 0..n_batches-1 has cached statistics (and no other)."""
        return self.total is not None and set(self.cache) == set(range(n_batches))

    def swap(self, b: int, new: SuffStats) -> None:
        """total <- total - cache[b] + new (aligned by uid); cache[b] <- new."""
        new_c = core(new)
        uids = new_c.uids
        old = self.cache.get(b)
        if self.total is None:
            self.total = new_c
        else:
            tot = _aligned(self.total, uids)
            if old is not None:
                tot = tot - _aligned(core(old), uids)
            self.total = tot + new_c
        self.cache[b] = new

    def exact_total(self, uids: np.ndarray, n_batches: int) -> SuffStats:
        """The sum of the cache (batches in order), aligned to ``uids``, with extras."""
        return SuffStats.sum(_aligned(self.cache[b], uids) for b in range(n_batches))

    def strip(self) -> None:
        """Drop the lap's extras from every cached entry (after the moves have used them)."""
        self.cache = {b: core(ss) for b, ss in self.cache.items()}
        if self.total is not None:
            self.total = core(self.total)

    # -------------------------------------------------------------- persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays: ``cache/<b>/...``, ``total/...``, ``memory/<move>/...``."""
        out: dict[str, np.ndarray] = {"batch_ids": np.array(sorted(self.cache), np.int64)}
        for b, ss in self.cache.items():
            for k, v in ss.to_arrays().items():
                out[f"cache/{b}/{k}"] = v
        out["has_total"] = np.array(self.total is not None)
        if self.total is not None:
            for k, v in self.total.to_arrays().items():
                out[f"total/{k}"] = v
        out["memory_moves"] = np.array(sorted(self.memory), dtype=str)
        for move, mem in self.memory.items():
            out[f"memory/{move}/uids"] = np.array(list(mem), np.int64)
            out[f"memory/{move}/laps"] = np.array(list(mem.values()), np.int64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> MemoState:
        def sub(prefix: str) -> dict[str, np.ndarray]:
            return {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}

        cache = {
            int(b): SuffStats.from_arrays(sub(f"cache/{int(b)}/")) for b in arrays["batch_ids"]
        }
        total = SuffStats.from_arrays(sub("total/")) if bool(arrays["has_total"]) else None
        memory = {}
        for move in arrays.get("memory_moves", np.array([], dtype=str)):
            move = str(move)
            uids = np.asarray(arrays[f"memory/{move}/uids"]).tolist()
            laps = np.asarray(arrays[f"memory/{move}/laps"]).tolist()
            memory[move] = dict(zip((int(u) for u in uids), (int(a) for a in laps)))
        return cls(cache, total, memory)


def _aligned(ss: SuffStats, uids: np.ndarray) -> SuffStats:
    return ss if np.array_equal(ss.uids, uids) else ss.align(uids)


__all__ = ["FOLD_PREFIX", "MemoState", "core"]
