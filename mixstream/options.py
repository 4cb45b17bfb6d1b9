"""FitOptions: every option of a fit in one frozen dataclass, with its constraints as data.

    options = FitOptions(n_components=8, algorithm="movb").validated()   # ValueError if bad

``MixtureModel`` keeps its parameters as ``__init__`` attributes (scikit-learn's get_params /
set_params / clone) and turns them into a ``FitOptions`` when it fits; the learning code, the
lap driver (``mixstream.fit_run``), the model factory (``mixstream.build``), the command line
and the flows read options from here. The option words themselves live in
``mixstream.vocabulary``.

Constraints are declared once, as data (in the spirit of scikit-learn's
``utils/_param_validation``): ``CONSTRAINTS`` maps each option to what its value must be (a
type, an interval, one of the vocabulary's words, optionally None), and ``CROSS_RULES`` lists
the checks that involve several options (which algorithm allows which moves, which likelihood
takes which priors). ``validate`` is the one function that runs them all.

This module imports nothing heavy (numpy and the vocabulary; the observation registry, the
backend and distributed only inside the checks that need them), so that the command line's
parser may use it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from os import PathLike
from typing import Any, Literal

import numpy as np

from mixstream.vocabulary import (
    ALGORITHMS,
    ALLOCATIONS,
    ALLOWED_MOVES,
    BACKENDS,
    COMPUTE_DTYPES,
    COVARIANCE_ALIASES,
    DEFAULT_MOVES,
    ENGINES,
    HMOG_NOISE_STRUCTURES,
    INIT_METHODS,
    LIKELIHOODS,
    MISSING_MODES,
    MOVES,
    MOVES_WHEN_NONE,
    SELECTION_CRITERIA,
    default_moves,
)
from mixstream.vocabulary import COVARIANCE_TYPES as _COVARIANCE_STRUCTURES

#: covariance type choices: ours and scikit-learn's aliases
COVARIANCE_TYPES = (*_COVARIANCE_STRUCTURES, *COVARIANCE_ALIASES)
#: the option words as types, for annotations that check them (the Prefect flows' parameters)
Algorithm = Literal[ALGORITHMS]
Allocation = Literal[ALLOCATIONS]
Likelihood = Literal[LIKELIHOODS]
CovarianceType = Literal[COVARIANCE_TYPES]
Move = Literal[MOVES]
Missing = Literal[MISSING_MODES]
#: Gaussian prior options (scikit-learn's names), passed through to GaussObs
GAUSS_PRIORS = (
    "mean_prior",
    "mean_precision_prior",
    "degrees_of_freedom_prior",
    "covariance_prior",
)
#: keys of an ``init`` dict
INIT_KEYS = ("weights", "means", "covariances", "precisions", "resp")

# ---------------------------------------------------------------------- rules by algorithm
#: the posterior each algorithm computes: variational ("vb") or point estimates ("em")
INFERENCE: dict[str, str] = {
    "em": "em",
    "vb": "vb",
    "kmeans": "em",
    "cem": "em",
    "sovb": "vb",
    "movb": "vb",
}


#: the move that adds components (its refusal says why)
_BIRTH = "birth"
_NO_BIRTH = ALLOWED_MOVES["em"]


def inference_of(algorithm: str) -> str:
    """The posterior of ``algorithm``: "vb" (variational) or "em" (point estimates)."""
    return INFERENCE[algorithm]


def split_moves(values: str | Iterable[str]) -> tuple[str, ...]:
    """Move names from words such as "birth,merge" or ["birth", "merge delete"]; "none" is ()."""
    if isinstance(values, str):
        values = [values]
    names = [m for v in values for m in v.replace(",", " ").split() if m]
    return () if names == ["none"] else tuple(names)


def unknown_moves(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that are not moves."""
    return [name for name in names if name not in MOVES]


def check_moves(algorithm: str, moves: Any) -> tuple[str, ...]:
    """The moves a fit with ``algorithm`` runs; ValueError when it may not run them."""
    if isinstance(moves, str):
        raise ValueError(
            f"moves must be a tuple of names from {MOVES}, such as ({moves!r},), got "
            f"the string {moves!r}"
        )
    if moves is not None and not isinstance(moves, list | tuple | set | frozenset):
        raise ValueError(f"moves must be a tuple of names from {MOVES}, got {moves!r}")
    moves = default_moves(algorithm) if moves is None else tuple(moves)
    for move in moves:
        _check("moves", move, one_of(MOVES))
    allowed = ALLOWED_MOVES.get(algorithm, ())
    if moves and not allowed:
        partial = " / ".join(repr(a) for a, m in ALLOWED_MOVES.items() if m != MOVES)
        raise ValueError(
            f"moves={moves} need algorithm='movb' (or {partial} for {' and '.join(_NO_BIRTH)}), "
            f"got {algorithm!r}"
        )
    for move in moves:
        if move not in allowed:
            need = " / ".join(repr(a) for a, m in ALLOWED_MOVES.items() if move in m)
            why = (
                ": with point estimates every birth raises the objective, so K would grow "
                "without bound"
                if move == _BIRTH
                else ""
            )
            raise ValueError(f"{move} moves need algorithm={need}, got {algorithm!r}{why}")
    return moves


# ---------------------------------------------------------------------- the options
@dataclass(frozen=True)
class FitOptions:
    """Every option of a fit: ``MixtureModel``'s parameters, with the same names and defaults.

    Frozen: a fit's options do not change while it runs. ``validated()`` checks them all
    (``validate``); ``run_moves`` and ``inference`` are derived from them.
    """

    n_components: int = 10
    allocation: str = "dp"
    likelihood: str = "gauss"
    covariance_type: str = "full"
    algorithm: str = "vb"
    alpha: float = 1.0
    reg_covar: float | str = "auto"
    mean_prior: Any = None
    mean_precision_prior: float | None = None
    degrees_of_freedom_prior: float | None = None
    covariance_prior: Any = None
    obs_prior: Mapping[str, Any] | None = None
    map_prior: bool = False
    init: Any = "kmeans++"
    n_init: int = 1
    max_laps: int = 100
    tol: float = 1e-3
    batch_size: int | None = None
    moves: Any = None
    kappa: float = 0.6
    delay: float = 1.0
    random_state: Any = None
    backend: str = "numpy"
    dtype: str | None = None
    engine: str = "auto"
    client: Any = None
    checkpoint_dir: Any = None
    warm_start: bool = False
    verbose: int = 0
    latent_dim: int | None = None
    missing: str = "error"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FitOptions:
        """The options named in ``params`` (an estimator's get_params()); others ignored."""
        return cls(**{name: params[name] for name in cls.names() if name in params})

    def params(self) -> dict[str, Any]:
        """The options by name (a shallow dict, as an estimator's get_params())."""
        return {name: getattr(self, name) for name in self.names()}

    def validated(self) -> FitOptions:
        validate(self)
        return self

    @property
    def run_moves(self) -> tuple[str, ...]:
        """The moves this fit runs: ``moves``, or for None those of ``default_moves``."""
        return default_moves(self.algorithm) if self.moves is None else tuple(self.moves)

    @property
    def k_grows(self) -> bool:
        """Whether the number of components adapts to the data (a DP mixture fitted by moVB
        with moves): ``n_components`` is then only where the fit starts."""
        return self.allocation == "dp" and self.algorithm == "movb" and bool(self.run_moves)

    @property
    def inference(self) -> str:
        return inference_of(self.algorithm)


#: defaults of a fit into a run directory (command line, application layer, flows): DP moVB
#: growing from one component, seeded
RUN_DEFAULTS = FitOptions(n_components=1, algorithm="movb", max_laps=50, tol=1e-4, random_state=0)


# ---------------------------------------------------------------------- constraints as data
@dataclass(frozen=True)
class Constraint:
    """What a value must be: ``test(value)`` is True for good values; ``text`` says so."""

    test: Callable[[Any], bool]
    text: str


def _is_real(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def one_of(words: Sequence[str]) -> Constraint:
    words = tuple(words)
    return Constraint(lambda v: isinstance(v, str) and v in words, f"one of {words}")


def integer(low: int, text: str) -> Constraint:
    return Constraint(lambda v: _is_int(v) and v >= low, text)


def real(low: float, high: float = np.inf, text: str = "", low_open: bool = False) -> Constraint:
    """A finite real in [low, high] (or (low, high] when ``low_open``)."""

    def test(v: Any) -> bool:
        if not _is_real(v) or not np.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and v <= high

    return Constraint(test, text)


def optional(c: Constraint) -> Constraint:
    """``c`` or None (the message stays ``c``'s: None is the default, not a choice to list)."""
    return Constraint(lambda v: v is None or c.test(v), c.text)


def instance_of(types: Any, text: str) -> Constraint:
    return Constraint(lambda v: isinstance(v, types), text)


def _seed(v: Any) -> bool:
    if _is_int(v):
        return 0 <= v < 2**32
    return v is None or isinstance(v, np.random.RandomState | np.random.Generator)


def _client(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return True
    from distributed import Client

    return isinstance(v, Client)


POSITIVE_INT = integer(1, "a positive integer")
POSITIVE = real(0.0, text="a positive number", low_open=True)
NON_NEGATIVE = real(0.0, text="a non-negative number")
BOOL = instance_of(bool | np.bool_, "True or False")

#: what each option's value must be, in the order they are checked (``init``, ``moves`` and
#: the priors are checked by ``CROSS_RULES``: they depend on other options)
CONSTRAINTS: dict[str, Constraint] = {
    "allocation": one_of(ALLOCATIONS),
    "likelihood": one_of(LIKELIHOODS),
    "algorithm": one_of(ALGORITHMS),
    "covariance_type": one_of(COVARIANCE_TYPES),
    "n_components": POSITIVE_INT,
    "n_init": POSITIVE_INT,
    "max_laps": POSITIVE_INT,
    "batch_size": optional(POSITIVE_INT),
    "alpha": POSITIVE,
    "tol": NON_NEGATIVE,
    "reg_covar": Constraint(
        lambda v: v == "auto" if isinstance(v, str) else NON_NEGATIVE.test(v),
        "a non-negative number or 'auto'",
    ),
    "engine": one_of(ENGINES),
    "kappa": Constraint(lambda v: _is_real(v) and 0.5 < v <= 1, "in (0.5, 1] for soVB to converge"),
    "delay": real(
        1.0,
        text="a finite number >= 1 (the first step size, delay ** -kappa, must not exceed 1)",
    ),
    "map_prior": BOOL,
    "warm_start": BOOL,
    "verbose": Constraint(  # True counts as 1, as in scikit-learn
        lambda v: isinstance(v, numbers.Integral) and v >= 0, "a non-negative integer"
    ),
    "random_state": Constraint(
        _seed,
        "None, an integer in [0, 2**32), a numpy RandomState or a numpy Generator",
    ),
    "checkpoint_dir": optional(instance_of(str | PathLike, "a path (str or os.PathLike) or None")),
    "client": Constraint(
        _client,
        "None, a scheduler address ('tcp://host:port') or a distributed.Client",
    ),
    "backend": one_of(BACKENDS),
    "dtype": optional(one_of(COMPUTE_DTYPES)),
    "mean_precision_prior": optional(POSITIVE),
    "degrees_of_freedom_prior": optional(
        real(
            -np.inf,
            text="a number greater than n_features - 1 (full covariance types) or 0 (the others)",
        )
    ),
    "latent_dim": optional(POSITIVE_INT),
    "missing": one_of(MISSING_MODES),
}


def _check(name: str, value: Any, constraint: Constraint) -> None:
    if not constraint.test(value):
        raise ValueError(f"{name} must be {constraint.text}, got {value!r}")


# ---------------------------------------------------------------------- cross-option rules
def _covariance_needs_gauss(o: FitOptions) -> None:
    if o.likelihood == "hmog":
        return  # covariance_type names the noise structure: _hmog_options
    if o.likelihood != "gauss" and o.covariance_type != "full":
        raise ValueError(
            f"covariance_type={o.covariance_type!r} applies to likelihood='gauss' "
            f"(likelihood={o.likelihood!r} has no covariance choice; leave the default "
            "'full')"
        )


def _local_engine_has_no_client(o: FitOptions) -> None:
    if o.engine == "local" and o.client is not None:
        raise ValueError("engine='local' runs in this process: drop client= or use engine='dask'")


def _kmeans_needs_means(o: FitOptions) -> None:
    if o.algorithm == "kmeans" and o.likelihood == "zero_mean_gauss":
        raise ValueError(
            "algorithm='kmeans' needs components that differ by their means; "
            "zero_mean_gauss components all have mean 0 (use 'cem', 'em' or 'vb')"
        )


def _moves_fit_algorithm(o: FitOptions) -> None:
    check_moves(o.algorithm, o.moves)


def _init(o: FitOptions) -> None:
    init = o.init
    if isinstance(init, str):
        _check("init", init, one_of(INIT_METHODS))
        return
    if isinstance(init, Mapping):
        unknown = sorted(set(init) - set(INIT_KEYS))
        if unknown:
            raise ValueError(
                f"init dict has unknown keys {unknown}; it takes 'weights', 'means', "
                "'covariances' / 'precisions', or 'resp'"
            )
        return
    what = (
        f"init must be one of {INIT_METHODS}, an array of means (n_components, "
        f"n_features) or a dict, got {init!r}"
    )
    try:
        means = np.asarray(init, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(what) from err
    if means.ndim == 0:
        raise ValueError(what)
    if means.ndim != 2 or means.shape[0] != o.n_components:
        raise ValueError(
            f"init means must have shape (n_components={o.n_components}, n_features), "
            f"got {means.shape}"
        )
    if not np.all(np.isfinite(means)):
        raise ValueError("init means must be finite")


def _gauss_priors(o: FitOptions) -> None:
    if o.likelihood != "gauss" and any(getattr(o, p) is not None for p in GAUSS_PRIORS):
        raise ValueError(
            f"{', '.join(GAUSS_PRIORS)} apply to likelihood='gauss'; use obs_prior for "
            f"likelihood={o.likelihood!r}"
        )
    for name in ("mean_prior", "covariance_prior"):
        value = getattr(o, name)
        if value is None:
            continue
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be an array of numbers, got {value!r}") from err
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite, got {value!r}")


def _obs_prior(o: FitOptions) -> None:
    if o.obs_prior is None:
        return
    if not isinstance(o.obs_prior, Mapping):
        raise ValueError(f"obs_prior must be a dict of prior options or None, got {o.obs_prior!r}")
    own = {"inference", "covariance_type", "reg_covar", "map_prior", "latent_dim", "missing"}
    own |= set(GAUSS_PRIORS)
    clash = sorted(set(o.obs_prior) & own)
    if clash:
        raise ValueError(f"obs_prior may not set {clash}: they are MixtureModel's own parameters")
    accepted = prior_options(o.likelihood) - own
    unknown = sorted(set(o.obs_prior) - accepted)
    if unknown:
        raise ValueError(
            f"obs_prior has unknown options {unknown}; likelihood={o.likelihood!r} takes "
            f"{sorted(accepted) or 'none (use mean_prior, ... for gauss)'}"
        )


def _backend_available(o: FitOptions) -> None:
    from mixstream.backend import resolve_backend

    resolve_backend(o.backend)  # RuntimeError when cupy is asked for and cannot run


def prior_options(likelihood: str) -> set[str]:
    """Keyword options of the likelihood's observation model."""
    import inspect

    from mixstream.obs.registry import OBSERVATIONS

    params = inspect.signature(OBSERVATIONS[likelihood].__init__).parameters
    return {
        n
        for n, p in params.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _hmog_options(o: FitOptions) -> None:
    if o.likelihood != "hmog":
        if o.latent_dim is not None:
            raise ValueError(
                f"latent_dim applies to likelihood='hmog', got likelihood={o.likelihood!r}"
            )
        return
    if o.covariance_type not in HMOG_NOISE_STRUCTURES:
        raise ValueError(
            f"covariance_type for likelihood='hmog' names the noise structure Psi and must be "
            f"one of {HMOG_NOISE_STRUCTURES}, got {o.covariance_type!r}"
        )
    if o.backend != "numpy":
        from mixstream.backend import resolve_backend

        if resolve_backend(o.backend) != "numpy":
            raise ValueError("likelihood='hmog' runs on numpy (the CPU) only: use backend='numpy'")


def _missing_likelihood(o: FitOptions) -> None:
    if o.missing == "marginalize" and o.algorithm == "kmeans":
        raise ValueError(
            "missing='marginalize' does not apply to algorithm='kmeans' (Lloyd's distances "
            "need every coordinate); fit algorithm='cem' (hard assignments with the missing "
            "values marginalised) or 'em'"
        )


#: checks that involve several options, run after ``CONSTRAINTS`` in this order
CROSS_RULES: tuple[Callable[[FitOptions], None], ...] = (
    _covariance_needs_gauss,
    _init,
    _local_engine_has_no_client,
    _kmeans_needs_means,
    _moves_fit_algorithm,
    _gauss_priors,
    _obs_prior,
    _backend_available,
    _hmog_options,
    _missing_likelihood,
)


def validate(options: FitOptions) -> None:
    """Check every option: ValueError naming the first bad one (RuntimeError when the backend
    asked for cannot run here)."""
    for name, constraint in CONSTRAINTS.items():
        _check(name, getattr(options, name), constraint)
    for rule in CROSS_RULES:
        rule(options)


def check_init_features(init: Any, n_features: int) -> None:
    """Given initial means must have one column per feature of the data."""
    means = init.get("means") if isinstance(init, Mapping) else init
    if means is None or isinstance(means, str):
        return
    shape = np.shape(means)
    if len(shape) == 2 and shape[1] != n_features:
        raise ValueError(f"init means have {shape[1]} features, but X has {n_features} features")


def check_positive_int(name: str, value: Any) -> None:
    """ValueError unless ``value`` is a positive integer (for arguments of other verbs)."""
    _check(name, value, POSITIVE_INT)


__all__ = [
    "ALLOWED_MOVES",
    "CONSTRAINTS",
    "COVARIANCE_TYPES",
    "CROSS_RULES",
    "DEFAULT_MOVES",
    "MOVES_WHEN_NONE",
    "RUN_DEFAULTS",
    "FitOptions",
    "check_moves",
    "default_moves",
    "inference_of",
    "split_moves",
    "validate",
]


# ---------------------------------------------------------------------- model selection
#: defaults of ``mixstream.select`` (and ``mixstream select``, ``select_flow``)
SELECT_DEFAULTS: dict[str, Any] = {
    "n_components": tuple(range(1, 9)),
    "covariance_types": ("full", "diag", "spherical"),
    "criterion": "bic",
    "holdout": 0.1,
    "n_seeds": 3,
}
#: what each option of ``mixstream.select`` must be
SELECT_CONSTRAINTS: dict[str, Constraint] = {
    "criterion": one_of(SELECTION_CRITERIA),
    "holdout": real(0.0, 0.5, text="a fraction in [0, 0.5]"),
    "n_seeds": POSITIVE_INT,
}


def check_select_options(
    criterion: str, holdout: float, n_seeds: int, n_components: Sequence[int]
) -> None:
    """ValueError naming the first bad option of a model selection."""
    for name, value in (("criterion", criterion), ("holdout", holdout), ("n_seeds", n_seeds)):
        _check(name, value, SELECT_CONSTRAINTS[name])
    for k in n_components:
        _check("n_components", k, POSITIVE_INT)
