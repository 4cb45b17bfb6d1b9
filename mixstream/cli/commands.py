"""The commands fit, predict, score, ingest and report: argument handling and output lines
over the application layer (mixstream.app) and, unless --no-prefect, the Prefect flows.

With fit --no-prefect, and for predict, score (unless --prefect), ingest and report,
nothing here imports Prefect.
"""

from __future__ import annotations

import argparse
from typing import Any

from mixstream import urls
from mixstream.cli.progress import ConsolePublisher, fit_progress, say, want_batch_progress


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The fit options of a parsed ``fit`` command line."""
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
        latent_dim=args.latent_dim,
        missing=args.missing,
    )


def print_fit(summary: dict[str, Any]) -> None:
    converged = "converged" if summary["converged_"] else "not converged (raise --max-laps)"
    print(f"K                {summary['n_components_']}")
    print(
        f"ELBO per point   {summary['lower_bound_']:.8g} after {summary['laps']} laps, {converged}"
    )
    if summary.get("resumed_from_lap"):
        print(f"resumed          from the checkpoint after lap {summary['resumed_from_lap']}")
    print(f"model            {summary['model']}")
    print(f"report           {summary['report']}")
    if summary.get("fit_id"):
        print(f"fit id           {summary['fit_id']}")


def fit(args: argparse.Namespace) -> int:
    from mixstream import app

    options = options_of(args)
    app.make_estimator(options)  # bad options fail here, before anything starts
    _, plan = app.describe_data(args.data, args.batch_size)
    app.resolve_scheduler(args.scheduler)
    out = app.resolve_out(args.out)
    if args.overwrite and app.run_state(out) == "finished":
        say(f"{out} holds a finished run: --overwrite moves it aside and removes it")
    # a finished run without --overwrite is refused here, before anything starts
    app.prepare_run_dir(out, args.overwrite)
    checkpoints = urls.join(out, app.CHECKPOINT_DIR)
    resumed = 0
    if app.has_checkpoint(checkpoints):
        say(f"{checkpoints} holds a checkpoint: the fit resumes from it")
        resumed = app.checkpoint_lap(checkpoints)
    batches = want_batch_progress(args.progress)
    say(
        f"fitting {plan['data']} ({plan['n_rows']} x {plan['n_features']}, {plan['n_batches']} "
        f"batch(es)) with {options['algorithm']} into {out}"
    )
    if args.no_prefect:
        with fit_progress(batches, resumed + 1, args.verbose) as progress:
            if not resumed:
                progress.begin("init")

            def started(run: Any) -> None:
                if run.resumed_from_lap:
                    say(f"resuming from the checkpoint after lap {run.resumed_from_lap}")
                progress.begin(f"lap {run.laps_done + 1}")

            summary = app.fit_to_dir(
                args.data,
                out,
                options,
                args.scheduler,
                args.workers,
                ConsolePublisher(args.verbose),
                on_start=started,
            )
        print_fit(summary)
        return 0

    from mixstream.cli.prefect_server import PrefectAPI, run_flow

    api = PrefectAPI()
    try:
        api.wait()
        from flows.fit import fit_flow

        with fit_progress(batches, resumed + 1, args.verbose):
            summary, run = run_flow(
                fit_flow,
                data=args.data,
                out=str(out),
                **{k: (list(v) if k == "moves" else v) for k, v in options.items()},
                scheduler=args.scheduler,
                n_workers=args.workers or 2,
            )
        from mixstream.cli.progress import dashboard_note

        print_fit(summary)
        print(f"Dask dashboard   {dashboard_note(summary.get('dashboard'))} (during the run)")
        for line in api.describe([run]):
            print(f"Prefect          {line}")
    finally:
        api.close()
    return 0


def print_scores(result: dict[str, Any]) -> None:
    print(f"labels           {result['out']} (arrays labels, log_likelihood)")
    print(f"rows             {result['n_rows']}")
    print(f"mean log-lik.    {result['mean_log_likelihood']:.8g}")
    print(f"rows per cluster {result['counts']}")
    if result.get("fit_id"):
        print(f"model's fit id   {result['fit_id']}")


def predict(args: argparse.Namespace) -> int:
    from mixstream import app

    result = app.score_to_store(
        args.model, args.data, args.out, args.scheduler, args.workers, args.overwrite, args.proba
    )
    app.publish_scores(ConsolePublisher(args.verbose), result, args.model, args.data)
    print_scores(result)
    return 0


def score(args: argparse.Namespace) -> int:
    """Without --prefect, predict's work in this process (no Prefect import, no server)."""
    if args.no_prefect or not args.prefect:
        return predict(args)
    from mixstream import app

    app.load_for_scoring(args.model, args.data)  # a bad model or store fails before the flow
    app.check_output(args.out, args.overwrite)
    from mixstream.cli.prefect_server import PrefectAPI, run_flow

    api = PrefectAPI()
    try:
        api.wait()
        from flows.score import score_flow

        result, run = run_flow(
            score_flow,
            model=app.resolve_out(app.model_path(args.model)),
            data=args.data,
            out=args.out,
            scheduler=args.scheduler,
            n_workers=args.workers or 2,
            overwrite=args.overwrite,
            proba=args.proba,
        )
        print_scores(result)
        for line in api.describe([run]):
            print(f"Prefect          {line}")
    finally:
        api.close()
    return 0


def na_values_of(text: str | None) -> tuple[str, ...]:
    """``--na-values``: None (not given) -> (); "" (the flag alone) -> ("",); "NA,?" ->
    ("NA", "?"); ",NA" -> ("", "NA")."""
    return () if text is None else tuple(text.split(","))


def ingest(args: argparse.Namespace) -> int:
    from mixstream.app import ingest_to_store
    from mixstream.data.ingest import AmbiguousHeaderError

    try:
        info = ingest_to_store(
            args.src,
            args.dest,
            args.chunk_rows,
            args.shard_rows,
            args.overwrite,
            header=getattr(args, "header", None),
            weights=getattr(args, "weights", None),
            na_values=na_values_of(getattr(args, "na_values", None)),
        )
    except AmbiguousHeaderError as err:  # worded for the command line (mixstream.cli.flags)
        raise ValueError(err.cli_message()) from None
    print(
        f"{info['dest']}: array X {tuple(info['shape'])} {info['dtype']}, "
        f"chunks {tuple(info['chunks'])}"
        + (f"; sample weights from column {args.weights!r}" if info.get("weights") else "")
    )
    return 0


def report(args: argparse.Namespace) -> int:
    from mixstream.app import rewrite_report

    path, note = rewrite_report(args.model_dir, args.data, args.out)
    if note:
        say(note)
    print(f"report           {urls.resolve(path)}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from mixstream.cli.demo import run_demo

    return run_demo(args)


def bench(args: argparse.Namespace) -> int:
    from mixstream.cli.bench import run_bench

    return run_bench(args.name, args.args)


def select(args: argparse.Namespace) -> int:
    from mixstream.cli.select_cmd import run_select

    return run_select(args)
