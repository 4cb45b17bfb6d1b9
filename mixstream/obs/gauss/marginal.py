"""The missing-value steps of ``GaussObs`` (``missing="marginalize"``), a mixin kept apart to
keep each module short: a block with NaN has its complete rows handled by the GEMM path and its
incomplete rows by the marginal formulas of ``obs/gauss/missing.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixstream.backend import to_device, to_host
from mixstream.obs.gauss.linalg import LOG_2PI
from mixstream.obs.gauss.missing import (
    MissingRows,
    diag_log_prob,
    diag_stats,
    find_missing,
    full_log_prob,
    full_stats,
    split_rows,
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
        """log_prob of a block with NaN: complete rows by the GEMM path, incomplete rows
        marginalised over their missing coordinates (obs/gauss/missing.py)."""
        mr = split_rows(X, rows_missing, self.shift)
        complete = np.flatnonzero(~rows_missing)
        out = np.empty((X.shape[0], self.K), order="F")
        sub: dict = {}
        if complete.size:
            out[complete] = to_host(self.log_prob(X[to_device(complete, xp)], sub, bias))
        lp = self._missing_log_prob(mr)
        if bias is not None:
            lp = lp + np.asarray(to_host(bias), np.float64)
        out[mr.rows] = lp
        if cache is not None:
            cache[MISSING_KEY] = (X.shape[0], complete, mr, sub)
        return to_device(out, xp) if xp is not np else out

    def _missing_log_prob(self, mr: MissingRows) -> np.ndarray:
        """Marginal log-likelihood terms (n_i, K) of incomplete rows; fills ``mr``."""
        D, K = self.n_features, self.K
        logdet = np.broadcast_to(self._logdet, (K,)) if self.tied else self._logdet
        c0 = 0.5 * logdet - 0.5 * D * LOG_2PI
        if self.inference == "vb":
            c0 = c0 - 0.5 * D / self.kappa
        if self.structure == "full":
            return full_log_prob(mr, self._prec, self.m, c0, self.tied)
        return diag_log_prob(mr, self._diag_precisions(), self.m, c0)

    def _diag_precisions(self) -> np.ndarray:
        """Per-component diagonal precisions (K, D) of a diag or spherical model."""
        P = self._prec
        if self.structure == "spherical":
            P = np.repeat(np.asarray(P, np.float64)[:, None], self.n_features, axis=1)
        return np.broadcast_to(P, (self.K, self.n_features))

    def _calc_stats_missing(self, X: Any, resp: Any, xp: Any, cache: dict | None) -> dict:
        """calc_stats when NaN may be present: the statistics of the complete rows plus the
        expected statistics of the incomplete ones, and Hmiss (K,) (zeros when none miss)."""
        entry = None if cache is None else cache.get(MISSING_KEY)
        if entry is None or entry[0] != X.shape[0]:
            # log_prob marks a block it found complete: no second pass over it
            none = entry is not None and entry[0] == -X.shape[0]
            rows_missing = None if none else find_missing(X, xp)
            if rows_missing is None:
                out = self._calc_stats_plain(X, resp, xp, cache)
                out["Hmiss"] = xp.zeros(resp.shape[1])
                return out
            if self.K == 0:
                raise ValueError("rows with missing values need fitted components")
            mr = split_rows(X, rows_missing, self.shift)
            self._missing_log_prob(mr)
            entry = (X.shape[0], np.flatnonzero(~rows_missing), mr, None)
        _, complete, mr, sub = entry
        r = np.asarray(to_host(resp), np.float64)
        r_i = r[mr.rows]
        D = self.n_features
        if self.structure == "full":
            part = full_stats(mr, r_i, self.tied, D)
            part["xx"] = self._pack(part["xx"])
        else:
            part = diag_stats(mr, r_i, self._diag_precisions(), self.m)
            if self.structure == "spherical":
                part["xx"] = part["xx"].sum(axis=1)
        part["N"] = r_i.sum(axis=0)
        if complete.size:
            idx = to_device(complete, xp)
            plain = self._calc_stats_plain(X[idx], xp.asarray(resp)[idx], xp, sub)
            plain.setdefault("N", r[complete].sum(axis=0))
            for k in ("N", "x", "xx"):
                part[k] = part[k] + np.asarray(to_host(plain[k]), np.float64)
        return {k: to_device(v, xp) if xp is not np else v for k, v in part.items()}
