"""float32 local step (``compute_dtype`` / the estimator's ``dtype``): float32 features and
GEMMs, statistics accumulated in float64, fits within float32 rounding of the float64 fit.

These run the float32 path on the host (cupy absent); tests/system/test_gpu.py runs it on a GPU."""

import numpy as np
import pytest
from conftest import planted_blobs

from mixstream import MixtureModel
from mixstream.alloc import DPAlloc
from mixstream.model import Model
from mixstream.obs.gauss import COVARIANCE_TYPES, GaussObs

# float32 rounds to 6e-8 relative; a sum of W products of centred features and the expanded
# quadratic form lose about two more digits: 1e-5 relative leaves a margin of 10x over the
# ~1e-6 measured, and is 100x below any change a fit's decisions depend on
STATS_RTOL = 1e-5


def blobs(n=6000, d=6, k=4, seed=0, offset=30.0):
    """Clusters far from the origin (the shift must keep the float32 features accurate)."""
    return planted_blobs(n, d, k, seed, scale=4.0, offset=offset)[0]


def fitted(ctype, dtype, X, K=4):
    model = Model(DPAlloc(1.0), GaussObs(ctype, compute_dtype=dtype))
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(K)
    resp = np.random.default_rng(1).dirichlet(np.ones(K), size=len(X))
    model.global_step(model.summarize(X, {"resp": resp, "log_norm": np.zeros(len(X))}))
    return model


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_float32_features_and_float64_statistics(ctype):
    X = blobs()
    X32 = X.astype(np.float32)
    m64, m32 = fitted(ctype, "float64", X), fitted(ctype, "float32", X)
    assert m32.obs._features(X32[:10], np).dtype == np.float32
    lp32, lp64 = m32.obs.log_prob(X32), m64.obs.log_prob(X32)
    assert lp32.dtype == np.float64 and lp32.flags.f_contiguous == lp64.flags.f_contiguous
    np.testing.assert_allclose(lp32, lp64, rtol=STATS_RTOL, atol=STATS_RTOL * np.abs(lp64).max())
    s32, s64 = m32.local_summarize(X32), m64.local_summarize(X32)
    for name in s64.fields:
        assert s32[name].dtype == np.float64, name
        scale = np.abs(s64[name]).max()
        np.testing.assert_allclose(s32[name], s64[name], rtol=0, atol=STATS_RTOL * scale)
    # float64 statistics are not float32 ones widened: their sum over many rows keeps digits a
    # float32 running sum would lose (N summed over 6000 rows is exact to 1e-12 here)
    np.testing.assert_allclose(s32.N.sum(), len(X), rtol=1e-9)


def test_blocks_are_summed_in_float64(monkeypatch):
    """With blocks of 500 rows, the per-block float32 GEMMs are added as float64."""
    from mixstream.obs import gauss

    X = blobs(n=20000)
    monkeypatch.setattr(gauss, "_FEATURE_BUDGET", 500 * (1 + 6 + 21))
    m32, m64 = fitted("full", "float32", X), fitted("full", "float64", X)
    resp = np.random.default_rng(2).dirichlet(np.ones(4), size=len(X))
    a, b = m32.obs.calc_stats(X, resp), m64.obs.calc_stats(X, resp)
    assert "N" not in a  # from float32 resp it would lose digits; the Model sums it in float64
    for name in ("x", "xx"):
        assert a[name].dtype == np.float64
        np.testing.assert_allclose(a[name], b[name], atol=STATS_RTOL * np.abs(b[name]).max())


@pytest.mark.parametrize("ctype", COVARIANCE_TYPES)
def test_float32_fit_is_the_float64_fit(ctype):
    X = blobs(seed=3).astype(np.float32)
    kw = dict(n_components=4, covariance_type=ctype, random_state=0, max_laps=40, tol=0)
    with pytest.warns(Warning):  # tol=0: no convergence, the same 40 laps for both
        a = MixtureModel(**kw, dtype="float64").fit(X)
    with pytest.warns(Warning):
        b = MixtureModel(**kw).fit(X)  # the default: the data's own dtype
    assert a.model_.obs.compute_dtype == "float64" and b.model_.obs.compute_dtype == "float32"
    assert abs(b.lower_bound_ - a.lower_bound_) <= STATS_RTOL * abs(a.lower_bound_)
    np.testing.assert_allclose(b.weights_, a.weights_, atol=1e-5)
    np.testing.assert_allclose(b.means_, a.means_, atol=1e-4)  # means ~ 30: 3e-6 relative
    assert np.array_equal(b.predict(X), a.predict(X))


def test_float32_movb_with_moves_finds_the_clusters():
    X = blobs(n=8000, k=5, seed=4).astype(np.float32)
    kw = dict(
        n_components=1,
        algorithm="movb",
        moves=("birth", "merge", "delete"),
        batch_size=2000,
        random_state=0,
        max_laps=30,
    )
    a = MixtureModel(**kw, dtype="float64").fit(X)
    b = MixtureModel(**kw).fit(X)
    assert b.model_.obs.compute_dtype == "float32"
    assert a.n_components_ == b.n_components_ == 5
    assert abs(b.lower_bound_ - a.lower_bound_) <= STATS_RTOL * abs(a.lower_bound_)
    elbos = np.array(b.lower_bounds_)
    # moVB stays monotone in float32: every decision compares float64 ELBOs of float64 sums
    assert np.all(np.diff(elbos) >= -STATS_RTOL * np.abs(elbos[1:]))


def test_the_default_dtype_is_the_datas_own():
    """None follows the data, as scikit-learn's GaussianMixture does: float32 data get the
    float32 step, float64 and integer data the float64 one; an explicit dtype wins."""
    X = blobs(n=2000)
    for data, expected in ((X.astype(np.float32), "float32"), (X, "float64")):
        est = MixtureModel(3, random_state=0, max_laps=3, tol=0)
        with pytest.warns(Warning):
            est.fit(data)
        assert est.model_.obs.compute_dtype == expected
        assert est.get_params()["dtype"] is None
    est = MixtureModel(3, random_state=0, max_laps=3, tol=0, dtype="float64")
    with pytest.warns(Warning):
        est.fit(X.astype(np.float32))
    assert est.model_.obs.compute_dtype == "float64"
    est = MixtureModel(3, random_state=0, max_laps=3, tol=0)
    with pytest.warns(Warning):
        est.fit(np.rint(X).astype(np.int64))
    assert est.model_.obs.compute_dtype == "float64"


def test_bad_dtype_is_refused_clearly():
    with pytest.raises(ValueError, match="dtype must be one of"):
        MixtureModel(2, dtype="float16").fit(blobs(n=100))
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        GaussObs("full", compute_dtype="half")


def test_float32_model_saves_and_loads(tmp_path):
    X = blobs(n=2000).astype(np.float32)
    est = MixtureModel(3, random_state=0, dtype="float32").fit(X)
    path = est.save(tmp_path / "m.msz")
    back = MixtureModel.load(path)
    assert back.dtype == "float32" and back.model_.obs.compute_dtype == "float32"
    np.testing.assert_allclose(back.score_samples(X), est.score_samples(X), rtol=1e-12)
