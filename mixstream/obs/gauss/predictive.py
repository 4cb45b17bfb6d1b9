"""Posterior-predictive densities of a VB Gaussian observation model (Student-t).

Under q(mu_k, Lambda_k) = N(mu_k | m_k, (kappa_k Lambda_k)^{-1}) q(Lambda_k), the density of a
new row, p(x | data) = E_q[N(x | mu_k, Lambda_k^{-1})], is a Student-t in closed form:

- full / tied: Lambda ~ Wishart(nu, Psi^{-1}); t with v = nu - D + 1 degrees of freedom, scale
  matrix S = Psi (1 + kappa) / (kappa v);
- diag: D independent Gammas, shape nu/2, rate psi_d/2; a product of D univariate t's with
  v = nu, scale^2 = psi_d (1 + kappa) / (kappa nu);
- spherical: one Gamma, shape nu D/2, rate psi D/2; a D-variate t with v = nu D and scale^2 =
  psi (1 + kappa) / (kappa nu) on the identity.

This is the held-out log-likelihood of a Bayesian fit. The expected log-density
E_q[log N(x | ...)] that the local step uses is lower (Jensen) by an amount that grows as a
component's data shrink, which made small components look worse on held-out rows than they are.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy.special import gammaln

from mixstream.backend import get_namespace, to_device

_LOG_PI = math.log(math.pi)


def log_predictive(obs: Any, X: Any) -> Any:
    """log p(x_n | component k's posterior) for every row and component, shape (N, K).

    Parameters
    ----------
    obs : a fitted VB ``GaussObs`` (attributes m (K, D), kappa (K,), nu (G,), psi, shift (D,),
        structure, tied; G = 1 for tied types, else K)
    X : array (N, D), numpy or cupy; computed in float64
    """
    xp = get_namespace(X)
    Y = xp.asarray(X, dtype=xp.float64) - to_device(np.asarray(obs.shift, np.float64), xp)
    n, D = Y.shape
    K = obs.m.shape[0]
    nu_all = np.atleast_1d(np.asarray(obs.nu, np.float64))
    out = xp.empty((n, K), dtype=xp.float64)
    for k in range(K):
        g = 0 if obs.tied else k
        kappa, nu = float(obs.kappa[k]), float(nu_all[g])
        c = (1.0 + kappa) / kappa
        d = Y - to_device(np.asarray(obs.m[k], np.float64), xp)
        if obs.structure == "full":
            v = nu - D + 1.0
            L = np.linalg.cholesky(np.asarray(obs.psi[g], np.float64) * (c / v))
            Linv = np.linalg.inv(L)  # D x D, once per component
            z = d @ to_device(Linv.T, xp)
            maha, logdet = (z * z).sum(axis=1), 2.0 * float(np.log(np.diag(L)).sum())
            out[:, k] = _t_multi(maha, v, D, logdet, xp)
        elif obs.structure == "diag":
            v = nu
            s2 = np.asarray(obs.psi[g], np.float64) * (c / v)
            t = (d * d) / to_device(s2, xp)
            const = D * (gammaln(0.5 * (v + 1)) - gammaln(0.5 * v) - 0.5 * (math.log(v) + _LOG_PI))
            out[:, k] = (
                const - 0.5 * float(np.log(s2).sum()) - 0.5 * (v + 1) * xp.log1p(t / v).sum(axis=1)
            )
        else:
            v = nu * D
            s2 = float(np.asarray(obs.psi).reshape(-1)[g]) * c / nu
            out[:, k] = _t_multi((d * d).sum(axis=1) / s2, v, D, D * math.log(s2), xp)
    return out


def _t_multi(maha: Any, v: float, D: int, logdet: float, xp: Any) -> Any:
    """log density of a D-variate Student-t with v degrees of freedom, from the Mahalanobis
    distances ``maha`` (N,) and log|scale|."""
    const = gammaln(0.5 * (v + D)) - gammaln(0.5 * v) - 0.5 * D * (math.log(v) + _LOG_PI)
    return const - 0.5 * logdet - 0.5 * (v + D) * xp.log1p(maha / v)


def prior_component(obs: Any) -> SimpleNamespace:
    """The prior (m0, kappa0, nu0, Psi0) of a VB ``GaussObs`` dressed as a one-component
    posterior, for the predictive functions: its Student-t is the prior predictive."""
    m0, k0, nu0, psi0 = obs._prior()
    return SimpleNamespace(
        shift=obs.shift,
        m=np.asarray(m0, np.float64)[None],
        kappa=np.array([k0], np.float64),
        nu=np.array([nu0], np.float64),
        psi=np.asarray(psi0, np.float64)[None],
        structure=obs.structure,
        tied=False,
    )
