"""Each option word is defined once, in mixstream.vocabulary, and every registry and front end
takes its names from there."""

import argparse

from mixstream import vocabulary as v


def test_registries_are_keyed_by_the_vocabulary():
    from mixstream.alloc import ALLOCATIONS
    from mixstream.learn.moves import MOVES
    from mixstream.obs.gauss import covariance_strategy
    from mixstream.obs.registry import OBSERVATIONS

    assert set(ALLOCATIONS) == set(v.ALLOCATIONS)
    assert set(OBSERVATIONS) == set(v.LIKELIHOODS)
    assert set(MOVES) == set(v.MOVES)
    assert [covariance_strategy(c).name for c in v.COVARIANCE_TYPES] == list(v.COVARIANCE_TYPES)
    for alias, target in v.COVARIANCE_ALIASES.items():
        assert covariance_strategy(alias).name == target


def _choices(parser: argparse.ArgumentParser, command: str, flag: str) -> tuple:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    return tuple(action.choices)


def test_cli_choices_are_the_vocabulary():
    from mixstream.cli.parser import build_parser

    parser = build_parser()
    assert set(_choices(parser, "fit", "--algorithm")) == set(v.ALGORITHMS)
    assert set(_choices(parser, "fit", "--allocation")) == set(v.ALLOCATIONS)
    assert set(_choices(parser, "fit", "--likelihood")) == set(v.LIKELIHOODS)
    assert set(_choices(parser, "fit", "--covariance-type")) == {
        *v.COVARIANCE_TYPES,
        *v.COVARIANCE_ALIASES,
    }


def _refusal(**params) -> str:
    """The message of the estimator's validation of ``params``."""
    import pytest

    from mixstream import MixtureModel

    with pytest.raises(ValueError) as err:
        MixtureModel(**params)._validate_params()
    return str(err.value)


def test_the_estimators_messages_list_exactly_the_vocabulary():
    for name, words in (
        ("algorithm", v.ALGORITHMS),
        ("allocation", v.ALLOCATIONS),
        ("likelihood", v.LIKELIHOODS),
        ("covariance_type", (*v.COVARIANCE_TYPES, *v.COVARIANCE_ALIASES)),
        ("engine", v.ENGINES),
        ("backend", v.BACKENDS),
        ("init", v.INIT_METHODS),
        ("dtype", v.COMPUTE_DTYPES),
    ):
        assert _refusal(**{name: "nonsense"}) == f"{name} must be one of {words}, got 'nonsense'"
    assert _refusal(algorithm="movb", moves=("nonsense",)) == (
        f"moves must be one of {v.MOVES}, got 'nonsense'"
    )
    # every word is accepted
    from mixstream import MixtureModel

    for algorithm in v.ALGORITHMS:
        MixtureModel(algorithm=algorithm, likelihood="gauss")._validate_params()
    for likelihood in v.LIKELIHOODS:
        MixtureModel(likelihood=likelihood)._validate_params()
    for cov in (*v.COVARIANCE_TYPES, *v.COVARIANCE_ALIASES):
        MixtureModel(covariance_type=cov)._validate_params()


def test_cli_moves_and_defaults_come_from_the_options():
    import pytest

    from mixstream.cli.parser import UsageError, build_parser, parse_moves
    from mixstream.options import RUN_DEFAULTS

    assert parse_moves([",".join(v.MOVES)]) == list(v.MOVES)
    with pytest.raises(UsageError, match=", ".join(v.MOVES)):
        parse_moves(["teleport"])
    args = build_parser().parse_args(["fit", "data.zarr", "--out", "out"])
    for name in ("n_components", "allocation", "likelihood", "covariance_type", "algorithm"):
        assert getattr(args, name) == getattr(RUN_DEFAULTS, name)
    assert (args.max_laps, args.tol, args.seed) == (
        RUN_DEFAULTS.max_laps,
        RUN_DEFAULTS.tol,
        RUN_DEFAULTS.random_state,
    )


def test_flow_parameters_accept_exactly_the_vocabulary():
    from flows.fit import fit_flow
    from mixstream.options import RUN_DEFAULTS

    schema = fit_flow.parameters.model_dump()["properties"]
    for name, words in (
        ("algorithm", v.ALGORITHMS),
        ("allocation", v.ALLOCATIONS),
        ("likelihood", v.LIKELIHOODS),
        ("covariance_type", (*v.COVARIANCE_TYPES, *v.COVARIANCE_ALIASES)),
    ):
        assert tuple(schema[name]["enum"]) == words
        assert schema[name]["default"] == getattr(RUN_DEFAULTS, name)
    moves = next(s for s in schema["moves"]["anyOf"] if s.get("type") == "array")
    assert tuple(moves["items"]["enum"]) == v.MOVES
    for name in ("n_components", "max_laps", "tol", "random_state", "batch_size"):
        assert schema[name]["default"] == getattr(RUN_DEFAULTS, name)
    # Prefect checks the words before a run starts
    import pytest

    good = {"data": "d.zarr", "out": "o", "algorithm": v.ALGORITHMS[0], "moves": list(v.MOVES)}
    assert fit_flow.validate_parameters(good)["algorithm"] == v.ALGORITHMS[0]
    for bad in ({"algorithm": "gibbs"}, {"moves": ["teleport"]}, {"covariance_type": "banded"}):
        with pytest.raises(Exception, match=f"invalid parameters:\n - {next(iter(bad))}"):
            fit_flow.validate_parameters({**good, **bad})
