"""Saving and loading models: exact round trips, no pickle, damaged files refused."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mixstream.io as msio
from mixstream import MixtureModel
from mixstream.io import ModelFileError

COVS = ["full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical"]


def gauss_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=5.0, size=(3, 3))
    return means[rng.integers(3, size=n)] + rng.normal(size=(n, 3))


def data_for(likelihood, seed=0):
    rng = np.random.default_rng(seed)
    if likelihood == "bernoulli":
        p = rng.uniform(0.05, 0.95, size=(3, 8))
        return (rng.uniform(size=(600, 8)) < p[rng.integers(3, size=600)]).astype(float)
    if likelihood == "multinomial":
        p = rng.dirichlet(np.ones(6), size=3)
        return np.array([rng.multinomial(30, p[k]) for k in rng.integers(3, size=600)], float)
    if likelihood == "zero_mean_gauss":
        return rng.normal(size=(600, 3)) * rng.choice([0.5, 3.0], size=(600, 1))
    return gauss_data(seed=seed)


def roundtrip(est, X, tmp_path):
    path = est.save(tmp_path / "model.msz")
    loaded = MixtureModel.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    assert loaded.get_params() == est.get_params()
    assert loaded.history_ == est.history_
    return loaded


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("algorithm", ["vb", "em"])
def test_gauss_roundtrip(cov, algorithm, tmp_path):
    X = gauss_data()
    est = MixtureModel(3, covariance_type=cov, algorithm=algorithm, random_state=0).fit(X)
    loaded = roundtrip(est, X, tmp_path)
    np.testing.assert_array_equal(loaded.covariances_, est.covariances_)


@pytest.mark.parametrize("likelihood", ["zero_mean_gauss", "bernoulli", "multinomial"])
def test_other_likelihood_roundtrip(likelihood, tmp_path):
    X = data_for(likelihood)
    est = MixtureModel(3, likelihood=likelihood, random_state=0).fit(X)
    roundtrip(est, X, tmp_path)


def _rewrite(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def test_tampered_array_shape_is_refused(tmp_path):
    est = MixtureModel(3, random_state=0).fit(gauss_data())
    path = est.save(tmp_path / "m.msz")

    def edit(members):
        name = "arrays/uids.npy"
        arr = np.load(io.BytesIO(members[name]))
        buf = io.BytesIO()
        np.save(buf, np.concatenate([arr, arr[:1]]))
        members[name] = buf.getvalue()

    _rewrite(path, edit)
    with pytest.raises(ModelFileError, match="altered or damaged"):
        MixtureModel.load(path)


def test_newer_format_and_garbage_are_refused(tmp_path):
    est = MixtureModel(3, random_state=0).fit(gauss_data())
    path = est.save(tmp_path / "m.msz")

    def bump(members):
        meta = json.loads(members["meta.json"])
        meta["format_version"] = msio.FORMAT_VERSION + 1
        members["meta.json"] = json.dumps(meta).encode()

    _rewrite(path, bump)
    with pytest.raises(ModelFileError, match="newer than this mixstream"):
        MixtureModel.load(path)
    junk = tmp_path / "junk.msz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a mixstream model file"):
        MixtureModel.load(junk)
    with pytest.raises(FileNotFoundError):
        MixtureModel.load(tmp_path / "missing.msz")


def test_object_arrays_cannot_sneak_in(tmp_path):
    """An .npy member holding pickled objects is refused, never unpickled."""
    est = MixtureModel(3, random_state=0).fit(gauss_data())
    path = est.save(tmp_path / "m.msz")

    def poison(members):
        name = next(n for n in members if n.endswith(".npy"))
        buf = io.BytesIO()
        np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        members[name] = buf.getvalue()

    _rewrite(path, poison)
    with pytest.raises(ModelFileError, match="missing or damaged"):
        MixtureModel.load(path)


def test_io_module_never_uses_pickle():
    source = Path(msio.__file__).read_text()
    assert "import pickle" not in source and "allow_pickle=True" not in source


def test_save_is_atomic(tmp_path):
    est = MixtureModel(3, random_state=0).fit(gauss_data())
    target = tmp_path / "m.msz"
    est.save(target)
    before = target.read_bytes()
    est.history_.append({"not": object()})  # cannot be stored: the save fails midway
    with pytest.raises(TypeError):
        est.save(target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.msz"]
