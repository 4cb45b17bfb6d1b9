"""Model selection's steps: the shared k-means starts, one candidate's fit, the scoring pass.

Every candidate of a grid is fitted through the engine (``FitRun``, the one lap driver) on the
training rows of a ``mixstream.data.holdout.SplitSource``; candidates with the same K start
from the same k-means centres. One last pass over the data (``score_candidates``) computes,
for every candidate at once, the log-likelihood of the training rows (for BIC and AIC) and of
the held-out rows, batch by batch on the workers: only sums come back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixstream.suffstats import SuffStats

#: rows of the training data read for the starts (the priors' defaults, the first step)
SAMPLE_ROWS = 200_000
#: rows of that sample the k-means runs see
KMEANS_ROWS = 20_000


@dataclass(frozen=True)
class Candidate:
    """One model of the grid."""

    n_components: int
    covariance_type: str = "full"
    likelihood: str = "gauss"

    @property
    def label(self) -> str:
        kind = self.covariance_type if self.likelihood == "gauss" else self.likelihood
        return f"K={self.n_components} {kind}"


@dataclass
class SharedStart:
    """What every candidate starts from: one sample of the training rows (distinct rows, their
    weights, and the factor from its weight to the data's) and the k-means centres of each K."""

    X: np.ndarray
    w: np.ndarray
    scale: float
    centers: dict[int, np.ndarray]


def shared_start(
    executor: Any, ks: Sequence[int], n_seeds: int, rng: np.random.Generator
) -> SharedStart:
    """Read a sample of the executor's rows once; for each K, the centres (K, D) of the best
    (least inertia) of ``n_seeds`` k-means runs (k-means++ then Lloyd) on up to
    ``KMEANS_ROWS`` of its rows."""
    from mixstream.learn.executor import RowsExecutor
    from mixstream.learn.init import canonical_rows, draw_sample
    from mixstream.learn.kmeans import kmeans_plusplus, lloyd

    X, w, scale = draw_sample(executor, SAMPLE_ROWS, rng)
    X, w = canonical_rows(np.asarray(X, dtype=np.float64), w)
    Xk, wk = X, w
    if X.shape[0] > KMEANS_ROWS:
        sub = np.sort(rng.choice(X.shape[0], KMEANS_ROWS, replace=False))
        Xk, wk = X[sub], w[sub]
    rows = RowsExecutor(Xk, sample_weight=wk)
    centers = {}
    for K in sorted(set(ks)):
        best: tuple[float, np.ndarray] | None = None
        for _ in range(n_seeds):
            start = kmeans_plusplus(Xk, min(K, Xk.shape[0]), rng, wk)
            found, inertia, _ = lloyd(rows, start, max_iter=100)
            if best is None or inertia < best[0]:
                best = (inertia, found)
        centers[K] = best[1]
    return SharedStart(X, w, scale, centers)


def start_model(options: Any, dtype: Any, start: SharedStart, rng: np.random.Generator) -> Any:
    """A model of ``options`` initialised as ``mixstream.learn.init.initialize`` does with
    given means, from the shared sample: its priors' defaults from the sample, and a first
    global step from the sample's rows assigned to the nearest k-means centre (statistics
    scaled to the data's weight)."""
    from mixstream.build import build_model
    from mixstream.learn.init import init_responsibilities

    model = build_model(options, dtype)
    K = options.n_components
    model.obs.set_prior_from_data(start.X, weights=start.w)
    model.uids = model.new_uids(K)
    resp = init_responsibilities(start.X, K, start.centers[K], rng, start.w)
    SS = model.summarize(start.X, {"resp": resp}, sample_weight=start.w)
    model.global_step(SS.scale(start.scale) if start.scale != 1.0 else SS)
    return model


def run_fit(est: Any, executor: Any, warm: bool = False) -> Any:
    """Run ``est``'s fit over ``executor``'s rows to its end and set its fitted attributes
    (``warm``: from its ``model_``, FitRun's warm start). Returns the FitResult."""
    est.warm_start = warm
    try:
        run = est.start_fit(executor).run()
        est.model_, result = run.finish()
    finally:
        est.warm_start = False
    est._set_fitted(result)
    return result


def fit_candidate(
    executor: Any, candidate: Candidate, start: SharedStart, options: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """Fit ``candidate`` over ``executor``'s rows from the shared start.

    Returns
    -------
    (MixtureModel, dict)
        The fitted estimator and its facts: lower_bound (per point), converged, laps, seconds.
    """
    from mixstream.estimator import MixtureModel

    t0 = time.perf_counter()
    est = MixtureModel(
        n_components=candidate.n_components,
        covariance_type=candidate.covariance_type,
        likelihood=candidate.likelihood,
        init="kmeans",
        **options,
    )
    fit_options = est._validate_params()
    rng = np.random.default_rng(fit_options.random_state)
    est.n_features_in_ = executor.source.n_features
    # the run continues from the started model (FitRun's warm start: no second read)
    est.model_ = start_model(fit_options, executor.source.dtype, start, rng)
    result = run_fit(est, executor, warm=True)
    return est, {
        "lower_bound": float(result.lower_bound),
        "converged": bool(result.converged),
        "laps": int(result.n_iter),
        "seconds": time.perf_counter() - t0,
    }


def check_domain(candidates: Sequence[Candidate], X: np.ndarray, name: str) -> None:
    """ValueError when rows of ``X`` lie outside a candidate likelihood's domain (0/1 values
    for bernoulli, counts for multinomial), before any fit starts."""
    from mixstream.build import build_model
    from mixstream.options import FitOptions

    for likelihood in sorted({c.likelihood for c in candidates} - {"gauss"}):
        model = build_model(FitOptions(likelihood=likelihood, algorithm="em"), X.dtype)
        model.obs.validate(X, name)


def n_parameters(model: Any) -> int:
    """Free parameters of a fitted model (weights, means, covariances ...)."""
    return int(model.obs.n_free_params() + model.alloc.n_free_params())


def score_split_batch(payload: Any, X: Any, w: Any, rows: tuple[int, int]) -> SuffStats:
    """Summed log-densities of every model in ``payload = (models, split)`` over the training
    and the held-out rows of one batch, as scalars "train_<i>", "test_<i>", "n_train",
    "n_test" (weighted when ``w`` is given)."""
    from mixstream.backend import to_host

    models, split = payload
    held = split.test_mask(*rows)
    weights = np.ones(held.size) if w is None else np.asarray(to_host(w), dtype=np.float64)
    w_test = np.where(held, weights, 0.0)
    w_train = weights - w_test
    scalars = {"n_train": float(w_train.sum()), "n_test": float(w_test.sum())}
    for i, model in enumerate(models):
        dens = np.asarray(to_host(model.log_density(X)), dtype=np.float64)
        scalars[f"train_{i}"] = float(dens @ w_train)
        scalars[f"test_{i}"] = float(dens @ w_test)
    return SuffStats({"N": np.zeros(1)}, [0], scalars)


score_split_batch.needs_rows = True  # type: ignore[attr-defined]


def score_candidates(executor: Any, models: Sequence[Any], split: Any) -> list[dict[str, float]]:
    """One pass over ``executor``'s data (all rows): for each model, the summed log-likelihood
    and the weight of the training and held-out rows."""
    SS = executor.map_sum(score_split_batch, (list(models), split))
    s = SS.scalars
    return [
        {
            "train_loglik": s[f"train_{i}"],
            "test_loglik": s[f"test_{i}"],
            "n_train": s["n_train"],
            "n_test": s["n_test"],
        }
        for i in range(len(models))
    ]


def criteria(score: dict[str, float], n_params: int) -> dict[str, float | None]:
    """BIC and AIC on the training rows (lower is better, scikit-learn's definitions), the
    training log-likelihood per point and the held-out log-likelihood per point."""
    n, ll = score["n_train"], score["train_loglik"]
    return {
        "log_likelihood": ll / n,
        "bic": -2.0 * ll + n_params * float(np.log(n)),
        "aic": -2.0 * ll + 2.0 * n_params,
        "heldout_log_likelihood": score["test_loglik"] / score["n_test"]
        if score["n_test"] > 0
        else None,
    }
