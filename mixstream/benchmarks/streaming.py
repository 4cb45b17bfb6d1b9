"""Streaming: lap throughput over a Zarr store against a bare read of the same store.

    python -m mixstream.benchmarks.streaming --gb 4 --store /tmp/stream.zarr [--cold]

Prints, side by side:
- a bare read of every batch with zarr (``array[start:stop]``; rows/s, MB/s), after one read
  to warm the page cache (every lap below then reads a warm store too): the ceiling; and the
  same reads through mixstream's ZarrSource (metadata and finite checks added);
- one VB lap (diag Gaussian, K=16) in-process (a reader thread beside the compute threads;
  and one thread that reads and computes each batch in turn, as a single-thread Dask worker
  does), and on a Dask LocalCluster with 1 and with 2 single-thread workers: rows/s, MB/s and
  the fraction of the bare read;
- the Dask engine's per-batch overhead against the in-process engine with the same threads:
  1 worker against the one-thread lap, 2 workers against the two-thread lap;
- with ``--cold`` (Linux, root), a second table with the page cache dropped before every run:
  the bare read and the laps then read the store from disk, as every lap over a store larger
  than memory does;
- on a store larger than the machine's memory (``--gb`` above it), one table only: no run can
  find the store in the page cache, so every run reads it from disk, as a real out-of-core fit
  does (where it may, the bench also drops the page cache before each run; ``--cold`` is then
  not needed; use ``--repeat 1``: a lap takes minutes). The "disk" column shows what each run
  read from disk, as a share of the store's bytes.
The store is written once (chunk by chunk, zstd) and reused if it exists. Each row is the best
of ``--repeat`` runs (default 3): on a shared VM a single lap moves by 20-30% from run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import time
from typing import NamedTuple

import numpy as np


def bare_read(source) -> None:
    """Every batch read with zarr alone (``array[start:stop]``), one after another."""
    import zarr

    arr = zarr.open_array(source.url, path=source.array_path, mode="r")
    for start, stop in source.batches:
        arr[start:stop]


def source_read(source) -> None:
    """Every batch read by mixstream's ZarrSource (metadata check and finite check included)."""
    for i in range(len(source.batches)):
        source.read(i)


class Run(NamedTuple):
    """One timed run: wall seconds, and the machine's CPU over it as fractions of all cores
    (busy: user + system + interrupts, every process; steal: taken by the hypervisor; iowait:
    idle while waiting for the disk), and the bytes read from block devices meanwhile."""

    sec: float
    busy: float
    steal: float
    iowait: float
    disk: float


def cpu_ticks() -> np.ndarray:
    """Machine-wide CPU ticks (user, nice, system, idle, iowait, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        return np.array(f.readline().split()[1:9], dtype=np.int64)


def disk_read_bytes() -> int:
    """Bytes the machine has read from block devices (Linux /proc/vmstat pgpgin, in KiB)."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("pgpgin "):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def best(run, repeat: int, cold: bool = False) -> Run:
    """The fastest of ``repeat`` calls of ``run``; with ``cold`` the page cache is dropped
    before each, so that the store is read from disk. Laps leave the model unchanged, so every
    run does the same work."""
    runs = []
    for _ in range(repeat):
        if cold:
            drop_page_cache()
        c0, b0, t = cpu_ticks(), disk_read_bytes(), time.perf_counter()
        run()
        sec, d = time.perf_counter() - t, cpu_ticks() - c0
        total = max(int(d.sum()), 1)
        busy = d[[0, 1, 2, 5, 6]].sum() / total
        runs.append(Run(sec, busy, d[7] / total, d[4] / total, disk_read_bytes() - b0))
    return min(runs)


def local_step_ms(source, model, repeat: int, n_batches: int = 16) -> float:
    """Milliseconds of one batch's local step and statistics on one thread, the batch already
    in memory (the best of at least 5 passes over ``n_batches`` batches)."""
    Xs = [source.read(i) for i in range(min(n_batches, len(source.batches)))]
    with one_thread():
        sec = best(lambda: [model.local_summarize(X) for X in Xs], max(repeat, 5)).sec
    return 1e3 * sec / len(Xs)


@contextlib.contextmanager
def one_thread():
    """What a single-thread Dask worker runs with, inside the block: one mixstream block
    thread, one BLAS thread and a one-thread zarr decode pool; the defaults after it."""
    import zarr
    from threadpoolctl import threadpool_limits
    from zarr.core.sync import cleanup_resources

    from mixstream.parallel import set_num_threads

    set_num_threads(1)
    try:
        with threadpool_limits(1), zarr.config.set({"threading.max_workers": 1}):
            cleanup_resources()  # zarr makes a new pool, of one thread, at its next read
            try:
                yield
            finally:
                cleanup_resources()
    finally:
        set_num_threads(None)


def memory_bytes() -> int:
    """The machine's physical memory (Linux /proc/meminfo; 0 where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def can_drop_page_cache() -> bool:
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_page_cache() -> None:
    """Write back dirty pages, then drop the clean ones (Linux, root)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")


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
    p.add_argument(
        "--cold",
        action="store_true",
        help="also time the bare read and the laps with the page cache dropped before each run "
        "(Linux, root): the store then comes from disk, as a store larger than memory does",
    )
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

    on_disk, ram = store_gb(a.store), memory_bytes() / 1e9
    # a store larger than memory cannot stay in the page cache: every run reads it from disk
    larger = 0 < ram < on_disk
    cold = a.cold and not larger and can_drop_page_cache()
    if a.cold and not larger and not cold:
        print("--cold: cannot write /proc/sys/vm/drop_caches (needs root): cold rows skipped")
    # larger than memory: no run finds the store cached, and dropping what the last run (or the
    # store's writing) left in the page cache makes sure of it
    drop = larger and can_drop_page_cache()
    warm, cold_rows = [], []
    if not larger:
        bare_read(source)  # once to warm the page cache: every warm row below reads it warm
    warm.append(("bare zarr read", best(lambda: bare_read(source), a.repeat, cold=drop)))
    warm.append(("ZarrSource.read", best(lambda: source_read(source), a.repeat, cold=drop)))
    from mixstream.learn.executor import summarize_batch
    from mixstream.parallel import get_num_threads

    def lap(ex):
        return lambda: ex.map_sum(summarize_batch, model)

    n_thr = get_num_threads()
    t_threads = best(lap(LocalExecutor(source)), a.repeat, cold=drop)
    warm.append((f"lap, in-process {n_thr} thr", t_threads))
    # what one single-thread Dask worker does: read a batch, then compute it, on one thread
    # (row blocks, BLAS and zarr's decode pool included), with no reader thread beside it
    with one_thread():
        t_local = best(lap(LocalExecutor(source, n_threads=1)), a.repeat, cold=drop)
    warm.append(("lap, in-process 1 thr", t_local))
    step_ms = local_step_ms(source, model, a.repeat)
    dask_times = {}
    for n in (1, 2):
        # the LocalCluster mixstream starts itself, as a fit without client= gets it
        with DaskExecutor(source, n_workers=n, threads_per_worker=1, dashboard_address=":0") as ex:
            # warm-up: imports, numba's cache and first reads on the workers (a few batches:
            # on a store larger than memory a whole lap would take minutes)
            ex.map_sum(summarize_batch, model, batch_ids=range(min(8 * n, len(source.batches))))
            dask_times[n] = best(lap(ex), a.repeat, cold=drop)
            warm.append((f"lap, Dask {n} worker{'s' if n > 1 else ''}", dask_times[n]))
            if cold and n == 2:
                cold_rows.append(("lap, Dask 2 workers", best(lap(ex), a.repeat, cold=True)))
    if cold:
        t_cold = best(lambda: bare_read(source), a.repeat, cold=True)
        cold_rows.insert(0, ("bare zarr read", t_cold))
        t = best(lap(LocalExecutor(source)), a.repeat, cold=True)
        cold_rows.insert(1, (f"lap, in-process {n_thr} thr", t))

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; store {source.n_rows:,} x "
        f"{D} float32 = {mb / 1e3:.2f} GB ({on_disk:.2f} GB on disk; memory {ram:.1f} GB), "
        f"{len(source.batches)} batches of {a.batch_rows:,} rows; diag Gaussian K={a.k}; "
        f"best of {a.repeat}\n"
    )
    titles = {
        "larger than memory": "store larger than memory (every run reads the store from disk)",
        "warm": "warm page cache (the store read from memory: reading is CPU work)",
        "cold": "cold page cache (dropped before every run: the store read from disk)",
    }
    tables = [("larger than memory" if larger else "warm", warm)]
    if cold_rows:
        tables.append(("cold", cold_rows))
    for what, rows in tables:
        table(titles[what], rows, source, mb, on_disk)
    for n, base, what in ((1, t_local, "1 thread"), (2, t_threads, f"{n_thr} threads")):
        overhead = (dask_times[n].sec - base.sec) / len(source.batches)
        share = overhead * len(source.batches) / base.sec
        print(
            f"Dask per-batch overhead ({n} worker{'s' if n > 1 else ''} vs in-process "
            f"{what}): {1e3 * overhead:+.1f} ms = {share:+.1%} of the in-process lap"
        )
    print(f"1 -> 2 workers: {dask_times[1].sec / dask_times[2].sec:.2f}x")
    # the bound of a CPU-bound lap: every batch's read and local step share the cores
    n_b, cores = len(source.batches), os.cpu_count() or 1
    for what, rows in tables:
        r = rows[0][1]  # the bare read of that table
        read_ms = 1e3 * r.sec * r.busy * cores / n_b
        floor = (read_ms + step_ms) / cores
        print(
            f"{what}: read {read_ms:.1f} ms CPU + local step {step_ms:.1f} ms per batch on "
            f"{cores} cores -> a lap needs >= {floor:.1f} ms per batch, at most "
            f"{1e3 * r.sec / n_b / floor:.0%} of the bare read"
        )


def table(title: str, rows: list, source, mb: float, on_disk: float) -> None:
    """Rows of (name, Run); the first is the bare read the others are a fraction of."""
    base = rows[0][1].sec
    print(title)
    head = ("seconds", "rows/s", "MB/s", "of bare read", "CPU busy", "steal", "iowait", "disk")
    widths = (9, 14, 9, 14, 10, 7, 8, 8)
    print(f"{'':<22}" + "".join(f"{h:>{w}}" for h, w in zip(head, widths)))
    for name, r in rows:
        # disk: what the run read from disk, as a fraction of the store's bytes on disk
        print(
            f"{name:<22}{r.sec:>9.2f}{source.n_rows / r.sec:>14,.0f}{mb / r.sec:>9.0f}"
            f"{base / r.sec:>13.0%}{r.busy:>10.0%}{r.steal:>7.0%}{r.iowait:>8.0%}"
            f"{r.disk / 1e9 / on_disk:>8.0%}"
        )
    print()


def store_gb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 1e9


if __name__ == "__main__":
    main()
