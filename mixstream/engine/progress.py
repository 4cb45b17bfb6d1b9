"""Progress: executors report every finished batch, fits every finished lap, to listeners.

Per-batch progress: executors report every batch they finish to the listeners in context.

The algorithms in ``mixstream.learn`` know nothing of it: the executors (``LocalExecutor``,
``DaskExecutor``) call ``notify`` as each batch function returns (in-process) or as each batch
task finishes on the cluster, so a progress bar can follow a lap batch by batch without any
change to the algorithm code.

    with batch_listener(lambda event: print(event.batch, "of", event.n_batches)):
        MixtureModel(...).fit("data.zarr")

Listeners are kept in a ``contextvars.ContextVar``: they apply to the fits started in this
thread (and in contexts copied from it, as Prefect's task runs are), not to other threads.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchDone:
    """One finished batch.

    Attributes
    ----------
    batch : int
        The batch's index in the source's plan (``source.batches[batch]``).
    rows : int
        Rows in the batch.
    n_batches : int
        Batches in the source's plan (a full pass over the data visits each once).
    done : int
        Batches of this executor call finished so far, this one included.
    total : int
        Batches of this executor call.
    """

    batch: int
    rows: int
    n_batches: int
    done: int
    total: int


BatchCallback = Callable[[BatchDone], None]

_LISTENERS: contextvars.ContextVar[tuple[BatchCallback, ...]] = contextvars.ContextVar(
    "mixstream_batch_listeners", default=()
)


@contextlib.contextmanager
def batch_listener(callback: BatchCallback) -> Iterator[None]:
    """Call ``callback(BatchDone)`` for every batch an executor finishes in this context.

    A listener's exception is logged and otherwise ignored (a progress display never stops a
    fit); KeyboardInterrupt and SystemExit go through.
    """
    token = _LISTENERS.set((*_LISTENERS.get(), callback))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


class BatchReporter:
    """What one executor call reports: the listeners in context when the call began.

    Taken in the caller's thread, so that batch functions that finish in pool threads (the
    in-process executor) or in the Dask client's loop still reach the caller's listeners;
    calls are serialised by a lock.
    """

    def __init__(self, batches: list[tuple[int, int]], ids: list[int]) -> None:
        self.listeners = _LISTENERS.get()
        self.batches = batches
        self.total = len(ids)
        self.done = 0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.listeners)

    def __call__(self, i: int) -> None:
        if not self.listeners:
            return
        start, stop = self.batches[i]
        with self._lock:
            self.done += 1
            event = BatchDone(
                int(i), int(stop) - int(start), len(self.batches), self.done, self.total
            )
            for callback in self.listeners:
                try:
                    callback(event)
                except Exception as e:
                    logger.warning("a batch progress listener failed: %s", e)


# ---------------------------------------------------------------------- lap listeners
LapCallback = Callable[[dict, int], None]

_LAP_LISTENERS: contextvars.ContextVar[tuple[LapCallback, ...]] = contextvars.ContextVar(
    "mixstream_lap_listeners", default=()
)


@contextlib.contextmanager
def lap_listener(callback: LapCallback) -> Iterator[None]:
    """Call ``callback(record, max_laps)`` after every lap a ``FitRun`` completes in this context.

    Applies to every fit driven in this thread (``MixtureModel.fit``, the application layer,
    ``fit_flow`` called here, whose task runs copy the context). Unlike a batch listener's, a
    lap listener's exception propagates: it stops the fit after that lap's checkpoint, like an
    interruption, and the next run on the same output resumes there.
    """
    token = _LAP_LISTENERS.set((*_LAP_LISTENERS.get(), callback))
    try:
        yield
    finally:
        _LAP_LISTENERS.reset(token)


def notify_lap(record: dict, max_laps: int) -> None:
    """Tell the lap listeners in context that a lap completed (its history record)."""
    for callback in _LAP_LISTENERS.get():
        callback(record, max_laps)


__all__ = ["BatchDone", "BatchReporter", "batch_listener", "lap_listener", "notify_lap"]
