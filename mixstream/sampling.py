"""Drawing from a fitted mixture (``MixtureModel.sample``), optionally inside or outside a
Mahalanobis shell of each Gaussian component (confidence ellipsoids, outlier generation).

``sample`` takes the fitted model, its weights and covariances; the layout of the covariances
is asked of the observation model's covariance structure, never guessed from shapes.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from mixstream.obs.gauss import covariance_strategy
from mixstream.options import check_positive_int


def sample(
    model: Any,
    weights: np.ndarray,
    rng: np.random.Generator,
    n_features: int,
    n_samples: int = 1,
    component: int | None = None,
    confidence: float | None = None,
    std_range: tuple[float, float] | None = None,
    covariances: Any = None,
    means: Any = None,
    likelihood: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws (n_samples, n_features) and their component labels (see ``MixtureModel.sample``).

    ``covariances`` and ``means`` are the fitted point estimates (``covariances_``,
    ``means_``), needed with ``confidence`` or ``std_range`` only; ``likelihood`` names the
    observation model when it does not say so itself.
    """
    check_positive_int("n_samples", n_samples)
    K = model.K
    if component is None:
        counts = rng.multinomial(n_samples, weights)
    else:
        if not isinstance(component, numbers.Integral) or not 0 <= component < K:
            raise ValueError(f"component must be an integer in [0, {K}), got {component!r}")
        counts = np.zeros(K, dtype=int)
        counts[component] = n_samples
    labels = np.repeat(np.arange(K), counts)
    if confidence is None and std_range is None:
        parts = [model.obs.sample(k, int(c), rng) for k, c in enumerate(counts) if c]
        return np.concatenate(parts), labels
    D = n_features
    lo, hi = radius_bounds(confidence, std_range, D)
    mus, chols = gaussian_factors(model, covariances, means, D, likelihood)
    parts = []
    for k, c in enumerate(counts):
        if c:
            parts.append(mus[k] + shell_draws(rng, int(c), lo, hi, D) @ chols[k].T)
    return np.concatenate(parts), labels


def gaussian_factors(
    model: Any, covariances: Any, means: Any, D: int, likelihood: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Component means (K, D) and lower Cholesky factors of the covariances (K, D, D).

    The layout of ``covariances`` is asked of the fitted observation model's covariance
    structure, never guessed from its shape (with K == D a diag (K, D) array has the shape
    of a tied full (D, D) one, and a spherical (K,) that of a tied diag (D,)).
    """
    obs = model.obs
    likelihood = getattr(obs, "likelihood", likelihood)
    if likelihood == "zero_mean_gauss":
        structure = covariance_strategy("full")  # every zero-mean component's covariance
    elif likelihood == "gauss":
        structure = obs.covariance_structure
    else:
        raise ValueError(
            f"confidence and std_range apply to Gaussian likelihoods only, not "
            f"likelihood={likelihood!r}"
        )
    K = model.K
    full = structure.to_full(covariances, K, D)
    mus = np.asarray(means if means is not None else np.zeros((K, D)), dtype=np.float64)
    return mus, np.linalg.cholesky(full)


def radius_bounds(
    confidence: float | None, std_range: tuple[float, float] | None, D: int
) -> tuple[float, float]:
    """Bounds [lo, hi) on chi2_D's CDF of the squared Mahalanobis radius of a draw."""
    from scipy.stats import chi2

    if confidence is not None and std_range is not None:
        raise ValueError("give confidence or std_range, not both")
    if confidence is not None:
        if not 0 < confidence <= 1:
            raise ValueError(f"confidence must be in (0, 1], got {confidence!r}")
        return 0.0, float(confidence)
    a, b = (float(v) for v in std_range)
    if not 0 <= a < b:
        raise ValueError(f"std_range must be (a, b) with 0 <= a < b, got {std_range!r}")
    return float(chi2.cdf(a * a, D)), float(chi2.cdf(b * b, D))


def shell_draws(rng: np.random.Generator, n: int, lo: float, hi: float, D: int) -> np.ndarray:
    """n standard-normal draws (n, D) whose squared radius has chi2_D CDF in [lo, hi).

    Radius by the inverse chi2 CDF, direction uniform on the sphere: exact, no rejection.
    """
    from scipy.stats import chi2

    r = np.sqrt(chi2.ppf(rng.uniform(lo, hi, size=n), D))
    z = rng.normal(size=(n, D))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z * r[:, None]


__all__ = ["gaussian_factors", "radius_bounds", "sample", "shell_draws"]
