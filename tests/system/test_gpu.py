"""CuPy backend: the same fits on the GPU as on the CPU. Skipped where no GPU is present."""

import numpy as np
import pytest
from conftest import COVS

from mixstream import MixtureModel
from mixstream.backend import gpu_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA GPU (none visible)"),
]


def gauss(n=4000, d=5, k=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=5.0, size=(k, d))
    return (means[rng.integers(k, size=n)] + rng.normal(size=(n, d))).astype(dtype)


def other(likelihood, seed=0):
    rng = np.random.default_rng(seed)
    if likelihood == "bernoulli":
        p = rng.uniform(0.05, 0.95, size=(3, 10))
        return (rng.uniform(size=(3000, 10)) < p[rng.integers(3, size=3000)]).astype(float)
    if likelihood == "multinomial":
        p = rng.dirichlet(np.ones(8), size=3)
        return np.array([rng.multinomial(40, p[k]) for k in rng.integers(3, size=3000)], float)
    return rng.normal(size=(3000, 4)) * rng.choice([0.5, 3.0], size=(3000, 1))


def both(X, rtol, **kw):
    cpu = MixtureModel(**kw, backend="numpy", random_state=0, max_laps=15, tol=0).fit(X)
    gpu = MixtureModel(**kw, backend="cupy", random_state=0, max_laps=15, tol=0).fit(X)
    np.testing.assert_allclose(gpu.weights_, cpu.weights_, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gpu.means_, cpu.means_, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(gpu.lower_bound_, cpu.lower_bound_, rtol=rtol)


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_gauss_same_fit_on_gpu(cov, dtype, rtol):
    both(gauss(dtype=dtype), rtol, n_components=4, covariance_type=cov, algorithm="vb")


@pytest.mark.parametrize("likelihood", ["zero_mean_gauss", "bernoulli", "multinomial"])
def test_other_likelihoods_same_fit_on_gpu(likelihood):
    both(other(likelihood), 1e-6, n_components=3, likelihood=likelihood, algorithm="vb")


def test_movb_with_moves_on_cuda_cluster_equals_cpu():
    pytest.importorskip("dask_cuda", reason="dask-cuda is not installed")
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    X = gauss(n=20000, k=6)
    opts = dict(
        n_components=1,
        algorithm="movb",
        moves=("birth", "merge", "delete"),
        batch_size=2000,
        max_laps=12,
        random_state=0,
    )
    cpu = MixtureModel(**opts).fit(X)
    with LocalCUDACluster() as cluster, Client(cluster) as client:
        gpu = MixtureModel(**opts, backend="cupy", client=client).fit(X)
    assert gpu.n_components_ == cpu.n_components_
    np.testing.assert_allclose(gpu.means_, cpu.means_, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_float32_data_runs_a_float32_step_on_the_gpu(cov):
    """dtype=None with float32 data on the GPU: float32 features and GEMMs, float64 statistics,
    within float32 rounding of the host's float64 fit (the cupy engine refuses host rows)."""
    X = gauss(dtype=np.float32)
    kw = dict(n_components=4, covariance_type=cov, random_state=0, max_laps=15, tol=0)
    cpu = MixtureModel(**kw).fit(X)
    gpu = MixtureModel(**kw, backend="cupy").fit(X)
    assert gpu.model_.obs.compute_dtype == "float32"
    np.testing.assert_allclose(gpu.lower_bound_, cpu.lower_bound_, rtol=1e-5)
    np.testing.assert_allclose(gpu.means_, cpu.means_, rtol=1e-4, atol=1e-4)
