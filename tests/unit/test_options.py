"""FitOptions: one frozen dataclass of fit options, its constraints declared as data and checked
by one function; the rule of which algorithm runs which moves lives in one table."""

import dataclasses
import inspect

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream import options as o
from mixstream import vocabulary as v
from mixstream.options import FitOptions, validate


def test_fit_options_are_frozen():
    options = FitOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.algorithm = "em"


def test_fields_and_defaults_are_the_estimators_parameters():
    params = inspect.signature(MixtureModel.__init__).parameters
    defaults = {n: p.default for n, p in params.items() if n != "self"}
    fields = {f.name: f.default for f in dataclasses.fields(FitOptions)}
    assert fields == defaults
    assert FitOptions.from_params(MixtureModel().get_params()) == FitOptions()
    assert FitOptions().params() == MixtureModel().get_params()


def test_the_defaults_are_valid():
    validate(FitOptions())
    validate(o.RUN_DEFAULTS)
    assert FitOptions(algorithm="movb").validated().run_moves == v.MOVES


def test_every_option_is_constrained_once():
    names = set(FitOptions.names())
    assert set(o.CONSTRAINTS) <= names
    # the rest depend on other options and are checked by the cross-option rules
    assert names - set(o.CONSTRAINTS) == {
        "init",
        "moves",
        "mean_prior",
        "covariance_prior",
        "obs_prior",
    }


@pytest.mark.parametrize(
    "name, words",
    [
        ("algorithm", v.ALGORITHMS),
        ("allocation", v.ALLOCATIONS),
        ("likelihood", v.LIKELIHOODS),
        ("covariance_type", (*v.COVARIANCE_TYPES, *v.COVARIANCE_ALIASES)),
        ("engine", v.ENGINES),
        ("backend", v.BACKENDS),
        ("dtype", v.COMPUTE_DTYPES),
    ],
)
def test_word_options_take_exactly_the_vocabulary(name, words):
    for word in words:
        assert o.CONSTRAINTS[name].test(word)
    with pytest.raises(ValueError, match=rf"{name} must be one of \({words[0]!r}"):
        validate(FitOptions(**{name: "nonsense"}))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"n_components": 0}, "n_components must be a positive integer, got 0"),
        ({"n_components": True}, "n_components must be a positive integer, got True"),
        ({"batch_size": 1.5}, "batch_size must be a positive integer, got 1.5"),
        ({"alpha": 0.0}, "alpha must be a positive number, got 0.0"),
        ({"tol": -1}, "tol must be a non-negative number, got -1"),
        ({"kappa": 0.4}, r"kappa must be in \(0.5, 1\] for soVB to converge, got 0.4"),
        ({"delay": 0.5}, "delay must be a finite number >= 1"),
        ({"map_prior": 1}, "map_prior must be True or False, got 1"),
        ({"verbose": -2}, "verbose must be a non-negative integer, got -2"),
        ({"random_state": 2**32}, r"random_state must be None, an integer in \[0, 2\*\*32\)"),
        ({"checkpoint_dir": 3}, r"checkpoint_dir must be a path \(str or os.PathLike\)"),
        ({"init": "magic"}, "init must be one of"),
        ({"init": np.zeros((2, 3))}, r"init means must have shape \(n_components=10"),
        ({"moves": "merge", "algorithm": "movb"}, r"moves must be a tuple .*such as \('merge',\)"),
        ({"moves": ("split",), "algorithm": "movb"}, "moves must be one of .*'split'"),
        ({"obs_prior": 5}, "obs_prior must be a dict of prior options or None, got 5"),
        ({"likelihood": "bernoulli", "covariance_type": "diag"}, "applies to likelihood='gauss'"),
        ({"engine": "local", "client": "tcp://h:1"}, "engine='local' runs in this process"),
    ],
)
def test_one_function_rejects_each_bad_value_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        validate(FitOptions(**bad))


@pytest.mark.parametrize("algorithm", v.ALGORITHMS)
def test_which_algorithm_runs_which_moves(algorithm):
    allowed = o.ALLOWED_MOVES.get(algorithm, ())
    assert set(allowed) <= set(v.MOVES)
    assert o.default_moves(algorithm) == (v.MOVES if algorithm == "movb" else ())
    for move in v.MOVES:
        options = FitOptions(algorithm=algorithm, moves=(move,))
        if move in allowed:
            assert options.validated().run_moves == (move,)
        else:
            with pytest.raises(ValueError, match=rf"need algorithm=.*got {algorithm!r}"):
                validate(options)
    assert FitOptions(algorithm=algorithm, moves=()).validated().run_moves == ()


def test_the_estimator_the_learning_code_and_the_cli_share_the_moves_rule():
    from mixstream.app import fit_options
    from mixstream.cli.parser import parse_moves
    from mixstream.learn import moves

    assert moves.default_moves is o.default_moves
    assert moves.DEFAULT_MOVES == o.DEFAULT_MOVES == v.MOVES
    for algorithm in v.ALGORITHMS:
        assert MixtureModel(algorithm=algorithm)._moves() == o.default_moves(algorithm)
        assert fit_options(algorithm=algorithm)["moves"] == o.default_moves(algorithm)
    assert parse_moves(["birth,merge", "delete"]) == list(v.MOVES)
    assert parse_moves(["none"]) == []


def test_every_algorithm_has_an_inference():
    assert set(o.INFERENCE) == set(v.ALGORITHMS)
    assert set(o.INFERENCE.values()) == {"vb", "em"}
