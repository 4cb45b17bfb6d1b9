"""Model files and checkpoints whose structure is sound but whose values are not are refused.

Issue 21, item 6: a model file with NaN means, weights off the simplex, a negated covariance or
metadata that names another covariance type loaded silently (NaN probabilities, absurd scores).
Each test corrupts one array of a real saved model, keeping its shape and dtype (so the
structural checks pass), and expects a ModelFileError naming the file and the array.
"""

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import COVS, planted_blobs

from mixstream import MixtureModel
from mixstream.engine.checkpoint import checkpoint_path
from mixstream.io import ModelFileError, read_model_file


def gauss_data(n=300, seed=0):
    return planted_blobs(n, 3, 3, seed, 5.0)[0]


def binary_data(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, size=(3, 6))
    return (rng.uniform(size=(300, 6)) < p[rng.integers(3, size=300)]).astype(float)


def count_data(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(5), size=3)
    return np.array([rng.multinomial(20, p[k]) for k in rng.integers(3, size=300)], float)


def fit_save(tmp_path, name="model.msz", X=None, **options):
    options = {"n_components": 3, "random_state": 0, "max_laps": 20, **options}
    est = MixtureModel(**options).fit(gauss_data() if X is None else X)
    return Path(est.save(tmp_path / name))


def edit_array(path: Path, member: str, edit) -> None:
    """Replace array ``member`` of the model file by ``edit(array)`` (same shape and dtype)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    key = f"arrays/{member}.npy"
    arr = np.load(io.BytesIO(members[key]))
    new = np.asarray(edit(arr.copy()), dtype=arr.dtype).reshape(arr.shape)
    buf = io.BytesIO()
    np.save(buf, new)
    members[key] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def edit_meta(path: Path, edit) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = json.loads(members["meta.json"])
    edit(header)
    members["meta.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)


def refused(path: Path, member: str, what: str) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        MixtureModel.load(path)
    message = str(info.value)
    assert str(path) in message
    assert f"'{member}'" in message, message
    assert re.search(what, message), message
    return info.value


# ---------------------------------------------------------------- the four corruptions
def test_nan_means_are_refused(tmp_path):
    path = fit_save(tmp_path)
    edit_array(path, "obs/m", lambda a: np.full_like(a, np.nan))
    refused(path, "obs/m", "non-finite")


@pytest.mark.parametrize(
    ("options", "member"),
    [
        ({"allocation": "finite", "algorithm": "em"}, "alloc/weights"),
        ({"allocation": "dp", "algorithm": "em"}, "alloc/sticks"),
        ({"allocation": "finite", "algorithm": "vb"}, "alloc/theta"),
        ({"allocation": "dp", "algorithm": "vb"}, "alloc/eta1"),
    ],
)
def test_weights_off_the_simplex_are_refused(tmp_path, options, member):
    path = fit_save(tmp_path, **options)
    edit_array(path, member, lambda a: np.array([-1.0, 0.5, 1.5]))
    refused(path, member, r"simplex|\[0, 1\]|> 0")


def test_weights_that_do_not_sum_to_one_are_refused(tmp_path):
    path = fit_save(tmp_path, allocation="finite", algorithm="em")
    edit_array(path, "alloc/weights", lambda a: a * 0.5)
    refused(path, "alloc/weights", "sums to .* not 1")


@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize(("algorithm", "member"), [("em", "obs/cov"), ("vb", "obs/psi")])
def test_negated_covariances_are_refused(tmp_path, cov, algorithm, member):
    path = fit_save(tmp_path, covariance_type=cov, algorithm=algorithm)
    edit_array(path, member, lambda a: -a)
    refused(path, member, "not positive definite")


def test_indefinite_full_covariance_is_refused(tmp_path):
    # positive diagonal, but not positive definite: only a Cholesky finds it
    path = fit_save(tmp_path, algorithm="em")

    def edit(a):
        a[1] = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return a

    edit_array(path, "obs/cov", edit)
    refused(path, "obs/cov", "covariance 1 has no Cholesky factor")


def test_covariance_type_changed_in_the_metadata_is_refused(tmp_path):
    path = fit_save(tmp_path, covariance_type="full")

    def to_diag(header):
        header["meta"]["params"]["covariance_type"] = "diag"

    edit_meta(path, to_diag)
    refused(path, "obs/covariance_type", "'full'.*covariance_type='diag'")


def test_covariance_array_of_another_shape_than_its_type_is_refused(tmp_path):
    # both the metadata and the array's type name say "diag", the arrays are (K, D, D)
    path = fit_save(tmp_path, covariance_type="full")

    def to_diag(header):
        header["meta"]["params"]["covariance_type"] = "diag"
        header["arrays"]["obs/covariance_type"]["dtype"] = "<U4"

    edit_meta(path, to_diag)
    edit_array(path, "obs/covariance_type", lambda a: np.array("diag", "<U4"))
    refused(path, "obs/psi", r"shape \(3, 3, 3\).*'diag'.*\(3, 3\)")


def test_tied_alias_in_the_metadata_still_loads(tmp_path):
    path = fit_save(tmp_path, covariance_type="tied")
    assert MixtureModel.load(path).covariance_type == "tied"


# ---------------------------------------------------------------- other likelihoods
@pytest.mark.parametrize(
    ("options", "X", "member", "edit", "what"),
    [
        ({"likelihood": "bernoulli", "algorithm": "em"}, binary_data, "obs/p",
         lambda a: a + 1.0, r"\[0, 1\]"),
        ({"likelihood": "bernoulli", "algorithm": "vb"}, binary_data, "obs/a",
         lambda a: -a, "> 0"),
        ({"likelihood": "bernoulli", "algorithm": "vb"}, binary_data, "obs/lam1",
         lambda a: a * 0.0, "> 0"),
        ({"likelihood": "multinomial", "algorithm": "em"}, count_data, "obs/phi",
         lambda a: a * 2.0, "simplex"),
        ({"likelihood": "multinomial", "algorithm": "vb"}, count_data, "obs/conc",
         lambda a: -a, "> 0"),
        ({"likelihood": "zero_mean_gauss", "algorithm": "vb"}, gauss_data, "obs/B",
         lambda a: -a, "not positive definite"),
        ({"likelihood": "zero_mean_gauss", "algorithm": "em"}, gauss_data, "obs/cov",
         lambda a: -a, "not positive definite"),
        ({"likelihood": "gauss", "algorithm": "vb"}, gauss_data, "obs/kappa",
         lambda a: -a, "> 0"),
        ({"likelihood": "gauss", "algorithm": "vb"}, gauss_data, "obs/covariance_prior",
         lambda a: -a, "not positive definite"),
    ],
)  # fmt: skip
def test_invalid_values_of_each_likelihood_are_refused(tmp_path, options, X, member, edit, what):
    path = fit_save(tmp_path, X=X(), **options)
    edit_array(path, member, edit)
    refused(path, member, what)


def test_likelihood_changed_in_the_metadata_is_refused(tmp_path):
    path = fit_save(tmp_path, X=binary_data(), likelihood="bernoulli")

    def to_multinomial(header):
        header["meta"]["params"]["likelihood"] = "multinomial"

    edit_meta(path, to_multinomial)
    refused(path, "obs", "'bernoulli'.*likelihood='multinomial'")


def test_allocation_changed_in_the_metadata_is_refused(tmp_path):
    path = fit_save(tmp_path, allocation="dp")

    def to_finite(header):
        header["meta"]["params"]["allocation"] = "finite"

    edit_meta(path, to_finite)
    refused(path, "alloc", "'dp'.*allocation='finite'")


def test_sound_models_of_every_kind_load(tmp_path):
    cases = [{"covariance_type": c, "algorithm": a} for c in COVS for a in ("em", "vb")]
    cases += [{"likelihood": "bernoulli", "algorithm": a, "X": binary_data()} for a in ("em", "vb")]
    cases += [
        {"likelihood": "multinomial", "algorithm": a, "X": count_data()} for a in ("em", "vb")
    ]
    cases += [{"likelihood": "zero_mean_gauss", "algorithm": a} for a in ("em", "vb")]
    cases += [{"allocation": "finite", "algorithm": a} for a in ("em", "vb", "movb")]
    for i, case in enumerate(cases):
        path = fit_save(tmp_path, f"m{i}.msz", max_laps=5, **case)
        MixtureModel.load(path)


# ---------------------------------------------------------------- checkpoints
CKPT = dict(n_components=3, algorithm="movb", batch_size=100, random_state=0, max_laps=2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    ("member", "edit", "what"),
    [
        ("best/obs/m", lambda a: np.full_like(a, np.nan), "non-finite"),
        ("best/obs/psi", lambda a: -a, "not positive definite"),
        ("best/alloc/eta0", lambda a: -a, "> 0"),
    ],
)
def test_checkpoint_with_invalid_values_is_refused_saying_what_to_do(tmp_path, member, edit, what):
    X = gauss_data()
    MixtureModel(**CKPT, checkpoint_dir=tmp_path).fit(X)
    path = checkpoint_path(tmp_path)
    read_model_file(path)  # sound as written
    edit_array(path, member, edit)
    with pytest.raises(ModelFileError) as info:
        MixtureModel(**{**CKPT, "max_laps": 4}, checkpoint_dir=tmp_path).fit(X)
    message = str(info.value)
    assert str(path) in message and f"'{member}'" in message and re.search(what, message)
    assert f"Delete {path} to start the fit over" in message
    # doing what it says works
    path.unlink()
    MixtureModel(**{**CKPT, "max_laps": 4}, checkpoint_dir=tmp_path).fit(X)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_truncated_checkpoint_says_what_to_do(tmp_path):
    X = gauss_data()
    MixtureModel(**CKPT, checkpoint_dir=tmp_path).fit(X)
    path = checkpoint_path(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match=f"not a zip archive.*Delete {re.escape(str(path))}"):
        MixtureModel(**CKPT, checkpoint_dir=tmp_path).fit(X)
