"""The in-process executor: batches mapped over this process's threads (``mixstream.parallel``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mixstream.backend import namespace, to_device
from mixstream.engine.progress import BatchReporter
from mixstream.learn.executor import BatchSource
from mixstream.parallel import get_num_threads, in_worker_thread, map_ordered
from mixstream.suffstats import SuffStats

#: batches smaller than this (on average) run one after another, not in threads
MIN_THREADED_ROWS = 2048
#: batches read beyond those being computed
READ_AHEAD = 1


def check_on_device(SS: SuffStats) -> None:
    """Fail loudly if statistics of a cupy fit were computed on the host."""
    rows, on_device = SS.scalars.get("n_rows"), SS.scalars.get("device_rows")
    if on_device is not None and rows is not None and on_device < rows:
        raise RuntimeError(
            f"backend='cupy' but {rows - on_device:.0f} of {rows:.0f} rows were computed on the "
            "host: a batch function fell back to numpy"
        )


def run_batch(
    source: BatchSource, fn: Callable[..., Any], payload: Any, i: int, backend: str, kw: dict
) -> Any:
    """Read batch ``i``, move it to the backend's device, and apply ``fn`` to it.

    The unit of work of every executor: in this process, or inside a Dask worker.
    """
    return apply_batch(source, fn, payload, i, backend, kw, read_batch(source, i))


def read_batch(source: BatchSource, i: int) -> tuple[Any, Any]:
    """Batch ``i`` of ``source`` and its row weights (None when unweighted), on the host."""
    return source.read(i), source.read_weights(i)


def apply_batch(
    source: BatchSource,
    fn: Callable[..., Any],
    payload: Any,
    i: int,
    backend: str,
    kw: dict,
    batch: tuple[Any, Any],
) -> Any:
    """``fn`` on batch ``i`` (as ``read_batch`` returned it), moved to the backend's device."""
    X, w = batch
    if backend != "numpy":
        xp = namespace(backend)
        X = to_device(X, xp)
        w = None if w is None else to_device(w, xp)
    if getattr(fn, "needs_rows", False):
        kw = {**kw, "rows": tuple(source.batches[i])}
    return fn(payload, X, w, **kw)


class LocalExecutor:
    """Runs batch functions over ``source`` in this process.

    Batches run in threads (one BLAS thread each), so reading and decoding one batch overlaps
    the local step of another; results come back in batch order, so sums do not depend on the
    number of threads. Each finished batch is reported to the listeners of
    ``mixstream.engine.progress.batch_listener`` (progress bars).

    Parameters
    ----------
    source : BatchSource
    backend : {"numpy", "cupy"}
        Where batches go before the batch function sees them.
    n_threads : int, optional
        Threads for batches; default ``mixstream.parallel.get_num_threads()``. 1: one batch
        after another.
    """

    def __init__(
        self, source: BatchSource, backend: str = "numpy", n_threads: int | None = None
    ) -> None:
        self.source = source
        self.backend = backend
        self.n_threads = n_threads

    def map(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> list[Any]:
        ids = list(range(len(self.source.batches)) if batch_ids is None else batch_ids)
        report = BatchReporter(self.source.batches, ids)
        # one device: batches of a cupy fit queue on it anyway, so they run in turn; and small
        # batches cost less one after another than handed to threads
        rows = sum(int(b[1]) - int(b[0]) for b in (self.source.batches[i] for i in ids))
        small = rows < MIN_THREADED_ROWS * len(ids)
        threads = 1 if self.backend != "numpy" or small else self.n_threads
        if threads == 1 or len(ids) < 2 or in_worker_thread():
            out = []
            for i in ids:
                out.append(run_batch(self.source, fn, payload, i, self.backend, kw))
                report(i)
            return out
        return self._map_read_ahead(fn, payload, ids, kw, threads, report)

    def _map_read_ahead(
        self,
        fn: Callable[..., Any],
        payload: Any,
        ids: list[int],
        kw: dict,
        threads: int | None,
        report: BatchReporter,
    ) -> list[Any]:
        """One reader thread stays ``READ_AHEAD`` batches ahead; the batch functions run in the
        thread pool. One reader, because several threads reading one Zarr store contend in
        its event loop and read slower together than one alone; a bounded window, because
        read batches wait in memory."""
        lock = threading.Lock()
        reads: dict[int, Future] = {}
        next_read = 0
        ahead = READ_AHEAD + (threads or get_num_threads())

        def unit(j: int) -> Any:
            nonlocal next_read
            with lock:
                while next_read < min(j + ahead, len(ids)):
                    reads[next_read] = reader.submit(read_batch, self.source, ids[next_read])
                    next_read += 1
                pending = reads.pop(j)
            out = apply_batch(self.source, fn, payload, ids[j], self.backend, kw, pending.result())
            report(ids[j])
            return out

        with ThreadPoolExecutor(1, thread_name_prefix="mixstream-read") as reader:
            try:
                return map_ordered(unit, range(len(ids)), threads)
            finally:
                for f in reads.values():
                    f.cancel()

    def map_sum(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> SuffStats:
        return SuffStats.sum(self.map(fn, payload, batch_ids, **kw))

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
