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


@pytest.mark.parametrize("order", ["C", "F"])
def test_softmax_entropy_matches_the_numpy_entropy(order):
    """The entropy summed in the kernel's last pass equals -sum_n r log r (0 log 0 = 0)."""
    from mixstream.backend import softmax_entropy_rows

    lp = log_probs(3001, 6, order)  # with a component at -inf on every 7th row
    log_norm, _, resp, H = softmax_entropy_rows(lp.copy(order="A"))
    ref_norm, ref_log_resp, ref_resp = numpy_softmax(lp)
    np.testing.assert_allclose(log_norm, ref_norm, rtol=1e-14)
    ref_H = -np.sum(ref_resp * np.where(ref_resp > 0, ref_log_resp, 0.0), axis=0)
    assert H.shape == (6,) and np.all(np.isfinite(H))
    np.testing.assert_allclose(H, ref_H, rtol=1e-12)
    np.testing.assert_allclose(resp, ref_resp, rtol=1e-13, atol=1e-300)
    # no fused kernel for this input: the caller gets None and computes it itself
    assert softmax_entropy_rows(np.zeros((4, 6))[:, ::2])[3] is None


@pytest.mark.parametrize("structure", ["diag", "spherical", "full"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_center_features_match_numpy(structure, dtype):
    rng = np.random.default_rng(2)
    X = (rng.normal(size=(1000, 7)) * 3 + 100).astype(dtype)  # far from 0: the shift matters
    shift = X.mean(axis=0, dtype=np.float64) + 0.25
    y = X.T.astype(np.float64) - shift[:, None]
    width = {"diag": 1 + 14, "spherical": 1 + 8, "full": 1 + 7}[structure]
    F = np.full((width, X.shape[0]), np.nan)
    assert _kernels.center_features(X, shift, F, structure)
    np.testing.assert_array_equal(F[0], 1.0)
    np.testing.assert_array_equal(F[1:8], y)  # X - shift is exact in float64 from either
    if structure == "diag":
        np.testing.assert_array_equal(F[8:], y * y)
    elif structure == "spherical":
        np.testing.assert_allclose(F[8], (y * y).sum(axis=0), rtol=1e-15)
    # what the kernel does not take: strided or integer data, or nothing to do
    assert not _kernels.center_features(X[:, ::2], shift[::2], F[:, :1000], structure)
    assert not _kernels.center_features(X.astype(np.int64), shift, F, structure)
    assert not _kernels.center_features(X[:0], shift, F[:, :0], structure)


def test_gauss_statistics_are_the_same_through_the_kernels_and_numpy(monkeypatch):
    """The Gaussian local step and statistics with the kernels and with numpy's path agree;
    N, taken from the constant feature's row of the statistics GEMM, equals resp summed."""
    from mixstream.alloc.finite import FiniteAlloc
    from mixstream.model import Model
    from mixstream.obs.gauss import GaussObs

    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(m, 1.0, size=(3000, 5)) for m in (-4, 0, 4)])
    for cov in ("full", "diag", "spherical", "tied_diag"):
        model = Model(FiniteAlloc(), GaussObs(cov))
        model.obs.set_prior_from_data(X)
        model.uids = model.new_uids(3)
        model.global_step(model.summarize(X, {"resp": np.eye(3)[np.arange(X.shape[0]) % 3]}))
        fused = model.local_summarize(X.astype(np.float32))
        monkeypatch.setattr(_kernels, "_kernels", False)  # what MIXSTREAM_NUMBA=0 gives
        plain = model.local_summarize(X.astype(np.float32))
        monkeypatch.undo()
        for name in plain.fields:
            np.testing.assert_allclose(fused[name], plain[name], rtol=1e-11, err_msg=name)
        LP = model.local_step(X)
        np.testing.assert_allclose(model.summarize(X, LP).N, LP["resp"].sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("order", ["C", "F"])
def test_float32_softmax_is_the_float64_one_of_the_widened_input(order):
    """float32 log-probs normalised in float64 arithmetic: the same log_norm and resp (rounded
    to float32) as the float64 kernel on the widened array, N the resp's float64 column sums."""
    rng = np.random.default_rng(5)
    lp32 = np.asarray((rng.normal(size=(3000, 7)) * 30 - 100).astype(np.float32), order=order)
    lp32[:, 3] = -np.inf  # a component left out of the step: zero resp, no entropy
    wide = np.asfortranarray(lp32.astype(np.float64))
    log_norm, log_resp, resp, H = _kernels.softmax(wide, want_entropy=True)
    out = _kernels.softmax_float32(lp32)
    assert out is not None and out[1] is lp32 and out[2].dtype == np.float32
    assert out[2].flags[f"{order}_CONTIGUOUS"]
    np.testing.assert_array_equal(out[0], log_norm)
    np.testing.assert_array_equal(out[2], resp.astype(np.float32))
    np.testing.assert_array_equal(out[1], log_resp.astype(np.float32))
    np.testing.assert_allclose(out[3], H, rtol=1e-13)
    np.testing.assert_allclose(out[4], resp.sum(axis=0), rtol=1e-13)
    assert out[4][3] == 0.0 and out[3][3] == 0.0
    # not applicable: float64, strided, empty
    assert _kernels.softmax_float32(wide) is None
    assert _kernels.softmax_float32(lp32[:, ::2]) is None
    assert _kernels.softmax_float32(np.zeros((0, 3), np.float32, order="F")) is None


def test_float32_local_summarize_equals_the_widened_path(monkeypatch):
    """A float32 model's local_summarize through the float32 softmax (float32 resp, N from
    the kernel) gives the statistics of the path that widens the log-probs to float64 (both
    with the fused local step off: tests/unit/test_fused_summary.py covers that one)."""
    from mixstream.alloc.finite import FiniteAlloc
    from mixstream.model import Model
    from mixstream.obs.gauss import GaussObs

    monkeypatch.setattr(GaussObs, "fused_summary", lambda self, X, bias: None)

    rng = np.random.default_rng(6)
    X = np.concatenate([rng.normal(m, 1.0, size=(3000, 4)) for m in (-3, 0, 3)])
    X32 = X.astype(np.float32)
    for cov in ("full", "diag", "tied_full"):
        model = Model(FiniteAlloc(), GaussObs(cov, compute_dtype="float32"))
        model.obs.set_prior_from_data(X)
        model.uids = model.new_uids(3)
        model.global_step(model.summarize(X, {"resp": np.eye(3)[np.arange(X.shape[0]) % 3]}))
        LP = model._local_step(X32[:500], False, model.alloc.log_weights(), True, True)
        assert LP["resp"].dtype == np.float32 and LP["N"].dtype == np.float64
        narrow = model.local_summarize(X32)
        with monkeypatch.context() as patch:
            patch.setattr(_kernels, "softmax_float32", lambda lp: None)
            wide = model.local_summarize(X32)
        assert narrow.N.sum() == pytest.approx(X.shape[0], rel=1e-13)
        for name in wide.fields:
            np.testing.assert_allclose(narrow[name], wide[name], rtol=1e-12, err_msg=name)
        assert narrow.scalars["log_norm"] == pytest.approx(wide.scalars["log_norm"], rel=1e-14)
        # merge entropies need float64 resp: that call takes the widened path
        pairs = [(int(model.uids[0]), int(model.uids[1]))]
        merged = model.local_summarize(X32, merge_pairs=pairs)
        np.testing.assert_allclose(merged.N, wide.N, rtol=1e-12)


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
