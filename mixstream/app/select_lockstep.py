"""Several fits over one executor in lockstep: each pass over the data serves all of them.

A grid of candidates fitted one after the other reads the data once per lap of each candidate
(57 passes for a 24-model grid that converges in 2-3 laps each). Here every candidate's
``FitRun`` runs in its own thread on a ``LockstepExecutor``: its ``map`` / ``map_sum`` calls
wait until every candidate still running has asked for its own, and then one ``map_sum`` (or
``map``) of the real executor runs all of their batch functions on each batch (``sum_many``),
so a pass costs one read of each batch however many candidates it serves. Each fit's
statistics are added in the executor's usual tree (``StatsList`` adds element by element, on
the workers), so each candidate's fit is the one it would have had alone.

    group = Lockstep(executor, n=len(runs))
    threads run:  run(group.executor())  ...  group.leave()   # once each fit is done
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixstream.suffstats import SuffStats


def run_many(calls: Sequence[tuple[Callable[..., Any], Any, dict]], X: Any, w: Any,
             rows: tuple[int, int] | None = None) -> list[Any]:  # fmt: skip
    """``[fn(payload, X, w, **kw) for fn, payload, kw in calls]`` on one batch (``rows`` go to
    the functions that ask for them)."""
    out = []
    for fn, payload, kw in calls:
        if getattr(fn, "needs_rows", False):
            kw = {**kw, "rows": rows}
        out.append(fn(payload, X, w, **kw))
    return out


run_many.needs_rows = True  # type: ignore[attr-defined]


class StatsList(list):
    """The SuffStats of several fits on one batch, added element by element, so that the
    executor's ``map_sum`` adds each fit's statistics in its usual tree (on the workers)."""

    def __add__(self, other: Any) -> StatsList:  # type: ignore[override]
        return StatsList(a + b for a, b in zip(self, other, strict=True))


def sum_many(calls: Sequence[tuple[Callable[..., Any], Any, dict]], X: Any, w: Any,
             rows: tuple[int, int] | None = None) -> StatsList:  # fmt: skip
    """``run_many`` whose results are added by ``map_sum``."""
    return StatsList(run_many(calls, X, w, rows))


sum_many.needs_rows = True  # type: ignore[attr-defined]


@dataclass
class _Request:
    fn: Callable[..., Any]
    payload: Any
    batch_ids: tuple[int, ...] | None
    kw: dict[str, Any]
    sum: bool
    done: bool = False
    result: Any = None
    error: BaseException | None = None
    key: Any = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.batch_ids, self.sum)


class Lockstep:
    """Gathers the batch calls of ``n`` fits and runs them as one pass of ``executor``.

    Parameters
    ----------
    executor : Executor
        The real executor (in-process or Dask).
    n : int
        Fits taking part; each calls ``leave()`` once it has finished (or failed).
    """

    def __init__(self, executor: Any, n: int) -> None:
        self.inner = executor
        self.active = n
        self.pending: list[_Request] = []
        self.cond = threading.Condition()
        self.passes = 0  # maps of the real executor

    def executor(self) -> LockstepExecutor:
        return LockstepExecutor(self)

    def submit(self, request: _Request) -> Any:
        with self.cond:
            self.pending.append(request)
            self._dispatch_when_all_asked()
            while not request.done:
                self.cond.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def leave(self) -> None:
        """One fit has finished: the others no longer wait for it."""
        with self.cond:
            self.active -= 1
            self._dispatch_when_all_asked()

    def _dispatch_when_all_asked(self) -> None:
        # called with the lock held; every other running fit is waiting in submit, so running
        # the pass under the lock holds nobody up
        if not self.pending or len(self.pending) < self.active:
            return
        requests, self.pending = self.pending, []
        groups: dict[Any, list[_Request]] = {}
        for r in requests:
            groups.setdefault(r.key, []).append(r)
        for (ids, _), group in groups.items():
            self._run(group, None if ids is None else list(ids))
        self.cond.notify_all()

    def _run(self, group: list[_Request], batch_ids: list[int] | None) -> None:
        calls = [(r.fn, r.payload, r.kw) for r in group]
        try:
            if group[0].sum:
                totals = self.inner.map_sum(sum_many, calls, batch_ids)
                for r, total in zip(group, totals, strict=True):
                    r.result = total
            else:
                per_batch = self.inner.map(run_many, calls, batch_ids)
                for j, r in enumerate(group):
                    r.result = [outs[j] for outs in per_batch]
            self.passes += 1
        except BaseException as err:  # every fit of the pass sees the failure
            for r in group:
                r.error = err
        for r in group:
            r.done = True


class LockstepExecutor:
    """One fit's view of a ``Lockstep``: an Executor whose calls join the group's passes."""

    def __init__(self, group: Lockstep) -> None:
        self.group = group
        self.source = group.inner.source
        self.backend = getattr(group.inner, "backend", "numpy")

    def _ask(self, fn: Any, payload: Any, batch_ids: Any, kw: dict, total: bool) -> Any:
        ids = None if batch_ids is None else tuple(int(i) for i in batch_ids)
        return self.group.submit(_Request(fn, payload, ids, kw, total))

    def map(self, fn: Callable[..., Any], payload: Any,
            batch_ids: Sequence[int] | None = None, **kw: Any) -> list[Any]:  # fmt: skip
        return self._ask(fn, payload, batch_ids, kw, False)

    def map_sum(self, fn: Callable[..., Any], payload: Any,
                batch_ids: Sequence[int] | None = None, **kw: Any) -> SuffStats:  # fmt: skip
        return self._ask(fn, payload, batch_ids, kw, True)

    def close(self) -> None:
        pass


def run_in_lockstep(executor: Any, jobs: Sequence[Callable[[Any], Any]]) -> tuple[list[Any], int]:
    """Run ``job(lockstep_executor)`` for every job, each in its own thread, in lockstep over
    ``executor``; their results in order and the number of passes over the data. The first
    failure is raised once all have stopped."""
    group = Lockstep(executor, len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def work(i: int) -> None:
        try:
            results[i] = jobs[i](group.executor())
        except BaseException as err:
            errors[i] = err
        finally:
            group.leave()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for err in errors:
        if err is not None:
            raise err
    return results, group.passes
