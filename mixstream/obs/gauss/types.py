"""Covariance type names -> strategies, and scikit-learn's array shapes per type."""

from __future__ import annotations

from mixstream.obs.gauss.full import FullCovariance
from mixstream.obs.gauss.gamma import DiagCovariance, SphericalCovariance
from mixstream.obs.gauss.structure import CovarianceStructure
from mixstream.vocabulary import COVARIANCE_ALIASES, COVARIANCE_TYPES

ALIASES = COVARIANCE_ALIASES

_STRATEGIES: dict[str, CovarianceStructure] = {
    s.name: s
    for tied in (False, True)
    for s in (FullCovariance(tied), DiagCovariance(tied), SphericalCovariance(tied))
}


def canonical_covariance_type(covariance_type: str) -> str:
    """The type's own name ("tied" -> "tied_full"); ValueError for an unknown one."""
    ctype = ALIASES.get(covariance_type, covariance_type)
    if ctype not in COVARIANCE_TYPES:
        valid = ", ".join(repr(c) for c in (*COVARIANCE_TYPES, *ALIASES))
        raise ValueError(f"covariance_type must be one of {valid}; got {covariance_type!r}")
    return ctype


def covariance_strategy(covariance_type: str) -> CovarianceStructure:
    """The strategy of a covariance type (aliases accepted); ValueError for an unknown one."""
    return _STRATEGIES[canonical_covariance_type(covariance_type)]


def covariance_shape(covariance_type: str, K: int, D: int) -> tuple[int, ...]:
    """scikit-learn's shape of ``covariances_`` / ``precisions_`` for a covariance type.

    full (K, D, D), diag (K, D), spherical (K,), tied_full (D, D), tied_diag (D,),
    tied_spherical () (a scalar).
    """
    return _STRATEGIES[covariance_type].user_shape(K, D)
