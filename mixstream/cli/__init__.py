"""The ``mixstream`` command line: fit, predict, score, ingest, report, demo, bench.

    parser.py          the commands, their options and help (imports nothing heavy)
    commands.py        fit, predict, score, ingest, report over mixstream.app and the flows
    progress.py        lap and batch progress (rich), messages, the console Publisher
    prefect_server.py  the Prefect API: PREFECT_API_URL or a temporary `prefect server start`
    flags.py           Python parameter names in error messages shown as the flags
    demo.py, bench.py  the demo and the benchmarks shipped in mixstream.benchmarks

Every command is a thin layer over the application layer (mixstream.app) and, for the
commands that run flows, the Prefect flows in ``flows/``; ``--no-prefect`` (and predict,
ingest, report, bench) import no Prefect at all. Bad arguments and failures print one line,
``mixstream: error: <message>``, and exit with status 2 (set MIXSTREAM_DEBUG=1 for the
traceback); Ctrl-C exits with 130, and a fit interrupted that way resumes from its last
checkpoint when run again with the same --out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from mixstream.cli.parser import (
    ALGORITHMS,
    ALLOCATIONS,
    COVARIANCE_TYPES,
    LIKELIHOODS,
    MOVES,
    UsageError,
    build_parser,
    parse_moves,
)


def _one_line(err: BaseException) -> str:
    from mixstream.cli.flags import cli_message

    text = " ".join(cli_message(err).split()) or type(err).__name__
    known = (ValueError, OSError, KeyError, ImportError, UsageError)
    return text if isinstance(err, known) else f"{type(err).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status (0 ok, 2 error, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "moves", None) is not None:
            args.moves = parse_moves(args.moves)
        from mixstream.cli import commands
        from mixstream.cli.progress import setup_environment

        setup_environment(args.verbose)
        return int(getattr(commands, args.func)(args) or 0)
    except KeyboardInterrupt:
        print("mixstream: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("MIXSTREAM_DEBUG"):
            raise
        print(f"mixstream: error: {_one_line(err)}", file=sys.stderr)
        return 2


__all__ = [
    "ALGORITHMS",
    "ALLOCATIONS",
    "COVARIANCE_TYPES",
    "LIKELIHOODS",
    "MOVES",
    "UsageError",
    "build_parser",
    "main",
]
