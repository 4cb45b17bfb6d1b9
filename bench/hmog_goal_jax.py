"""goal-jax's closed-form HMoG EM (``analytic_hmog``) on the data of bench/hmog.py, in memory.

goal-jax 0.0.1 (the package index's release) needs Python >= 3.12 (``typing.override``, PEP 695
generics) and jax; mixstream's environment is Python 3.11, so this runs in its own environment:

    python3.12 -m venv /tmp/gj312 && /tmp/gj312/bin/pip install goal-jax numpy
    /tmp/gj312/bin/python bench/hmog_goal_jax.py --n 20000 --iters 10

It prints seconds per EM iteration (after the first, which compiles) and the average
log-likelihood per point (float32, jax's default) after ``--iters`` iterations from goal-jax's
own random initialisation. bench/hmog.py prints mixstream's numbers for the same data.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    import jax
    import jax.numpy as jnp
    from goal.geometry import Diagonal
    from goal.models import analytic_hmog

    spec = importlib.util.spec_from_file_location(
        "hmog_bench", pathlib.Path(__file__).with_name("hmog.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    X, _ = bench.low_rank(args.n, bench.K, seed=0)
    model = analytic_hmog(bench.P, Diagonal, bench.D, bench.K)
    params = model.initialize(jax.random.PRNGKey(0))
    xs = jnp.asarray(X)
    em = jax.jit(model.expectation_maximization)
    ll = jax.jit(model.average_log_observable_density)
    params = em(params, xs)
    jax.block_until_ready(params.array if hasattr(params, "array") else params)
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        params = em(params, xs)
        jax.block_until_ready(params.array if hasattr(params, "array") else params)
        times.append(time.perf_counter() - t)
    print(f"goal-jax analytic_hmog EM, N={args.n}, p={bench.P}, d={bench.D}, K={bench.K}")
    print(f"seconds per iteration (min of {args.iters}): {min(times):.3f}")
    print(f"average log-likelihood after {args.iters + 1} iterations: {float(ll(params, xs)):.3f}")


if __name__ == "__main__":
    main()
