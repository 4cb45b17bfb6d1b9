"""Threads for the in-process engine: independent units (batches, row blocks) on every core.

BLAS already uses every core, but most of a local step is element-wise numpy work on one core
(features, log-sum-exp, exp, entropy). Running independent units in threads, each with
single-threaded BLAS, puts that work on every core too; numpy releases the GIL in both.

Results come back in input order and are added by the caller in a fixed order, so the answer
does not depend on the number of threads or on which thread finished first. Inside a unit that
is itself running in one of these threads, ``map_ordered`` runs serially (no nested pools).

    set_num_threads(2)                      # or MIXSTREAM_NUM_THREADS=2; default: usable cores
    outs = map_ordered(f, items)            # == [f(x) for x in items]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_state = threading.local()
_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_controller = None  # threadpoolctl's view of the BLAS libraries, found once (finding costs 1 ms)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads ``map_ordered`` uses: ``set_num_threads``, else MIXSTREAM_NUM_THREADS, else the
    cores this process may run on."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("MIXSTREAM_NUM_THREADS")
    if env:
        n = int(env) if env.strip().isdigit() else 0
        if n < 1:
            raise ValueError(f"MIXSTREAM_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    return _usable_cores()


def set_num_threads(n: int | None) -> None:
    """Threads for in-process work (None: back to the default). Dask workers get their
    thread cap here from the engine, so they never run more threads than they were given."""
    global _num_threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"number of threads must be a positive integer or None, got {n!r}")
    _num_threads = n


def in_worker_thread() -> bool:
    """True inside a unit that ``map_ordered`` is running in a thread."""
    return getattr(_state, "active", False)


def map_ordered(fn: Callable[[T], R], items: Iterable[T], n_threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, computed in up to ``n_threads`` threads, in input order.

    Serial when there is one item, one thread, or when called from inside another
    ``map_ordered`` unit. While threads run, BLAS is held to one thread per caller so the
    threads do not fight over the cores. The first exception is raised once every running
    unit has stopped; units not yet started are cancelled.
    """
    items = list(items)
    n = get_num_threads() if n_threads is None else n_threads
    n = min(n, len(items))
    if n <= 1 or in_worker_thread():
        return [fn(x) for x in items]

    def unit(x: T) -> R:
        _state.active = True
        try:
            return fn(x)
        finally:
            _state.active = False

    pool = _get_pool(n)
    with _blas_controller().limit(limits=1):
        futures = [pool.submit(unit, x) for x in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            wait(futures)  # nothing of this call still runs once it has raised
            raise


def _get_pool(n: int) -> ThreadPoolExecutor:
    """The process's pool with ``n`` threads (made again when ``n`` changes)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != n:
            old, _pool = _pool, ThreadPoolExecutor(max_workers=n, thread_name_prefix="mixstream")
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _blas_controller() -> Any:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller
