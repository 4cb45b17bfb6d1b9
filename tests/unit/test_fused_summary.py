"""The fused Gaussian local step + summary (obs/gauss/fused.py) gives the statistics of the
local step and summary run one after the other, and steps aside where it does not apply."""

import numpy as np
import pytest

from mixstream import _kernels
from mixstream.alloc.finite import FiniteAlloc
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs
from mixstream.obs.gauss import fused as fused_module
from mixstream.parallel import set_num_threads

pytestmark = pytest.mark.skipif(not _kernels.enabled(), reason="numba is not importable here")

COVARIANCE_TYPES = ("full", "tied_full", "diag", "tied_diag", "spherical", "tied_spherical")


def data(n=9001, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(4, d))
    return centers[rng.integers(0, 4, size=n)] + rng.normal(size=(n, d))


def fitted(X, cov, inference="em", dtype="float64", k=4):
    model = Model(
        FiniteAlloc(inference=inference),
        GaussObs(cov, inference=inference, compute_dtype=dtype),
    )
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(k)
    labels = np.arange(X.shape[0]) % k  # overlapping components: every resp is fractional
    model.global_step(model.summarize(X, {"resp": np.eye(k)[labels]}))
    return model


def two_verbs(model, X, **kw):
    """local_summarize with the fused path switched off (the local step, then the summary)."""
    model.obs.fused_summary = lambda X, bias: None
    try:
        return model.local_summarize(X, **kw)
    finally:
        del model.obs.fused_summary


def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("inference", ["em", "vb"])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_float64_fused_summary_equals_the_two_verbs(cov, inference):
    """The same GEMMs in float64, the softmax in another loop order: equal to rounding (1e-12
    relative; a few hundred float64 additions per sum). Tied full has no fused path."""
    X = data()
    model = fitted(X, cov, inference)
    applies = model.obs.fused_summary(X, model.alloc.log_weights()) is not None
    assert applies == (cov != "tied_full")
    fused, plain = model.local_summarize(X), two_verbs(model, X)
    assert sorted(fused.fields) == sorted(plain.fields)
    for name in plain.fields:
        assert relative_error(fused[name], plain[name]) < 1e-12, name
    assert fused.scalars["log_norm"] == pytest.approx(plain.scalars["log_norm"], rel=1e-12)
    assert fused.N.sum() == pytest.approx(X.shape[0], rel=1e-13)
    assert model.elbo(fused) == pytest.approx(model.elbo(plain), rel=1e-12)


@pytest.mark.parametrize("cov", ["full", "diag", "spherical"])
def test_float32_fused_summary_equals_the_two_verbs_to_float32_rounding(cov):
    """float32 features and GEMMs: the log-probs are the same float32 products, so N, Hresp
    and log_norm (float64 sums of the float64 softmax) agree to 1e-7 relative; x and xx are
    float32 GEMM sums, over ~100-row blocks here against 16,384-row blocks in the two-verb
    path, so they agree to float32 rounding of such sums (1e-5 relative bounds sqrt(16384) *
    6e-8 with room)."""
    X = data()
    model = fitted(X, cov, dtype="float32")
    X32 = X.astype(np.float32)
    fused, plain = model.local_summarize(X32), two_verbs(model, X32)
    for name in ("N", "Hresp"):
        assert relative_error(fused[name], plain[name]) < 1e-7, name
    for name in ("x", "xx"):
        assert relative_error(fused[name], plain[name]) < 1e-5, name
    assert fused.scalars["log_norm"] == pytest.approx(plain.scalars["log_norm"], rel=1e-7)
    # and against the float64 model: the float32 tolerance of the dtype tests
    exact = fitted(X, cov).local_summarize(X)
    for name in exact.fields:
        assert relative_error(fused[name], exact[name]) < 1e-5, name


def test_the_sums_do_not_depend_on_the_number_of_threads(monkeypatch):
    """Units of fixed size, added left to right: 1 and 2 threads give the same bits; a batch
    shorter than one block and a tail shorter than a block are summed too."""
    monkeypatch.setattr(fused_module, "UNIT_ROWS", 1000)  # several units and a short tail
    X = data(n=5037)
    model = fitted(X, "full")
    out = {}
    try:
        for threads in (1, 2):
            set_num_threads(threads)
            out[threads] = model.local_summarize(X)
    finally:
        set_num_threads(None)
    for name in out[1].fields:
        np.testing.assert_array_equal(out[1][name], out[2][name], err_msg=name)
    few = model.local_summarize(X[:7])
    plain = two_verbs(model, X[:7])
    for name in plain.fields:
        assert relative_error(few[name], plain[name]) < 1e-12, name


def test_where_the_fused_path_steps_aside():
    """A component with weight 0 (log -inf), NaN rows to marginalise, a batch that is not
    C-contiguous and integer data take the two verbs; row weights, merge pairs and hard
    assignments never reach the fused path."""
    X = data(n=3000)
    model = fitted(X, "full")
    calls = []
    real = model.obs.fused_summary
    model.obs.fused_summary = lambda X, bias: calls.append(1) or real(X, bias)
    w = np.ones(X.shape[0])
    model.local_summarize(X, sample_weight=w)
    model.local_summarize(X, hard=True)
    model.local_summarize(X, merge_pairs=[(int(model.uids[0]), int(model.uids[1]))])
    assert calls == []
    del model.obs.fused_summary

    bias = model.alloc.log_weights().copy()
    bias[1] = -np.inf
    assert model.obs.fused_summary(X, bias) is None
    assert model.obs.fused_summary(np.asfortranarray(X), np.zeros_like(bias)) is None
    assert model.obs.fused_summary(X.astype(np.int64), np.zeros_like(bias)) is None

    holes = fitted(X, "diag")
    holes.obs.missing = "marginalize"
    Xn = X.copy()
    Xn[5, 2] = np.nan
    assert holes.obs.fused_summary(Xn, holes.alloc.log_weights()) is None
    assert holes.obs.fused_summary(X, holes.alloc.log_weights()) is not None
    assert np.isfinite(holes.local_summarize(Xn).N).all()


def test_the_float32_batch_is_read_as_it_is():
    """The fused path reads a float32 batch in place: numpy allocates nothing near the batch's
    size while it runs (a float64 copy would be twice the batch; the kernel's own block
    buffers are a few hundred KB)."""
    import tracemalloc

    X32 = data(n=200_000).astype(np.float32)  # 4 MB
    model = fitted(X32[:5000].astype(np.float64), "full", dtype="float32")
    model.local_summarize(X32[:5000])  # compiled and warm
    tracemalloc.start()
    try:
        fused = model.local_summarize(X32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fused.N.sum() == pytest.approx(X32.shape[0], rel=1e-12)
    assert peak < X32.nbytes / 4, peak
