"""``DaskExecutor``: batch functions mapped over a BatchSource on a Dask cluster (the package
docstring tells how); the cluster comes from ``cluster``, the worker-side code from ``worker``.
"""

from __future__ import annotations

import logging
import pickle
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from mixstream.engine.dask.cluster import start_cluster
from mixstream.engine.dask.worker import BlasThreadsPlugin, _check_source, _identity, run_batches
from mixstream.engine.local import check_on_device, run_batch
from mixstream.engine.progress import BatchReporter
from mixstream.learn.executor import BatchSource
from mixstream.suffstats import SUM_FAN_IN, SuffStats, add_run

# the package's name: users' logging settings (and the tests) address "mixstream.engine.dask"
logger = logging.getLogger("mixstream.engine.dask")

#: batches are run ``SUM_FAN_IN`` to a task when a call has at least this many such tasks per
#: worker thread: enough that the last tasks of a lap leave no thread idle for long
MIN_GROUPS_PER_THREAD = 8

#: sources whose pickle is at most this big travel inside each task (recomputable anywhere);
#: bigger ones (in-memory arrays) are scattered once to every worker
INLINE_SOURCE_BYTES = 64 * 1024


class StoreNotVisibleError(FileNotFoundError):
    """The Dask workers cannot open the data source the coordinator planned."""


# ---------------------------------------------------------------------- executor
class DaskExecutor:
    """Runs batch functions on a Dask cluster, reading batches in the workers.

    Parameters
    ----------
    source : BatchSource
        Usually a ``ZarrSource``: it pickles to its address, and each worker opens the store.
        An in-memory source is scattered to every worker once.
    client : None, distributed.Client or str
        None starts a ``LocalCluster`` of worker processes (closed by ``close``); a Client is
        used as it is (never closed here); a scheduler address ("tcp://host:8786") connects a
        new Client (closed by ``close``, the cluster is left running).
    n_workers, threads_per_worker, memory_limit :
        The LocalCluster's, when one is started.
    backend : {"numpy", "cupy"}
        Where the workers put each batch before the batch function sees it.
    blas_threads : int
        BLAS / OpenMP threads per worker process (env vars for a LocalCluster, and
        threadpoolctl in every worker): 1 keeps ``threads_per_worker`` concurrent tasks from
        oversubscribing the cores.
    retries : int
        Times a failing task is re-run; tasks are pure, so a rerun gives the same result.
    check_store : bool
        Ask every worker up front whether it can open the source.
    group_batches : bool
        Run the batches of a call ``SUM_FAN_IN`` to a task when there are enough of them (at
        least ``MIN_GROUPS_PER_THREAD`` such tasks per worker thread). False: a task per batch.
        Either way the results are the same, bit for bit.
    **cluster_kwargs :
        More LocalCluster arguments (``dashboard_address=":0"``, ...).

    Attributes
    ----------
    client : distributed.Client
    cluster : LocalCluster or None (only when this executor started one)
    dashboard_link : str or None
    """

    def __init__(
        self,
        source: BatchSource,
        client: Any = None,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        memory_limit: str | int | float | None = "auto",
        backend: str = "numpy",
        blas_threads: int = 1,
        retries: int = 2,
        check_store: bool = True,
        group_batches: bool = True,
        **cluster_kwargs: Any,
    ) -> None:
        from distributed import Client

        self.source = source
        self.backend = backend
        self.retries = retries
        self.group_batches = group_batches
        self.cluster: Any = None
        self._owns_client = False
        self._closed = False
        if client is not None and (cluster_kwargs or n_workers is not None):
            given = sorted(cluster_kwargs) + (["n_workers"] if n_workers is not None else [])
            raise ValueError(
                f"{given} only apply when this executor starts a LocalCluster (client=None)"
            )
        self.client: Any = None
        self.dashboard_link: str | None = None
        try:
            if client is None:
                self.cluster = start_cluster(
                    backend,
                    n_workers,
                    threads_per_worker,
                    memory_limit,
                    blas_threads,
                    **cluster_kwargs,
                )
                self._owns_client = True
                self.client = Client(self.cluster)
            elif isinstance(client, str):
                self._owns_client = True
                self.client = Client(client)
            else:
                self.client = client
            self.dashboard_link = self._dashboard_link()
            if self.cluster is not None:
                n = len(self.cluster.workers)
                logger.info(
                    "mixstream started a Dask LocalCluster: %d worker process(es) x %d thread(s); "
                    "dashboard: %s",
                    n,
                    threads_per_worker,
                    self.dashboard_link,
                )
            elif self._owns_client:
                logger.info(
                    "mixstream connected to the Dask scheduler %s; dashboard: %s",
                    client,
                    self.dashboard_link,
                )
            self._limit_blas_threads(blas_threads)
            if check_store and hasattr(source, "check_visible"):
                self._check_workers_see_source()
            self._source_arg = self._ship_source()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ setup helpers
    def _dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:
            return None

    def _limit_blas_threads(self, n: int) -> None:
        for attempt in range(self.retries + 1):
            try:
                self.client.register_plugin(BlasThreadsPlugin(n), name=BlasThreadsPlugin.name)
                return
            except OSError as e:  # the scheduler keeps the plugin; a worker died mid-broadcast
                logger.warning("BLAS thread cap not confirmed by every worker (%s)", e)
                if attempt == self.retries:
                    return
                time.sleep(0.5)

    def _check_workers_see_source(self) -> None:
        answers = self.client.run(_check_source, self.source, on_error="return")
        # an exception here is a worker that died while answering, not a verdict on the store
        answers = {a: why for a, why in answers.items() if not isinstance(why, BaseException)}
        if not answers:
            raise RuntimeError("no Dask worker answered the check that it can open the data")
        bad = {addr: why for addr, why in answers.items() if why}
        if bad:
            lines = "; ".join(f"{addr}: {why}" for addr, why in sorted(bad.items()))
            raise StoreNotVisibleError(
                f"{len(bad)} of {len(answers)} Dask worker(s) cannot open the data at "
                f"{self.source.name!r} ({lines}). Every worker must see the store's path: put it "
                "on a shared file system or use an object-store URL (s3://, gs://, ...)"
            )

    def _ship_source(self) -> Any:
        """The source itself when it pickles small, else a Future scattered to every worker."""
        try:
            size = len(pickle.dumps(self.source, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:
            size = INLINE_SOURCE_BYTES + 1
        if size <= INLINE_SOURCE_BYTES:
            return self.source
        key = f"mixstream-source-{_token()}"
        return self.client.scatter({key: self.source}, broadcast=True)[key]

    # ------------------------------------------------------------------ Executor
    def _group_size(self, n_ids: int) -> int:
        """Batches per task for a call over ``n_ids`` batches: SUM_FAN_IN or 1."""
        if not self.group_batches or n_ids < 2 * SUM_FAN_IN:
            return 1
        threads = sum(self.client.nthreads().values())
        return SUM_FAN_IN if n_ids >= SUM_FAN_IN * MIN_GROUPS_PER_THREAD * max(threads, 1) else 1

    def _submit_batches(
        self, fn: Callable[..., Any], payload: Any, ids: list[int], kw: dict, token: str, add: bool
    ) -> tuple[Any, list[Any], list[list[int]]]:
        """The payload task, the batch tasks, and the batch ids of each task. Tasks run runs of
        consecutive ids (``_group_size``); with ``add`` a task of several returns their sum."""
        # a task rather than a broadcast scatter: the scheduler can run it again wherever it is
        # needed when the worker that held it dies, while a scatter that meets a dying worker
        # fails, or waits on replication to the dead address for ever
        payload_f = self.client.submit(
            _identity, payload, key=f"mixstream-payload-{token}", pure=False, retries=self.retries
        )
        name = getattr(fn, "__name__", "batch").replace("_", "-")
        g = self._group_size(len(ids))
        groups = [ids[j : j + g] for j in range(0, len(ids), g)]
        futures = []
        for group in groups:
            if g == 1:
                task, which, extra, label = run_batch, group[0], (), str(group[0])
            else:
                task, which, extra, label = run_batches, group, (add,), f"{group[0]}-{group[-1]}"
            futures.append(
                self.client.submit(
                    task,
                    self._source_arg,
                    fn,
                    payload_f,
                    which,
                    self.backend,
                    kw,
                    *extra,
                    key=f"mixstream-{name}-{label}-{token}",
                    retries=self.retries,
                    pure=False,
                )
            )
        return payload_f, futures, groups

    def _follow(self, futures: list[Any], groups: list[list[int]], report: BatchReporter) -> None:
        """Report the batches of each task as it finishes (in this thread), until all have
        finished or one has failed; the caller's gather then returns the results or raises."""
        if not report:
            return
        from distributed import as_completed

        batches_of = {f.key: group for f, group in zip(futures, groups)}
        for f in as_completed(futures):
            if f.status != "finished":
                break
            for i in batches_of[f.key]:
                report(i)

    def _gather(self, futures: list[Any]) -> list[Any]:
        try:
            return self.client.gather(futures)
        except FileNotFoundError as e:
            self.client.cancel(futures)
            if isinstance(e, StoreNotVisibleError):
                raise
            raise StoreNotVisibleError(
                f"a Dask worker could not open the data at {self.source.name!r}: {e}. Every "
                "worker must see the store's path (a shared file system or an object-store URL)"
            ) from e
        except BaseException:
            self.client.cancel(futures)
            raise

    def _ids(self, batch_ids: Sequence[int] | None) -> list[int]:
        n = len(self.source.batches)
        return list(range(n)) if batch_ids is None else [int(i) for i in batch_ids]

    def map(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> list[Any]:
        """[fn(payload, X_b, w_b, **kw) for b in batch_ids], computed on the workers, in order."""
        self._check_open()
        ids = self._ids(batch_ids)
        if not ids:
            return []
        report = BatchReporter(self.source.batches, ids)
        payload_f, futures, groups = self._submit_batches(fn, payload, ids, kw, _token(), False)
        try:
            try:
                self._follow(futures, groups, report)
            except BaseException:
                self.client.cancel(futures)
                raise
            results = self._gather(futures)
            if len(groups) == len(ids):  # a task per batch
                return results
            return [out for group_out in results for out in group_out]
        finally:
            del futures, payload_f

    def map_sum(
        self,
        fn: Callable[..., Any],
        payload: Any,
        batch_ids: Sequence[int] | None = None,
        **kw: Any,
    ) -> SuffStats:
        """The results of ``map`` added on the cluster in the tree of ``SuffStats.sum``."""
        self._check_open()
        ids = self._ids(batch_ids)
        if not ids:
            raise ValueError("cannot sum an empty sequence of SuffStats (no batches)")
        token = _token()
        report = BatchReporter(self.source.batches, ids)
        payload_f, level, groups = self._submit_batches(fn, payload, ids, kw, token, True)
        batch_futures = list(level)
        all_futures = list(level)
        # tasks of SUM_FAN_IN batches already return the tree's first level
        depth = 0 if len(groups) == len(ids) else 1
        # the same tree as SuffStats.sum: runs of SUM_FAN_IN added left to right, level by
        # level; a run of one is carried up as it is
        while len(level) > 1:
            depth += 1
            nxt = []
            for j in range(0, len(level), SUM_FAN_IN):
                run = level[j : j + SUM_FAN_IN]
                if len(run) == 1:
                    nxt.append(run[0])
                    continue
                node = self.client.submit(
                    add_run,
                    *run,
                    key=f"mixstream-sum-{depth}-{j // SUM_FAN_IN}-{token}",
                    retries=self.retries,
                    pure=False,
                )
                all_futures.append(node)
                nxt.append(node)
            level = nxt
        root = level[0]
        try:
            self._follow(batch_futures, groups, report)
            total = self._gather([root])[0]
            if self.backend == "cupy" and isinstance(total, SuffStats):
                check_on_device(total)
            return total
        except BaseException:
            self.client.cancel(all_futures)
            raise
        finally:
            del all_futures, batch_futures, level, root, payload_f

    # ------------------------------------------------------------------ lifetime
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this DaskExecutor is closed")

    def close(self) -> None:
        """Close the Client this executor made and the LocalCluster it started (if any)."""
        if self._closed:
            return
        self._closed = True
        self._source_arg = None  # releases a scattered source on a cluster we leave running
        if self._owns_client and self.client is not None:
            try:
                self.client.close()
            except Exception as e:  # pragma: no cover - best effort on shutdown
                logger.warning("closing the Dask client failed: %s", e)
        if self.cluster is not None:
            try:
                self.cluster.close()
            except Exception as e:  # pragma: no cover
                logger.warning("closing the Dask LocalCluster failed: %s", e)

    def describe(self) -> dict[str, Any]:
        """Engine and cluster facts, for logs."""
        info = self.client.scheduler_info() if not self._closed else {"workers": {}}
        workers = info.get("workers", {})
        return {
            "engine": "dask",
            "scheduler": info.get("address"),
            "n_workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers.values()),
            "dashboard": self.dashboard_link,
            "local_cluster": self.cluster is not None,
            "backend": self.backend,
        }

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"dashboard={self.dashboard_link}"
        return f"DaskExecutor({self.source!r}, {state})"


def _token() -> str:
    """Digits only, so that Dask's dashboard groups keys by their readable prefix."""
    return f"{uuid.uuid4().int % 10**10:010d}"
