"""The words of mixstream's options, each defined once.

Every name a user can pass (an algorithm, a move, an engine, a covariance type ...) is listed
here and nowhere else: the registries that map names to implementations (allocations,
observation models, covariance strategies, algorithms, moves), the estimator's validation,
the command line's choices and the flows' parameters all take their names from this module.
It imports nothing from mixstream, so every layer may use it.
"""

from __future__ import annotations

#: fitting algorithms
ALGORITHMS = ("em", "vb", "kmeans", "cem", "sovb", "movb")
#: memoized DP moves
MOVES = ("birth", "merge", "delete")
#: priors over the mixture weights
ALLOCATIONS = ("dp", "finite")
#: observation models
LIKELIHOODS = ("gauss", "zero_mean_gauss", "bernoulli", "multinomial", "hmog")
#: Gaussian covariance structures
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical")
#: scikit-learn's names that mean one of ours
COVARIANCE_ALIASES = {"tied": "tied_full"}
#: where batches are computed
ENGINES = ("auto", "local", "dask")
#: array libraries
BACKENDS = ("numpy", "cupy", "auto")
#: initialisation methods
INIT_METHODS = ("kmeans++", "random", "random_from_data", "kmeans")
#: floating-point types of the local step
COMPUTE_DTYPES = ("float64", "float32")

# ---------------------------------------------------------------------- rules on the words
#: the moves each algorithm may run (algorithms not listed run none): memoized VB all of them;
#: EM (DP MAP) and classification EM merge and delete (memoized EM / CEM). With point estimates
#: every birth raises the objective, so K would grow without bound: only memoized VB births.
ALLOWED_MOVES: dict[str, tuple[str, ...]] = {
    "movb": MOVES,
    "em": ("merge", "delete"),
    "cem": ("merge", "delete"),
}
#: the moves an algorithm runs when none are named (moves=None): all of them for memoized VB
MOVES_WHEN_NONE: dict[str, tuple[str, ...]] = {"movb": MOVES}
#: the moves of memoized VB's moves=None
DEFAULT_MOVES = MOVES_WHEN_NONE["movb"]


def default_moves(algorithm: str | None) -> tuple[str, ...]:
    """The moves of ``moves=None``: all three for "movb", none for every other algorithm."""
    return MOVES_WHEN_NONE.get(algorithm, ())  # type: ignore[arg-type]


#: noise structures (Psi) of the hierarchical mixture of Gaussians, named by covariance_type
HMOG_NOISE_STRUCTURES = ("spherical", "diag", "full")


# ---------------------------------------------------------------------- model selection
#: what chooses among the fitted candidates of ``mixstream.select``
SELECTION_CRITERIA = ("bic", "aic", "heldout", "elbo")


# ---------------------------------------------------------------------- missing values
#: what a fit does with NaN in the data: refuse it (naming the rows) or marginalise it
MISSING_MODES = ("error", "marginalize")
