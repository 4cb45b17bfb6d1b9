"""Model = allocation model + observation model, and the four verbs every algorithm uses.

    LP = model.local_step(X)            # responsibilities, (N, K)
    SS = model.summarize(X, LP)         # additive statistics
    model.global_step(SS, rho=None)     # posterior / MAP update
    model.elbo(SS)                      # the objective, from statistics alone

``local_summarize`` fuses the first two over row blocks: it is what the algorithms call on each
batch, so a batch's memory stays O(block * K) whatever its size.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from mixstream.alloc.base import AllocModel
from mixstream.backend import (
    get_namespace,
    logsumexp_rows,
    softmax_entropy_rows,
    softmax_entropy_rows_float32,
    softmax_rows,
    to_host,
)
from mixstream.obs.base import LOG_PROB_FLOAT32, ObsModel
from mixstream.parallel import get_num_threads, map_ordered
from mixstream.suffstats import SuffStats

#: log-responsibilities below this are treated as exactly zero mass in the entropy
_LOG_FLOOR = -800.0
#: target number of (row, component) cells per block in local_summarize
_BLOCK_CELLS = 1 << 17
#: row blocks per thread that ``local_summarize`` runs before it adds their statistics
_BLOCKS_PER_ROUND = 16


class Model:
    """A mixture model: ``alloc`` (weights) and ``obs`` (component likelihoods).

    Parameters
    ----------
    alloc : AllocModel
    obs : ObsModel
        Both must share the same ``inference`` ("vb" or "em").
    """

    def __init__(self, alloc: AllocModel, obs: ObsModel) -> None:
        if alloc.inference != obs.inference:
            raise ValueError(
                f"allocation inference {alloc.inference!r} differs from observation inference "
                f"{obs.inference!r}"
            )
        self.alloc = alloc
        self.obs = obs
        self.uids = np.zeros(0, np.int64)
        self.next_uid = 0

    # ------------------------------------------------------------------ bookkeeping
    @property
    def inference(self) -> str:
        return self.obs.inference

    @property
    def K(self) -> int:
        return int(self.uids.size)

    def new_uids(self, n: int) -> np.ndarray:
        """n component uids never used before in this model."""
        out = np.arange(self.next_uid, self.next_uid + n, dtype=np.int64)
        self.next_uid += n
        return out

    def copy(self) -> Model:
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ local step
    def log_prob(self, X: Any, cache: dict | None = None) -> Any:
        """Unnormalised log responsibilities log pi_k + log p(x_n | k), shape (N, K)."""
        xp = get_namespace(X)
        return self.obs.log_prob(X, cache, bias=xp.asarray(self.alloc.log_weights()))

    def log_density(self, X: Any, new_components: bool = True) -> Any:
        """The fitted model's log-density of each row, shape (N,): what held-out scores use.

        EM: log sum_k pi_k p(x | theta_k), the local step's normaliser. VB: the posterior
        predictive log sum_k E[pi_k] p(x | data, k) where the observation model has it in
        closed form (Gaussians: Student-t), else the local step's normaliser with expected
        log weights and log-likelihoods, a lower bound of it (Jensen). A DP's mass beyond its
        last stick, 1 - sum_k E[pi_k], belongs to components no row has joined yet: with
        ``new_components`` it weighs the prior predictive density, as the DP's predictive
        has it (docs/math.md §13); without, or where the observation model has no prior
        predictive, it is spread over the components in proportion.
        """
        xp = get_namespace(X)
        pred = self.obs.log_predictive(X) if self.inference == "vb" else None
        if pred is None:
            return logsumexp_rows(self.log_prob(X))[0]
        w = self.alloc.expected_weights()
        rest = 1.0 - float(w.sum())
        base = self.obs.log_prior_predictive(X) if new_components and rest > 1e-12 else None
        with np.errstate(divide="ignore"):
            if base is None:
                log_w = xp.asarray(np.log(w / w.sum()))
                return logsumexp_rows(pred + log_w[None, :])[0]
            log_w = xp.asarray(np.log(w))
        terms = xp.concatenate([pred + log_w[None, :], base[:, None] + np.log(rest)], axis=1)
        return logsumexp_rows(terms)[0]

    def local_step(self, X: Any, hard: bool = False) -> dict[str, Any]:
        """Responsibilities of the components for each row of X.

        Parameters
        ----------
        X : array (N, D)
        hard : bool
            One-hot responsibilities at the most probable component (K-means / CEM).

        Returns
        -------
        LP : dict
            "resp" (N, K), rows sum to 1; "log_resp" (N, K); "log_norm" (N,), the log of the
            normaliser (the log-likelihood of each row under EM); "cache", features the
            observation model reuses in ``summarize``.
        """
        xp = get_namespace(X)
        return self._local_step(X, hard, xp.asarray(self.alloc.log_weights()), False)

    def _local_step(
        self, X: Any, hard: bool, log_weights: Any, entropy: bool, narrow: bool = False
    ) -> dict[str, Any]:
        """``local_step`` with the log weights given; with ``entropy`` the softmax kernel also
        sums the assignment entropy (LP["Hresp"], unweighted) where it can. ``narrow`` (with
        ``entropy``, not ``hard``): float32 log-probabilities from the observation model are
        normalised as they are (in float64 arithmetic), giving float32 "resp" / "log_resp" and
        LP["N"], the float64 column sums of the resp, for a summary that reads only those."""
        cache: dict = {LOG_PROB_FLOAT32: True} if narrow and entropy and not hard else {}
        xp = get_namespace(X)
        lp = self.obs.log_prob(X, cache, bias=log_weights)
        if lp.dtype == xp.float32:
            fused = softmax_entropy_rows_float32(lp)
            if fused is not None:
                log_norm, log_resp, resp, hresp, n_k = fused
                LP = {"resp": resp, "log_resp": log_resp, "log_norm": log_norm, "N": n_k}
                return {**LP, "cache": cache, "hard": False, "Hresp": hresp}
            lp = xp.asarray(lp, dtype=xp.float64, order="F")
        hresp = None
        if hard:
            log_norm, log_resp = logsumexp_rows(lp)
            resp = _one_hot(xp.argmax(log_resp, axis=1), log_resp.shape[1], xp)
        elif entropy:
            log_norm, log_resp, resp, hresp = softmax_entropy_rows(lp)
        else:
            log_norm, log_resp, resp = softmax_rows(lp)
        LP = {
            "resp": resp,
            "log_resp": log_resp,
            "log_norm": log_norm,
            "cache": cache,
            "hard": hard,
        }
        if hresp is not None:
            LP["Hresp"] = hresp
        return LP

    def summarize(
        self,
        X: Any,
        LP: dict[str, Any],
        entropy: bool = True,
        merge_pairs: Sequence[tuple[int, int]] | None = None,
        sample_weight: Any = None,
    ) -> SuffStats:
        """Additive statistics of a batch and its responsibilities.

        Parameters
        ----------
        X : array (N, D)
        LP : dict from ``local_step`` (at least "resp"; "log_resp" saves a log)
        entropy : bool
            Also compute Hresp_k = -sum_n w_n r_nk log r_nk (K,).
        merge_pairs : sequence of (uid_j, uid_k), optional
            Pairs whose merged entropy -sum_n w_n (r_j + r_k) log(r_j + r_k) is tracked.
        sample_weight : array (N,), optional
            Non-negative row weights; statistics are weighted sums.
        """
        return SuffStats(*self._summary_parts(X, LP, entropy, merge_pairs, sample_weight))

    def _summary_parts(
        self,
        X: Any,
        LP: dict[str, Any],
        entropy: bool,
        merge_pairs: Sequence[tuple[int, int]] | None,
        sample_weight: Any,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float], Any, Any]:
        """What ``summarize`` puts in its SuffStats: (fields, uids, scalars, pairs, hpair)."""
        xp = get_namespace(X)
        resp = LP["resp"]
        if resp.shape[1] != self.K:
            raise ValueError(
                f"resp has {resp.shape[1]} columns but the model has {self.K} components "
                "(give a new model its components first: model.uids = model.new_uids(K))"
            )
        w_resp = resp if sample_weight is None else resp * sample_weight[:, None]
        obs_stats = self.obs.calc_stats(X, w_resp, LP.get("cache"))
        n_k = obs_stats.pop("N", None)  # an observation model may get it from its own GEMM
        if n_k is None and sample_weight is None:  # the float32 softmax summed it in float64
            n_k = LP.get("N")
        fields = {"N": w_resp.sum(axis=0) if n_k is None else n_k}
        fields.update(obs_stats)
        if entropy and LP.get("hard", False):
            fields["Hresp"] = xp.zeros_like(fields["N"])  # one-hot rows carry no entropy
        elif entropy and sample_weight is None and LP.get("Hresp") is not None:
            fields["Hresp"] = LP["Hresp"]
        elif entropy:
            log_resp = LP.get("log_resp")
            if log_resp is None:
                log_resp = xp.log(xp.maximum(resp, 1e-300))
            fields["Hresp"] = _entropy(w_resp, log_resp, xp)
        n_rows = X.shape[0] if sample_weight is None else float(to_host(sample_weight.sum()))
        scalars = {
            "n_rows": float(n_rows),
            # rows whose local step ran on a GPU: lets a cupy engine prove it did not fall back
            "device_rows": float(n_rows if xp is not np else 0.0),
        }
        if LP.get("log_norm") is not None:
            scalars["log_norm"] = float(to_host(_weighted_sum(LP["log_norm"], sample_weight)))
        pairs, hpair = None, None
        if merge_pairs:
            pairs = np.asarray(merge_pairs, np.int64).reshape(-1, 2)
            pos = {int(u): i for i, u in enumerate(self.uids)}
            jj = np.array([pos[int(a)] for a in pairs[:, 0]])
            kk = np.array([pos[int(b)] for b in pairs[:, 1]])
            r = resp[:, jj] + resp[:, kk]
            h = -(r * xp.log(xp.maximum(r, 1e-300)))
            if sample_weight is not None:
                h *= sample_weight[:, None]
            hpair = to_host(h.sum(axis=0))
        fields = {k: np.asarray(to_host(v), dtype=np.float64) for k, v in fields.items()}
        return fields, self.uids, scalars, pairs, hpair

    def local_summarize(
        self,
        X: Any,
        hard: bool = False,
        entropy: bool = True,
        merge_pairs: Sequence[tuple[int, int]] | None = None,
        sample_weight: Any = None,
    ) -> SuffStats:
        """``summarize(X, local_step(X))`` computed over row blocks, in bounded memory."""
        n = X.shape[0]
        if n == 0:
            raise ValueError("cannot summarize an empty batch (0 rows)")
        block = max(256, _BLOCK_CELLS // (max(self.K, 1) + self.obs.cache_width()))
        xp = get_namespace(X)
        log_weights = xp.asarray(self.alloc.log_weights())  # once, not once per block
        # float32 resp only where the summary reads nothing else of them (merge entropies would
        # be float32 sums)
        narrow = entropy and not hard and sample_weight is None and not merge_pairs
        fused = self.obs.fused_summary(X, log_weights) if narrow else None
        if fused is not None:
            fields, log_norm = fused
            scalars = {"n_rows": float(n), "device_rows": 0.0, "log_norm": log_norm}
            return SuffStats(fields, self.uids, scalars)

        def one(start: int) -> tuple:
            stop = min(start + block, n)
            Xb = X[start:stop]
            wb = None if sample_weight is None else sample_weight[start:stop]
            LP = self._local_step(Xb, hard, log_weights, entropy and wb is None, narrow)
            return self._summary_parts(Xb, LP, entropy, merge_pairs, wb)

        # blocks in threads on the host; a GPU runs one stream of blocks. Blocks are added left
        # to right (a fixed order) without the constructor's checks; the batch's sum is checked.
        # A few rounds of blocks per call, so that the parts held at once do not grow with n
        threads = None if xp is np else 1
        starts = range(0, n, block)
        step = _BLOCKS_PER_ROUND * (threads or get_num_threads())
        total = None
        for r in range(0, len(starts), step):
            for part in map_ordered(one, starts[r : r + step], threads):
                ss = SuffStats._trusted(*part)
                total = ss if total is None else total + ss
        return SuffStats(
            total.fields, total.uids, total.scalars, total.merge_pairs, total.merge_Hresp
        )

    # ------------------------------------------------------------------ global step
    def global_step(self, SS: SuffStats, rho: float | None = None) -> None:
        """Update the weights and the component parameters from statistics.

        ``rho`` in (0, 1] blends natural parameters (stochastic VB); when SS's components are
        not the model's (moves changed them), they replace the model's and rho is not applied.
        """
        if rho is not None and not np.array_equal(self.uids, SS.uids):
            rho = None
        self.alloc.update(SS, rho)
        self.obs.update(SS, rho)
        self.uids = SS.uids.copy()
        if self.uids.size:
            self.next_uid = max(self.next_uid, int(self.uids.max()) + 1)

    def elbo(self, SS: SuffStats) -> float:
        """The objective, summed over data points, from statistics alone.

        vb: the evidence lower bound; em: E_r[log p(X, z | theta)] + log prior + H(r), which
        equals the log-likelihood (+ log prior) right after a local step and bounds it below.
        """
        total = self.alloc.elbo_term(SS) + self.obs.elbo_term(SS)
        if "Hresp" in SS:
            total += float(SS["Hresp"].sum())
        return float(total)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        state = {f"alloc/{k}": v for k, v in self.alloc.get_state().items()}
        state.update({f"obs/{k}": v for k, v in self.obs.get_state().items()})
        state["uids"] = self.uids
        state["next_uid"] = np.array(self.next_uid)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.alloc.set_state({k[6:]: v for k, v in state.items() if k.startswith("alloc/")})
        self.obs.set_state({k[4:]: v for k, v in state.items() if k.startswith("obs/")})
        self.uids = np.asarray(state["uids"], np.int64)
        self.next_uid = int(state["next_uid"])


def _entropy(w_resp: Any, log_resp: Any, xp: Any) -> Any:
    """-sum_n w_n r_nk log r_nk (K,), one pass and no (N, K) temporary in the usual case."""
    h = -xp.einsum("nk,nk->k", w_resp, log_resp)
    if not bool(xp.isfinite(h).all()):
        # a component with log r = -inf (removed from the local step) has r = 0: its 0 * -inf
        # is zero mass, not nan
        h = -(w_resp * xp.maximum(log_resp, _LOG_FLOOR)).sum(axis=0)
    return h


def _one_hot(labels: Any, K: int, xp: Any) -> Any:
    out = xp.zeros((labels.shape[0], K))
    out[xp.arange(labels.shape[0]), labels] = 1.0
    return out


def _weighted_sum(values: Any, weights: Any) -> Any:
    return values.sum() if weights is None else (values * weights).sum()
