"""Planted mixtures: in memory for tests, or written straight to Zarr in bounded memory.

Rows are generated in fixed blocks of ``GEN_BLOCK`` rows, block b from its own generator
seeded by (seed, b). So the data depend only on the seed and the mixture, never on the chunk
or shard layout, ``make_mixture`` returns exactly the rows ``write_synthetic_zarr`` writes,
and any number of rows can be written holding one write unit in memory.

    X, labels, params = make_mixture(10_000, 2, 3, seed=0)
    write_synthetic_zarr("big.zarr", 10**9, 16, 8, chunk_rows=65_536, shard_rows=1_048_576)
    ZarrSource("big.zarr")                      # group: arrays "X" and "labels"
    zarr.open_group("big.zarr").attrs["mixstream_synthetic"]   # the planted parameters
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from mixstream.atomic import atomic_directory
from mixstream.data.ingest import (
    RowWriter,
    auto_chunk_rows,
    check_layout,
    create_rows_array,
    local_dest,
    make_compressors,
    write_unit_rows,
)

logger = logging.getLogger(__name__)

LIKELIHOODS = ("gauss", "bernoulli", "multinomial")
#: rows per generator block (the unit of determinism)
GEN_BLOCK = 4096
#: trials per row of a multinomial mixture
N_TRIALS = 50


def _check_sizes(n_rows: int, n_features: int, n_components: int, likelihood: str) -> None:
    for name, v in (("n_rows", n_rows), ("n_features", n_features), ("n_components", n_components)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def planted_params(
    n_features: int,
    n_components: int,
    likelihood: str = "gauss",
    separation: float = 4.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The parameters of a planted mixture (numpy arrays), from ``seed`` alone.

    gauss: ``means`` (K, D) whose closest pair is ``separation`` times the largest component
    standard deviation apart, ``covariances`` (K, D, D) with eigenvalues in [0.5, 2];
    bernoulli: ``probs`` (K, D) = sigmoid(separation / 2 * z), z ~ N(0, 1);
    multinomial: ``probs`` (K, D) ~ Dirichlet(1 / separation), ``n_trials`` per row.
    All: ``weights`` (K,), half uniform, half Dirichlet(5).
    """
    _check_sizes(1, n_features, n_components, likelihood)
    if not separation > 0:
        raise ValueError(f"separation must be positive, got {separation!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]))
    K, D = n_components, n_features
    weights = 0.5 / K + 0.5 * rng.dirichlet(np.full(K, 5.0))
    weights /= weights.sum()
    params: dict[str, Any] = {
        "likelihood": likelihood,
        "n_components": K,
        "n_features": D,
        "separation": float(separation),
        "seed": int(seed),
        "weights": weights,
    }
    if likelihood == "gauss":
        covs = np.empty((K, D, D))
        max_var = 0.0
        for k in range(K):
            Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
            lam = rng.uniform(0.5, 2.0, D)
            covs[k] = (Q * lam) @ Q.T
            covs[k] = 0.5 * (covs[k] + covs[k].T)
            max_var = max(max_var, float(lam.max()))
        means = rng.standard_normal((K, D))
        if K > 1:
            d = np.sqrt(((means[:, None, :] - means[None, :, :]) ** 2).sum(-1))
            closest = d[np.triu_indices(K, 1)].min()
            means *= separation * np.sqrt(max_var) / max(closest, 1e-12)
        else:
            means *= separation
        params.update(means=means, covariances=covs)
    elif likelihood == "bernoulli":
        z = rng.standard_normal((K, D))
        params["probs"] = 1.0 / (1.0 + np.exp(-0.5 * separation * z))
    else:
        probs = rng.dirichlet(np.full(D, 1.0 / separation), size=K)
        probs = np.maximum(probs, 1e-12)
        params.update(probs=probs / probs.sum(1, keepdims=True), n_trials=N_TRIALS)
    return params


def _gen_block(params: dict[str, Any], b: int, n: int, chol: np.ndarray | None) -> tuple:
    """Rows (float64) and labels of generator block b (n rows)."""
    rng = np.random.default_rng(np.random.SeedSequence([params["seed"], 1, b]))
    K, D = params["n_components"], params["n_features"]
    z = rng.choice(K, size=n, p=params["weights"])
    X = np.empty((n, D))
    lik = params["likelihood"]
    if lik == "gauss":
        eps = rng.standard_normal((n, D))
        for k in range(K):
            idx = z == k
            X[idx] = params["means"][k] + eps[idx] @ chol[k].T
    elif lik == "bernoulli":
        u = rng.random((n, D))
        X[:] = u < params["probs"][z]
    else:
        for k in range(K):
            idx = np.flatnonzero(z == k)
            X[idx] = rng.multinomial(params["n_trials"], params["probs"][k], size=idx.size)
    return X, z.astype(np.int64)


class _RowGenerator:
    """Rows [start, stop) of the planted mixture, from whole generator blocks."""

    def __init__(self, params: dict[str, Any], n_rows: int) -> None:
        self.params = params
        self.n_rows = n_rows
        self.chol = (
            np.linalg.cholesky(params["covariances"]) if params["likelihood"] == "gauss" else None
        )
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None

    def _block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        if self._last is not None and self._last[0] == b:
            return self._last[1], self._last[2]
        # always a whole block (the tail is sliced off), so row r never depends on n_rows
        X, z = _gen_block(self.params, b, GEN_BLOCK, self.chol)
        self._last = (b, X, z)
        return X, z

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        Xs, zs = [], []
        for b in range(start // GEN_BLOCK, (stop - 1) // GEN_BLOCK + 1):
            X, z = self._block(b)
            lo = max(start - b * GEN_BLOCK, 0)
            hi = min(stop - b * GEN_BLOCK, X.shape[0])
            Xs.append(X[lo:hi])
            zs.append(z[lo:hi])
        return np.concatenate(Xs), np.concatenate(zs)


def make_mixture(
    n_rows: int,
    n_features: int,
    n_components: int,
    likelihood: str = "gauss",
    separation: float = 4.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Data from a planted mixture, in memory.

    Returns
    -------
    X : (n_rows, n_features) float64 (0/1 for bernoulli, counts for multinomial)
    labels : (n_rows,) int64, the true component of each row
    params : dict of the planted parameters (see ``planted_params``)
    """
    _check_sizes(n_rows, n_features, n_components, likelihood)
    params = planted_params(n_features, n_components, likelihood, separation, seed)
    X, z = _RowGenerator(params, n_rows).rows(0, n_rows)
    return X, z, params


def params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """Planted parameters as JSON-able values (arrays become nested lists)."""
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in params.items()}


def params_from_json(attrs: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``params_to_json``."""
    arrays = ("weights", "means", "covariances", "probs")
    return {k: np.asarray(v, dtype=np.float64) if k in arrays else v for k, v in attrs.items()}


def write_synthetic_zarr(
    path: str | os.PathLike,
    n_rows: int,
    n_features: int,
    n_components: int,
    chunk_rows: int | None = None,
    shard_rows: int | None = None,
    seed: int = 0,
    likelihood: str = "gauss",
    separation: float = 4.0,
    dtype: str = "float32",
    overwrite: bool = False,
    compressor: Any = "zstd",
) -> str:
    """Write a planted mixture to a Zarr v3 group, one whole shard at a time, atomically.

    The group holds ``"X"`` (n_rows, n_features) of ``dtype``, ``"labels"`` (n_rows,) int32
    chunked alike, and the planted parameters in the attribute ``"mixstream_synthetic"``
    (JSON; ``params_from_json`` turns them back into arrays). Memory stays bounded by one
    write unit (a shard, or about 32 MiB of whole chunks) whatever ``n_rows``.

    Returns the absolute path of the store.
    """
    import zarr

    _check_sizes(n_rows, n_features, n_components, likelihood)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if chunk_rows is None:
        chunk_rows = auto_chunk_rows(n_features, dt.itemsize)
        if shard_rows is not None:
            chunk_rows = min(chunk_rows, shard_rows)
            while shard_rows % chunk_rows:
                chunk_rows -= 1
    check_layout(chunk_rows, shard_rows)
    compressors = make_compressors(compressor)
    params = planted_params(n_features, n_components, likelihood, separation, seed)
    gen = _RowGenerator(params, n_rows)
    unit = write_unit_rows(chunk_rows, shard_rows, n_features * dt.itemsize)
    dest = local_dest(path)
    with atomic_directory(dest, overwrite) as partial:
        group = zarr.open_group(
            partial, mode="w-", attributes={"mixstream_synthetic": params_to_json(params)}
        )
        X_arr = create_rows_array(
            group, "X", n_rows, n_features, dt, chunk_rows, shard_rows, compressors
        )
        z_arr = create_rows_array(
            group, "labels", n_rows, None, np.int32, chunk_rows, shard_rows, compressors
        )
        wx, wz = RowWriter(X_arr, unit), RowWriter(z_arr, unit)
        for start in range(0, n_rows, unit):
            X, z = gen.rows(start, min(start + unit, n_rows))
            wx.append(X.astype(dt, copy=False))
            wz.append(z.astype(np.int32))
        wx.close()
        wz.close()
    logger.info(
        "wrote a planted %s mixture (%d x %d, K=%d, %s) to %s",
        likelihood,
        n_rows,
        n_features,
        n_components,
        dt,
        dest,
    )
    return dest
