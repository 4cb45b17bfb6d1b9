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
