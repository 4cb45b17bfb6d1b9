"""HMoG: model-file value checks, n_init, memoized EM, and the two layouts of the layer's
statistics."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream.io import ModelFileError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

P, D = 8, 2


def _data(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(P, D))
    z = rng.integers(3, size=n)
    Y = 4.0 * rng.normal(size=(3, D))[z] + 0.5 * rng.normal(size=(n, D))
    return Y @ W.T + 0.5 * rng.normal(size=(n, P))


def _fit(**kw) -> MixtureModel:
    base = dict(likelihood="hmog", latent_dim=D, covariance_type="diag", random_state=0)
    return MixtureModel(kw.pop("K", 3), **{**base, **kw}).fit(_data())


def _negate(path, member: str) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    key = f"arrays/{member}.npy"
    arr = np.load(io.BytesIO(members[key]))
    buf = io.BytesIO()
    np.save(buf, -arr)
    members[key] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


@pytest.mark.parametrize(
    ("algorithm", "member"),
    [("em", "obs/psi"), ("em", "obs/latent/cov"), ("vb", "obs/latent/kappa")],
)
def test_invalid_hmog_values_are_refused_naming_the_array(tmp_path, algorithm, member):
    path = _fit(algorithm=algorithm, max_laps=5).save(tmp_path / "m.msz")
    _negate(path, member)
    with pytest.raises(ModelFileError, match=f"'{member}'"):
        MixtureModel.load(path)


def test_n_init_keeps_the_best_start():
    one = _fit(K=5, algorithm="em", allocation="finite", n_init=1, max_laps=30, random_state=3)
    three = _fit(K=5, algorithm="em", allocation="finite", n_init=3, max_laps=30, random_state=3)
    assert three.lower_bound_ >= one.lower_bound_ - 1e-12


def test_memoized_em_with_merges_does_not_whiten_and_is_monotone():
    m = _fit(
        K=6, algorithm="em", map_prior=True, moves=("merge", "delete"), batch_size=150,
        max_laps=8, tol=0.0,
    )  # fmt: skip
    assert not m.model_.obs.whiten and not m.model_.obs.split_rows
    lb = np.array(m.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-9 * np.abs(lb[1:]))
    assert m.n_components_ < 6  # merges / deletes removed the surplus


@pytest.mark.parametrize("ctype", ["spherical", "diag", "full"])
def test_row_split_and_mass_split_statistics_have_the_same_totals(ctype):
    m = _fit(covariance_type=ctype, algorithm="em", allocation="finite", max_laps=3)
    X = _data(200, 1)
    model = m.model_
    w = np.random.default_rng(0).uniform(0.5, 2.0, 200)
    model.obs.split_rows = True
    rows = model.local_summarize(X, sample_weight=w)
    model.obs.split_rows = False
    mass = model.local_summarize(X, sample_weight=w)
    for name in ("sx", "sxy", "sxx"):
        np.testing.assert_allclose(rows[name].sum(0), mass[name].sum(0), rtol=1e-10, atol=1e-8)
        # per component: the row split attributes by responsibility, the mass split by N_k
        assert np.abs(rows[name] - mass[name]).max() > 1e-6
    for name in ("N", "y", "yy", "Hy"):
        np.testing.assert_allclose(rows[name], mass[name], rtol=1e-12)
    # the ELBO reads only the totals
    assert np.isclose(model.elbo(rows), model.elbo(mass), rtol=1e-12)
