"""The missing-value steps of ``GaussObs`` (``missing="marginalize"``), a mixin kept apart to
keep each module short: a block with NaN has its complete rows handled by the GEMM path and its
incomplete rows by the marginal formulas of ``obs/gauss/missing.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.backend import to_device, to_host
from mixstream.obs.gauss.missing import (
    MissingRows,
    diag_correction,
    diag_stats_correction,
    fill_shift,
    find_missing,
    full_correction,
    full_stats_correction,
    split_rows,
    whole_block,
)

#: cache key for a block's incomplete rows
MISSING_KEY = "gauss/missing"


class MissingValuesMixin:
    """``_log_prob_missing``, ``_calc_stats_missing`` for ``GaussObs``."""

    # provided by GaussObs
    n_features: int
    K: int
    inference: str
    shift: np.ndarray
    m: np.ndarray
    kappa: np.ndarray
    _prec: np.ndarray
    _logdet: np.ndarray

    def _log_prob_missing(
        self, X: Any, rows_missing: np.ndarray, xp: Any, cache: dict | None, bias: Any
    ) -> Any:
        """log_prob of a block with NaN: the complete-data path with the missing values at the
        shift (y_m = 0), plus the marginalisation's correction on the incomplete rows."""
        Xf = fill_shift(X, self.shift, xp, rows_missing)
        out = self._log_prob_plain(Xf, cache, bias)
        mr = self._split(Xf, rows_missing, X)
        corr = self._missing_correction(mr)
        corr = to_device(corr, xp) if xp is not np else corr
        if mr.rows is None:
            out += corr
        else:
            out[to_device(mr.rows, xp)] += corr
        if cache is not None:
            cache[MISSING_KEY] = (X.shape[0], mr, Xf)
        return out

    def _split(self, Xf: Any, rows_missing: np.ndarray, X: Any) -> MissingRows:
        """The rows the correction needs: the incomplete ones (full precisions), or the whole
        block with its missing-mask (diagonal precisions: a GEMM with the mask, no gather)."""
        if self.structure == "full":
            return split_rows(Xf, rows_missing, self.shift)
        return whole_block(rows_missing)

    def _missing_correction(self, mr: MissingRows) -> np.ndarray:
        """What marginalising adds to the incomplete rows' terms (n_i, K); fills ``mr``."""
        if self.structure == "full":
            P = np.asarray(self._prec, np.float64)
            b = np.matmul(np.broadcast_to(P, (self.K, *P.shape[1:])), self.m[:, :, None])[..., 0]
            return full_correction(mr, P, b, self.tied)
        return diag_correction(mr, self._diag_precisions(), self.m)

    def _diag_precisions(self) -> np.ndarray:
        """Per-component diagonal precisions (K, D) of a diag or spherical model."""
        P = self._prec
        if self.structure == "spherical":
            P = np.repeat(np.asarray(P, np.float64)[:, None], self.n_features, axis=1)
        return np.broadcast_to(P, (self.K, self.n_features))

    def _calc_stats_missing(self, X: Any, resp: Any, xp: Any, cache: dict | None) -> dict:
        """calc_stats when NaN may be present: the statistics of the block with y_m = 0 plus
        the expected values' corrections, and Hmiss (K,) (zeros when none miss)."""
        entry = None if cache is None else cache.get(MISSING_KEY)
        if entry is None or entry[0] != X.shape[0]:
            # log_prob marks a block it found complete: no second pass over it
            none = entry is not None and entry[0] == -X.shape[0]
            rows_missing = None if none else find_missing(X, xp)
            if rows_missing is None:
                out = self._calc_stats_plain(X, resp, xp, cache)
                out["Hmiss"] = xp.zeros(resp.shape[1])
                return out
            if self.K != resp.shape[1]:
                raise ValueError(
                    f"rows with missing values need the components whose responsibilities "
                    f"these are: resp has {resp.shape[1]} columns, the model {self.K} "
                    "components (summarize rows with their missing values filled instead)"
                )
            Xf = fill_shift(X, self.shift, xp, rows_missing)
            mr = self._split(Xf, rows_missing, X)
            self._missing_correction(mr)
            entry, cache = (X.shape[0], mr, Xf), None
        _, mr, Xf = entry
        out = self._calc_stats_plain(Xf, resp, xp, cache)
        r = np.asarray(to_host(resp), np.float64)
        r_i = r if mr.rows is None else r[mr.rows]
        if self.structure == "full":
            part = full_stats_correction(mr, r_i, self.n_features)
            part["xx"] = self._pack(part["xx"])
        else:
            part = diag_stats_correction(mr, r_i, self._diag_precisions(), self.m)
            if self.structure == "spherical":
                part["xx"] = part["xx"].sum(axis=1)
        if "N" not in out:  # float32 features: the Model sums N from float64 resp
            out["N"] = xp.asarray(resp, dtype=xp.float64).sum(axis=0)
        for k in ("x", "xx"):
            out[k] = xp.asarray(out[k], dtype=xp.float64) + to_device(part[k], xp)
        out["Hmiss"] = to_device(part["Hmiss"], xp)
        return out
