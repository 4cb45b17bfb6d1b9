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
LIKELIHOODS = ("gauss", "zero_mean_gauss", "bernoulli", "multinomial")
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
