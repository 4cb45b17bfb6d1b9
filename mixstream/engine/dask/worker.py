"""What runs inside the Dask worker processes: thread caps, malloc tuning, the store check,
and the batch tasks. Functions here are pickled by reference, so workers import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from mixstream.engine.local import run_batch
from mixstream.learn.executor import BatchSource
from mixstream.suffstats import add_run

#: glibc mmap and trim thresholds on the workers (see _tune_malloc)
MALLOC_THRESHOLD_BYTES = 64 * 1024 * 1024

_blas_limiter: Any = None  # the worker's threadpool limit, kept alive for the process
malloc_tuned = False  # whether _tune_malloc took effect in this process


# ---------------------------------------------------------------------- worker-side functions
def _limit_blas_threads(n: int) -> int:
    """Cap BLAS / OpenMP threads, mixstream's own block threads and zarr's decode pool, and
    tune malloc, in this (worker) process; returns the cap."""
    global _blas_limiter
    from threadpoolctl import threadpool_limits

    from mixstream.parallel import set_num_threads

    _blas_limiter = threadpool_limits(limits=n)
    set_num_threads(n)
    _limit_zarr_threads(n)
    _tune_malloc(MALLOC_THRESHOLD_BYTES)
    return n


def _limit_zarr_threads(n: int) -> None:
    """Give zarr's decode pool ``n`` threads in this (worker) process.

    zarr decodes a shard's chunks in a pool of its own (by default Python's size, cores + 4
    threads), so a one-thread worker decoded a shard's chunks on several cores at once, and two
    such workers on two cores fought over them (as uncapped BLAS threads do). The pool is made
    at zarr's first read; a process that has read already keeps the pool it has.
    """
    import zarr

    zarr.config.set({"threading.max_workers": n})


def _tune_malloc(nbytes: int) -> bool:
    """Let glibc keep batch-sized buffers in the heap instead of mmap'ing fresh pages for each.

    Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's mmap
    threshold at 128 KiB: every batch-sized array is then a fresh mmap whose pages fault in
    one by one, and a Zarr read of a 100,000 x 16 batch took 26 ms instead of 10 ms (the
    Dask engine's whole per-batch overhead, bench/streaming.py). With both thresholds at
    ``nbytes`` such buffers are reused; at most ``nbytes`` of free heap stays in the process.
    Returns False where this is not glibc.
    """
    import ctypes
    import ctypes.util

    global malloc_tuned
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(m_mmap_threshold, nbytes) and libc.mallopt(m_trim_threshold, nbytes)
    except (OSError, AttributeError):
        ok = False
    malloc_tuned = bool(ok)
    return malloc_tuned


class BlasThreadsPlugin(WorkerPlugin):
    """Caps BLAS (and mixstream's block) threads on every worker, those that join later too.

    A plain ``client.run`` reaches only the workers alive at that moment: a worker that a nanny
    restarts after a crash would come back with one BLAS thread per core and fight its
    neighbours for them.
    """

    name = "mixstream-blas-threads"

    def __init__(self, n: int) -> None:
        self.n = n

    def setup(self, worker: Any) -> None:
        _limit_blas_threads(self.n)


def _check_source(source: Any) -> str | None:
    """None when this worker can open ``source``, else why not."""
    check = getattr(source, "check_visible", None)
    if check is None:
        return None
    try:
        return check()
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def _identity(x: Any) -> Any:
    return x


def run_batches(
    source: BatchSource,
    fn: Callable[..., Any],
    payload: Any,
    ids: list[int],
    backend: str,
    kw: dict,
    add: bool,
) -> Any:
    """``run_batch`` over ``ids`` one after another, in one task: the list of results, or with
    ``add`` their sum (``add_run``, one node of the summation tree)."""
    outs = [run_batch(source, fn, payload, i, backend, kw) for i in ids]
    return add_run(*outs) if add else outs
