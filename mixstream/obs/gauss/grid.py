"""reg_covar="auto": the rounding variance of data whose values lie on a grid.

Pixel intensities, counts and ratings are recorded on a grid of step Delta: a value x stands
for any point of [x - Delta/2, x + Delta/2), whose spread, Delta^2 / 12, the recorded value no
longer shows. A Gaussian fitted to such values can put a cluster on rows that share one
value of a feature (digits' border pixels are 0 in most rows) and take an unbounded density
from it; with full covariances in 64-D that win decided the clustering of digits (a DP fit
from K=1 kept 5 clusters, ARI 0.01 against the digit labels). Adding the rounding variance to
each component's covariance gives every cluster at least the spread the data really has.
"""

from __future__ import annotations

import numpy as np

#: the floor of reg_covar="auto" on data off a grid (scikit-learn's default reg_covar)
REG_COVAR_FLOOR = 1e-6
#: a feature counts as recorded on a grid when it has at most this share of distinct values
_GRID_SHARE = 0.25
#: ... or at most this many (small samples)
_GRID_VALUES = 16


def grid_step(column: np.ndarray) -> float | None:
    """The step of the grid ``column``'s values lie on; None for a constant column or one off
    a grid (too many distinct values, or values not whole multiples of the smallest gap)."""
    u = np.unique(column)
    if u.size < 2 or u.size > max(_GRID_VALUES, _GRID_SHARE * column.size):
        return None
    step = float(np.diff(u).min())
    k = (u - u[0]) / step
    return step if np.allclose(k, np.round(k), rtol=0.0, atol=1e-6) else None


def auto_reg_covar(X: np.ndarray) -> float:
    """reg_covar="auto" for the rows ``X`` (n, D): the rounding variance step^2 / 12 of the
    finest grid when every non-constant feature lies on a grid, else ``REG_COVAR_FLOOR``.

    Mixed data (some features continuous) keeps the floor: one number is added to every
    feature's variance, and a grid's step says nothing of a continuous feature's scale.
    """
    X = np.asarray(X, np.float64)
    steps = []
    for j in range(X.shape[1]):
        column = X[:, j]
        if np.ptp(column) == 0:
            continue  # a constant feature: the prior's floor keeps its variance positive
        step = grid_step(column)
        if step is None:
            return REG_COVAR_FLOOR
        steps.append(step)
    if not steps:
        return REG_COVAR_FLOOR
    return max(REG_COVAR_FLOOR, min(steps) ** 2 / 12.0)
