"""Model selection: fit a grid of K and covariance types through the engine, and choose.

    sel = mixstream.select("data.zarr", n_components=range(1, 9),
                           covariance_types=("full", "diag"), engine="dask", out="runs/sel")
    sel.best            # the chosen row: {"K": 6, "covariance_type": "full", "bic": ...}
    sel.best_estimator  # its fitted MixtureModel (saved as runs/sel/model.msz)
    sel.table           # one row per candidate: BIC, AIC, ELBO, held-out log-likelihood

The rows of the data are split once, by the seed, into training rows and held-out rows (whole
blocks of rows, ``mixstream.data.holdout``). Every candidate is fitted on the training rows;
candidates with the same K start from the same k-means centres (the best of a few seeds).
One last pass computes BIC and AIC on the training rows and the log-likelihood per point of
the held-out rows for every candidate at once. The chosen candidate is then refitted on every
row (training and held-out), warm-started from its training fit, as scikit-learn's
``GridSearchCV(refit=True)``: the table judges the candidates, the saved model uses all the
data (``refit=False`` keeps the training fit). With ``dp=True`` a DP mixture fitted by
memoized VB with birth / merge / delete moves from one component is set beside the choice.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mixstream.app.select_fit import (
    Candidate,
    check_domain,
    criteria,
    fit_candidate,
    n_parameters,
    run_fit,
    score_candidates,
    shared_start,
)
from mixstream.app.select_lockstep import run_in_lockstep
from mixstream.options import check_select_options, inference_of

#: whether a larger value of each criterion is better
HIGHER_IS_BETTER = {"bic": False, "aic": False, "heldout": True, "elbo": True}
#: how the summary names each criterion
CRITERION_NAMES = {"bic": "BIC", "aic": "AIC", "heldout": "the held-out log-likelihood",
                   "elbo": "the ELBO"}  # fmt: skip
#: the table's column each criterion reads
CRITERION_COLUMN = {"bic": "bic", "aic": "aic", "heldout": "heldout_log_likelihood", "elbo": "elbo"}


@dataclass
class Selection:
    """What ``select`` returns.

    Attributes
    ----------
    table : list of dict
        One row per candidate (grid order): model, K, covariance_type, likelihood,
        n_parameters, log_likelihood (training rows, per point), bic, aic, elbo (per point;
        None for algorithms without one), heldout_log_likelihood (per point; None without a
        holdout), converged, laps, seconds, best.
    best : dict
        The chosen row.
    best_estimator : MixtureModel
        The chosen model, refitted on every row unless ``refit=False``.
    estimators : list of MixtureModel, in the order of ``table``
        The candidates' fits on the training rows.
    criterion : str
    dp : dict or None
        With ``dp=True``: the DP fit's K, covariance type, ELBO, and ``sentence``.
    split : dict
        The holdout: rows, block_rows, held-out blocks and rows.
    out : dict or None
        The files written (``out=``).
    passes : int
        Passes over the training rows the candidates' laps took (side by side, one pass
        serves every candidate still running).
    refit : dict or None
        The refit on every row: rows, laps, converged, seconds, log_likelihood (per point,
        of every row) and log_likelihood_before (the training fit's, on the same rows);
        None when there was none (``refit=False`` or no held-out rows).
    """

    table: list[dict[str, Any]]
    best: dict[str, Any]
    best_estimator: Any
    estimators: list[Any]
    criterion: str
    dp: dict[str, Any] | None = None
    split: dict[str, Any] = field(default_factory=dict)
    out: dict[str, Any] | None = None
    passes: int = 0
    refit: dict[str, Any] | None = None

    @property
    def summary(self) -> str:
        """One sentence on the choice (and the DP's K when it was fitted)."""
        b = self.best
        name = CRITERION_NAMES[self.criterion]
        text = f"{name} chose {b['model']} ({b['likelihood']})"
        return text + (f"; {self.dp['sentence']}" if self.dp else "")

    def outputs(self) -> dict[str, Any]:
        """What the CLI and the flow report: table, summary, best, refit and the files written
        (``out``)."""
        return {
            "table": self.table,
            "summary": self.summary,
            "best": self.best,
            "refit": self.refit,
            **(self.out or {}),
        }

    def to_frame(self) -> Any:
        """The table as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.table)


def make_grid(
    n_components: int | Iterable[int],
    covariance_types: Sequence[str],
    likelihoods: Sequence[str] = ("gauss",),
) -> list[Candidate]:
    """Every (K, covariance type) of Gaussian likelihoods and every K of the others."""
    ks = [n_components] if isinstance(n_components, int | np.integer) else list(n_components)
    grid = []
    for likelihood in likelihoods:
        covs = covariance_types if likelihood == "gauss" else ("full",)
        grid += [Candidate(int(k), cov, likelihood) for cov in covs for k in ks]
    return grid


def as_candidates(items: Iterable[Any]) -> list[Candidate]:
    """Candidates from (K, covariance_type[, likelihood]) tuples (or Candidates)."""
    out = []
    for item in items:
        if isinstance(item, Candidate):
            out.append(item)
        elif isinstance(item, Sequence) and 1 <= len(item) <= 3 and not isinstance(item, str):
            out.append(Candidate(int(item[0]), *item[1:]))
        else:
            raise ValueError(
                f"a candidate is (n_components, covariance_type[, likelihood]), got {item!r}"
            )
    return out


def select(
    data: Any,
    n_components: int | Iterable[int] = range(1, 9),
    covariance_types: Sequence[str] = ("full", "diag", "spherical"),
    likelihoods: Sequence[str] = ("gauss",),
    *,
    candidates: Iterable[Any] | None = None,
    criterion: str = "bic",
    holdout: float = 0.1,
    algorithm: str = "em",
    allocation: str = "finite",
    max_laps: int = 100,
    tol: float = 1e-3,
    n_seeds: int = 3,
    batch_size: int | None = None,
    sample_weight: Any = None,
    random_state: int | None = 0,
    engine: str = "auto",
    client: Any = None,
    n_workers: int = 2,
    dp: bool = False,
    out: Any = None,
    overwrite: bool = False,
    on_fit: Callable[[dict[str, Any]], None] | None = None,
    lockstep: bool | None = None,
    refit: bool = True,
) -> Selection:
    """Fit a grid of mixtures to ``data`` and choose one by ``criterion``.

    Parameters
    ----------
    data : array (n_samples, n_features), dask array, zarr.Array, or a Zarr store's path / URL
    n_components : int or iterable of int
        The K of the grid.
    covariance_types : sequence of str
        Covariance types of the Gaussian candidates (mixstream.vocabulary.COVARIANCE_TYPES).
    likelihoods : sequence of str
        Likelihoods of the grid; those other than "gauss" take one candidate per K.
    candidates : iterable of (K, covariance_type[, likelihood]), optional
        The grid itself, instead of the three arguments above.
    criterion : {"bic", "aic", "heldout", "elbo"}
        What chooses: BIC or AIC on the training rows (lowest), the held-out log-likelihood
        per point (highest), or the ELBO per point (highest; variational algorithms).
    holdout : float in [0, 0.5]
        Fraction of the rows held out (whole blocks of rows, drawn by ``random_state``).
    algorithm, allocation, max_laps, tol, batch_size :
        MixtureModel options of every candidate (default: finite mixtures fitted by EM,
        as R's mclust and scikit-learn's GaussianMixture).
    n_seeds : int
        k-means runs per K; the best (least inertia) starts every candidate of that K.
    sample_weight : array (n_samples,), optional (in-memory data)
    random_state : int or None
    engine, client, n_workers :
        Where the batches run: "local" (this process), "dask" (``client``, a scheduler
        address, or a LocalCluster of ``n_workers`` single-threaded worker processes started
        for the selection and closed after it), "auto" (Dask for a client or a big store).
    dp : bool
        Also fit a DP mixture by memoized VB with moves from K=1 (the chosen covariance type)
        and say how its K compares with the choice.
    out : path, optional
        A directory to write atomically: selection.csv, selection.json, figures/bic.png, the
        chosen model as model.msz, and report.html (nothing is left there on error).
    overwrite : bool
        Replace an existing ``out`` (only once the new one is complete).
    on_fit : callable(row), optional
        Called with each candidate's partial row once it is fitted (progress).
    lockstep : bool, optional
        True: fit the candidates side by side, each in its own thread, so that one pass over
        the data per lap serves all those still running (``mixstream.app.select_lockstep``);
        False: one after the other (a pass per lap of each). The fits are the same, bit for
        bit. None (default): side by side unless the data is an in-memory array (where a pass
        reads nothing).
    refit : bool
        Refit the chosen candidate on every row, from its training fit (default), so that
        ``best_estimator`` and the saved model use the held-out rows too.

    Returns
    -------
    Selection
    """
    from mixstream.data.array_source import ArraySource
    from mixstream.data.holdout import SplitSource, make_split
    from mixstream.data.sources import open_source
    from mixstream.data.validate import check_fit_data

    grid = (
        as_candidates(candidates)
        if candidates is not None
        else make_grid(n_components, covariance_types, likelihoods)
    )
    check_select_options(criterion, holdout, n_seeds, [c.n_components for c in grid])
    if criterion == "elbo" and inference_of(algorithm) != "vb":
        raise ValueError(f"criterion='elbo' needs a variational algorithm, got {algorithm!r}")
    if criterion == "heldout" and holdout == 0:
        raise ValueError("criterion='heldout' needs holdout > 0")
    options = {
        "algorithm": algorithm,
        "allocation": allocation,
        "max_laps": max_laps,
        "tol": tol,
        "batch_size": batch_size,
        "random_state": random_state,
        "moves": (),
    }
    _validate_grid(grid, options)
    split_seed, kmeans_seed = np.random.SeedSequence(random_state).spawn(2)
    if out is not None:
        from mixstream.app.select_outputs import check_out

        check_out(out, overwrite)
    base = open_source(data, batch_size, sample_weight)
    split = make_split(base.n_rows, holdout, np.random.default_rng(split_seed))
    train = SplitSource(base, split, "train")
    with _executors(train, base, engine, client, n_workers) as (train_ex, all_ex):
        ks = [c.n_components for c in grid]
        check_fit_data(train, max(ks), False)
        start = shared_start(train_ex, ks, n_seeds, np.random.default_rng(kmeans_seed))
        check_domain(grid, start.X, f"{base.name} (a sample of its rows)")
        jobs = [partial(fit_candidate, candidate=c, start=start, options=options) for c in grid]
        if lockstep is None:  # side by side when passes cost reads: not for in-memory rows
            lockstep = not isinstance(base, ArraySource)
        if lockstep:
            outs, passes = run_in_lockstep(train_ex, jobs)
        else:
            outs = [job(train_ex) for job in jobs]
            passes = sum(facts["laps"] for _, facts in outs)
        fitted, rows = [], []
        for cand, (est, facts) in zip(grid, outs):
            fitted.append(est)
            rows.append(_row(cand, est, facts))
            if on_fit is not None:
                on_fit(dict(rows[-1]))
        scores = score_candidates(all_ex, [e.model_ for e in fitted], split)
        for row, score in zip(rows, scores):
            row.update(criteria(score, row["n_parameters"]))
        best = _mark_best(rows, criterion)
        chosen, refit_info = fitted[best], None
        if refit and split.n_test > 0:
            chosen, refit_info = refit_on_all(all_ex, fitted[best], split, scores[best])
        dp_info = _fit_dp(train_ex, rows[best], random_state, batch_size) if dp else None
    result = Selection(rows, rows[best], chosen, fitted, criterion, dp_info, split.describe())
    result.passes, result.refit = passes, refit_info
    if out is not None:
        from mixstream.app.select_outputs import write_selection_dir

        result.out = write_selection_dir(result, out, base, overwrite)
    return result


def refit_on_all(
    executor: Any, est: Any, split: Any, before: dict[str, float]
) -> tuple[Any, dict[str, Any]]:
    """A copy of ``est`` fitted on ``executor``'s rows (every row), warm-started from ``est``.

    ``before`` is ``est``'s score (``score_candidates``); one more pass scores the refit on
    the same rows, so the two log-likelihoods per point of every row can be set side by side.
    """
    import copy

    t0 = time.perf_counter()
    new = copy.deepcopy(est)
    result = run_fit(new, executor, warm=True)
    seconds = time.perf_counter() - t0
    (after,) = score_candidates(executor, [new.model_], split)

    def per_point(score: dict[str, float]) -> float:
        n = score["n_train"] + score["n_test"]
        return float((score["train_loglik"] + score["test_loglik"]) / n)

    return new, {
        "rows": int(executor.source.n_rows),
        "laps": int(result.n_iter),
        "converged": bool(result.converged),
        "seconds": round(seconds, 4),
        "log_likelihood_before": per_point(before),
        "log_likelihood": per_point(after),
    }


def _validate_grid(grid: list[Candidate], options: dict[str, Any]) -> None:
    """Every candidate's options are checked before the first fit starts."""
    from mixstream.options import FitOptions

    if not grid:
        raise ValueError("the grid is empty: give n_components and covariance_types")
    for cand in grid:
        FitOptions(
            n_components=cand.n_components,
            covariance_type=cand.covariance_type,
            likelihood=cand.likelihood,
            **options,
        ).validated()


@contextlib.contextmanager
def _executors(
    train: Any, base: Any, engine: str, client: Any, n_workers: int
) -> Iterator[tuple[Any, Any]]:
    """An executor over the training rows and one over all rows, on the same engine (one
    Dask cluster for both, started here when needed and closed on the way out)."""
    from mixstream.engine.factory import make_executor

    kw = {"n_workers": n_workers, "threads_per_worker": 1}
    train_ex = make_executor(
        train, client=client, engine=engine, **(kw if engine == "dask" and client is None else {})
    )
    try:
        dask_client = getattr(train_ex, "client", None)
        if dask_client is not None:
            all_ex = make_executor(base, client=dask_client, engine="dask")
        else:
            all_ex = make_executor(base, engine="local", backend=train_ex.backend)
        try:
            yield train_ex, all_ex
        finally:
            all_ex.close()
    finally:
        train_ex.close()


def _row(cand: Candidate, est: Any, facts: dict[str, Any]) -> dict[str, Any]:
    vb = est.model_.inference == "vb"
    return {
        "model": cand.label,
        "K": cand.n_components,
        "covariance_type": cand.covariance_type if cand.likelihood == "gauss" else None,
        "likelihood": cand.likelihood,
        "n_parameters": n_parameters(est.model_),
        "log_likelihood": None,
        "bic": None,
        "aic": None,
        "elbo": facts["lower_bound"] if vb else None,
        "heldout_log_likelihood": None,
        "converged": facts["converged"],
        "laps": facts["laps"],
        "seconds": round(facts["seconds"], 4),
        "best": False,
    }


def _mark_best(rows: list[dict[str, Any]], criterion: str) -> int:
    """Mark and return the index of the best row (ties: the first, i.e. the simplest K)."""
    column = CRITERION_COLUMN[criterion]
    sign = -1.0 if HIGHER_IS_BETTER[criterion] else 1.0
    values = [
        sign * r[column] if r[column] is not None and math.isfinite(r[column]) else math.inf
        for r in rows
    ]
    best = int(np.argmin(values))
    if not math.isfinite(values[best]):
        raise ValueError(f"no candidate has a finite {column}")
    rows[best]["best"] = True
    return best


def _fit_dp(
    executor: Any, best: dict[str, Any], random_state: Any, batch_size: int | None
) -> dict[str, Any]:
    """A DP mixture by memoized VB with birth / merge / delete moves from K=1, with the
    chosen model's likelihood and covariance type, beside the choice."""
    from mixstream.estimator import MixtureModel

    cov = best["covariance_type"] or "full"
    est = MixtureModel(
        n_components=1,
        allocation="dp",
        algorithm="movb",
        likelihood=best["likelihood"],
        covariance_type=cov,
        max_laps=50,
        tol=1e-4,
        batch_size=batch_size,
        random_state=random_state,
    )
    est.n_features_in_ = executor.source.n_features
    result = run_fit(est, executor)
    k_dp, k_best = int(est.n_components_), int(best["K"])
    if k_dp == k_best:
        agree = "the same K"
    else:
        agree = f"{abs(k_dp - k_best)} {'more' if k_dp > k_best else 'fewer'} than the choice"
    sentence = (
        f"a DP mixture fitted by memoized VB with birth / merge / delete moves from K=1 "
        f"({cov}) found K={k_dp}: {agree} (K={k_best})"
    )
    return {
        "K": k_dp,
        "covariance_type": cov,
        "elbo": float(result.lower_bound),
        "laps": int(result.n_iter),
        "sentence": sentence,
        "estimator": est,
    }
