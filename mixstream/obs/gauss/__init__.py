"""Gaussian components: x | k ~ N(mu_k, Sigma_k), six covariance structures, EM and VB.

Package layout
--------------
- ``model``: ``GaussObs``, the observation model (prior, local step, global step, state);
- ``structure``: ``CovarianceStructure``, the interface of one covariance structure;
- ``full`` / ``gamma``: the strategies (``FullCovariance``; ``DiagCovariance`` and
  ``SphericalCovariance``, Gamma precisions), each per component or tied;
- ``types``: names -> strategies (``covariance_strategy``), ``covariance_shape``;
- ``linalg``: Cholesky helpers and the Wishart expectation.

GaussObs never switches on a type name: it asks ``self.covariance`` (its strategy). Sampling,
the report and other Gaussian parts use ``covariance_strategy(name)`` the same way.

Covariance types
----------------
``full``, ``diag`` and ``spherical`` give each component its own covariance (a matrix, a vector
of variances, one variance); ``tied_full``, ``tied_diag`` and ``tied_spherical`` share one of
those among all components (``tied`` is accepted as scikit-learn's name for ``tied_full``).

Statistics
----------
All statistics live in *shifted* coordinates y = x - c, where the shift c is the data mean seen
by ``set_prior_from_data`` (zero if it was never called). Sums of squares about a point near the
data do not cancel catastrophically for data far from the origin; the parameters are reported
in the original coordinates. Fields, all float64 whatever the dtype of X:

- ``x``  (K, D): sum_n r_nk y_n
- ``xx``: full types (K, D (D + 1) / 2), the upper triangle (row-major, i <= j, as
  ``np.triu_indices``) of sum_n r_nk y_n y_n^T; diag types (K, D), sum_n r_nk y_n**2;
  spherical types (K,), sum_n r_nk |y_n|^2.

The local step is two GEMMs per block. With the features f(y) = [1, y, q(y)], q(y) the products
y_i y_j (i <= j) for full types, y**2 for diag and |y|^2 for spherical, every log density is
linear in f(y): log N(y | m, P^{-1}) = c + (P m)^T y - 1/2 <q(y), vec(P)> (off-diagonal entries of
vec(P) doubled). So log_prob for all K components is ``f @ theta`` with theta (W, K), and the
statistics of the block are ``resp^T @ f`` (one GEMM; the column of ones gives N_k, which the
Model computes itself). f is built feature-major, (W, N), so that each product y_i y_j is one
contiguous vector operation. ``log_prob`` keeps f in ``cache`` for ``calc_stats``; blocks whose
features would exceed ``_FEATURE_BUDGET`` float64 cells are cut into sub-blocks and not cached.

Priors (names and meaning as scikit-learn's BayesianGaussianMixture; weaker defaults)
-------------------------------------------------------------------------------------
mean_prior m0, mean_precision_prior kappa0, degrees_of_freedom_prior nu0, covariance_prior Psi0.
Psi0 is the *inverse scale*: Lambda ~ Wishart(nu0, Psi0^{-1}) (full types; nu0 > D - 1) or Gammas
(diag / spherical types, below; nu0 > 0), E[Lambda] = nu0 Psi0^{-1}, and
mu_k | Lambda_k ~ N(m0, (kappa0 Lambda_k)^{-1}). Defaults, weak and in the data's own units:

- m0 = the data mean, kappa0 = 1 (one pseudo-observation of the mean);
- nu0 = D + 2 for full types (the fewest degrees of freedom for which the prior covariance has a
  finite mean), 2 for diag / spherical types (a Gamma of shape 1 per precision);
- Psi0 = nu0 * PRIOR_SCALE * (the empirical covariance; per-feature variances for diag types,
  their mean for spherical types), so the prior's point covariance Psi0 / nu0 is PRIOR_SCALE
  times the data's: a cluster is a priori smaller than the whole data, in every unit. For
  diag and spherical types under VB that is only the start: with no covariance_prior given,
  Psi0 is fitted to the components after each global step (empirical Bayes,
  ``CovarianceStructure.fit_prior``; docs/math.md §4).

scikit-learn's defaults (nu0 = D, Psi0 = the empirical covariance) put D pseudo-observations of
a covariance D times smaller than the data's on every component; in 64 dimensions that outweighs
a 100-row cluster and stopped DP births on its digits (docs/math.md has the numbers). Pass
``degrees_of_freedom_prior=D, covariance_prior=np.cov(X.T)`` to get them back.

EM
--
Maximum likelihood, exactly as scikit-learn's GaussianMixture: Sigma_k = S_k / N_k + reg_covar I
(S_k the scatter about the component mean; its diagonal / mean diagonal for diag / spherical;
sum_k S_k / N for tied). A component with N_k <= 1e-10 keeps its previous mean and covariance
(matched by uid), or the prior mean and covariance_prior + reg_covar I when it has none;
scikit-learn adds 10 eps to every N_k instead, a difference of order 1e-15 / N_k.

``map_prior=True``: the joint mode of the posterior density of (mu, Sigma) (a density over the
covariance, so the mode exists for every nu0 > D - 1 and every N_k >= 0):
mu_k = (kappa0 m0 + sum r y) / (kappa0 + N_k) and Sigma = A / (nu0 + N_g + n_mu + c), where A is
the Wishart posterior inverse scale below (without reg_covar: the prior keeps A positive
definite, and the step is then the exact maximiser of the reported objective), N_g the mass and
n_mu the number of means sharing the covariance (1, or K for tied), and c = D + 1 (full), 2
(diag, one inverse-gamma per feature with shape nu0 / 2 and scale Psi0_d / 2: the marginal of
the Wishart diagonal) or 2 / D (spherical, inverse-gamma with shape D nu0 / 2 and scale
D Psi0 / 2). ``elbo_term`` adds the log prior density at the mode.

``update(SS, rho)`` for EM blends the stored statistics (stepwise EM) and re-estimates from them.

VB
--
q(mu_k, Lambda_k) = N(mu_k | m_k, (kappa_k Lambda_k)^{-1}) Wishart(Lambda_k | nu_k, Psi_k^{-1}):
kappa_k = kappa0 + N_k, m_k = (kappa0 m0 + sum r y) / kappa_k, nu_k = nu0 + N_k and
Psi_k = Psi0 + S_k + N_k reg_covar I + kappa0 N_k / kappa_k (ybar_k - m0)(ybar_k - m0)^T
(reg_covar enters through the scatter, as scikit-learn computes sk with reg_covar).

- full: the exact conditional-conjugate posterior (scikit-learn's model).
- diag / spherical: independent Gamma precisions, the conjugate model of a diagonal /
  isotropic covariance: q(lambda_kd) = Gamma(nu_k / 2, rate Psi_kd / 2) per feature (diag: a
  one-feature Wishart per feature), or one q(lambda_k) = Gamma(D nu_k / 2, rate D Psi_k / 2)
  (spherical), with mu_kd | lambda ~ N(m_kd, 1 / (kappa_k lambda_kd)). The updates of nu and Psi
  are the formulas above restricted to the diagonal (its mean, spherical), and
  E log|Lambda| = D (digamma(nu / 2) + log 2) - sum_d log Psi_d (diag) or
  D (digamma(D nu / 2) - log(D Psi / 2)) (spherical): the expectation under q itself, so the
  ELBO is the exact evidence bound of this model (a diag fit equals D one-feature fits sharing
  the responsibilities; tested). nu0 may be any positive number. scikit-learn's diag / spherical
  VB instead put the D-dimensional Wishart value sum_{d<D} digamma((nu - d) / 2) in the local
  step, the bound of a Normal-Wishart model with a *full* precision a priori; it needs
  nu0 > D - 1, so in 64 dimensions every feature's variance carries at least 64 prior
  pseudo-observations, a strong pull that stopped DP births on real data (scikit-learn's
  digits). We keep its updates (means, Psi, nu match it from the same statistics) but not that
  expectation.
- tied types: one Wishart shared by all components and per-component means,
  q(Lambda) prod_k q(mu_k | Lambda), the exact conditional-conjugate posterior of the tied model:
  nu = nu0 + N, Psi = Psi0 + sum_k (S_k + N_k reg_covar I + kappa0 N_k / kappa_k d_k d_k^T).
  (tied_diag / tied_spherical: one set of Gammas, as above.)

Where this differs from scikit-learn, and why
---------------------------------------------
- diag / spherical (VB): Gamma precisions, see above.
- tied (VB): scikit-learn uses nu = nu0 + N / K, Psi = Psi0 + (1 / K) sum_k (...), and counts the
  Wishart terms K times in its bound. That is a coherent VB, but of a *different model*: K
  independent precisions Lambda_k ~ Wishart(nu0, Psi0^{-1}) whose variational factors are forced
  to be equal; the prior then weighs K times and the fit depends on the truncation K (an empty
  component changes the shared covariance), which a DP truncation must not do. We fit the tied
  model itself: one precision, nu = nu0 + N. With K = 1 both coincide.
- reg_covar in VB: it perturbs the update (as scikit-learn's does), but the ELBO is that of the
  stated model (raw statistics, no reg_covar), so it stays a true bound of its evidence; the
  update is then an O(reg_covar) perturbation of the exact coordinate step. MAP EM leaves
  reg_covar out (the prior regularises), so its step is exact and its objective monotone.
- ``tied_diag`` / ``tied_spherical`` and ``map_prior`` have no scikit-learn counterpart; their
  shapes follow the pattern (tied_diag: (D,), tied_spherical: a 0-d array).
- Point estimates for VB follow BayesianGaussianMixture: covariances = Psi / nu = E[Lambda]^{-1},
  precisions = nu Psi^{-1}, plus "mean_precision" (kappa) and "degrees_of_freedom" (nu).

Numerics
--------
The quadratic forms are computed from uncentred features about the global shift, so a
component at distance R from the shift with spread s loses about log10(R^2 / s^2) of the 16
digits (scikit-learn centres per component). Precisions come from Cholesky factors and
triangular inverses; a covariance (EM) or inverse scale (VB) that rounding made indefinite is
repaired by clipping its eigenvalues (never NaN). Small per-component parameter math stays in
numpy on the host; the data-sized work goes through the array namespace of X (numpy or cupy).
"""

from __future__ import annotations

from typing import Any

from mixstream.obs.gauss.full import FullCovariance
from mixstream.obs.gauss.gamma import DiagCovariance, SphericalCovariance
from mixstream.obs.gauss.structure import PRIOR_FLOOR, PRIOR_SCALE, CovarianceStructure
from mixstream.obs.gauss.types import (
    ALIASES,
    COVARIANCE_TYPES,
    canonical_covariance_type,
    covariance_shape,
    covariance_strategy,
)

#: most float64 cells of per-block features kept at once (256 MiB); read at call time from
#: this package, so that it can be lowered here (tests cut blocks into sub-blocks with it)
_FEATURE_BUDGET = 1 << 25
#: precisions the local step's features and GEMMs may run in
from mixstream.vocabulary import COMPUTE_DTYPES  # noqa: E402

#: names imported on first use: ``model.py`` reads this package's constants (``_FEATURE_BUDGET``
#: at call time), so the package must not import it at its own import (an import circle)
_LAZY = {"GaussObs": "mixstream.obs.gauss.model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALIASES",
    "COMPUTE_DTYPES",
    "COVARIANCE_TYPES",
    "PRIOR_FLOOR",
    "PRIOR_SCALE",
    "CovarianceStructure",
    "DiagCovariance",
    "FullCovariance",
    "GaussObs",
    "SphericalCovariance",
    "canonical_covariance_type",
    "covariance_shape",
    "covariance_strategy",
]
