"""Saving and loading models: exact round trips, no pickle, damaged files refused."""

import ast
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import COVS, planted_blobs

import mixstream.io as msio
from mixstream import MixtureModel
from mixstream.io import ModelFileError


def gauss_data(n=600, seed=0):
    return planted_blobs(n, 3, 3, seed, 5.0)[0]


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


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    est = MixtureModel(3, random_state=0).fit(gauss_data())
    return est.save(tmp_path_factory.mktemp("saved") / "m.msz")


def _edited_copy(src: Path, dst: Path, edit_header) -> Path:
    """A copy of the model file at ``src`` with its meta.json edited by ``edit_header``."""
    dst.write_bytes(src.read_bytes())

    def edit(members):
        header = json.loads(members["meta.json"])
        edit_header(header)
        members["meta.json"] = json.dumps(header).encode()

    _rewrite(dst, edit)
    return dst


def test_newer_format_and_garbage_are_refused(saved_model, tmp_path):
    def bump(header):
        header["format_version"] = msio.FORMAT_VERSION + 1

    path = _edited_copy(saved_model, tmp_path / "newer.msz", bump)
    with pytest.raises(ModelFileError, match=r"newer than this mixstream.*upgrade"):
        MixtureModel.load(path)
    junk = tmp_path / "junk.msz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a mixstream model file"):
        MixtureModel.load(junk)
    with pytest.raises(FileNotFoundError):
        MixtureModel.load(tmp_path / "missing.msz")


@pytest.mark.parametrize("version", [0, -1, 1.0, "1", True, None, [1], {"v": 1}])
def test_invalid_format_versions_are_refused(saved_model, tmp_path, version):
    """Only the integers 1 .. FORMAT_VERSION are versions (1.0, "1" and True are not)."""

    def set_version(header):
        header["format_version"] = version

    path = _edited_copy(saved_model, tmp_path / "bad.msz", set_version)
    with pytest.raises(ModelFileError, match=r"invalid model format version.*integers from 1"):
        MixtureModel.load(path)


def test_missing_format_version_is_refused(saved_model, tmp_path):
    path = _edited_copy(saved_model, tmp_path / "bad.msz", lambda h: h.pop("format_version"))
    with pytest.raises(ModelFileError, match="no model format version"):
        MixtureModel.load(path)


def test_current_format_version_loads(saved_model, tmp_path):
    """The edit itself is harmless: rewriting the same version loads and predicts the same."""

    def same(header):
        assert header["format_version"] == msio.FORMAT_VERSION
        header["format_version"] = msio.FORMAT_VERSION

    path = _edited_copy(saved_model, tmp_path / "same.msz", same)
    X = gauss_data()
    np.testing.assert_array_equal(
        MixtureModel.load(path).predict_proba(X), MixtureModel.load(saved_model).predict_proba(X)
    )


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h.pop("arrays"), "lacks its 'meta' or 'arrays'"),
        (lambda h: h.pop("meta"), "lacks its 'meta' or 'arrays'"),
        (lambda h: h.update(arrays=[1, 2]), "lacks its 'meta' or 'arrays'"),
        (lambda h: h["arrays"]["obs/m"].pop("shape"), "metadata of array 'obs/m' is malformed"),
        (lambda h: h["arrays"]["obs/m"].update(shape=[-1, 2]), "malformed"),
        (lambda h: h["arrays"]["obs/m"].update(dtype=7), "malformed"),
        (lambda h: h["meta"].update({"class": "Pipeline"}), "holds a 'Pipeline'"),
        (lambda h: h["meta"].pop("params"), "inconsistent"),
        (lambda h: h["meta"]["params"].update(n_componentz=3), "inconsistent"),
        (lambda h: h["meta"].pop("fitted"), "inconsistent"),
    ],
)
def test_damaged_metadata_is_refused(saved_model, tmp_path, edit, match):
    path = _edited_copy(saved_model, tmp_path / "bad.msz", edit)
    with pytest.raises(ModelFileError, match=match):
        MixtureModel.load(path)


def test_meta_json_that_is_not_an_object_is_refused(saved_model, tmp_path):
    path = tmp_path / "bad.msz"
    path.write_bytes(saved_model.read_bytes())

    def edit(members):
        members["meta.json"] = b"[1, 2, 3]"

    _rewrite(path, edit)
    with pytest.raises(ModelFileError, match="not a mixstream model file"):
        MixtureModel.load(path)

    def edit_bytes(members):
        members["meta.json"] = b"\xff\xfe{"

    _rewrite(path, edit_bytes)
    with pytest.raises(ModelFileError, match=r"no readable meta\.json"):
        MixtureModel.load(path)


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


#: modules that unpickle (or run code) when they load data
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def pickle_uses(source: str) -> list[str]:
    """Every way ``source`` could reach a pickler: imports of one (plain, from, relative, by
    ``__import__`` / ``importlib.import_module`` or any call with its name as a string),
    attributes named after one (``np.lib.format.pickle``), and ``allow_pickle`` set to anything
    but a literal False (as a keyword or a ``**{...}`` key)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLERS]
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            names = {a.name for a in node.names}
            if module in PICKLERS or names & PICKLERS:
                found.append(f"from {node.module} import {sorted(names)}")
        elif isinstance(node, ast.Call):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] in PICKLERS:
                    found.append(f"call with {arg.value!r}")
            for kw in node.keywords:
                literal_false = isinstance(kw.value, ast.Constant) and kw.value.value is False
                if kw.arg == "allow_pickle" and not literal_false:
                    found.append(f"allow_pickle={ast.unparse(kw.value)}")
        elif isinstance(node, ast.Attribute) and node.attr in PICKLERS:
            found.append(f"attribute .{node.attr}")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                is_key = isinstance(key, ast.Constant) and key.value == "allow_pickle"
                if is_key and not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"{{'allow_pickle': {ast.unparse(value)}}}")
    return found


def test_io_module_never_uses_pickle():
    source = Path(msio.__file__).read_text()
    assert pickle_uses(source) == []
    # the arrays are read with pickling explicitly refused
    calls = [
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Call) and ast.unparse(n.func) in ("np.load", "np.save")
    ]
    assert calls and all(
        any(k.arg == "allow_pickle" and k.value.value is False for k in c.keywords) for c in calls
    )


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import cPickle as p",
        "import dill",
        "import cloudpickle.cloudpickle",
        "import joblib",
        "from pickle import loads",
        "from joblib import load as l",
        "from . import pickle",
        "from numpy.compat import pickle",
        "mod = __import__('pickle')",
        "import importlib\nm = importlib.import_module('cloudpickle')",
        "np.load(f, allow_pickle=True)",
        "np.load(f, allow_pickle=flag)",
        "np.load(f, **{'allow_pickle': True})",
        "x = np.lib.format.pickle.loads(b)",
    ],
)
def test_pickle_check_catches_every_form(snippet):
    """The check above can fail: each of these is reported."""
    assert pickle_uses(snippet)


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
