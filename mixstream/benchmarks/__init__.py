"""Benchmarks shipped with mixstream, run by ``mixstream bench NAME [ARGS]`` or
``python -m mixstream.benchmarks.<module> [ARGS]``; results are in docs/benchmarks.md.

They are modules of the package (not scripts of the source checkout) so that an installed
mixstream finds them; ``BENCHMARKS`` names them and gives each small default arguments for a
quick run (ARGS given on the command line come after them and override them).
"""

from __future__ import annotations

from typing import NamedTuple


class Benchmark(NamedTuple):
    """A benchmark module of this package and the arguments of a quick run."""

    module: str
    defaults: tuple[str, ...] = ()


BENCHMARKS = {
    "core": Benchmark("core_vs_sklearn", ("--n", "100000", "--d", "8", "--k", "8", "--iters", "2")),
    "gpu": Benchmark("gpu", ("--n", "1000000", "--d", "16", "--k", "16", "--cpu-n", "100000")),
    "dp": Benchmark("dp_discovery", ("--n", "20000", "--d", "8", "--k", "6", "--cov", "diag")),
    "streaming": Benchmark("streaming"),
}

__all__ = ["BENCHMARKS", "Benchmark"]
