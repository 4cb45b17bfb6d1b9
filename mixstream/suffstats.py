"""SuffStats: the additive summary of a batch that every algorithm passes around.

A SuffStats holds named float64 arrays whose first axis is the component axis K, a few
scalars without a K axis, the per-component assignment entropy ``Hresp`` and, optionally,
the entropy of candidate merged pairs. Each component carries a stable integer uid that
survives every operation here, so a memoized cache can be kept consistent through births,
merges, deletes and reorders by matching uids rather than positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mixstream.backend import to_host

#: fields that do not add when two components merge: their merged value comes from pair terms
NONADDITIVE = ("Hresp",)


#: children per node of the summation tree. Wide enough that the Dask engine's reduction adds
#: few tasks per batch (each task costs the scheduler milliseconds), narrow enough that a node
#: waits on few batches.
SUM_FAN_IN = 8


def add_run(*stats: SuffStats) -> SuffStats:
    """``stats[0] + stats[1] + ...``, left to right: one node of the summation tree."""
    total = stats[0]
    for ss in stats[1:]:
        total = total + ss
    return total


class SuffStats:
    """Named per-component statistics with stable component uids.

    Parameters
    ----------
    fields : mapping of str -> array (K, ...)
        Additive statistics. ``"N"`` (K,) — the summed responsibilities — is required;
        ``"Hresp"`` (K,) is the assignment entropy -sum_n r_nk log r_nk when computed.
    uids : array (K,) of int, optional
        Stable component identifiers; defaults to 0..K-1.
    scalars : mapping of str -> float, optional
        Additive statistics without a K axis (e.g. ``"n_rows"``).
    merge_pairs : array (P, 2) of int, optional
        uid pairs (j, k) whose merged entropy is known.
    merge_Hresp : array (P,), optional
        -sum_n (r_nj + r_nk) log(r_nj + r_nk) for each pair in ``merge_pairs``.
    """

    __slots__ = ("fields", "merge_Hresp", "merge_pairs", "scalars", "uids")

    def __init__(
        self,
        fields: Mapping[str, Any],
        uids: Sequence[int] | np.ndarray | None = None,
        scalars: Mapping[str, float] | None = None,
        merge_pairs: np.ndarray | None = None,
        merge_Hresp: np.ndarray | None = None,
    ) -> None:
        if "N" not in fields:
            raise ValueError(
                "SuffStats needs the field 'N' (summed responsibilities per component)"
            )
        self.fields = {
            name: np.array(to_host(v), dtype=np.float64, copy=True) for name, v in fields.items()
        }
        K = self.fields["N"].shape[0]
        for name, v in self.fields.items():
            if v.ndim == 0 or v.shape[0] != K:
                raise ValueError(
                    f"field {name!r} has shape {v.shape}; its first axis must be K={K}"
                )
        self.uids = np.arange(K, dtype=np.int64) if uids is None else np.array(uids, np.int64)
        if self.uids.shape != (K,) or len(np.unique(self.uids)) != K:
            raise ValueError(f"uids must be {K} distinct integers, got {self.uids!r}")
        self.scalars = {k: float(v) for k, v in (scalars or {}).items()}
        if merge_pairs is None:
            self.merge_pairs = np.zeros((0, 2), np.int64)
            self.merge_Hresp = np.zeros(0)
        else:
            self.merge_pairs = np.array(merge_pairs, np.int64).reshape(-1, 2)
            self.merge_Hresp = np.array(merge_Hresp, np.float64).reshape(-1)
            if self.merge_Hresp.shape[0] != self.merge_pairs.shape[0]:
                raise ValueError("merge_Hresp needs one value per row of merge_pairs")

    @classmethod
    def _trusted(
        cls,
        fields: dict[str, np.ndarray],
        uids: np.ndarray,
        scalars: dict[str, float],
        merge_pairs: np.ndarray | None,
        merge_Hresp: np.ndarray | None,
    ) -> SuffStats:
        """A SuffStats from parts already checked (host float64 fields of one K, distinct
        uids), without the constructor's copies and checks: the sums of the local step's row
        blocks and of the summation tree build thousands of these per lap."""
        ss = object.__new__(cls)
        ss.fields = fields
        ss.uids = np.array(uids, np.int64)
        ss.scalars = scalars
        if merge_pairs is None:
            ss.merge_pairs, ss.merge_Hresp = np.zeros((0, 2), np.int64), np.zeros(0)
        else:
            ss.merge_pairs, ss.merge_Hresp = merge_pairs, merge_Hresp
        return ss

    # ------------------------------------------------------------------ access
    @property
    def K(self) -> int:
        """Number of components."""
        return int(self.uids.shape[0])

    @property
    def N(self) -> np.ndarray:
        """Summed responsibilities per component, shape (K,)."""
        return self.fields["N"]

    @property
    def n_total(self) -> float:
        """Total mass: the (weighted) number of data points summarized."""
        return float(self.fields["N"].sum())

    def __getitem__(self, name: str) -> np.ndarray:
        return self.fields[name]

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def index_of(self, uid: int) -> int:
        """Position of the component with this uid."""
        hits = np.flatnonzero(self.uids == uid)
        if hits.size == 0:
            raise KeyError(f"no component with uid {uid}")
        return int(hits[0])

    def copy(self) -> SuffStats:
        return SuffStats(
            self.fields, self.uids, self.scalars, self.merge_pairs.copy(), self.merge_Hresp.copy()
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.fields.items())
        return f"SuffStats(K={self.K}, uids={self.uids.tolist()}, {shapes})"

    # ------------------------------------------------------------------ algebra
    def _check_aligned(self, other: SuffStats) -> None:
        if not isinstance(other, SuffStats):
            raise TypeError(f"cannot combine SuffStats with {type(other).__name__}")
        if not np.array_equal(self.uids, other.uids):
            raise ValueError(
                f"SuffStats have different components (uids {self.uids.tolist()} vs "
                f"{other.uids.tolist()}); call .align(uids) first"
            )
        if set(self.fields) != set(other.fields):
            raise ValueError(
                f"SuffStats fields differ: {sorted(self.fields)} vs {sorted(other.fields)}"
            )

    def _combine(self, other: SuffStats, sign: float) -> SuffStats:
        self._check_aligned(other)
        fields = {k: v + sign * other.fields[k] for k, v in self.fields.items()}
        scalars = dict(self.scalars)
        for k, v in other.scalars.items():
            scalars[k] = scalars.get(k, 0.0) + sign * v
        pairs, hpair = self.merge_pairs, self.merge_Hresp
        if pairs.shape[0] or other.merge_pairs.shape[0]:
            if not np.array_equal(pairs, other.merge_pairs):
                raise ValueError("cannot combine SuffStats tracking different merge pairs")
            hpair = hpair + sign * other.merge_Hresp
        # fields are new arrays, and both sides were checked when they were made
        return SuffStats._trusted(fields, self.uids, scalars, pairs, hpair)

    def __add__(self, other: SuffStats) -> SuffStats:
        return self._combine(other, 1.0)

    def __sub__(self, other: SuffStats) -> SuffStats:
        return self._combine(other, -1.0)

    def scale(self, factor: float) -> SuffStats:
        """Every additive quantity multiplied by ``factor`` (soVB amplification)."""
        return SuffStats(
            {k: v * factor for k, v in self.fields.items()},
            self.uids,
            {k: v * factor for k, v in self.scalars.items()},
            self.merge_pairs,
            self.merge_Hresp * factor,
        )

    __mul__ = scale
    __rmul__ = scale

    @staticmethod
    def sum(stats: Iterable[SuffStats]) -> SuffStats:
        """Sum in a fixed tree (runs of ``SUM_FAN_IN`` added left to right, level by level), so
        the result does not depend on timing; the Dask engine builds the same tree."""
        items = list(stats)
        if not items:
            raise ValueError("cannot sum an empty sequence of SuffStats")
        while len(items) > 1:
            items = [add_run(*items[i : i + SUM_FAN_IN]) for i in range(0, len(items), SUM_FAN_IN)]
        return items[0]

    # ------------------------------------------------------------------ component edits
    def _take(self, idx: np.ndarray) -> SuffStats:
        keep = set(self.uids[idx].tolist())
        mask = np.array([a in keep and b in keep for a, b in self.merge_pairs], dtype=bool)
        return SuffStats(
            {k: v[idx] for k, v in self.fields.items()},
            self.uids[idx],
            self.scalars,
            self.merge_pairs[mask] if mask.size else None,
            self.merge_Hresp[mask] if mask.size else None,
        )

    def reorder(self, order: Sequence[int]) -> SuffStats:
        """Components permuted: position i of the result is position ``order[i]`` of self."""
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(self.K)):
            raise ValueError(
                f"order must be a permutation of 0..{self.K - 1}, got {order.tolist()}"
            )
        return self._take(order)

    def remove(self, k: int) -> SuffStats:
        """Component at position ``k`` dropped (its mass is gone; see learn/moves/delete)."""
        self._check_position(k)
        return self._take(np.delete(np.arange(self.K), k))

    def insert(self, other: SuffStats) -> SuffStats:
        """Components of ``other`` appended after ours; their uids must be new to us."""
        clash = np.intersect1d(self.uids, other.uids)
        if clash.size:
            raise ValueError(f"cannot insert components whose uids already exist: {clash.tolist()}")
        if set(self.fields) != set(other.fields):
            raise ValueError(
                f"SuffStats fields differ: {sorted(self.fields)} vs {sorted(other.fields)}"
            )
        fields = {k: np.concatenate([v, other.fields[k]]) for k, v in self.fields.items()}
        scalars = dict(self.scalars)
        for k, v in other.scalars.items():
            scalars[k] = scalars.get(k, 0.0) + v
        return SuffStats(fields, np.concatenate([self.uids, other.uids]), scalars)

    def merge_pair(self, j: int, k: int, Hresp: float | None = None) -> SuffStats:
        """Components at positions j and k merged into position j (which keeps its uid).

        Additive fields add. The merged ``Hresp`` is the tracked pair term for (j, k), or
        ``Hresp`` when given; without either the merged entropy is unknown and this raises.
        """
        self._check_position(j)
        self._check_position(k)
        if j == k:
            raise ValueError("merge_pair needs two different components")
        uj, uk = self.uids[j], self.uids[k]
        out = self.copy()
        for name, v in out.fields.items():
            if name not in NONADDITIVE:
                v[j] += v[k]
        if "Hresp" in out.fields:
            if Hresp is None:
                Hresp = self.pair_Hresp(uj, uk)
            out.fields["Hresp"][j] = Hresp
        # pair terms involving either merged component no longer describe the new one
        mask = ~np.isin(out.merge_pairs, [uj, uk]).any(axis=1)
        out.merge_pairs, out.merge_Hresp = out.merge_pairs[mask], out.merge_Hresp[mask]
        return out.remove(k)

    def pair_Hresp(self, uid_j: int, uid_k: int) -> float:
        """Tracked merged entropy of the pair of uids (order does not matter)."""
        for row, (a, b) in enumerate(self.merge_pairs):
            if {int(a), int(b)} == {int(uid_j), int(uid_k)}:
                return float(self.merge_Hresp[row])
        raise KeyError(
            f"the merged entropy of uids ({uid_j}, {uid_k}) was not tracked; summarize with "
            "merge_pairs=... to merge exactly"
        )

    def drop_merge_terms(self) -> SuffStats:
        out = self.copy()
        out.merge_pairs, out.merge_Hresp = np.zeros((0, 2), np.int64), np.zeros(0)
        return out

    def align(self, uids: Sequence[int]) -> SuffStats:
        """Statistics re-indexed to ``uids``: ours that are missing are zeros; extras must be empty.

        Used by the memoized cache: a batch summarized before a birth has no entry for the new
        components, which is exactly zero mass for them.
        """
        uids = np.asarray(uids, dtype=np.int64)
        pos = {int(u): i for i, u in enumerate(self.uids)}
        missing = set(pos) - set(uids.tolist())
        for u in missing:
            if abs(self.fields["N"][pos[u]]) > 1e-8 * max(1.0, self.n_total):
                raise ValueError(f"align would drop component uid {u} that still has mass")
        fields = {}
        for name, v in self.fields.items():
            out = np.zeros((len(uids), *v.shape[1:]))
            for i, u in enumerate(uids.tolist()):
                if u in pos:
                    out[i] = v[pos[u]]
            fields[name] = out
        keep = np.isin(self.merge_pairs, uids).all(axis=1) if self.merge_pairs.size else None
        return SuffStats(
            fields,
            uids,
            self.scalars,
            None if keep is None else self.merge_pairs[keep],
            None if keep is None else self.merge_Hresp[keep],
        )

    def _check_position(self, k: int) -> None:
        if not 0 <= k < self.K:
            raise IndexError(f"component position {k} out of range for K={self.K}")

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (for checkpoints and transport)."""
        out = {f"field/{k}": v for k, v in self.fields.items()}
        out["uids"] = self.uids
        out["scalar_names"] = np.array(sorted(self.scalars), dtype=str)
        out["scalar_values"] = np.array([self.scalars[k] for k in sorted(self.scalars)])
        out["merge_pairs"] = self.merge_pairs
        out["merge_Hresp"] = self.merge_Hresp
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> SuffStats:
        fields = {k[len("field/") :]: v for k, v in arrays.items() if k.startswith("field/")}
        names = [str(s) for s in arrays["scalar_names"]]
        scalars = dict(zip(names, np.asarray(arrays["scalar_values"]).tolist()))
        return cls(fields, arrays["uids"], scalars, arrays["merge_pairs"], arrays["merge_Hresp"])
