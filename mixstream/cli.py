"""The ``mixstream`` command line: fit, predict, score, ingest, report, demo, bench.

Every command is a thin layer over the estimator and the Prefect flows in ``flows/``. Bad
arguments and failures print one line, ``mixstream: error: <message>``, and exit with status 2
(set MIXSTREAM_DEBUG=1 for the traceback); Ctrl-C exits with 130, and a fit interrupted that way
resumes from its last checkpoint when run again with the same --out.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: Prefect settings these commands need on small machines without internet (kept if set)
PREFECT_ENV_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
#: small default arguments of the benchmarks in bench/ (name -> script stem, arguments); any
#: other bench/*.py runs as `mixstream bench <stem>` with its own defaults
BENCHES = {
    "core": ("core_vs_sklearn", ["--n", "100000", "--d", "8", "--k", "8", "--iters", "2"]),
    "gpu": ("gpu", ["--n", "1000000", "--d", "16", "--k", "16", "--cpu-n", "100000"]),
    "dp": ("dp_discovery", ["--n", "20000", "--d", "8", "--k", "6", "--cov", "diag"]),
}
#: the estimator's option values, repeated here so that `--help` does not import scikit-learn
#: (tests/test_cli.py checks that they match mixstream.estimator's)
ALLOCATIONS = ("dp", "finite")
LIKELIHOODS = ("gauss", "zero_mean_gauss", "bernoulli", "multinomial")
ALGORITHMS = ("em", "vb", "kmeans", "cem", "sovb", "movb")
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied_full", "tied_diag", "tied_spherical", "tied")
MOVES = ("birth", "merge", "delete")
DEMO_COMPONENTS = 8
DEMO_FEATURES = 8


class UsageError(Exception):
    """A bad command line; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, printed by ``main``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------- argument types
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _scheduler(text: str) -> str:
    if "://" not in text:
        raise argparse.ArgumentTypeError(
            f"must be a Dask scheduler address such as tcp://host:8786, got {text!r}"
        )
    return text


def _moves(values: Sequence[str]) -> list[str]:
    names = [m for v in values for m in v.replace(",", " ").split() if m]
    if names in (["none"], []):
        return []
    for name in names:
        if name not in MOVES:
            raise UsageError(
                f"argument --moves: unknown move {name!r}; choose from {', '.join(MOVES)} "
                "(comma-separated) or 'none' (see 'mixstream fit --help')"
            )
    return names


# ---------------------------------------------------------------------- helpers
def _say(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def _setup_environment(verbose: bool) -> None:
    """Prefect and Dask settings for a command line run (before Prefect is imported)."""
    for key, value in PREFECT_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not verbose:
        # the console stays for mixstream's own lines; logs still reach the Prefect API / UI
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        # nor do the workers of a LocalCluster started here (they inherit this environment)
        # print a traceback for a failing batch: its error ends the command as one line
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
        import warnings

        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
        warnings.filterwarnings("ignore", module=r"distributed\..*")
    else:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")


class _LapProgress:
    """Progress of the laps on stderr: tqdm on a terminal when installed, else a line a lap."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, record: dict, max_laps: int) -> None:
        from mixstream.app import lap_line

        if self.bar is None and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=max_laps, unit="lap", file=sys.stderr, leave=True)
                self.bar.update(record["lap"] - 1)
            except ImportError:
                self.bar = False
        if self.bar:
            self.bar.set_postfix_str(f"ELBO {record['elbo']:.6g} K {record['K']}", refresh=False)
            self.bar.update(1)
        else:
            _say(lap_line(record, max_laps))

    def close(self) -> None:
        if self.bar:
            self.bar.close()


class _BatchProgress:
    """Progress of the batches of the current pass over the data, on stderr.

    Driven by the executors' per-batch reports (``mixstream.engine.progress``), so it follows
    the Dask workers (or the in-process threads) as they finish each batch. It counts the
    distinct batches of the data visited since the pass began (a move that revisits a batch
    within a lap does not count twice). A pass begins when a lap ends, and when every batch
    has been visited and a call over the whole data starts again (K-means runs several such
    passes in its one lap).

    On a terminal: a tqdm bar under the lap bar when tqdm is installed, else one status line
    rewritten in place. Elsewhere (``--progress`` with stderr sent to a file or a pipe): a
    line at every tenth of the batches, so a log gets at most about ten lines a pass.
    """

    #: seconds between two redraws of the status line on a terminal
    REDRAW_S = 0.1

    def __init__(self, tty: bool, lap: int = 1) -> None:
        self.tty = tty
        self.label = f"lap {lap}"
        self.seen: set[int] = set()
        self.step = -1  # tenths of the pass already printed (lines mode)
        self.drawn = 0.0  # when the status line was last drawn (terminal mode)
        self.shown = False  # a status line is on the terminal
        self.bar: Any = None
        self._tqdm: Any = None
        if tty:
            try:
                from tqdm import tqdm

                self._tqdm = tqdm
            except ImportError:
                self._tqdm = None

    def begin(self, label: str) -> None:
        """A new pass named ``label`` ("init", "lap 3") starts."""
        self.clear()
        self.label = label
        self.seen.clear()
        self.step = -1

    def lap_done(self, record: dict) -> None:
        self.begin(f"lap {int(record['lap']) + 1}")

    def __call__(self, event: Any) -> None:
        n = int(event.n_batches)
        if len(self.seen) >= n and n > 1 and event.total == n:  # another pass over the data
            self.seen.clear()
            self.step = -1
        if event.batch in self.seen:
            return
        self.seen.add(event.batch)
        done = len(self.seen)
        if self._tqdm is not None:
            self._draw_bar(done, n)
        elif self.tty:
            now = time.monotonic()
            if done == n or now - self.drawn >= self.REDRAW_S:
                self.drawn = now
                self.shown = True
                sys.stderr.write(f"\r\x1b[K{self._text(done, n)}")
                sys.stderr.flush()
        else:
            step = done * 10 // n
            if step > self.step:
                self.step = step
                _say(self._text(done, n))

    def _text(self, done: int, n: int) -> str:
        return f"{self.label}  batches {done}/{n} ({100 * done // n}%)"

    def _draw_bar(self, done: int, n: int) -> None:
        if self.bar is None:
            self.bar = self._tqdm(
                total=n, unit="batch", file=sys.stderr, position=1, leave=False, desc=self.label
            )
        if self.bar.total != n or self.bar.n > done:
            self.bar.reset(total=n)
        self.bar.set_description_str(self.label, refresh=False)
        self.bar.update(done - self.bar.n)

    def clear(self) -> None:
        """Take the status line off the terminal (before other output)."""
        if self.bar is not None:
            self.bar.reset()
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False

    def close(self) -> None:
        self.clear()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _want_batch_progress(flag: bool) -> bool:
    """Per-batch progress: on a terminal, or when asked for with --progress."""
    return bool(flag) or sys.stderr.isatty()


@contextlib.contextmanager
def _lap_progress(batches: bool = False, lap: int = 1) -> Iterator[_BatchProgress | None]:
    """Lap progress on stderr while the block runs; with ``batches`` also per-batch progress
    (the object is yielded, so the caller can name the passes it knows about)."""
    from mixstream.engine.progress import batch_listener, lap_listener

    progress = _LapProgress()
    batch = _BatchProgress(sys.stderr.isatty(), lap) if batches else None

    def on_lap(record: dict, max_laps: int) -> None:
        if batch is not None:
            batch.lap_done(record)
        progress(record, max_laps)

    try:
        with lap_listener(on_lap), contextlib.ExitStack() as stack:
            if batch is not None:
                stack.enter_context(batch_listener(batch))
            yield batch
    finally:
        if batch is not None:
            batch.close()
        progress.close()


def _checkpoint_lap(directory: Path) -> int:
    """Laps done in the checkpoint in ``directory``, for the progress display only (0 when
    there is none or it is unreadable: the fit itself then reports the problem).

    Reads the file's meta.json alone (see mixstream.io): a moVB checkpoint also holds every
    batch's statistics, which need not be loaded twice.
    """
    import json
    import zipfile

    from mixstream.engine.checkpoint import checkpoint_path

    path = checkpoint_path(directory)
    if not path.exists():
        return 0
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("meta.json"))
        return int(header["meta"]["result"]["n_iter"])
    except Exception:
        return 0


class _PrefectAPI:
    """The Prefect API flows report to: PREFECT_API_URL when set, else a temporary local
    server started here (in the background, so other set-up overlaps its start) and stopped
    by ``close``."""

    def __init__(self) -> None:
        from prefect.settings import PREFECT_API_URL

        self.url: str | None = PREFECT_API_URL.value() or None
        self.server: Any = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._settings: Any = None
        if self.url is None:
            from prefect.server.api.server import SubprocessASGIServer
            from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

            self.server = SubprocessASGIServer()
            timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
            _say("starting a temporary Prefect server (set PREFECT_API_URL to use your own) ...")
            self._thread = threading.Thread(
                target=self._start, args=(timeout,), name="prefect-server-start", daemon=True
            )
            self._thread.start()

    def _start(self, timeout: int) -> None:
        try:
            self.server.start(timeout=timeout)
        except BaseException as e:  # reported by wait()
            self._error = e

    def wait(self) -> str:
        """Block until the API answers; its URL."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise RuntimeError(f"the temporary Prefect server did not start: {self._error}")
            from prefect.settings import PREFECT_API_URL, temporary_settings

            self.url = self.server.api_url
            self._settings = temporary_settings(updates={PREFECT_API_URL: self.url})
            self._settings.__enter__()
        return self.url

    @property
    def temporary(self) -> bool:
        return self.server is not None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.server is not None and self.server.running:
            _drain_prefect_workers()  # logs and events still queued go out before the server stops
        if self._settings is not None:
            self._settings.__exit__(None, None, None)
            self._settings = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def describe(self, flow_runs: Sequence[Any]) -> list[str]:
        """Where to see the flow runs (name, id)."""
        from prefect.settings import PREFECT_HOME, PREFECT_UI_URL

        runs = ", ".join(f"{name} ({run_id})" for name, run_id in flow_runs)
        if self.temporary:
            return [
                f"flow runs {runs}",
                f"recorded in {PREFECT_HOME.value()}; the temporary server has stopped: "
                "run `prefect server start` and open http://127.0.0.1:4200/runs to browse them",
            ]
        ui = PREFECT_UI_URL.value()
        lines = [f"flow runs {runs} on {self.url}"]
        if ui:
            lines += [f"{ui}/runs/flow-run/{run_id}" for _, run_id in flow_runs]
        return lines


def _drain_prefect_workers() -> None:
    """Send the log lines and events Prefect still queues (as its test harness does on exit);
    left for interpreter exit, they would retry against a stopped server for a minute."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):  # no log worker was started
            pending = APILogWorker.instance().drain()
            if inspect.isawaitable(pending):
                await pending
        pending = EventsWorker.drain_all()
        if inspect.isawaitable(pending):
            await pending

    try:
        run_coro_as_sync(drain())
    except Exception as e:  # never fail a finished command on its way out
        _say(f"mixstream: warning: could not flush Prefect's logs: {e}")


def _run_flow(flow_fn: Any, **params: Any) -> tuple[Any, tuple[str, str]]:
    """Call a flow; its result and (flow-run label, id). Raises the flow's exception."""
    state = flow_fn(**params, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    result = state.result()  # raises the flow's exception when it failed
    return result, (flow_fn.name, run_id)


def _dashboard_note(link: str | None) -> str:
    if not link:
        return "none"
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return f"{link} (install bokeh to see it)"
    return link


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from mixstream.app import fit_options

    return fit_options(
        n_components=args.n_components,
        allocation=args.allocation,
        likelihood=args.likelihood,
        covariance_type=args.covariance_type,
        algorithm=args.algorithm,
        moves=args.moves,
        batch_size=args.batch_size,
        max_laps=args.max_laps,
        tol=args.tol,
        random_state=args.seed,
    )


def _print_fit(summary: dict[str, Any]) -> None:
    converged = "converged" if summary["converged_"] else "not converged (raise --max-laps)"
    print(f"K                {summary['n_components_']}")
    print(
        f"ELBO per point   {summary['lower_bound_']:.8g} after {summary['laps']} laps, {converged}"
    )
    if summary.get("resumed_from_lap"):
        print(f"resumed          from the checkpoint after lap {summary['resumed_from_lap']}")
    print(f"model            {summary['model']}")
    print(f"report           {summary['report']}")


# ---------------------------------------------------------------------- commands
def _fit(args: argparse.Namespace) -> int:
    from mixstream import app as pipeline

    options = _options(args)
    pipeline.make_estimator(options)  # bad options fail here, before anything starts
    source, plan = pipeline.describe_data(args.data, args.batch_size)
    pipeline.resolve_scheduler(args.scheduler)
    out = Path(args.out).resolve()
    from mixstream.engine.checkpoint import checkpoint_path

    resumed = 0
    if checkpoint_path(out / pipeline.CHECKPOINT_DIR).exists():
        _say(f"{out / pipeline.CHECKPOINT_DIR} holds a checkpoint: the fit resumes from it")
        resumed = _checkpoint_lap(out / pipeline.CHECKPOINT_DIR)
    batches = _want_batch_progress(args.progress)
    _say(
        f"fitting {plan['data']} ({plan['n_rows']} x {plan['n_features']}, {plan['n_batches']} "
        f"batch(es)) with {options['algorithm']} into {out}"
    )
    if args.no_prefect:
        engine = "dask" if (args.workers or pipeline.resolve_scheduler(args.scheduler)) else "auto"
        with pipeline.open_executor(source, args.scheduler, args.workers, engine) as executor:
            dashboard = pipeline.dashboard_of(executor)
            if dashboard:
                _say(f"Dask dashboard: {_dashboard_note(dashboard)}")
            with _lap_progress(batches, resumed + 1) as batch_progress:
                if batch_progress is not None and not resumed:
                    batch_progress.begin("init")
                driver = pipeline.start_run(options, executor, out / pipeline.CHECKPOINT_DIR)
                if batch_progress is not None:
                    batch_progress.begin(f"lap {driver.laps_done + 1}")
                if driver.resumed_from_lap:
                    _say(f"resuming from the checkpoint after lap {driver.resumed_from_lap}")
                while not driver.done:
                    driver.ensure_lap(driver.laps_done + 1)
            pipeline.finish_run(driver)
            est = driver.est
            summary = pipeline.write_run_dir(
                est, out, args.data, source, plan, driver.resumed_from_lap, dashboard
            )
        pipeline.remove_checkpoint(est.checkpoint_dir)
        _print_fit(summary)
        return 0

    from flows.fit import fit_flow

    api = _PrefectAPI()
    try:
        api.wait()
        with _lap_progress(batches, resumed + 1):
            summary, run = _run_flow(
                fit_flow,
                data=args.data,
                out=str(out),
                **{k: (list(v) if k == "moves" else v) for k, v in options.items()},
                scheduler=args.scheduler,
                n_workers=args.workers or 2,
            )
        _print_fit(summary)
        print(f"Dask dashboard   {_dashboard_note(summary.get('dashboard'))} (during the run)")
        for line in api.describe([run]):
            print(f"Prefect          {line}")
    finally:
        api.close()
    return 0


def _model_path(model: str) -> Path:
    """A model file, or the model file in a fit's output directory."""
    from mixstream import app as pipeline

    path = Path(model)
    return path / pipeline.MODEL_FILE if path.is_dir() else path


def _load_for_scoring(args: argparse.Namespace) -> tuple[Any, Any]:
    from mixstream import MixtureModel
    from mixstream import app as pipeline

    est = MixtureModel.load(_model_path(args.model))
    pipeline.check_output(args.out, args.overwrite)
    source, _ = pipeline.describe_data(args.data, est.batch_size)
    if source.n_features != est.n_features_in_:
        raise ValueError(
            f"{args.data} has {source.n_features} features; the model was fitted with "
            f"{est.n_features_in_}"
        )
    return est, source


def _print_scores(result: dict[str, Any]) -> None:
    print(f"labels           {result['out']} (arrays labels, log_likelihood)")
    print(f"rows             {result['n_rows']}")
    print(f"mean log-lik.    {result['mean_log_likelihood']:.8g}")
    print(f"rows per cluster {result['counts']}")


def _predict(args: argparse.Namespace) -> int:
    from mixstream import app as pipeline

    est, source = _load_for_scoring(args)
    engine = "dask" if (args.workers or pipeline.resolve_scheduler(args.scheduler)) else "auto"
    with pipeline.open_executor(source, args.scheduler, args.workers, engine) as executor:
        est.client = getattr(executor, "client", None)
        result = pipeline.score_into(est, args.data, args.out, args.overwrite, args.proba)
    _print_scores(result)
    return 0


def _score(args: argparse.Namespace) -> int:
    if args.no_prefect:
        return _predict(args)
    _, _ = _load_for_scoring(args)
    from flows.score import score_flow

    api = _PrefectAPI()
    try:
        api.wait()
        result, run = _run_flow(
            score_flow,
            model=str(_model_path(args.model).resolve()),
            data=args.data,
            out=args.out,
            scheduler=args.scheduler,
            n_workers=args.workers or 2,
            overwrite=args.overwrite,
            proba=args.proba,
        )
        _print_scores(result)
        for line in api.describe([run]):
            print(f"Prefect          {line}")
    finally:
        api.close()
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from mixstream.data.ingest import ingest

    path = ingest(
        args.src,
        args.dest,
        chunk_rows=args.chunk_rows,
        shard_rows=args.shard_rows,
        overwrite=args.overwrite,
    )
    import zarr

    X = zarr.open_group(path, mode="r")["X"]
    print(f"{path}: array X {tuple(X.shape)} {X.dtype}, chunks {tuple(X.chunks)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from mixstream import MixtureModel
    from mixstream import app as pipeline

    model_path = _model_path(args.model_dir)
    est = MixtureModel.load(model_path)
    run_file = model_path.parent / pipeline.RUN_FILE
    run = json.loads(run_file.read_text()) if run_file.exists() else {}
    data = args.data or run.get("data")
    X_sample, n_rows = None, None
    if data and args.data is None and not os.path.exists(data) and "://" not in data:
        _say(f"the fitted data {data} is gone; the report has no data view (give --data)")
        data = None
    if data:
        source, plan = pipeline.describe_data(data)
        X_sample, n_rows = pipeline.read_sample(source), plan["n_rows"]
    extra = {"model": str(model_path.resolve()), "data": data or "(none)"}
    extra.update({k: v for k, v in run.get("options", {}).items()})
    out = Path(args.out) if args.out else model_path.parent / pipeline.REPORT_FILE
    path = pipeline.write_report_for(est, out, X_sample, n_rows, extra)
    print(f"report           {path.resolve()}")
    return 0


def _demo_layout(rows: int) -> tuple[int, int]:
    """Rows per chunk (about 16 chunks, whole multiples of 1024) and per batch (4 chunks)."""
    chunk = max(1024, (rows // 16) // 1024 * 1024)
    return chunk, 4 * chunk


def _demo(args: argparse.Namespace) -> int:
    import numpy as np
    import zarr
    from sklearn.metrics import adjusted_rand_score

    from mixstream import app as pipeline
    from mixstream.data.synthetic import write_synthetic_zarr

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    data = out / "data.zarr"
    labels_out = out / "labels.zarr"
    chunk, batch = _demo_layout(args.rows)
    api = _PrefectAPI()  # starts in the background while the data is written
    try:
        _say(
            f"[1/4] writing {args.rows} x {DEMO_FEATURES} points from {DEMO_COMPONENTS} planted "
            f"Gaussian clusters to {data}"
        )
        write_synthetic_zarr(
            data,
            args.rows,
            DEMO_FEATURES,
            DEMO_COMPONENTS,
            chunk_rows=chunk,
            seed=args.seed,
            overwrite=True,
        )
        pipeline.remove_checkpoint(out / pipeline.CHECKPOINT_DIR)  # a fresh fit, not a resume
        source, plan = pipeline.describe_data(str(data), batch)
        _say(f"[2/4] starting a Dask LocalCluster ({args.workers} workers x 1 thread)")
        with pipeline.open_executor(source, None, args.workers) as cluster:
            address = cluster.client.scheduler.address
            dashboard = pipeline.dashboard_of(cluster)
            _say(f"      Dask dashboard (while the demo runs): {_dashboard_note(dashboard)}")
            api_url = api.wait()
            _say(f"      Prefect API: {api_url}")
            _say(
                f"[3/4] fit_flow: DP mixture, memoized VB with birth / merge / delete moves, "
                f"from K=1, {plan['n_batches']} batches of {plan['batch_rows']} rows"
            )
            from flows.fit import fit_flow
            from flows.score import score_flow
            from mixstream.learn.moves import DEFAULT_MOVES

            with _lap_progress(_want_batch_progress(False)):
                fit, fit_run = _run_flow(
                    fit_flow,
                    data=str(data),
                    out=str(out),
                    n_components=1,
                    algorithm="movb",
                    moves=list(DEFAULT_MOVES),
                    batch_size=batch,
                    max_laps=args.max_laps,
                    tol=1e-4,
                    random_state=args.seed,
                    scheduler=address,
                )
            _say(f"[4/4] score_flow: labels and log-likelihoods into {labels_out}")
            scores, score_run = _run_flow(
                score_flow,
                model=fit["model"],
                data=str(data),
                out=str(labels_out),
                scheduler=address,
                overwrite=True,
            )
        prefect_lines = api.describe([fit_run, score_run])
    finally:
        api.close()
    truth = np.asarray(zarr.open_group(str(data), mode="r")["labels"][:])
    found = np.asarray(zarr.open_group(str(labels_out), mode="r")["labels"][:])
    ari = adjusted_rand_score(truth, found)
    converged = "converged" if fit["converged_"] else "max laps reached"
    print(f"mixstream demo: done in {time.perf_counter() - t0:.0f} s")
    print(
        f"clusters found   {fit['n_components_']} (planted {DEMO_COMPONENTS}); adjusted Rand "
        f"index {ari:.3f} against the planted labels"
    )
    print(f"ELBO per point   {fit['lower_bound_']:.8g} after {fit['laps']} laps ({converged})")
    print(f"report           {fit['report']}")
    print(f"model            {fit['model']}")
    print(f"labels           {scores['out']} (arrays labels, log_likelihood)")
    print(f"data             {data}")
    print(f"Dask dashboard   {_dashboard_note(dashboard)} (closed with the demo's cluster)")
    for line in prefect_lines:
        print(f"Prefect          {line}")
    return 0


def _bench_dir() -> Path:
    bench_dir = Path(__file__).resolve().parent.parent / "bench"
    if not bench_dir.is_dir():
        raise FileNotFoundError(
            f"no bench/ directory next to the mixstream package ({bench_dir}); the benchmarks "
            "live in the source checkout"
        )
    return bench_dir


def _benchmarks(bench_dir: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (script, small default arguments) for every script in bench/."""
    found: dict[str, tuple[Path, list[str]]] = {}
    for name, (stem, defaults) in BENCHES.items():
        if (bench_dir / f"{stem}.py").is_file():
            found[name] = (bench_dir / f"{stem}.py", defaults)
    named = {script.stem for script, _ in found.values()}
    for script in sorted(bench_dir.glob("*.py")):
        if not script.name.startswith("_") and script.stem not in named:
            found[script.stem] = (script, [])
    return found


def _first_doc_line(script: Path) -> str:
    import ast

    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _bench(args: argparse.Namespace) -> int:
    bench_dir = _bench_dir()
    benches = _benchmarks(bench_dir)
    if args.name is None:
        print("benchmarks (mixstream bench NAME [ARGS...]; ARGS override the small defaults):")
        for name, (script, defaults) in benches.items():
            print(f"  {name:<14} bench/{script.name}: {_first_doc_line(script)}")
            if defaults:
                print(f"  {'':<14} defaults: {' '.join(defaults)}")
        return 0
    by_stem = {script.stem: (script, defaults) for script, defaults in benches.values()}
    benches = {**by_stem, **benches}  # `core` or `core_vs_sklearn`
    if args.name not in benches:
        raise UsageError(
            f"unknown benchmark {args.name!r}; choose from {', '.join(sorted(benches))} "
            "(see 'mixstream bench --help')"
        )
    script, defaults = benches[args.name]
    env = dict(os.environ)
    root = str(bench_dir.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, str(script), *defaults, *args.args]
    _say("running", " ".join(cmd[1:]))
    return subprocess.call(cmd, env=env)


# ---------------------------------------------------------------------- the parser
_EPILOG = """\
examples:
  mixstream demo                                   # the whole pipeline on synthetic data
  mixstream ingest points.csv points.zarr          # CSV / .npy / Parquet -> Zarr
  mixstream fit points.zarr --out runs/today       # DP moVB + birth/merge/delete from K=1
  mixstream fit points.zarr --out runs/today --scheduler tcp://scheduler:8786
  mixstream score runs/today/model.msz new.zarr --out runs/today/labels.zarr
  mixstream report runs/today                      # rewrite runs/today/report.html

Each command has its own --help. Errors print one line; MIXSTREAM_DEBUG=1 shows the traceback.
"""

_FIT_EPILOG = """\
examples:
  mixstream fit points.zarr --out runs/today
      DP mixture, memoized VB with birth / merge / delete moves from one component, as a
      Prefect flow on a Dask LocalCluster of 2 workers; writes runs/today/model.msz,
      report.html, figures/ and run.json
  mixstream fit points.zarr --out runs/vb --algorithm vb --n-components 20 --moves none
  mixstream fit points.zarr --out runs/today --scheduler tcp://scheduler:8786 --max-laps 200
  mixstream fit points.zarr --out runs/quick --no-prefect     # no Prefect, in-process when small

DATA is a Zarr store (a group with the 2-D array "X", rows = points): make one with
`mixstream ingest`. A checkpoint is written to OUT/checkpoints after every lap: run the same
command again after an interruption and the fit resumes where it stopped.
Progress goes to stderr: a line per lap, and on a terminal (or with --progress) the batches
of the current lap as the workers finish them.
Without PREFECT_API_URL a temporary Prefect server is started (and stopped) for the run.
"""


def _add_cluster_args(p: argparse.ArgumentParser, default_workers: str) -> None:
    p.add_argument(
        "--scheduler",
        type=_scheduler,
        metavar="ADDRESS",
        help="Dask scheduler address (tcp://host:8786); default: $MIXSTREAM_SCHEDULER, else "
        "a LocalCluster",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help=f"worker processes of that LocalCluster, one thread each ({default_workers})",
    )


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show Prefect's and Dask's log lines"
    )


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="mixstream",
        description="Fit finite and Dirichlet-process mixture models to data bigger than "
        "memory: Zarr stores, Dask workers, Prefect flows.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    from mixstream import __version__

    parser.add_argument("--version", action="version", version=f"mixstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # fit ------------------------------------------------------------------------------
    fit = sub.add_parser(
        "fit",
        help="fit a mixture to a Zarr store (a Prefect flow, resumable)",
        description="Fit a mixture model to a Zarr store, one lap at a time with a checkpoint "
        "after each; writes the model, report.html and run.json to --out.",
        epilog=_FIT_EPILOG,
        formatter_class=formatter,
    )
    fit.add_argument("data", metavar="DATA", help="Zarr store (path or URL) with the array X")
    fit.add_argument("--out", required=True, metavar="DIR", help="output directory")
    fit.add_argument(
        "--n-components",
        type=_positive_int,
        default=1,
        metavar="K",
        help="starting number of components (the truncation for VB without moves) (1)",
    )
    fit.add_argument("--allocation", choices=ALLOCATIONS, default="dp", help="(dp)")
    fit.add_argument("--likelihood", choices=LIKELIHOODS, default="gauss", help="(gauss)")
    fit.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full", help="(full)")
    fit.add_argument("--algorithm", choices=ALGORITHMS, default="movb", help="(movb)")
    fit.add_argument(
        "--moves",
        nargs="+",
        metavar="MOVE",
        help="moVB moves, comma- or space-separated: birth,merge,delete (the default for "
        "movb) or none",
    )
    fit.add_argument(
        "--batch-size", type=_positive_int, metavar="ROWS", help="rows per batch (~128 MiB)"
    )
    fit.add_argument("--max-laps", type=_positive_int, default=50, metavar="N", help="(50)")
    fit.add_argument(
        "--tol",
        type=_non_negative_float,
        default=1e-4,
        help="stop when the ELBO per point changes less than this over a lap (1e-4)",
    )
    fit.add_argument("--seed", type=int, default=0, help="random seed (0)")
    _add_cluster_args(fit, "default 2 with Prefect; in-process for small data with --no-prefect")
    fit.add_argument(
        "--progress",
        action="store_true",
        help="show per-batch progress on stderr even when it is not a terminal (on a "
        "terminal it is shown anyway)",
    )
    fit.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the estimator directly (same outputs and checkpoints, no flow run)",
    )
    _add_verbose(fit)
    fit.set_defaults(func=_fit)

    # predict / score --------------------------------------------------------------------
    for name, func, help_text in (
        ("predict", _predict, "write labels of a Zarr store with a fitted model (no Prefect)"),
        ("score", _score, "labels and per-row log-likelihoods of a store, as a Prefect flow"),
    ):
        p = sub.add_parser(
            name,
            help=help_text,
            description=f"{help_text[0].upper()}{help_text[1:]}. The output is a Zarr group "
            "with the arrays labels (int32) and log_likelihood (float64), written by the "
            "workers chunk by chunk and renamed into place when complete.",
            epilog=f"example:\n  mixstream {name} runs/today/model.msz new.zarr "
            "--out runs/today/labels.zarr",
            formatter_class=formatter,
        )
        p.add_argument("model", metavar="MODEL", help="model file (or the fit's --out directory)")
        p.add_argument("data", metavar="DATA", help="Zarr store with the model's features")
        p.add_argument("--out", required=True, metavar="DIR", help="the Zarr group to write")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--proba", action="store_true", help="also write the responsibilities")
        _add_cluster_args(p, "default: in-process for small data" if name == "predict" else "2")
        if name == "score":
            p.add_argument("--no-prefect", action="store_true", help="same as predict")
        _add_verbose(p)
        p.set_defaults(func=func)

    # ingest -------------------------------------------------------------------------------
    ingest = sub.add_parser(
        "ingest",
        help="copy a .npy, CSV or Parquet file into a Zarr store",
        description="Copy a .npy, CSV/TSV or Parquet file into a chunked Zarr v3 store (array "
        "X), in bounded memory, written atomically.",
        epilog="examples:\n  mixstream ingest points.csv points.zarr\n"
        "  mixstream ingest big.npy big.zarr --chunk-rows 65536 --shard-rows 1048576",
        formatter_class=formatter,
    )
    ingest.add_argument("src", metavar="SRC", help=".npy, .csv/.tsv/.txt or .parquet file")
    ingest.add_argument("dest", metavar="DEST", help="the Zarr store to create")
    ingest.add_argument(
        "--chunk-rows", type=_positive_int, metavar="N", help="rows per chunk (~4 MiB)"
    )
    ingest.add_argument(
        "--shard-rows",
        type=_positive_int,
        metavar="N",
        help="rows per shard, a multiple of --chunk-rows (no sharding)",
    )
    ingest.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    _add_verbose(ingest)
    ingest.set_defaults(func=_ingest)

    # report -------------------------------------------------------------------------------
    report = sub.add_parser(
        "report",
        help="rewrite report.html of a fit",
        description="Rewrite MODEL_DIR/report.html from MODEL_DIR/model.msz, drawing a sample "
        "of the data (--data, else the store named in MODEL_DIR/run.json).",
        epilog="example:\n  mixstream report runs/today --data points.zarr",
        formatter_class=formatter,
    )
    report.add_argument("model_dir", metavar="MODEL_DIR", help="a fit's --out (or a model file)")
    report.add_argument("--data", metavar="DATA", help="Zarr store to draw a sample from")
    report.add_argument("--out", metavar="FILE", help="report file (MODEL_DIR/report.html)")
    _add_verbose(report)
    report.set_defaults(func=_report)

    # demo ---------------------------------------------------------------------------------
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on a synthetic dataset (about a minute)",
        description="Write a synthetic Zarr store (8 planted Gaussian clusters in 8 "
        "dimensions), start a Dask LocalCluster and a temporary Prefect server, fit a DP "
        "mixture by memoized VB with birth / merge / delete moves from one component "
        "(fit_flow), label every point (score_flow), print where everything is, and stop "
        "everything it started.",
        epilog="examples:\n  mixstream demo\n  mixstream demo --out /tmp/demo --rows 50000",
        formatter_class=formatter,
    )
    demo.add_argument("--out", default="mixstream-demo", metavar="DIR", help="(mixstream-demo)")
    demo.add_argument(
        "--rows", type=_positive_int, default=200_000, metavar="N", help="points (200000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="(0)")
    demo.add_argument("--workers", type=_positive_int, default=2, metavar="N", help="(2)")
    demo.add_argument("--max-laps", type=_positive_int, default=20, metavar="N", help="(20)")
    _add_verbose(demo)
    demo.set_defaults(func=_demo)

    # bench --------------------------------------------------------------------------------
    bench = sub.add_parser(
        "bench",
        help="list or run the benchmarks in bench/",
        description="Without NAME, list the benchmarks; with NAME, run it with small default "
        "sizes (ARGS are passed on and override them).",
        epilog="examples:\n  mixstream bench\n  mixstream bench core\n"
        "  mixstream bench core --n 1000000 --k 32",
        formatter_class=formatter,
    )
    bench.add_argument("name", nargs="?", metavar="NAME", help="core, gpu, dp, ... (see the list)")
    bench.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    _add_verbose(bench)
    bench.set_defaults(func=_bench)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    known = (ValueError, OSError, KeyError, ImportError, UsageError)
    return text if isinstance(err, known) else f"{type(err).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status (0 ok, 2 error, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "moves", None) is not None:
            args.moves = _moves(args.moves)
        _setup_environment(args.verbose)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mixstream: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("MIXSTREAM_DEBUG"):
            raise
        print(f"mixstream: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["build_parser", "main"]
