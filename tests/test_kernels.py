"""The fused numba softmax agrees with the numpy code it replaces, and can be switched off."""

import os
import subprocess
import sys

import numpy as np
import pytest

from mixstream import _kernels
from mixstream.backend import logsumexp_rows, softmax_rows

pytestmark = pytest.mark.skipif(not _kernels.enabled(), reason="numba is not importable here")


def numpy_softmax(log_prob):
    """The reference: the numpy path of backend.softmax_rows, written out."""
    lp = np.array(log_prob, dtype=np.float64)
    row_max = lp.max(axis=1)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    lp -= row_max[:, None]
    resp = np.exp(lp)
    total = resp.sum(axis=1)
    resp /= total[:, None]
    lp -= np.log(total)[:, None]
    return np.log(total) + row_max, lp, resp


def log_probs(n, k, order, seed=0):
    rng = np.random.default_rng(seed)
    lp = rng.normal(scale=40.0, size=(n, k)) - 1e3  # far from 0: the row max matters
    if k > 1:
        lp[::7, -1] = -np.inf  # a component removed from the local step
    lp[3] = rng.normal(scale=1e-3, size=k)  # a row where every component is nearly equal
    lp[5, 0] = 900.0  # one component dominating by far
    return np.asarray(lp, order=order)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("k", [1, 3, 32, 77])
def test_softmax_matches_numpy(order, k):
    lp = log_probs(1001, k, order)
    ref_norm, ref_log_resp, ref_resp = numpy_softmax(lp)
    log_norm, log_resp, resp = softmax_rows(lp.copy(order="A"))
    np.testing.assert_allclose(log_norm, ref_norm, rtol=1e-14)
    np.testing.assert_allclose(resp, ref_resp, rtol=1e-13, atol=1e-300)
    finite = np.isfinite(ref_log_resp)
    assert np.array_equal(finite, np.isfinite(log_resp))
    np.testing.assert_allclose(log_resp[finite], ref_log_resp[finite], rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-14)


def test_the_kernel_runs_in_place_and_keeps_the_layout():
    for order in "CF":
        lp = log_probs(64, 5, order)
        _, log_resp, resp = softmax_rows(lp)
        assert log_resp is lp  # the documented contract: the buffer is reused
        assert resp.flags.f_contiguous == (order == "F")


def test_logsumexp_rows_matches_numpy():
    lp = log_probs(500, 9, "F")
    ref_norm, ref_log_resp, _ = numpy_softmax(lp)
    log_norm, log_resp = logsumexp_rows(lp.copy(order="F"))
    np.testing.assert_allclose(log_norm, ref_norm, rtol=1e-14)
    finite = np.isfinite(ref_log_resp)
    np.testing.assert_allclose(log_resp[finite], ref_log_resp[finite], rtol=1e-13, atol=1e-12)


def test_exp_is_accurate_to_a_few_ulps_on_its_whole_range():
    x = np.concatenate([np.linspace(-708.0, 0.0, 400_001), -np.logspace(-300, 2.8, 10_000)])
    # through the kernel on two-column rows [0, x]: resp = (1, exp(x)) / (1 + exp(x)), so the
    # ratio of the two is exp(x) with the kernel's error plus two roundings
    lp = np.stack([np.zeros_like(x), x], axis=1)
    _, _, resp = softmax_rows(lp)
    out = resp[:, 1] / resp[:, 0]
    ref = np.exp(x)
    assert np.max(np.abs(out - ref) / ref) < 1e-15
    below = softmax_rows(np.array([[0.0, -709.0], [0.0, -1e300], [0.0, -np.inf]]))[2]
    assert np.array_equal(below[:, 1], np.zeros(3))  # exp under -708 is exactly zero mass


def test_non_float64_or_strided_input_takes_the_numpy_path():
    assert _kernels.softmax(np.zeros((4, 3), np.float32)) is None
    assert _kernels.softmax(np.zeros((4, 6))[:, ::2]) is None
    assert _kernels.softmax(np.zeros((0, 3))) is None


def test_fit_is_the_same_with_the_kernels_switched_off(tmp_path):
    """MIXSTREAM_NUMBA=0 gives the numpy path in a fresh process; the fits agree closely."""
    code = (
        "import sys, numpy as np\n"
        "from mixstream import MixtureModel, _kernels\n"
        "rng = np.random.default_rng(0)\n"
        "X = np.concatenate([rng.normal(m, 1.0, size=(400, 3)) for m in (-6, 0, 6)])\n"
        "m = MixtureModel(3, covariance_type='full', algorithm='vb', tol=0.0, max_laps=15,\n"
        "                 random_state=0).fit(X)\n"
        "np.save(sys.argv[1], np.concatenate([m.means_.ravel(), m.weights_, [m.lower_bound_],\n"
        "        [float(_kernels.enabled())]]))\n"
    )
    outs = {}
    for flag in ("1", "0"):
        path = tmp_path / f"out{flag}.npy"
        env = {**os.environ, "MIXSTREAM_NUMBA": flag}
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env, timeout=300)
        outs[flag] = np.load(path)
    assert outs["1"][-1] == 1.0 and outs["0"][-1] == 0.0
    np.testing.assert_allclose(outs["1"][:-1], outs["0"][:-1], rtol=1e-10)
