"""MixtureModel: the scikit-learn face of mixstream.

One template method (``fit``) validates the options, opens the data as a batch source, builds
the Model, initialises it ``n_init`` times and runs the chosen algorithm through an executor;
the fitted attributes are read off the best run.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from os import PathLike, fspath
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning

from mixstream.alloc import ALLOCATIONS
from mixstream.backend import logsumexp_rows, resolve_backend, to_host
from mixstream.data.array_source import ArraySource
from mixstream.fit_run import FitRun, seed_of
from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult, move_warnings
from mixstream.learn.moves import default_moves
from mixstream.model import Model
from mixstream.obs.gauss import ALIASES as COVARIANCE_ALIASES
from mixstream.obs.gauss import COVARIANCE_TYPES as GAUSS_COVARIANCE_TYPES
from mixstream.obs.gauss import canonical_covariance_type, covariance_strategy
from mixstream.obs.registry import OBSERVATIONS
from mixstream.vocabulary import ALGORITHMS, COMPUTE_DTYPES, ENGINES, INIT_METHODS, MOVES

#: the Gaussian covariance types and scikit-learn's aliases, from the obs.gauss registry
COVARIANCE_TYPES = (*GAUSS_COVARIANCE_TYPES, *COVARIANCE_ALIASES)
#: Gaussian prior options, passed through to GaussObs
_GAUSS_PRIORS = (
    "mean_prior",
    "mean_precision_prior",
    "degrees_of_freedom_prior",
    "covariance_prior",
)


class MixtureModel(DensityMixin, BaseEstimator):
    """A finite or Dirichlet-process mixture fitted by EM, VB, K-means or classification EM.

    Parameters
    ----------
    n_components : int
        Number of components (the truncation level for allocation="dp").
    allocation : {"dp", "finite"}
        Stick-breaking Dirichlet process, or a symmetric Dirichlet(alpha / K) on the weights.
    likelihood : {"gauss", "zero_mean_gauss", "bernoulli", "multinomial"}
    covariance_type : {"full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical"}
        Gaussian likelihood only ("tied" means "tied_full").
    algorithm : {"vb", "em", "kmeans", "cem", "sovb", "movb"}
        Full-batch VB, EM (ML / MAP; with allocation="dp", DP MAP), K-means, classification
        EM, stochastic VB, or memoized VB. With ``batch_size`` set, "kmeans" and "cem" run
        their memoized (one batch at a time) variants.
    alpha : float
        Concentration of the weights' prior.
    reg_covar : float
        Added to the diagonal of covariance estimates (as scikit-learn does).
    mean_prior, mean_precision_prior, degrees_of_freedom_prior, covariance_prior
        Conjugate prior of the Gaussian likelihood (scikit-learn's names; weak, scale-aware
        defaults: nu0 = D + 2 (full types) or 2 (diag / spherical types), covariance_prior =
        nu0 * 0.3 * the data's covariance; see ``mixstream.obs.gauss`` and docs/math.md).
    obs_prior : dict, optional
        Prior options of the other likelihoods (see their classes in mixstream.obs).
    map_prior : bool
        EM: maximise the posterior (MAP) rather than the likelihood.
    init : {"kmeans++", "random", "random_from_data", "kmeans"}, array (K, D) or dict
        How to start: a method, given means, or a dict of point parameters
        ("weights", "means", "precisions" / "covariances"; algorithm="em") or "resp" (N, K).
    n_init : int
        Restarts; the run with the highest final objective is kept.
    max_laps : int
        Passes over the data.
    tol : float
        Convergence threshold on the change of the per-point objective.
    batch_size : int, optional
        Rows per batch (rounded to whole Zarr chunks for stores); one batch when None.
    moves : None or tuple (or list) of {"birth", "merge", "delete"}
        DP moves of memoized VB that add, merge and delete components while fitting; "em"
        (DP MAP with ``map_prior=True``) and "cem" take merge and delete, not birth. None (the
        default): all three for algorithm="movb" (as the CLI and the flows), none otherwise;
        ``moves=()`` turns them off.
    kappa, delay : float
        Stochastic VB step sizes rho_t = (t + delay) ** -kappa, t = 0, 1, ...; kappa in
        (0.5, 1] and delay >= 1 (so that no step exceeds 1).
    random_state : int, Generator or None
    backend : {"numpy", "cupy", "auto"}
    dtype : {None, "float32", "float64"}
        Precision of the Gaussian local step's features and GEMMs (statistics are always
        accumulated in float64 and the global step is float64). None: float32 on the GPU when
        the data are float32, float64 otherwise (on the host the float64 step is exact and the
        float32 one only 1.4x faster).
    engine : {"auto", "local", "dask"}
        In-process, or a Dask cluster (``client``, a scheduler address, or a LocalCluster
        started for the fit); "auto" picks Dask when a client is given or a store is large.
    client : distributed.Client or "tcp://host:port", optional
    checkpoint_dir : path, optional
        Checkpoint after every lap; a fit given the same directory again resumes from it.
    warm_start : bool
        A second ``fit`` starts from the fitted parameters of the first (n_init is then 1).
    verbose : int
    """

    def __init__(
        self,
        n_components: int = 10,
        *,
        allocation: str = "dp",
        likelihood: str = "gauss",
        covariance_type: str = "full",
        algorithm: str = "vb",
        alpha: float = 1.0,
        reg_covar: float = 1e-6,
        mean_prior: Any = None,
        mean_precision_prior: float | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        obs_prior: Mapping[str, Any] | None = None,
        map_prior: bool = False,
        init: Any = "kmeans++",
        n_init: int = 1,
        max_laps: int = 100,
        tol: float = 1e-3,
        batch_size: int | None = None,
        moves: Any = None,
        kappa: float = 0.6,
        delay: float = 1.0,
        random_state: Any = None,
        backend: str = "numpy",
        dtype: str | None = None,
        engine: str = "auto",
        client: Any = None,
        checkpoint_dir: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.allocation = allocation
        self.likelihood = likelihood
        self.covariance_type = covariance_type
        self.algorithm = algorithm
        self.alpha = alpha
        self.reg_covar = reg_covar
        self.mean_prior = mean_prior
        self.mean_precision_prior = mean_precision_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.obs_prior = obs_prior
        self.map_prior = map_prior
        self.init = init
        self.n_init = n_init
        self.max_laps = max_laps
        self.tol = tol
        self.batch_size = batch_size
        self.moves = moves
        self.kappa = kappa
        self.delay = delay
        self.random_state = random_state
        self.backend = backend
        self.dtype = dtype
        self.engine = engine
        self.client = client
        self.checkpoint_dir = checkpoint_dir
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False  # dense arrays or Zarr stores; sparse input is refused
        tags.input_tags.allow_nan = False  # NaN / inf rows are refused with their row numbers
        tags.input_tags.positive_only = self.likelihood in ("bernoulli", "multinomial")
        tags.non_deterministic = False  # the same random_state gives the same fit
        return tags

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        """Check every option (called by ``fit`` / ``partial_fit``, never by ``__init__``)."""
        _one_of("allocation", self.allocation, tuple(ALLOCATIONS))
        _one_of("likelihood", self.likelihood, tuple(OBSERVATIONS))
        _one_of("algorithm", self.algorithm, ALGORITHMS)
        _one_of("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        if self.likelihood != "gauss" and self.covariance_type != "full":
            raise ValueError(
                f"covariance_type={self.covariance_type!r} applies to likelihood='gauss' "
                f"(likelihood={self.likelihood!r} has no covariance choice; leave the default "
                "'full')"
            )
        _positive_int("n_components", self.n_components)
        _positive_int("n_init", self.n_init)
        _positive_int("max_laps", self.max_laps)
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)
        _positive_number("alpha", self.alpha)
        for name in ("tol", "reg_covar"):
            v = getattr(self, name)
            if not _is_real(v) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        self._validate_init()
        _one_of("engine", self.engine, ENGINES)
        if self.engine == "local" and self.client is not None:
            raise ValueError(
                "engine='local' runs in this process: drop client= or use engine='dask'"
            )
        if self.algorithm == "kmeans" and self.likelihood == "zero_mean_gauss":
            raise ValueError(
                "algorithm='kmeans' needs components that differ by their means; "
                "zero_mean_gauss components all have mean 0 (use 'cem', 'em' or 'vb')"
            )
        if isinstance(self.moves, str):
            raise ValueError(
                f"moves must be a tuple of names from {MOVES}, such as ({self.moves!r},), got "
                f"the string {self.moves!r}"
            )
        if self.moves is not None and not isinstance(self.moves, list | tuple | set | frozenset):
            raise ValueError(f"moves must be a tuple of names from {MOVES}, got {self.moves!r}")
        moves = self._moves()
        for move in moves:
            _one_of("moves", move, MOVES)
        if moves and self.algorithm not in ("movb", "em", "cem"):
            raise ValueError(
                f"moves={moves} need algorithm='movb' (or 'em' / 'cem' for merge and delete), "
                f"got {self.algorithm!r}"
            )
        if "birth" in moves and self.algorithm != "movb":
            raise ValueError(
                f"birth moves need algorithm='movb', got {self.algorithm!r}: with point "
                "estimates every birth raises the objective, so K would grow without bound"
            )
        if not _is_real(self.kappa) or not 0.5 < self.kappa <= 1:
            raise ValueError(f"kappa must be in (0.5, 1] for soVB to converge, got {self.kappa!r}")
        if not _is_real(self.delay) or not np.isfinite(self.delay) or self.delay < 1:
            raise ValueError(
                "delay must be a finite number >= 1 (the first step size, delay ** -kappa, must "
                f"not exceed 1), got {self.delay!r}"
            )
        for name in ("map_prior", "warm_start"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.verbose, numbers.Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be a non-negative integer, got {self.verbose!r}")
        _check_random_state(self.random_state)
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str | PathLike):
            raise ValueError(
                f"checkpoint_dir must be a path (str or os.PathLike) or None, got "
                f"{self.checkpoint_dir!r}"
            )
        if self.client is not None and not isinstance(self.client, str):
            from distributed import Client

            if not isinstance(self.client, Client):
                raise ValueError(
                    "client must be None, a scheduler address ('tcp://host:port') or a "
                    f"distributed.Client, got {self.client!r}"
                )
        self._validate_priors()
        resolve_backend(self.backend)
        if self.dtype is not None:
            _one_of("dtype", self.dtype, COMPUTE_DTYPES)

    def _validate_init(self) -> None:
        init = self.init
        if isinstance(init, str):
            _one_of("init", init, INIT_METHODS)
        elif isinstance(init, Mapping):
            unknown = sorted(set(init) - {"weights", "means", "covariances", "precisions", "resp"})
            if unknown:
                raise ValueError(
                    f"init dict has unknown keys {unknown}; it takes 'weights', 'means', "
                    "'covariances' / 'precisions', or 'resp'"
                )
        else:
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
            if means.ndim != 2 or means.shape[0] != self.n_components:
                raise ValueError(
                    f"init means must have shape (n_components={self.n_components}, n_features), "
                    f"got {means.shape}"
                )
            if not np.all(np.isfinite(means)):
                raise ValueError("init means must be finite")

    def _check_init_features(self, n_features: int) -> None:
        """Given initial means must have one column per feature of the data."""
        init = self.init
        means = init.get("means") if isinstance(init, Mapping) else init
        if means is None or isinstance(means, str):
            return
        shape = np.shape(means)
        if len(shape) == 2 and shape[1] != n_features:
            raise ValueError(
                f"init means have {shape[1]} features, but X has {n_features} features"
            )

    def _validate_priors(self) -> None:
        if self.likelihood != "gauss" and any(getattr(self, p) is not None for p in _GAUSS_PRIORS):
            raise ValueError(
                f"{', '.join(_GAUSS_PRIORS)} apply to likelihood='gauss'; use obs_prior for "
                f"likelihood={self.likelihood!r}"
            )
        if self.mean_precision_prior is not None:
            _positive_number("mean_precision_prior", self.mean_precision_prior)
        if self.degrees_of_freedom_prior is not None and (
            not _is_real(self.degrees_of_freedom_prior)
            or not np.isfinite(self.degrees_of_freedom_prior)
        ):
            raise ValueError(
                f"degrees_of_freedom_prior must be a number greater than n_features - 1 (full "
                f"covariance types) or 0 (the others), got "
                f"{self.degrees_of_freedom_prior!r}"
            )
        for name in ("mean_prior", "covariance_prior"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{name} must be an array of numbers, got {value!r}") from err
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if self.obs_prior is None:
            return
        if not isinstance(self.obs_prior, Mapping):
            raise ValueError(
                f"obs_prior must be a dict of prior options or None, got {self.obs_prior!r}"
            )
        own = {"inference", "covariance_type", "reg_covar", "map_prior", *_GAUSS_PRIORS}
        clash = sorted(set(self.obs_prior) & own)
        if clash:
            raise ValueError(
                f"obs_prior may not set {clash}: they are MixtureModel's own parameters"
            )
        accepted = _prior_options(self.likelihood) - own
        unknown = sorted(set(self.obs_prior) - accepted)
        if unknown:
            raise ValueError(
                f"obs_prior has unknown options {unknown}; likelihood={self.likelihood!r} takes "
                f"{sorted(accepted) or 'none (use mean_prior, ... for gauss)'}"
            )

    def _moves(self) -> tuple[str, ...]:
        """The moves this fit runs: ``moves``, or for None those of ``default_moves``."""
        if self.moves is None:
            return default_moves(self.algorithm)
        return tuple(self.moves)

    def _inference(self) -> str:
        return "vb" if self.algorithm in ("vb", "sovb", "movb") else "em"

    def _build_model(self) -> Model:
        inference = self._inference()
        alloc = ALLOCATIONS[self.allocation](alpha=self.alpha, inference=inference)
        options = dict(self.obs_prior or {})
        if self.likelihood == "gauss":
            cov = canonical_covariance_type(self.covariance_type)
            options.update(covariance_type=cov, reg_covar=self.reg_covar, map_prior=self.map_prior)
            options["compute_dtype"] = self._compute_dtype()
            options.update({p: getattr(self, p) for p in _GAUSS_PRIORS})
        else:
            options["map_prior"] = self.map_prior
            if self.likelihood == "zero_mean_gauss":
                options["reg_covar"] = self.reg_covar
        obs = OBSERVATIONS[self.likelihood](inference=inference, **options)
        return Model(alloc, obs)

    def _compute_dtype(self) -> str:
        """The local step's precision: ``dtype``, or float32 for float32 data on the GPU."""
        if self.dtype is not None:
            return self.dtype
        on_gpu = self.backend != "numpy" and resolve_backend(self.backend) == "cupy"
        data = getattr(self, "_data_dtype", None)
        return "float32" if on_gpu and data == np.float32 else "float64"

    def _open(self, X: Any, sample_weight: Any = None, reset: bool = True) -> Executor:
        """An executor over X's batches, validated (shape, dtype, finiteness, likelihood)."""
        from mixstream.data.sources import open_source
        from mixstream.engine.factory import make_executor

        source = open_source(X, self.batch_size, sample_weight)
        self._data_dtype = np.dtype(source.dtype)
        if reset:
            self._check_init_features(source.n_features)
            self.n_features_in_ = source.n_features
        elif source.n_features != self.n_features_in_:
            raise ValueError(_feature_mismatch(self, source))
        if isinstance(source, ArraySource):
            self._build_model().obs.validate(source.X, source.name)
        return make_executor(
            source, client=self.client, backend=resolve_backend(self.backend), engine=self.engine
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MixtureModel:
        """Fit the mixture to X.

        Parameters
        ----------
        X : array (n_samples, n_features), dask array, zarr.Array, or a Zarr store's path / URL
        y : ignored
        sample_weight : array (n_samples,), optional
            Non-negative weights; an integer weight counts like repeated rows.
        """
        self._validate_params()
        with self._open(X, sample_weight) as executor:
            n_rows = executor.source.n_rows
            if n_rows < self.n_components and self.allocation == "finite":
                raise ValueError(
                    f"Expected n_samples >= n_components, got n_components={self.n_components}, "
                    f"n_samples={n_rows}"
                )
            run = self.start_fit(executor).run()
            self.model_, result = run.finish()
        for message in move_warnings(
            result.history, self.allocation, self._moves(), self.tol, result.converged
        ):
            warnings.warn(f"{type(self).__name__}: {message}", UserWarning, stacklevel=2)
        if not result.converged and self.algorithm != "kmeans":
            warnings.warn(
                f"{type(self).__name__} did not converge in max_laps={self.max_laps} laps "
                f"(tol={self.tol}); raise max_laps or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_fitted(result)
        return self

    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> MixtureModel:
        """One stochastic step on the batch X: learn from a stream, one batch per call.

        The first call (on an unfitted estimator) initialises the components from this batch;
        each call then amplifies the batch's statistics to the size of the stream seen so far
        and moves the parameters a step rho_t = (t + delay) ** -kappa towards them (stochastic
        VB for algorithm="vb"/"sovb"/"movb", stepwise EM otherwise). After ``fit``, steps
        continue from the fitted model.

        Parameters
        ----------
        X : array (n_samples, n_features)
        y : ignored
        sample_weight : array (n_samples,), optional
        """
        import time

        from mixstream.data.sources import open_source
        from mixstream.learn.history import lap_record
        from mixstream.learn.sovb import SoVBState, sovb_step

        self._validate_params()
        if not hasattr(self, "model_"):
            rng = np.random.default_rng(seed_of(self.random_state))
            with self._open(X, sample_weight) as executor:
                model = self._build_model()
                from mixstream.learn.init import initialize

                init = self.init
                if isinstance(init, list | tuple):  # array-like means, as fit takes them
                    init = np.asarray(init, dtype=np.float64)
                initialize(model, executor, self.n_components, init, rng)
            self.model_ = model
            self._set_fitted(FitResult())
        source = open_source(X, sample_weight=sample_weight)
        if not isinstance(source, ArraySource):
            raise ValueError("partial_fit takes in-memory batches; use fit() for stores")
        if source.n_features != self.n_features_in_:
            raise ValueError(_feature_mismatch(self, source))
        self.model_.obs.validate(source.X, "X")
        state = getattr(self, "stream_state_", None)
        if state is None:
            # a soVB fit records its global step count; after any other fit, count laps
            last = self.history_[-1] if self.history_ else {}
            t = int(last.get("t", self.n_iter_))
            state = SoVBState(t=t, kappa=self.kappa, delay=self.delay)
        t0 = time.perf_counter()
        SS = sovb_step(self.model_, source.X, source.sample_weight, state)
        self.stream_state_ = state
        elbo = self.model_.elbo(SS) / SS.scalars["n_rows"]
        history = [
            *self.history_,
            lap_record(state.t, elbo, self.model_.K, time.perf_counter() - t0),
        ]
        self._set_fitted(FitResult(elbo, False, state.t, history))
        return self

    def start_fit(self, executor: Executor, on_lap: Any = None) -> FitRun:
        """A FitRun over ``executor``'s data, resumed from ``checkpoint_dir`` when one exists.

        For drivers that step lap by lap (the Prefect flows); ``fit`` uses it too.
        """
        return FitRun(
            self, executor, self.checkpoint_dir, self._fingerprint(executor), on_lap
        ).start()

    def _fingerprint(self, executor: Executor) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed by this fit."""
        source = executor.source
        params = {
            k: v
            for k, v in self.get_params().items()
            if k not in (*_UNSTORED_PARAMS, "max_laps", "verbose", "checkpoint_dir", "engine")
        }
        from mixstream.io import _jsonable

        if not isinstance(params["random_state"], int | type(None)):
            params["random_state"] = type(params["random_state"]).__name__
        params = {k: _jsonable(v) for k, v in params.items()}
        return {
            "n_rows": source.n_rows,
            "n_features": source.n_features,
            "batches": [list(b) for b in source.batches],
            **{f"param {k}": v for k, v in params.items()},
        }

    def _set_fitted(self, result: FitResult) -> None:
        model = self.model_
        w = np.asarray(model.alloc.expected_weights(), dtype=np.float64)
        self.weights_ = w / w.sum()
        for name, value in model.obs.point_estimates().items():
            setattr(self, f"{name}_", value)
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = [h["elbo"] for h in result.history]
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.n_components_ = int(model.K)

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "model_")

    def _log_resp(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """log normaliser (N,) and log responsibilities (N, K) of in-memory rows."""
        source = self._checked_rows(X)
        return logsumexp_rows(self.model_.log_prob(source.X))

    def _checked_rows(self, X: Any) -> ArraySource:
        """In-memory rows of the fitted model's width and domain, as an ArraySource."""
        from mixstream.data.sources import open_source

        self._check_fitted()
        source = open_source(X)
        if not isinstance(source, ArraySource):
            raise ValueError(
                f"{source.name} is a store: use predict_store(...) to write labels to Zarr"
            )
        if source.n_features != self.n_features_in_:
            raise ValueError(_feature_mismatch(self, source))
        self.model_.obs.validate(source.X, "X")
        return source

    def predict_proba(self, X: Any, out: Any = None) -> Any:
        """Responsibilities of the components for each row, shape (n_samples, K).

        For a store, give ``out``: the Zarr group written there gets an array "proba" (and
        "labels", "log_likelihood"), chunk by chunk on the workers; the zarr.Array is returned.
        """
        if out is not None:
            return self.score_store(X, out, proba=True)["group"]["proba"]
        _, log_resp = self._log_resp(X)
        return np.exp(log_resp)

    def predict(self, X: Any, out: Any = None) -> Any:
        """Most probable component of each row, shape (n_samples,).

        For a store, give ``out``: labels are written to the Zarr group there (see
        ``score_store``) and its "labels" zarr.Array is returned.
        """
        if out is not None:
            return self.score_store(X, out)["group"]["labels"]
        _, log_resp = self._log_resp(X)
        return log_resp.argmax(axis=1)

    def score_store(self, X: Any, out: Any, proba: bool = False) -> dict[str, Any]:
        """Labels, per-row log-likelihoods (and responsibilities) of a store, written to Zarr.

        Parameters
        ----------
        X : Zarr store path / URL, zarr.Array, dask array or array
        out : path of a new Zarr group (refused if it exists); written atomically
        proba : also write the (n_samples, K) responsibilities

        Returns
        -------
        dict with "path", "group" (the opened zarr.Group), "mean_log_likelihood", "counts".
        """
        import zarr

        from mixstream.engine.scoring import score_to_zarr

        self._check_fitted()
        with self._open(X, reset=False) as executor:
            result = score_to_zarr(self.model_, executor, out, proba=proba)
        result["group"] = zarr.open_group(result["path"], mode="r")
        return result

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def score_samples(self, X: Any) -> np.ndarray:
        """The fitted model's log-density of each row, shape (n_samples,).

        EM: log sum_k pi_k p(x | theta_k). VB: the posterior predictive log sum_k E[pi_k]
        p(x | data, k) (Gaussian likelihoods: Student-t densities, see docs/math.md); for
        likelihoods without a closed form, the local step's normaliser with expected log
        weights and log-likelihoods (what scikit-learn's BayesianGaussianMixture reports,
        a lower bound of the predictive density).
        """
        source = self._checked_rows(X)
        return to_host(self.model_.log_density(source.X))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of ``score_samples`` over the rows of X (a store is scored batch by batch)."""
        from mixstream.data.sources import open_source
        from mixstream.learn.executor import score_batch

        source = open_source(X)
        if isinstance(source, ArraySource):
            return float(self.score_samples(X).mean())
        self._check_fitted()
        with self._open(X, reset=False) as executor:
            SS = executor.map_sum(score_batch, self.model_)
        return SS.scalars["log_norm"] / SS.scalars["n_rows"]

    # ------------------------------------------------------------------ model selection
    def _n_parameters(self) -> int:
        self._check_fitted()
        return int(self.model_.obs.n_free_params() + self.model_.alloc.n_free_params())

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better), as scikit-learn defines it."""
        n = np.asarray(X).shape[0]
        return float(-2 * self.score(X) * n + self._n_parameters() * np.log(n))

    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        n = np.asarray(X).shape[0]
        return float(-2 * self.score(X) * n + 2 * self._n_parameters())

    def get_active_cluster_probs(self) -> np.ndarray:
        """Expected weights of the represented components, shape (n_components_,); for a DP
        these sum to less than 1, the rest belonging to components not yet represented."""
        self._check_fitted()
        return np.asarray(self.model_.alloc.get_active_cluster_probs())

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n_samples: int = 1,
        component: int | None = None,
        confidence: float | None = None,
        std_range: tuple[float, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the fitted mixture.

        Parameters
        ----------
        n_samples : int
        component : int, optional
            Draw only from this component.
        confidence : float in (0, 1], optional
            Gaussian only: every draw lies inside the ellipsoid holding this probability mass
            of its component (Mahalanobis radius r with chi2_D(r^2) <= confidence).
        std_range : (a, b), optional
            Gaussian only: every draw's Mahalanobis distance to its component mean is in [a, b)
            (outlier generation).

        Returns
        -------
        X : array (n_samples, n_features)
        labels : array (n_samples,) of component indices
        """
        self._check_fitted()
        _positive_int("n_samples", n_samples)
        rng = np.random.default_rng(seed_of(self.random_state))
        K = self.model_.K
        if component is None:
            counts = rng.multinomial(n_samples, self.weights_)
        else:
            if not isinstance(component, numbers.Integral) or not 0 <= component < K:
                raise ValueError(f"component must be an integer in [0, {K}), got {component!r}")
            counts = np.zeros(K, dtype=int)
            counts[component] = n_samples
        labels = np.repeat(np.arange(K), counts)
        if confidence is None and std_range is None:
            parts = [self.model_.obs.sample(k, int(c), rng) for k, c in enumerate(counts) if c]
            return np.concatenate(parts), labels
        lo, hi = _radius_bounds(confidence, std_range, self.n_features_in_)
        means, chols = self._gaussian_factors()
        parts = []
        for k, c in enumerate(counts):
            if c:
                parts.append(
                    means[k] + _shell_draws(rng, int(c), lo, hi, means.shape[1]) @ chols[k].T
                )
        return np.concatenate(parts), labels

    def _gaussian_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """Component means (K, D) and lower Cholesky factors of the covariances (K, D, D).

        The layout of ``covariances_`` is asked of the fitted observation model's covariance
        structure, never guessed from its shape (with K == D a diag (K, D) array has the shape
        of a tied full (D, D) one, and a spherical (K,) that of a tied diag (D,)).
        """
        obs = self.model_.obs
        likelihood = getattr(obs, "likelihood", self.likelihood)
        if likelihood == "zero_mean_gauss":
            structure = covariance_strategy("full")  # every zero-mean component's covariance
        elif likelihood == "gauss":
            structure = obs.covariance_structure
        else:
            raise ValueError(
                f"confidence and std_range apply to Gaussian likelihoods only, not "
                f"likelihood={likelihood!r}"
            )
        K, D = self.model_.K, self.n_features_in_
        full = structure.to_full(self.covariances_, K, D)
        means = np.asarray(getattr(self, "means_", np.zeros((K, D))), dtype=np.float64)
        return means, np.linalg.cholesky(full)

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> Any:
        """Write the fitted model to ``path`` (arrays + JSON; no pickle). Returns the path."""
        from mixstream.io import write_model_file

        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k not in _UNSTORED_PARAMS}
        if not isinstance(params.get("random_state"), int | type(None)):
            params["random_state"] = None
        if isinstance(params.get("checkpoint_dir"), PathLike):
            params["checkpoint_dir"] = fspath(params["checkpoint_dir"])
        meta = {
            "class": type(self).__name__,
            "params": params,
            "fitted": {
                "lower_bound_": self.lower_bound_,
                "converged_": self.converged_,
                "n_iter_": self.n_iter_,
                "n_features_in_": self.n_features_in_,
                "history_": self.history_,
            },
        }
        return write_model_file(path, meta, self.model_.get_state())

    @classmethod
    def load(cls, path: Any) -> MixtureModel:
        """Read a model written by ``save``; refuses damaged, tampered or newer-format files."""
        from mixstream.io import ModelFileError, read_model_file

        meta, arrays = read_model_file(path)
        if meta.get("class") != cls.__name__:
            raise ModelFileError(f"{path} holds a {meta.get('class')!r}, not a {cls.__name__}")
        try:
            params = dict(meta["params"])
            if params.get("moves") is not None:  # JSON made the tuple a list
                params["moves"] = tuple(params["moves"])
            est = cls(**params)
            est._validate_params()
            model = est._build_model()
            model.set_state(arrays)
            fitted = meta["fitted"]
            est.model_ = model
            est.n_features_in_ = int(fitted["n_features_in_"])
            result = FitResult(
                fitted["lower_bound_"], fitted["converged_"], fitted["n_iter_"], fitted["history_"]
            )
            est._set_fitted(result)
            _check_loaded_shapes(est)
        except ModelFileError:
            raise
        except Exception as err:
            raise ModelFileError(
                f"{path}: the model's metadata or arrays are inconsistent ({err})"
            ) from err
        return est


#: parameters that describe where a fit ran, not the model; not stored in model files
_UNSTORED_PARAMS = ("client",)


def _check_loaded_shapes(est: MixtureModel) -> None:
    K, D = est.model_.K, est.n_features_in_
    means = getattr(est, "means_", None)
    if means is not None and np.asarray(means).shape != (K, D):
        raise ValueError(f"means have shape {np.asarray(means).shape}, expected {(K, D)}")
    if est.weights_.shape != (K,):
        raise ValueError(f"weights have shape {est.weights_.shape}, expected {(K,)}")


def _radius_bounds(
    confidence: float | None, std_range: tuple[float, float] | None, D: int
) -> tuple[float, float]:
    """Bounds [lo, hi) on chi2_D's CDF of the squared Mahalanobis radius of a draw."""
    from scipy.stats import chi2

    if confidence is not None and std_range is not None:
        raise ValueError("give confidence or std_range, not both")
    if confidence is not None:
        if not 0 < confidence <= 1:
            raise ValueError(f"confidence must be in (0, 1], got {confidence!r}")
        return 0.0, float(confidence)
    a, b = (float(v) for v in std_range)
    if not 0 <= a < b:
        raise ValueError(f"std_range must be (a, b) with 0 <= a < b, got {std_range!r}")
    return float(chi2.cdf(a * a, D)), float(chi2.cdf(b * b, D))


def _shell_draws(rng: np.random.Generator, n: int, lo: float, hi: float, D: int) -> np.ndarray:
    """n standard-normal draws (n, D) whose squared radius has chi2_D CDF in [lo, hi).

    Radius by the inverse chi2 CDF, direction uniform on the sphere: exact, no rejection.
    """
    from scipy.stats import chi2

    r = np.sqrt(chi2.ppf(rng.uniform(lo, hi, size=n), D))
    z = rng.normal(size=(n, D))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z * r[:, None]


def _feature_mismatch(est: MixtureModel, source: Any) -> str:
    # scikit-learn's wording, which its estimator checks look for
    return (
        f"X has {source.n_features} features, but {type(est).__name__} is expecting "
        f"{est.n_features_in_} features as input ({source.name})"
    )


def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _is_real(value: Any) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _positive_number(name: str, value: Any) -> None:
    if not _is_real(value) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_random_state(random_state: Any) -> None:
    ok = random_state is None or isinstance(
        random_state, np.random.RandomState | np.random.Generator
    )
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        ok = 0 <= random_state < 2**32
    if not ok:
        raise ValueError(
            "random_state must be None, an integer in [0, 2**32), a numpy RandomState or a "
            f"numpy Generator, got {random_state!r}"
        )


def _prior_options(likelihood: str) -> set[str]:
    """Keyword options of the likelihood's observation model."""
    import inspect

    params = inspect.signature(OBSERVATIONS[likelihood].__init__).parameters
    return {
        n
        for n, p in params.items()
        if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


__all__ = ["MixtureModel"]
