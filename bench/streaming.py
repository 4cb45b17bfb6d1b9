"""Streaming: lap throughput over a Zarr store against a bare read of the same store.

    python bench/streaming.py --gb 4 --store /tmp/stream.zarr

Prints, side by side:
- a bare read of every batch with zarr (rows/s, MB/s), after one read to warm the page cache
  (every lap below then reads a warm store too): the ceiling;
- one VB lap (diag Gaussian, K=16) in-process (a reader thread beside the compute threads;
  and one thread that reads and computes each batch in turn, as a single-thread Dask worker
  does), and on a Dask LocalCluster with 1 and with 2 single-thread workers: rows/s, MB/s and
  the fraction of the bare read;
- the Dask engine's per-batch overhead against the in-process engine with the same threads:
  1 worker against the one-thread lap, 2 workers against the two-thread lap.
The store is written once (chunk by chunk, zstd) and reused if it exists. Each row is the best
of ``--repeat`` runs (default 3): on a shared VM a single lap moves by 20-30% from run to run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def bare_read(source) -> float:
    t = time.perf_counter()
    for i in range(len(source.batches)):
        source.read(i)
    return time.perf_counter() - t


def lap_seconds(model, executor, repeat: int = 1) -> float:
    """Best of ``repeat`` laps (statistics of the whole store); the model is left unchanged, so
    that every lap of the benchmark does the same work."""
    from mixstream.learn.executor import summarize_batch

    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        executor.map_sum(summarize_batch, model)
        best = min(best, time.perf_counter() - t)
    return best


def start_model(source, k: int):
    from mixstream.alloc import DPAlloc
    from mixstream.engine.local import LocalExecutor
    from mixstream.learn.init import initialize
    from mixstream.model import Model
    from mixstream.obs.gauss import GaussObs

    model = Model(DPAlloc(1.0), GaussObs("diag"))
    initialize(model, LocalExecutor(source), k, "kmeans++", np.random.default_rng(0), 100_000)
    return model


def main() -> None:
    from mixstream.data.synthetic import write_synthetic_zarr
    from mixstream.data.zarr_source import ZarrSource
    from mixstream.engine.dask import DaskExecutor
    from mixstream.engine.local import LocalExecutor

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gb", type=float, default=4.0, help="store size (float32, 16 features)")
    p.add_argument("--store", default="/tmp/mixstream-stream.zarr")
    p.add_argument("--batch-rows", type=int, default=100_000)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="runs per row; the best is shown")
    a = p.parse_args()

    D = 16
    n_rows = int(a.gb * 1e9 / (4 * D)) // a.batch_rows * a.batch_rows
    if not os.path.exists(a.store):
        t = time.perf_counter()
        write_synthetic_zarr(
            a.store,
            n_rows,
            D,
            a.k,
            chunk_rows=a.batch_rows // 2,
            shard_rows=a.batch_rows,
            seed=0,
            dtype="float32",
        )
        print(f"wrote {a.store} in {time.perf_counter() - t:.0f} s")
    source = ZarrSource(a.store, batch_size=a.batch_rows)
    mb = source.n_rows * D * 4 / 1e6
    model = start_model(source, a.k)

    rows = []
    bare_read(source)  # once to warm the page cache: every row below reads a warm store
    t_read = min(bare_read(source) for _ in range(a.repeat))
    rows.append(("bare zarr read", t_read))
    from threadpoolctl import threadpool_limits

    from mixstream.parallel import get_num_threads, set_num_threads

    n_thr = get_num_threads()
    t_threads = lap_seconds(model, LocalExecutor(source), a.repeat)
    rows.append((f"lap, in-process {n_thr} thr", t_threads))
    # what one single-thread Dask worker does: read a batch, then compute it, on one thread
    # (row blocks and BLAS included), with no reader thread beside it
    set_num_threads(1)
    with threadpool_limits(1):
        t_local = lap_seconds(model, LocalExecutor(source, n_threads=1), a.repeat)
    set_num_threads(None)
    rows.append(("lap, in-process 1 thr", t_local))
    dask_times = {}
    for n in (1, 2):
        # the LocalCluster mixstream starts itself, as a fit without client= gets it
        with DaskExecutor(source, n_workers=n, threads_per_worker=1, dashboard_address=":0") as ex:
            lap_seconds(model, ex)  # warm-up: imports and first reads on the workers
            dask_times[n] = lap_seconds(model, ex, a.repeat)
        rows.append((f"lap, Dask {n} worker{'s' if n > 1 else ''}", dask_times[n]))

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; store {source.n_rows:,} x "
        f"{D} float32 = {mb / 1e3:.2f} GB, {len(source.batches)} batches of "
        f"{a.batch_rows:,} rows; diag Gaussian K={a.k}\n"
    )
    print(f"{'':<22}{'seconds':>9}{'rows/s':>14}{'MB/s':>9}{'of bare read':>14}")
    for name, sec in rows:
        print(
            f"{name:<22}{sec:>9.2f}{source.n_rows / sec:>14,.0f}{mb / sec:>9.0f}"
            f"{t_read / sec:>13.0%}"
        )
    print()
    for n, base, what in ((1, t_local, "1 thread"), (2, t_threads, f"{n_thr} threads")):
        overhead = (dask_times[n] - base) / len(source.batches)
        share = overhead * len(source.batches) / base
        print(
            f"Dask per-batch overhead ({n} worker{'s' if n > 1 else ''} vs in-process "
            f"{what}): {1e3 * overhead:+.1f} ms = {share:+.1%} of the in-process lap"
        )
    print(f"1 -> 2 workers: {dask_times[1] / dask_times[2]:.2f}x")


if __name__ == "__main__":
    main()
