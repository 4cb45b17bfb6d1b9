"""Planted mixtures: deterministic, layout-independent, written to Zarr in bounded memory."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr
from conftest import ROOT

from mixstream.data.synthetic import (
    GEN_BLOCK,
    N_TRIALS,
    make_mixture,
    params_from_json,
    write_synthetic_zarr,
)
from mixstream.data.zarr_source import ZarrSource

REPO = str(ROOT)


@pytest.mark.parametrize("likelihood", ["gauss", "bernoulli", "multinomial"])
def test_make_mixture_is_deterministic_and_well_formed(likelihood):
    X, z, p = make_mixture(3000, 5, 4, likelihood=likelihood, seed=7)
    X2, z2, _ = make_mixture(3000, 5, 4, likelihood=likelihood, seed=7)
    X3, _, _ = make_mixture(3000, 5, 4, likelihood=likelihood, seed=8)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(z, z2)
    assert not np.array_equal(X, X3)
    assert X.shape == (3000, 5) and X.dtype == np.float64 and z.shape == (3000,)
    assert set(np.unique(z)) <= set(range(4)) and len(np.unique(z)) == 4
    np.testing.assert_allclose(p["weights"].sum(), 1.0)
    assert p["likelihood"] == likelihood and p["n_components"] == 4
    # the first rows of a longer draw are the shorter draw: rows depend on the seed only
    Xlong, zlong, _ = make_mixture(3000 + GEN_BLOCK, 5, 4, likelihood=likelihood, seed=7)
    np.testing.assert_array_equal(Xlong[:3000], X)
    np.testing.assert_array_equal(zlong[:3000], z)
    if likelihood == "gauss":
        assert p["means"].shape == (4, 5) and p["covariances"].shape == (4, 5, 5)
        np.testing.assert_allclose(p["covariances"], p["covariances"].transpose(0, 2, 1))
        assert np.all(np.linalg.eigvalsh(p["covariances"]) > 0.4)
    elif likelihood == "bernoulli":
        assert set(np.unique(X)) <= {0.0, 1.0} and p["probs"].shape == (4, 5)
    else:
        np.testing.assert_array_equal(X.sum(1), N_TRIALS)
        np.testing.assert_allclose(p["probs"].sum(1), 1.0)


def test_gauss_components_are_separated():
    X, z, p = make_mixture(4000, 3, 5, separation=6.0, seed=3)
    m = p["means"]
    d = np.sqrt(((m[:, None] - m[None]) ** 2).sum(-1))[np.triu_indices(5, 1)]
    max_sd = np.sqrt(max(np.linalg.eigvalsh(c).max() for c in p["covariances"]))
    assert d.min() == pytest.approx(6.0 * max_sd, rel=1e-9)
    nearest = ((X[:, None, :] - m[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == z).mean() > 0.97
    counts = np.bincount(z, minlength=5) / 4000
    np.testing.assert_allclose(counts, p["weights"], atol=0.03)


@pytest.mark.parametrize("likelihood", ["gauss", "multinomial"])
def test_zarr_matches_memory_whatever_the_layout(tmp_path, likelihood):
    n, d, k = 10_000, 3, 4
    X, z, p = make_mixture(n, d, k, likelihood=likelihood, seed=11)
    a = write_synthetic_zarr(
        tmp_path / "a.zarr",
        n,
        d,
        k,
        chunk_rows=500,
        shard_rows=1500,
        seed=11,
        likelihood=likelihood,
        dtype="float64",
    )
    b = write_synthetic_zarr(
        tmp_path / "b.zarr",
        n,
        d,
        k,
        chunk_rows=777,
        seed=11,
        likelihood=likelihood,
        dtype="float64",
    )
    ga, gb = zarr.open_group(a, mode="r"), zarr.open_group(b, mode="r")
    assert ga["X"].shards == (1500, 3) and gb["X"].shards is None
    for g in (ga, gb):
        np.testing.assert_array_equal(g["X"][:], X)
        np.testing.assert_array_equal(g["labels"][:], z)
        assert g["labels"].chunks[0] == g["X"].chunks[0]
        q = params_from_json(g.attrs["mixstream_synthetic"])
        assert q["likelihood"] == likelihood and q["seed"] == 11
        np.testing.assert_array_equal(q["weights"], p["weights"])
    src = ZarrSource(a, batch_size=3000)
    assert src.batch_rows == 3000 and src.dtype == np.float64
    assert sorted(os.listdir(tmp_path)) == ["a.zarr", "b.zarr"]  # no partial directories


def test_float32_default_and_atomic_refusal(tmp_path):
    path = write_synthetic_zarr(tmp_path / "s.zarr", 2000, 2, 3, chunk_rows=256, seed=1)
    g = zarr.open_group(path, mode="r")
    assert g["X"].dtype == np.float32 and g["labels"].dtype == np.int32
    X, _, _ = make_mixture(2000, 2, 3, seed=1)
    np.testing.assert_array_equal(g["X"][:], X.astype(np.float32))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_zarr(path, 10, 2, 3, seed=2)
    write_synthetic_zarr(path, 10, 2, 3, chunk_rows=5, seed=2, overwrite=True)
    assert zarr.open_group(path, mode="r")["X"].shape == (10, 2)
    with pytest.raises(ValueError, match="dtype"):
        write_synthetic_zarr(tmp_path / "i.zarr", 10, 2, 3, dtype="int32")
    with pytest.raises(ValueError, match="likelihood"):
        make_mixture(10, 2, 3, likelihood="poisson")
    assert sorted(os.listdir(tmp_path)) == ["s.zarr"]


_PEAK_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from mixstream.data.synthetic import write_synthetic_zarr
    n, out = int(sys.argv[1]), sys.argv[2]
    kw = dict(chunk_rows=8192, shard_rows=65536, dtype="float64")
    write_synthetic_zarr(out + "-warm", 70_000, 16, 4, **kw)  # imports, codecs, pools
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    write_synthetic_zarr(out, n, 16, 4, **kw)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
    """
)


def _peak_growth(tmp_path, n_rows):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(n_rows), str(tmp_path / f"m{n_rows}.zarr")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return int(out.stdout.split()[-1])


def test_writing_is_bounded_in_memory(tmp_path):
    small = _peak_growth(tmp_path, 100_000)
    big = _peak_growth(tmp_path, 2_000_000)  # 256 MB of float64: 20x the rows
    assert big - small < 64 * 2**20, (small, big)
    assert big < 2_000_000 * 16 * 8 / 3, (small, big)
    X = zarr.open_group(str(tmp_path / "m2000000.zarr"), mode="r")["X"]
    assert X.shape == (2_000_000, 16) and X.shards == (65536, 16)
