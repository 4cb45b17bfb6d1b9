"""MixtureModel: fitting end to end, fitted attributes, and clear errors for bad input."""

import warnings
from itertools import pairwise

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from mixstream import MixtureModel


def blobs(n=1500, d=3, k=3, seed=0, scale=8.0):
    rng = np.random.default_rng(seed)
    # means on a scaled simplex-like grid: every pair at least `scale` apart
    means = scale * np.eye(max(k, d))[:k, :d] * np.sqrt(2) + rng.normal(scale=0.1, size=(k, d))
    labels = rng.integers(k, size=n)
    return means[labels] + rng.normal(size=(n, d)), labels


@pytest.mark.parametrize("algorithm", ["em", "vb", "kmeans", "cem"])
@pytest.mark.parametrize("allocation", ["finite", "dp"])
def test_algorithms_recover_blobs(algorithm, allocation):
    X, labels = blobs()
    m = MixtureModel(3, allocation=allocation, algorithm=algorithm, random_state=0, n_init=2)
    m.fit(X)
    assert adjusted_rand_score(labels, m.predict(X)) > 0.99
    assert m.weights_.shape == (3,) and np.isclose(m.weights_.sum(), 1.0)
    assert m.means_.shape == (3, 3) and m.covariances_.shape == (3, 3, 3)
    assert m.n_iter_ >= 1 and len(m.history_) >= 1
    assert np.isfinite(m.lower_bound_)
    proba = m.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert m.score_samples(X).shape == (X.shape[0],)
    assert np.isclose(m.score(X), m.score_samples(X).mean())


def test_history_records_per_lap_bound_and_k():
    X, _ = blobs()
    m = MixtureModel(5, algorithm="vb", random_state=1, tol=1e-8, max_laps=30).fit(X)
    assert [h["lap"] for h in m.history_] == list(range(1, m.n_iter_ + 1))
    elbos = [h["elbo"] for h in m.history_]
    assert all(b >= a - 1e-9 * abs(a) for a, b in pairwise(elbos))
    assert all(h["K"] == 5 for h in m.history_)
    assert m.lower_bound_ == elbos[-1]


def test_n_init_keeps_best_bound():
    X, _ = blobs(k=4, seed=3, scale=4.0)
    one = MixtureModel(4, algorithm="em", allocation="finite", random_state=5, n_init=1).fit(X)
    many = MixtureModel(4, algorithm="em", allocation="finite", random_state=5, n_init=4).fit(X)
    assert many.lower_bound_ >= one.lower_bound_ - 1e-12


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0: fixed laps
def test_batches_give_the_same_fit_as_one_batch():
    X, _ = blobs(n=1000)
    a = MixtureModel(3, algorithm="vb", random_state=0, max_laps=5, tol=0).fit(X)
    b = MixtureModel(3, algorithm="vb", random_state=0, max_laps=5, tol=0, batch_size=97).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-10)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), r"NaN or infinite.*\[0\]"),
        (np.array([[1.0, 2.0], [0.0, 1.0], [np.inf, 2.0]]), r"first rows: \[2\]"),
        (np.zeros(5), "2-D"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.array([["a", "b"], ["c", "d"]]), "numbers"),
        (np.zeros((0, 3)), "empty"),
    ],
)
def test_bad_data_is_refused_clearly(X, match):
    with pytest.raises(ValueError, match=match):
        MixtureModel(2).fit(X)


#: (bad options, what the error must say): every option of MixtureModel, checked in fit
BAD_PARAMS = [
    ({"n_components": 0}, r"n_components must be a positive integer, got 0"),
    ({"n_components": 2.0}, r"n_components must be a positive integer, got 2.0"),
    ({"allocation": "pitman-yor"}, r"allocation must be one of .*'pitman-yor'"),
    ({"likelihood": "poisson"}, r"likelihood must be one of .*'poisson'"),
    ({"covariance_type": "banded"}, r"covariance_type must be one of .*'banded'"),
    (
        {"covariance_type": "diag", "likelihood": "bernoulli"},
        r"covariance_type='diag' applies to likelihood='gauss'",
    ),
    ({"algorithm": "gibbs"}, r"algorithm must be one of .*'gibbs'"),
    ({"init": "magic"}, r"init must be one of .*'magic'"),
    ({"init": 5}, r"init must be one of"),
    ({"init": np.zeros((3, 3))}, r"init means must have shape \(n_components=2, n_features\)"),
    ({"init": np.zeros((2, 5))}, r"init means have 5 features, but X has 3"),
    ({"init": {"centres": np.zeros((2, 3))}}, r"init dict has unknown keys \['centres'\]"),
    ({"alpha": -1.0}, r"alpha must be a positive number, got -1.0"),
    ({"alpha": np.inf}, r"alpha must be a positive number, got inf"),
    ({"tol": -1.0}, r"tol must be a non-negative number, got -1.0"),
    ({"tol": np.nan}, r"tol must be a non-negative number, got nan"),
    ({"max_laps": 0}, r"max_laps must be a positive integer, got 0"),
    ({"n_init": 0}, r"n_init must be a positive integer, got 0"),
    ({"reg_covar": -1e-6}, r"reg_covar must be a non-negative number or 'auto', got -1e-06"),
    ({"reg_covar": "small"}, r"reg_covar must be a non-negative number or 'auto', got 'small'"),
    ({"reg_covar": np.nan}, r"reg_covar must be a non-negative number or 'auto', got nan"),
    ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
    ({"batch_size": 2.5}, r"batch_size must be a positive integer, got 2.5"),
    ({"batch_size": True}, r"batch_size must be a positive integer, got True"),
    ({"moves": ("teleport",), "algorithm": "movb"}, r"moves must be one of .*'teleport'"),
    ({"moves": "merge", "algorithm": "movb"}, r"moves must be a tuple .*such as \('merge',\)"),
    ({"moves": ("birth", "split"), "algorithm": "movb"}, r"moves must be one of .*'split'"),
    ({"moves": 5, "algorithm": "movb"}, r"moves must be a tuple of names .*got 5"),
    ({"moves": ("merge",)}, r"moves=\('merge',\) need algorithm='movb' .*got 'vb'"),
    ({"moves": ("delete",), "algorithm": "sovb"}, r"need algorithm='movb' .*got 'sovb'"),
    ({"moves": ("birth",), "algorithm": "em"}, r"birth moves need algorithm='movb', got 'em'"),
    ({"moves": ("birth", "merge"), "algorithm": "cem"}, r"birth moves need .*got 'cem'"),
    ({"kappa": 0.5}, r"kappa must be in \(0.5, 1\] .*got 0.5"),
    ({"kappa": 1.5}, r"kappa must be in \(0.5, 1\] .*got 1.5"),
    ({"kappa": True}, r"kappa must be in \(0.5, 1\] .*got True"),
    ({"kappa": "fast"}, r"kappa must be in \(0.5, 1\] .*got 'fast'"),
    ({"delay": -1.0}, r"delay must be a finite number >= 1 .*got -1.0"),
    ({"delay": 0.0}, r"delay must be a finite number >= 1 .*got 0.0"),  # rho_0 = 0 ** -kappa
    ({"delay": 0.5}, r"delay must be a finite number >= 1 .*got 0.5"),  # rho_0 > 1
    ({"delay": np.nan}, r"delay must be a finite number >= 1 .*got nan"),
    ({"delay": np.inf}, r"delay must be a finite number >= 1 .*got inf"),
    ({"backend": "tpu"}, r"backend must be one of .*'tpu'"),
    ({"backend": None}, r"backend must be one of .*None"),
    ({"engine": "spark"}, r"engine must be one of .*'spark'"),
    (
        {"engine": "local", "client": "tcp://127.0.0.1:8786"},
        r"engine='local' runs in this process",
    ),
    ({"client": 5}, r"client must be None, a scheduler address .*got 5"),
    ({"checkpoint_dir": 5}, r"checkpoint_dir must be a path .*got 5"),
    ({"random_state": -3}, r"random_state must be None, an integer in \[0, 2\*\*32\)"),
    ({"random_state": "seed"}, r"random_state must be None, .*got 'seed'"),
    ({"map_prior": "yes"}, r"map_prior must be True or False, got 'yes'"),
    ({"warm_start": 1}, r"warm_start must be True or False, got 1"),
    ({"verbose": -1}, r"verbose must be a non-negative integer, got -1"),
    ({"verbose": "loud"}, r"verbose must be a non-negative integer, got 'loud'"),
    ({"mean_prior": "x"}, r"mean_prior must be an array of numbers, got 'x'"),
    ({"mean_prior": [0.0, 1.0]}, r"mean_prior must be a finite array of shape \(3,\)"),
    ({"mean_precision_prior": -1.0}, r"mean_precision_prior must be a positive number"),
    ({"mean_precision_prior": "a"}, r"mean_precision_prior must be a positive number, got 'a'"),
    ({"degrees_of_freedom_prior": 1.0}, r"degrees_of_freedom_prior must be a number greater"),
    ({"degrees_of_freedom_prior": "a"}, r"degrees_of_freedom_prior must be a number greater"),
    ({"covariance_prior": -np.eye(3)}, r"covariance_prior must be symmetric positive definite"),
    ({"covariance_prior": [[np.nan]]}, r"covariance_prior must be finite"),
    (
        {"likelihood": "zero_mean_gauss", "mean_prior": np.zeros(3)},
        r"apply to likelihood='gauss'; use obs_prior",
    ),
    ({"obs_prior": 5}, r"obs_prior must be a dict of prior options or None, got 5"),
    ({"obs_prior": {"nu0": 5.0}}, r"obs_prior has unknown options \['nu0'\]"),
    (
        {"likelihood": "zero_mean_gauss", "obs_prior": {"reg_covar": 1.0}},
        r"obs_prior may not set \['reg_covar'\]: they are MixtureModel's own parameters",
    ),
    (
        {"likelihood": "zero_mean_gauss", "obs_prior": {"lam": 1.0}},
        r"obs_prior has unknown options \['lam'\]; .* takes \['nu0', 'prior_cov'\]",
    ),
    (
        {"likelihood": "zero_mean_gauss", "algorithm": "kmeans"},
        r"algorithm='kmeans' needs components that differ by their means",
    ),
]


@pytest.mark.parametrize("params, match", BAD_PARAMS)
def test_bad_parameters_are_refused_in_fit(params, match):
    X, _ = blobs(n=50)
    model = MixtureModel(**{"n_components": 2, **params})  # nothing checked in __init__
    assert model.get_params()[next(iter(params))] is params[next(iter(params))]
    model.set_params(**params)  # nor in set_params
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    assert not hasattr(model, "model_")


@pytest.mark.parametrize(
    "params, match",
    [p for p in BAD_PARAMS if "init" not in p[0] and "mean_prior" not in p[0]],
)
def test_bad_parameters_are_refused_in_partial_fit(params, match):
    X, _ = blobs(n=50)
    with pytest.raises(ValueError, match=match):
        MixtureModel(**{"n_components": 2, **params}).partial_fit(X)


def test_parameters_changed_after_fit_are_checked_again():
    X, _ = blobs(n=200)
    m = MixtureModel(2, random_state=0).fit(X)
    m.set_params(kappa=2.0)
    with pytest.raises(ValueError, match="kappa"):
        m.partial_fit(X)
    with pytest.raises(ValueError, match="kappa"):
        m.fit(X)


def test_good_values_of_the_checked_options_are_accepted(tmp_path):
    """The checks refuse only bad values: the edge values and other spellings still fit."""
    X, _ = blobs(n=200)
    fitted = [
        MixtureModel(2, kappa=1.0, delay=1.0, reg_covar=0.0, tol=0.0, max_laps=3, verbose=0),
        MixtureModel(2, moves=["merge"], algorithm="movb", batch_size=50, max_laps=3),
        MixtureModel(2, random_state=np.random.RandomState(0), map_prior=np.bool_(False)),
        MixtureModel(2, random_state=np.random.default_rng(0), init=[[0.0] * 3, [8.0] * 3]),
        MixtureModel(2, checkpoint_dir=tmp_path / "ckpt", mean_prior=[0.0, 0.0, 0.0]),
        MixtureModel(2, likelihood="zero_mean_gauss", obs_prior={"nu0": 6.0}),
    ]
    for model in fitted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            assert model.fit(X).n_components_ >= 1


def test_more_components_than_rows_for_finite_mixture():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        MixtureModel(10, allocation="finite").fit(np.random.default_rng(0).normal(size=(5, 2)))


def test_likelihood_specific_values_are_checked():
    bad_bits = np.array([[0, 1], [1, 2], [0, 0.5]], dtype=float)
    with pytest.raises(ValueError, match="bernoulli"):
        MixtureModel(2, likelihood="bernoulli").fit(bad_bits)
    counts = np.array([[1, 2], [3, -1], [0, 4]], dtype=float)
    with pytest.raises(ValueError, match="negative"):
        MixtureModel(2, likelihood="multinomial").fit(counts)


def test_predict_checks_feature_count():
    X, _ = blobs(n=200)
    m = MixtureModel(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0: fixed laps
def test_warm_start_continues_from_the_fitted_parameters():
    X, _ = blobs()
    cold = MixtureModel(3, algorithm="vb", random_state=0, max_laps=4, tol=0.0).fit(X)
    warm = MixtureModel(3, algorithm="vb", random_state=0, max_laps=2, tol=0.0, warm_start=True)
    warm.fit(X).fit(X)  # 2 laps, then 2 more from where it stopped
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-10)
    np.testing.assert_allclose(warm.lower_bound_, cold.lower_bound_, rtol=1e-10)


def test_tags_are_declared():
    tags = MixtureModel(likelihood="multinomial").__sklearn_tags__()
    assert tags.input_tags.sparse is False and tags.input_tags.allow_nan is False
    assert tags.input_tags.positive_only is True
    assert MixtureModel().__sklearn_tags__().input_tags.positive_only is False


def test_dp_map_with_merge_and_delete_through_the_estimator():
    """algorithm="em" with a DP and the components' prior (map_prior) runs memoized DP MAP with
    merge / delete moves: from too many components down to the planted five."""
    rng = np.random.default_rng(3)
    means = rng.normal(scale=10.0, size=(5, 3))
    labels = rng.integers(5, size=4000)
    X = means[labels] + rng.normal(size=(4000, 3))
    model = MixtureModel(
        12,
        allocation="dp",
        algorithm="em",
        map_prior=True,
        moves=("merge", "delete"),
        batch_size=1000,
        max_laps=30,
        random_state=0,
    ).fit(X)
    assert model.n_components_ == 5
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99
    bounds = [h["elbo"] for h in model.history_]
    assert all(b >= a - 1e-9 * abs(a) for a, b in pairwise(bounds))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_after_a_sovb_fit_continues_its_step_schedule():
    """partial_fit picks up the global step count of the soVB fit before it, not its laps."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(m, 1.0, size=(500, 2)) for m in (-5.0, 5.0)])
    rng.shuffle(X)
    model = MixtureModel(2, algorithm="sovb", batch_size=100, max_laps=3, tol=0.0, random_state=0)
    model.fit(X)
    steps = model.history_[-1]["t"]
    assert steps == 3 * 10 and model.n_iter_ == 3
    model.partial_fit(X[:100])
    assert model.stream_state_.t == steps + 1
