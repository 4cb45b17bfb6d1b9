"""The planted data of the model selection tests: 6 well separated clusters in 8-D with
full covariances (eigenvalues from 0.1 to 3 along random directions), seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: what a selection on ``planted`` must find
PLANTED_K, PLANTED_COV = 6, "full"


def planted(n: int, d: int = 8, k: int = PLANTED_K, seed: int = 0) -> np.ndarray:
    """(n, d) rows of the planted mixture."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(k, d))
    covs = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        covs.append((q * np.exp(rng.uniform(np.log(0.1), np.log(3.0), d))) @ q.T)
    z = rng.integers(k, size=n)
    chol = np.linalg.cholesky(np.stack(covs))
    return means[z] + np.einsum("nde,ne->nd", chol[z], rng.normal(size=(n, d)))


def planted_store(path: Path, n: int, chunk_rows: int = 500) -> str:
    """A Zarr store (group with the array "X") of ``planted(n)``; its path."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.create_array("X", data=planted(n), chunks=(chunk_rows, 8))
    return str(path)
