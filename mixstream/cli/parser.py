"""The command line's parser: commands, options, their checks and their help.

Building the parser imports nothing heavy (no scikit-learn, Dask or Prefect), so that
``mixstream --help`` answers at once; each command's function is looked up by name when it
runs (``mixstream.cli.main``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from mixstream.options import COVARIANCE_TYPES, RUN_DEFAULTS, split_moves, unknown_moves
from mixstream.vocabulary import ALGORITHMS, ALLOCATIONS, LIKELIHOODS, MISSING_MODES, MOVES

#: the defaults of ``mixstream fit`` (those of a fit into a run directory)
_D = RUN_DEFAULTS


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


def parse_moves(values: Sequence[str]) -> list[str]:
    names = split_moves(values)
    for name in unknown_moves(names)[:1]:
        raise UsageError(
            f"argument --moves: unknown move {name!r}; choose from {', '.join(MOVES)} "
            "(comma-separated) or 'none' (see 'mixstream fit --help')"
        )
    return list(names)


# ---------------------------------------------------------------------- the parser
_EPILOG = """\
examples:
  mixstream demo                                   # the whole pipeline on synthetic data
  mixstream ingest points.csv points.zarr          # CSV / .npy / Parquet -> Zarr
  mixstream fit points.zarr --out runs/today       # DP moVB + birth/merge/delete from K=1
  mixstream fit points.zarr --out runs/today --scheduler tcp://scheduler:8786
  mixstream score runs/today/model.msz new.zarr --out runs/today/labels.zarr
  mixstream report runs/today                      # rewrite runs/today/report.html
  mixstream select points.zarr --out runs/sel      # choose K and covariance type by BIC

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
command again after an interruption and the fit resumes where it stopped. A DIR holding a
finished run is refused: pass --overwrite to replace it (the old run is moved aside and
removed before the new fit starts), or choose another --out.
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
        "-v",
        "--verbose",
        action="store_true",
        help="more detail: a line per lap on why moves were rejected, the clusters table, "
        "and mixstream's, Prefect's and Dask's log lines (INFO)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``mixstream`` parser; each command's ``func`` is the name of its function in
    ``mixstream.cli.commands`` (looked up by ``main`` when the command runs)."""
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
        "--overwrite",
        action="store_true",
        help="replace a finished run in --out (moved aside and removed before the fit "
        "starts); without it such a run is refused (an unfinished one is resumed either way)",
    )
    fit.add_argument(
        "--n-components",
        type=_positive_int,
        default=_D.n_components,
        metavar="K",
        help="starting number of components (the truncation for VB without moves) (%(default)s)",
    )
    for flag, choices in (
        ("--allocation", ALLOCATIONS),
        ("--likelihood", LIKELIHOODS),
        ("--covariance-type", COVARIANCE_TYPES),
        ("--algorithm", ALGORITHMS),
    ):
        default = getattr(_D, flag[2:].replace("-", "_"))
        fit.add_argument(flag, choices=choices, default=default, help="(%(default)s)")
    fit.add_argument(
        "--moves",
        nargs="+",
        metavar="MOVE",
        help=f"moVB moves, comma- or space-separated: {','.join(MOVES)} (the default for "
        "movb) or none",
    )
    fit.add_argument(
        "--batch-size", type=_positive_int, metavar="ROWS", help="rows per batch (~128 MiB)"
    )
    fit.add_argument(
        "--max-laps", type=_positive_int, default=_D.max_laps, metavar="N", help="(%(default)s)"
    )
    fit.add_argument(
        "--tol",
        type=_non_negative_float,
        default=_D.tol,
        help="stop when the ELBO per point changes less than this over a lap (%(default)s)",
    )
    fit.add_argument("--seed", type=int, default=_D.random_state, help="random seed (%(default)s)")
    fit.add_argument(
        "--latent-dim",
        type=_positive_int,
        metavar="D",
        help="--likelihood hmog: dimension of the latent space (--covariance-type then names "
        "the noise structure: spherical, diag or full)",
    )
    _add_cluster_args(fit, "default 2 with Prefect; in-process for small data with --no-prefect")
    fit.add_argument(
        "--progress",
        action="store_true",
        help="show per-batch progress on stderr even when it is not a terminal (on a "
        "terminal it is shown anyway)",
    )
    fit.add_argument(
        "--missing",
        choices=MISSING_MODES,
        default=_D.missing,
        help="NaN in the store: refuse it (error) or integrate missing values out "
        "(marginalize) (%(default)s)",
    )
    fit.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the estimator directly (same outputs and checkpoints, no flow run)",
    )
    _add_verbose(fit)
    fit.set_defaults(func="fit")

    # predict / score --------------------------------------------------------------------
    for name, func, help_text in (
        ("predict", "predict", "write labels of a Zarr store with a fitted model (no Prefect)"),
        ("score", "score", "labels and per-row log-likelihoods of a store (--prefect: a flow)"),
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
            p.add_argument(
                "--prefect",
                action="store_true",
                help="run score_flow on Prefect (PREFECT_API_URL, else a temporary server); "
                "without it, the same work in this process, as predict",
            )
            p.add_argument(
                "--no-prefect", action="store_true", help="the default (kept for old scripts)"
            )
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
    ingest.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        help="CSV: line 1 names the columns; --no-header: it is data (default: a guess that "
        "refuses a line 1 mixing text and numbers)",
    )
    ingest.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    ingest.add_argument(
        "--weights",
        metavar="COLUMN",
        default=None,
        help="CSV (with a header) / Parquet: this column holds per-row sample weights; it is "
        "written to the store's array sample_weight (not to X), which fit uses",
    )
    ingest.add_argument(
        "--na-values",
        nargs="?",
        const="",
        default=None,
        metavar="LIST",
        help="CSV: cells read as NaN (missing values), comma-separated; the flag alone: empty "
        "cells (default: an empty cell is an error). Fit such a store with --missing marginalize",
    )
    _add_verbose(ingest)
    ingest.set_defaults(func="ingest")

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
    report.set_defaults(func="report")

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
    demo.set_defaults(func="demo")

    # bench --------------------------------------------------------------------------------
    bench = sub.add_parser(
        "bench",
        help="list or run the benchmarks shipped with mixstream",
        description="Without NAME, list the benchmarks; with NAME, run it with small default "
        "sizes (ARGS are passed on and override them).",
        epilog="examples:\n  mixstream bench\n  mixstream bench core\n"
        "  mixstream bench core --n 1000000 --k 32",
        formatter_class=formatter,
    )
    bench.add_argument("name", nargs="?", metavar="NAME", help="core, gpu, dp, ... (see the list)")
    bench.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    _add_verbose(bench)
    bench.set_defaults(func="bench")

    # select -------------------------------------------------------------------------------
    from mixstream.cli.select_cmd import add_select_parser

    add_select_parser(sub, formatter, _add_cluster_args, _add_verbose)
    return parser
