"""Count vectors (e.g. word counts): x | k ~ Multinomial(n_x, phi_k) over D categories.

    log p(x | phi_k) = log n! - sum_d log x_d! + sum_d x_d log phi_kd,   n = sum_d x_d.

The multinomial coefficient log n! - sum_d log x_d! is included, so the per-row log-likelihoods
(``log_norm``, the EM objective, the ELBO) are those of a proper pmf over count vectors with the
row's total. It is the same for every component, so it changes no responsibility; it enters the
objective through the additive statistic "logcoef" (K,) = sum_n r_nk c_n, which merges and
splits like every other statistic.

Counts need not be integers: weighted or normalised counts (tf-idf, down-sampled reads) fit the
same conjugate updates, and the coefficient then uses the gamma-function extension
log Gamma(n + 1) - sum_d log Gamma(x_d + 1); it is a pmf only for integer rows. Negative values
are rejected by ``validate``.

Prior: phi_k ~ Dirichlet(lam), ``lam`` a scalar (symmetric) or (D,), default 0.1: a weak prior
that favours sparse category distributions, as usual for vocabularies. A flat Dirichlet(1) adds
D pseudo-counts to every component, which for a large vocabulary swamps the counts of a small
cluster. VB keeps q(phi_k) = Dirichlet(lam + C_k), C_kd = sum_n r_nk x_nd ("counts", (K, D)).

Missing counts (``missing="marginalize"``, NaN): a missing entry drops out of the row's
log-likelihood and of the statistics, as for the Bernoulli. The row's likelihood is over its
observed categories o: its n_o = sum_{d in o} x_d observed items, each a draw from phi_k,
landing as counted,

    log p(x_o | phi_k) = log n_o! - sum_{d in o} log x_d! + sum_{d in o} x_d log phi_kd,

so the coefficient uses the observed counts only (the row's total is unknown; without NaN this
is the complete-data term, to the bit), and phi_k is not renormalised over o: that keeps the
term linear in log phi_k, hence the conjugate updates above with C_kd summed over the observed
entries (the conditional multinomial, phi_o / sum_o phi, would add -n_o log sum_o phi_kd: no
closed-form update). Setting a NaN count to 0 gives exactly this term. A row with every count
missing is refused, as for every likelihood.

EM: phi_k ∝ C_k + (lam - 1 if map_prior else 0) + eps. ``map_prior=True`` is the posterior mode
(needs lam >= 1); otherwise maximum likelihood, smoothed by ``eps`` (default 1e-10) so an unseen
category keeps a finite log. The update is the exact maximiser of log-likelihood + log prior +
eps sum_kd log phi_kd, and that is the objective reported, so EM stays monotone. An empty
component gets the uniform distribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from mixstream.backend import get_namespace, special, to_device, to_host
from mixstream.obs.base import ObsModel, weighted_mean
from mixstream.suffstats import SuffStats

_SHOW_ROWS = 10
_KEY_X = "multinomial/X64"
_KEY_COEF = "multinomial/logcoef"


class MultinomialObs(ObsModel):
    """Multinomial components over D categories with a Dirichlet(lam) prior.

    Parameters
    ----------
    inference : {"vb", "em"}
    lam : float or array (D,)
        Dirichlet prior concentration (> 0; >= 1 for ``map_prior``), default 0.1.
    eps : float
        EM pseudo-count added to every category (> 0, default 1e-10).
    map_prior : bool
        EM only: posterior mode instead of (smoothed) maximum likelihood.
    missing : {"error", "marginalize"}
        "marginalize": a NaN count drops out of the row's log-likelihood (the row's likelihood
        is that of its observed counts, coefficient included) and of the statistics.
    """

    likelihood = "multinomial"

    def __init__(
        self,
        inference: str = "vb",
        lam: Any = 0.1,
        eps: float = 1e-10,
        map_prior: bool = False,
        missing: str = "error",
    ) -> None:
        super().__init__(inference)
        if missing not in ("error", "marginalize"):
            raise ValueError(f"missing must be 'error' or 'marginalize', got {missing!r}")
        self.missing = missing
        if not (np.isfinite(eps) and eps > 0.0):
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
        self._lam_user = np.array(lam, np.float64)
        if not np.all(np.isfinite(self._lam_user) & (self._lam_user > 0)):
            raise ValueError(f"lam must be positive and finite, got {self._lam_user.tolist()}")
        if map_prior and np.any(self._lam_user < 1.0):
            raise ValueError(
                "map_prior=True needs lam >= 1 (the Dirichlet density has no interior mode "
                f"otherwise), got lam={self._lam_user.tolist()}"
            )
        self.eps = float(eps)
        self.map_prior = bool(map_prior)
        self.lam = np.zeros(0)
        self.mean_total = 0.0
        self.conc = np.zeros((0, 0))  # vb: q(phi_k) = Dirichlet(conc_k)
        self.phi = np.zeros((0, 0))  # em point estimate
        self._em_C = np.zeros((0, 0))
        self._elogphi = np.zeros((0, 0))

    # ------------------------------------------------------------------ data and prior
    def validate(self, X: Any, where: str = "X") -> None:
        self.check_shape(X, where, "categories")
        xp = get_namespace(X)
        bad = (X < 0).any(axis=1)
        if bool(bad.any()):
            raise ValueError(
                f"multinomial data must be non-negative counts: {where} rows {_rows(xp, bad)} "
                "hold negative values"
            )

    def set_prior_from_data(self, X: Any, weights: Any = None) -> None:
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"set_prior_from_data needs a non-empty 2-D array, got {X.shape}")
        xp = get_namespace(X)
        D = int(X.shape[1])
        lam = self._lam_user
        if lam.ndim == 0:
            lam = np.full(D, float(lam))
        elif lam.shape != (D,):
            raise ValueError(
                f"lam must be a scalar or an array of shape (n_features,) = ({D},), "
                f"got shape {lam.shape}"
            )
        self.n_features = D
        self.lam = lam.astype(np.float64, copy=True)
        self.mean_total = float(weighted_mean(xp.asarray(X, dtype=xp.float64).sum(axis=1), weights))

    # ------------------------------------------------------------------ local step
    def _features(self, X: Any, cache: dict | None) -> tuple[Any, Any]:
        """X as float64 and the per-row log multinomial coefficient (N,)."""
        if cache is not None:
            X64, coef = cache.get(_KEY_X), cache.get(_KEY_COEF)
            if coef is not None and coef.shape[0] == X.shape[0]:
                return (X if X64 is None else X64), coef
        xp = get_namespace(X)
        X64 = xp.asarray(X, dtype=xp.float64)
        if self.missing == "marginalize":
            X64 = _drop_missing(X64, xp)
        gammaln_xp = special(xp).gammaln
        coef = gammaln_xp(X64.sum(axis=1) + 1.0) - gammaln_xp(X64 + 1.0).sum(axis=1)
        if cache is not None:
            if X64 is not X:
                cache[_KEY_X] = X64
            cache[_KEY_COEF] = coef
        return X64, coef

    def log_prob(self, X: Any, cache: dict | None = None, bias: Any = None) -> Any:
        self.require_prior()
        xp = get_namespace(X)
        X64, coef = self._features(X, cache)
        lp = X64 @ to_device(self._elogphi.T, xp)
        lp += coef[:, None]
        if bias is not None:
            lp += bias[None, :]
        return lp

    def calc_stats(self, X: Any, resp: Any, cache: dict | None = None) -> dict[str, Any]:
        self.require_prior()
        xp = get_namespace(X)
        X64, coef = self._features(X, cache)
        resp64 = xp.asarray(resp, dtype=xp.float64)
        return {"counts": resp64.T @ X64, "logcoef": resp64.T @ coef}

    # ------------------------------------------------------------------ global step
    def update(self, SS: SuffStats, rho: float | None = None) -> None:
        self.require_prior()
        if rho is not None and not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {rho!r}")
        K = SS.K
        C = np.maximum(SS["counts"], 0.0)
        blend = rho is not None and rho < 1.0 and self.K == K
        if self.inference == "vb":
            conc = self.lam[None] + C
            if blend:
                conc = (1.0 - rho) * self.conc + rho * conc
            self.conc = conc
        else:
            if blend:
                C = (1.0 - rho) * self._em_C + rho * C
            self._em_C = C.copy()
            w = C + self._em_pseudo()[None]
            self.phi = w / w.sum(axis=1, keepdims=True)
        self.K = K
        self._refresh()

    def _em_pseudo(self) -> np.ndarray:
        """The pseudo-count EM adds to every category: (lam - 1 if MAP) + eps, shape (D,)."""
        return (self.lam - 1.0 if self.map_prior else 0.0) + self.eps + np.zeros(self.n_features)

    def _refresh(self) -> None:
        if self.inference == "vb":
            self._elogphi = digamma(self.conc) - digamma(self.conc.sum(axis=1, keepdims=True))
        else:
            self._elogphi = np.log(self.phi)

    # ------------------------------------------------------------------ objective
    def elbo_term(self, SS: SuffStats) -> float:
        self.check_components(SS)
        C = np.maximum(SS["counts"], 0.0)
        coef = float(SS["logcoef"].sum())
        if self.inference == "vb":
            # E_q log p(X | phi) + E_q log Dir(phi | lam) - E_q log q(phi), for any Dirichlet q
            return float(
                ((C + self.lam[None] - self.conc) * self._elogphi).sum()
                + coef
                + self.K * _c_dir(self.lam)
                - _c_dir(self.conc).sum()
            )
        total = float(((C + self._em_pseudo()[None]) * self._elogphi).sum()) + coef
        if self.map_prior:
            total += self.K * float(_c_dir(self.lam))
        return total

    # ------------------------------------------------------------------ parameters
    def _probs(self) -> np.ndarray:
        if self.inference == "vb":
            return self.conc / self.conc.sum(axis=1, keepdims=True)
        return self.phi.copy()

    def point_estimates(self) -> dict[str, np.ndarray]:
        """Host arrays: "probs" (K, D) = E[phi_k] (vb) or phi_k (em), and "means" =
        mean_total * probs, the expected counts of a row with the average total seen in
        ``set_prior_from_data``."""
        probs = self._probs()
        return {"means": self.mean_total * probs, "probs": probs}

    def n_free_params(self) -> int:
        return self.K * max(self.n_features - 1, 0)

    def set_point_params(self, means: Any = None, probs: Any = None, counts: Any = 100.0) -> None:
        """Components from given category probabilities (K, D), rows summing to 1, or from
        ``means`` (K, D), expected counts E[x | k] (any positive row scale; normalised).

        EM uses them (floored at eps and renormalised). VB sets q(phi_k) = Dirichlet(lam +
        c_k probs_k), c = ``counts`` (scalar or (K,)): how many counted items the given
        parameters stand for.
        """
        self.require_prior()
        if (means is None) == (probs is None):
            raise ValueError("give exactly one of means= or probs=")
        if means is not None:
            means = np.array(means, np.float64)
            if means.ndim != 2 or np.any(means < 0) or np.any(means.sum(axis=-1) <= 0):
                raise ValueError("means must be (K, D), non-negative, with positive row sums")
            probs = means / means.sum(axis=1, keepdims=True)
        probs = np.array(probs, np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.n_features:
            raise ValueError(f"probs must have shape (K, {self.n_features}), got {probs.shape}")
        if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, rtol=1e-6):
            raise ValueError("probs must be non-negative with rows summing to 1")
        K = probs.shape[0]
        c = np.broadcast_to(np.asarray(counts, np.float64), (K,)).copy()
        if self.inference == "vb":
            self.conc = self.lam[None] + c[:, None] * probs
        else:
            phi = np.maximum(probs, self.eps)
            self.phi = phi / phi.sum(axis=1, keepdims=True)
            self._em_C = c[:, None] * self.phi
        self.K = K
        self._refresh()

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            "n_features": np.array(self.n_features),
            "lam": self.lam,
            "eps": np.array(self.eps),
            "map_prior": np.array(self.map_prior),
            "mean_total": np.array(self.mean_total),
            "conc": self.conc,
            "phi": self.phi,
            "em_C": self._em_C,
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.n_features = int(state["n_features"])
        self.lam = np.array(state["lam"], np.float64)
        self.eps = float(state["eps"])
        self.map_prior = bool(state["map_prior"])
        self.mean_total = float(state["mean_total"])
        self.conc = np.array(state["conc"], np.float64)
        self.phi = np.array(state["phi"], np.float64)
        self._em_C = np.array(state["em_C"], np.float64)
        self.K = int((self.conc if self.inference == "vb" else self.phi).shape[0])
        self._refresh()

    def sample(self, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """n count rows from component k; each row's total is Poisson(mean_total), the average
        row total seen in ``set_prior_from_data``."""
        probs = self._probs()[k]
        totals = rng.poisson(self.mean_total, size=n)
        return rng.multinomial(totals, probs / probs.sum()).astype(np.float64)


# ---------------------------------------------------------------------- helpers
def _drop_missing(X64: Any, xp: Any) -> Any:
    """X64 with each NaN count set to 0: its terms x_d log phi_kd and log x_d! (and its share
    of the row total) are then 0, exactly what dropping it out gives. X64 itself when it holds
    no NaN (one sum clears a complete block). A row with every count missing is refused."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = X64.sum()
    if bool(xp.isfinite(total)):
        return X64
    miss = xp.isnan(X64)
    if not bool(miss.any()):
        return X64
    empty = miss.all(axis=1)
    if bool(empty.any()):
        raise ValueError(
            f"X has {int(empty.sum())} row(s) with every value missing (NaN); first rows: "
            f"{_rows(xp, empty)}: a row needs at least one observed value"
        )
    return xp.where(miss, 0.0, X64)


def _c_dir(conc: np.ndarray) -> Any:
    """log normaliser of Dirichlet(conc) along the last axis."""
    return gammaln(conc.sum(axis=-1)) - gammaln(conc).sum(axis=-1)


def _rows(xp: Any, bad: Any) -> str:
    """The first offending row indices as text: "[3, 17]", or "[0, 1, ..., 9, ...] (25 rows)"."""
    rows = to_host(xp.flatnonzero(bad))
    text = ", ".join(str(int(r)) for r in rows[:_SHOW_ROWS])
    if rows.size > _SHOW_ROWS:
        return f"[{text}, ...] ({rows.size} rows)"
    return f"[{text}]"
