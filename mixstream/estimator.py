"""MixtureModel: the scikit-learn face of mixstream.

One template method (``fit``) turns the parameters into validated ``FitOptions``
(mixstream.options), opens the data as a batch source, and runs a ``FitRun`` (mixstream.fit_run)
over it: the Model is built by ``mixstream.build``, initialised ``n_init`` times and fitted by
the chosen algorithm through an executor; the fitted attributes are read off the best run
(mixstream.fitted). Sampling lives in mixstream.sampling.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if

from mixstream.backend import logsumexp_rows, resolve_backend, to_host
from mixstream.build import build_model
from mixstream.data.array_source import ArraySource
from mixstream.data.validate import check_fit_data
from mixstream.fit_run import FitRun, seed_of
from mixstream.fitted import fingerprint, fitted_attributes, read_estimator, write_estimator
from mixstream.labelled import checked_input, fit_input, labelled_input, labelled_rows
from mixstream.learn.executor import Executor
from mixstream.learn.history import FitResult, move_warnings
from mixstream.options import COVARIANCE_TYPES as COVARIANCE_TYPES  # re-exported
from mixstream.options import FitOptions, check_init_features
from mixstream.streamed import is_lazy, stream_log_likelihood, stream_rows, unweighted
from mixstream.vocabulary import ALGORITHMS as ALGORITHMS  # re-exported
from mixstream.vocabulary import MOVES as MOVES  # re-exported


def _is_hmog(est: Any) -> bool:
    return est.likelihood == "hmog"


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
    reg_covar : float or "auto", default "auto"
        Added to the diagonal of covariance estimates (as scikit-learn does). "auto": 1e-6
        (scikit-learn's default), or, when every non-constant feature's values lie on a grid
        (pixel intensities, counts, ratings), the rounding variance step**2 / 12 of the finest
        grid, so that no cluster collapses onto rows sharing one value (docs/math.md §4).
    mean_prior, mean_precision_prior, degrees_of_freedom_prior, covariance_prior
        Conjugate prior of the Gaussian likelihood (scikit-learn's names; weak, scale-aware
        defaults: nu0 = D + 2 (full types) or 2 (diag / spherical types), covariance_prior =
        nu0 * 0.3 * the data's covariance, whose scale VB fits to the components (empirical
        Bayes) for diag / spherical types when it is not given; see ``mixstream.obs.gauss`` and
        docs/math.md §4).
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
        accumulated in float64 and the global step is float64). None: the data's own, float32
        for float32 data and float64 for anything else (as scikit-learn's GaussianMixture).
        On the host float32 runs an EM iteration 1.5-2x faster and never widens a float32
        batch; the fit agrees with the float64 fit to float32 rounding (the log-likelihood to
        about 1e-5 relative).
    engine : {"auto", "local", "dask"}
        In-process, or a Dask cluster (``client``, a scheduler address, or a LocalCluster
        started for the fit); "auto" picks Dask when a client is given or a store is large.
    client : distributed.Client or "tcp://host:port", optional
    checkpoint_dir : path, optional
        Checkpoint after every lap; a fit given the same directory again resumes from it.
    warm_start : bool
        A second ``fit`` starts from the fitted parameters of the first (n_init is then 1).
    verbose : int
    latent_dim : int, optional
        likelihood="hmog" only (and required there): the dimension d of the latent space,
        1 <= d < n_features; ``covariance_type`` then names the noise structure Psi
        ("spherical", "diag" or "full") and the latent components have full covariances.
    missing : {"error", "marginalize"}
        NaN in X: "error" refuses it, naming the rows; "marginalize" treats NaN as a missing
        value and integrates it out (not imputed): the local step uses each row's observed
        values, the statistics the expected values of the missing ones (docs/math.md,
        "Missing values"). Also for predict / score_samples / score. A row with every value
        missing, and inf, are refused either way.
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
        reg_covar: float | str = "auto",
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
        latent_dim: int | None = None,
        missing: str = "error",
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
        self.latent_dim = latent_dim
        self.missing = missing

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False  # dense arrays or Zarr stores; sparse input is refused
        # NaN / inf rows are refused with their row numbers, unless NaN is marginalised
        tags.input_tags.allow_nan = self.missing == "marginalize"
        tags.input_tags.positive_only = self.likelihood in ("bernoulli", "multinomial")
        tags.non_deterministic = False  # the same random_state gives the same fit
        return tags

    # ------------------------------------------------------------------ options
    def _params(self) -> FitOptions:
        """The parameters as FitOptions, unchecked."""
        return FitOptions(**{name: getattr(self, name) for name in FitOptions.names()})

    def _validate_params(self) -> FitOptions:
        """Check every option (by ``fit`` / ``partial_fit``, never by ``__init__``); the
        validated FitOptions (``mixstream.options.validate`` holds the rules)."""
        return self._params().validated()

    def _moves(self) -> tuple[str, ...]:
        """The moves this fit runs: ``moves``, or for None the algorithm's default moves."""
        return self._params().run_moves

    def _open(
        self, X: Any, sample_weight: Any = None, options: FitOptions | None = None
    ) -> Executor:
        """An executor over X's batches, validated (shape, dtype, finiteness, likelihood).

        With a fit's ``options``, X becomes the data the estimator is fitted to; without,
        X must have the fitted model's features.
        """
        from mixstream.data.sources import open_source
        from mixstream.engine.factory import make_executor

        kw = unweighted(X) if options is None else {}  # a store's weights are for fit only
        source = open_source(X, self.batch_size, sample_weight, missing=self.missing, **kw)
        if options is not None:
            check_init_features(options.init, source.n_features)
            self.n_features_in_ = source.n_features
            if isinstance(source, ArraySource):
                build_model(options, source.dtype).obs.validate(source.X, source.name)
        elif source.n_features != self.n_features_in_:
            raise ValueError(_feature_mismatch(self, source))
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
        options = self._validate_params()
        X = fit_input(self, X)
        with self._open(X, sample_weight, options) as executor:
            run = self._start(executor, options).run()
            self.model_, result = run.finish()
        for message in move_warnings(
            result.history, options.allocation, options.run_moves, options.tol, result.converged
        ):
            warnings.warn(f"{type(self).__name__}: {message}", UserWarning, stacklevel=2)
        if not result.converged and options.algorithm != "kmeans":
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

        options = self._validate_params()
        X = checked_input(self, X)[0] if hasattr(self, "model_") else fit_input(self, X)
        if not hasattr(self, "model_"):
            from mixstream.learn.init import initialize

            rng = np.random.default_rng(seed_of(options.random_state))
            with self._open(X, sample_weight, options) as executor:
                model = build_model(options, executor.source.dtype)
                init = options.init
                if isinstance(init, list | tuple):  # array-like means, as fit takes them
                    init = np.asarray(init, dtype=np.float64)
                initialize(model, executor, options.n_components, init, rng)
            self.model_ = model
            self._set_fitted(FitResult())
        source = open_source(X, sample_weight=sample_weight, missing=self.missing)
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
            state = SoVBState(t=t, kappa=options.kappa, delay=options.delay)
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

        For drivers that step lap by lap (the application layer, the Prefect flows); ``fit``
        uses it too. Copy its result here with ``_set_fitted`` (``model_`` first).
        """
        return self._start(executor, self._validate_params(), on_lap)

    def _start(self, executor: Executor, options: FitOptions, on_lap: Any = None) -> FitRun:
        warm = getattr(self, "model_", None) if options.warm_start else None
        if warm is None:  # degenerate data: one set of checks for every front end
            start = check_fit_data(executor.source, options.n_components, options.k_grows)
            options = dataclasses.replace(options, n_components=start)
        params = {name: getattr(options, name) for name in sorted(FitOptions.names())}
        return FitRun(
            options,
            executor,
            options.checkpoint_dir,
            fingerprint(params, executor.source),
            on_lap,
            build_model=partial(build_model, options, executor.source.dtype),
            warm_model=warm,
            owner=self,
        ).start()

    def _set_fitted(self, result: FitResult) -> None:
        """The fitted attributes of ``model_`` and ``result`` (mixstream.fitted)."""
        for name, value in fitted_attributes(self.model_, result).items():
            setattr(self, name, value)

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
        source = open_source(X, missing=self.missing)
        if not isinstance(source, ArraySource):
            raise ValueError(
                f"{source.name} is a store: use predict_store(...) to write labels to Zarr"
            )
        if source.n_features != self.n_features_in_:
            raise ValueError(_feature_mismatch(self, source))
        self.model_.obs.validate(source.X, "X")
        return source

    @labelled_rows
    def predict_proba(self, X: Any, out: Any = None) -> Any:
        """Responsibilities of the components for each row, shape (n_samples, K).

        For a store, give ``out``: the Zarr group written there gets an array "proba" (and
        "labels", "log_likelihood"), chunk by chunk on the workers; the zarr.Array is returned.
        """
        if out is not None:
            return self.score_store(X, out, proba=True)["group"]["proba"]
        if is_lazy(X):
            return stream_rows(self, X, "proba")
        _, log_resp = self._log_resp(X)
        return np.exp(log_resp)

    @labelled_rows
    def predict(self, X: Any, out: Any = None) -> Any:
        """Most probable component of each row, shape (n_samples,).

        For a store, give ``out``: labels are written to the Zarr group there (see
        ``score_store``) and its "labels" zarr.Array is returned.
        """
        if out is not None:
            return self.score_store(X, out)["group"]["labels"]
        if is_lazy(X):
            return stream_rows(self, X, "labels")
        _, log_resp = self._log_resp(X)
        return log_resp.argmax(axis=1)

    @labelled_input
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
        with self._open(X) as executor:
            result = score_to_zarr(self.model_, executor, out, proba=proba)
        result["group"] = zarr.open_group(result["path"], mode="r")
        return result

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        return self.fit(X, sample_weight=sample_weight).predict(X)

    @labelled_rows
    def score_samples(self, X: Any) -> np.ndarray:
        """The fitted model's log-density of each row, shape (n_samples,).

        EM: log sum_k pi_k p(x | theta_k). VB: the posterior predictive log sum_k E[pi_k]
        p(x | data, k) (Gaussian likelihoods: Student-t densities, see docs/math.md); for
        likelihoods without a closed form, the local step's normaliser with expected log
        weights and log-likelihoods (what scikit-learn's BayesianGaussianMixture reports,
        a lower bound of the predictive density).
        """
        if is_lazy(X):
            return stream_rows(self, X, "log_density")
        source = self._checked_rows(X)
        return to_host(self.model_.log_density(source.X))

    @labelled_input
    def score(self, X: Any, y: Any = None) -> float:
        """Mean of ``score_samples`` over the rows of X (a store is scored batch by batch)."""
        total, n = self._log_likelihood(X)
        return total / n

    def _log_likelihood(self, X: Any) -> tuple[float, int]:
        """Summed log-density of the rows of X and their number (stores: streamed)."""
        if is_lazy(X):
            return stream_log_likelihood(self, X)
        log_density = self.score_samples(X)
        return float(log_density.sum()), int(log_density.shape[0])

    # ------------------------------------------------------------------ model selection
    def _n_parameters(self) -> int:
        self._check_fitted()
        return int(self.model_.obs.n_free_params() + self.model_.alloc.n_free_params())

    @labelled_input
    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better), as scikit-learn defines it."""
        total, n = self._log_likelihood(X)
        return float(-2 * total + self._n_parameters() * np.log(n))

    @labelled_input
    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        total, _ = self._log_likelihood(X)
        return float(-2 * total + 2 * self._n_parameters())

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
        from mixstream.sampling import sample

        self._check_fitted()
        return sample(
            self.model_,
            self.weights_,
            np.random.default_rng(seed_of(self.random_state)),
            self.n_features_in_,
            n_samples,
            component,
            confidence,
            std_range,
            covariances=getattr(self, "covariances_", None),
            means=getattr(self, "means_", None),
            likelihood=self.likelihood,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> Any:
        """Write the fitted model to ``path`` (arrays + JSON; no pickle). Returns the path."""
        self._check_fitted()
        return write_estimator(self, path)

    @classmethod
    def load(cls, path: Any) -> MixtureModel:
        """Read a model written by ``save``; refuses damaged, tampered or newer-format files."""
        return read_estimator(cls, path)

    # ------------------------------------------------------------------ latent space (hmog)
    # available_if: only an HMoG estimator has these (scikit-learn would otherwise take every
    # MixtureModel for a transformer)
    def _hmog(self) -> Any:
        self._check_fitted()
        if self.likelihood != "hmog":
            raise AttributeError(
                f"transform / inverse_transform need likelihood='hmog', got {self.likelihood!r}"
            )
        return self.model_.obs

    @available_if(_is_hmog)
    def transform(self, X: Any) -> np.ndarray:
        """likelihood="hmog": the posterior mean E[y | x] of the latent factors, the components
        marginalised (as scikit-learn's FactorAnalysis.transform), shape (n_samples, d)."""
        obs = self._hmog()
        source = self._checked_rows(X)
        _, log_resp = logsumexp_rows(self.model_.log_prob(source.X))
        return obs.latent_means(source.X, np.exp(log_resp))

    @available_if(_is_hmog)
    def inverse_transform(self, Y: Any) -> np.ndarray:
        """likelihood="hmog": the mean W y + mu of x given latent factors Y (n, d)."""
        obs = self._hmog()
        Y = np.asarray(Y, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[1] != obs.latent_dim:
            raise ValueError(f"Y must have shape (n, latent_dim={obs.latent_dim}), got {Y.shape}")
        return Y @ obs.W.T + (obs.shift + obs.mu)


def _feature_mismatch(est: MixtureModel, source: Any) -> str:
    # scikit-learn's wording, which its estimator checks look for
    return (
        f"X has {source.n_features} features, but {type(est).__name__} is expecting "
        f"{est.n_features_in_} features as input ({source.name})"
    )


__all__ = ["MixtureModel"]
