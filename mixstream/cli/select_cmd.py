"""``mixstream select``: model selection over a grid of K and covariance types.

    mixstream select points.zarr --out runs/sel --k 1-8 --covariance-types full,diag

The parser's part (``add_select_parser``) imports nothing heavy; ``run_select`` runs
``mixstream.select`` in this process (or ``select_flow`` with --prefect) and prints the table.
"""

from __future__ import annotations

import argparse
from typing import Any

from mixstream.options import COVARIANCE_TYPES, SELECT_DEFAULTS
from mixstream.vocabulary import ALGORITHMS, ALLOCATIONS, LIKELIHOODS, SELECTION_CRITERIA

_EPILOG = """\
examples:
  mixstream select points.zarr --out runs/sel
      finite Gaussian mixtures, K = 1..8, full / diag / spherical, fitted by EM on 90% of
      the rows; BIC chooses; writes runs/sel/selection.csv, selection.json, figures/bic.png,
      model.msz (the chosen model) and report.html
  mixstream select points.zarr --out runs/sel --k 2-12 --covariance-types full,diag --dp
  mixstream select points.zarr --out runs/sel --criterion heldout --workers 4

The output directory is written whole or not at all; an existing one is refused unless
--overwrite.
"""


def parse_ks(text: str) -> list[int]:
    """K values from "1-8", "2,4,8" or "1-4,8"."""
    ks: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            ks += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be K values such as 1-8 or 2,4,8, got {text!r}"
        ) from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"must be positive K values such as 1-8, got {text!r}")
    return sorted(set(ks))


def _words(choices: tuple[str, ...], what: str) -> Any:
    def parse(text: str) -> list[str]:
        words = [w for w in text.replace(",", " ").split() if w]
        bad = [w for w in words if w not in choices]
        if bad or not words:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {bad[0] if bad else text!r}; choose from {', '.join(choices)} "
                "(comma-separated)"
            )
        return words

    return parse


def add_select_parser(sub: Any, formatter: Any, add_cluster_args: Any, add_verbose: Any) -> None:
    """The ``select`` command on the subparsers ``sub``."""
    p = sub.add_parser(
        "select",
        help="fit a grid of K and covariance types to a Zarr store and choose one (BIC)",
        description="Fit every (K, covariance type) of a grid to the training rows of a Zarr "
        "store through the engine (one k-means start per K shared by the covariance types), "
        "score BIC and AIC on them and the log-likelihood on held-out rows, choose, and write "
        "the table, the BIC plot, the chosen model and a report to --out.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument("data", metavar="DATA", help="Zarr store (path or URL) with the array X")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument(
        "--k", type=parse_ks, default=list(SELECT_DEFAULTS["n_components"]), metavar="KS",
        help="numbers of components: 1-8, 2,4,8 or 1-4,8 (1-8)",
    )  # fmt: skip
    p.add_argument(
        "--covariance-types", type=_words(COVARIANCE_TYPES, "covariance type"),
        default=list(SELECT_DEFAULTS["covariance_types"]), metavar="TYPES",
        help=f"comma-separated, of {', '.join(COVARIANCE_TYPES)} (full,diag,spherical)",
    )  # fmt: skip
    p.add_argument(
        "--likelihoods", type=_words(LIKELIHOODS, "likelihood"), default=["gauss"],
        metavar="NAMES", help=f"comma-separated, of {', '.join(LIKELIHOODS)} (gauss)",
    )  # fmt: skip
    p.add_argument(
        "--criterion", choices=SELECTION_CRITERIA, default=SELECT_DEFAULTS["criterion"],
        help="what chooses: BIC or AIC on the training rows, the held-out log-likelihood, or "
        "the ELBO (variational algorithms) (%(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--holdout", type=float, default=SELECT_DEFAULTS["holdout"], metavar="FRACTION",
        help="fraction of the rows held out, in whole blocks drawn by --seed (%(default)s)",
    )  # fmt: skip
    p.add_argument("--algorithm", choices=ALGORITHMS, default="em", help="(%(default)s)")
    p.add_argument("--allocation", choices=ALLOCATIONS, default="finite", help="(%(default)s)")
    p.add_argument("--max-laps", type=int, default=100, metavar="N", help="(%(default)s)")
    p.add_argument("--tol", type=float, default=1e-3, help="(%(default)s)")
    p.add_argument("--batch-size", type=int, metavar="ROWS", help="rows per batch (~128 MiB)")
    p.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    p.add_argument(
        "--no-refit", dest="refit", action="store_false",
        help="save the chosen candidate's training fit (default: refit it on every row)",
    )  # fmt: skip
    p.add_argument(
        "--dp", action="store_true",
        help="also fit a DP mixture by memoized VB with moves from K=1 and compare its K",
    )  # fmt: skip
    add_cluster_args(p, "default: in-process for small data")
    p.add_argument(
        "--prefect", action="store_true",
        help="run select_flow on Prefect (PREFECT_API_URL, else a temporary server)",
    )  # fmt: skip
    add_verbose(p)
    p.set_defaults(func="select")


def select_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``mixstream.select`` arguments of a parsed command line (engine and output aside)."""
    return {
        "n_components": args.k,
        "covariance_types": args.covariance_types,
        "likelihoods": args.likelihoods,
        "criterion": args.criterion,
        "holdout": args.holdout,
        "algorithm": args.algorithm,
        "allocation": args.allocation,
        "max_laps": args.max_laps,
        "tol": args.tol,
        "batch_size": args.batch_size,
        "random_state": args.seed,
        "dp": args.dp,
        "refit": args.refit,
    }


def print_table(table: list[dict[str, Any]]) -> None:
    cols = ("model", "n_parameters", "bic", "aic", "elbo", "heldout_log_likelihood", "best")
    print("  ".join(f"{c:>14}" for c in cols))
    for r in table:
        cells = []
        for c in cols:
            v = r[c]
            text = "*" if c == "best" and v else "" if c == "best" or v is None else v
            cells.append(f"{text:>14.8g}" if isinstance(text, float) else f"{text!s:>14}")
        print("  ".join(cells))


def run_select(args: argparse.Namespace) -> int:
    from mixstream.app.rundir import resolve_scheduler
    from mixstream.app.select_outputs import check_out
    from mixstream.cli.progress import say

    scheduler = resolve_scheduler(args.scheduler)
    check_out(args.out, args.overwrite)  # refused before anything starts
    kw = select_kwargs(args)
    if args.prefect:
        summary = _run_flow(args, kw, scheduler)
    else:
        from mixstream.app.selection import select

        def progress(row: dict[str, Any]) -> None:
            say(f"fitted {row['model']}: {row['laps']} laps, {row['seconds']:.2f} s")

        engine = "dask" if scheduler or args.workers else "auto"
        sel = select(
            args.data, **kw, engine=engine, client=scheduler, n_workers=args.workers or 2,
            out=args.out, overwrite=args.overwrite, on_fit=progress,
        )  # fmt: skip
        summary = sel.outputs()
    print_table(summary["table"])
    print(f"chosen           {summary['summary']}")
    refit = summary["refit"]
    if refit:
        print(
            f"refit            on all {refit['rows']:,} rows, {refit['laps']} laps: log-likelihood "
            f"per row {refit['log_likelihood_before']:.6g} -> {refit['log_likelihood']:.6g}"
        )
    print(f"model            {summary['model']}")
    print(f"report           {summary['report']}")
    return 0


def _run_flow(args: argparse.Namespace, kw: dict[str, Any], scheduler: str | None) -> dict:
    from mixstream.cli.prefect_server import PrefectAPI, run_flow

    api = PrefectAPI()
    try:
        api.wait()
        from flows.select import select_flow

        summary, run = run_flow(
            select_flow, data=args.data, out=args.out, **kw, scheduler=scheduler,
            n_workers=args.workers or 2, overwrite=args.overwrite,
        )  # fmt: skip
        for line in api.describe([run]):
            print(f"Prefect          {line}")
    finally:
        api.close()
    return summary
