"""Fault injection: kill -9 a writer at seeded random points, then check what is on disk.

Run as a script (``python fault_harness.py SCENARIO WORKDIR SEED POINTS``); prints one JSON
line of figures. The harness imports mixstream once and forks a child per kill point, so a
point costs milliseconds of start-up instead of a fresh interpreter: the child does the work
(an ingest, a scoring, a fit), the parent sleeps a seeded random delay drawn over the length of
an uninterrupted run and sends SIGKILL. Every check of the result runs in a forked child too,
so the parent never starts a thread (zarr's event loop, a thread pool) that a later fork would
inherit half-alive.

Scenarios
---------
ingest
    ``ingest(new.npy, store, overwrite=True)`` over a store holding the old data. After the
    kill the store must hold all of the old rows or all of the new ones; a rerun gives the new.
score
    ``score_to_store(model_b, data, labels, overwrite=True)`` over labels written by model A.
    After the kill the labels (labels and log-likelihoods) are all A's or all B's; a rerun
    gives B's.
fit
    ``MixtureModel(..., checkpoint_dir=d).fit(X)`` then ``save(d/model.msz)``, killed mid-lap.
    After the kill the checkpoint (if any) and the model (if any) load and pass every check;
    rerunning the same fit resumes from the checkpoint and ends with the parameters of an
    uninterrupted fit (to 1e-10).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FIT_OPTIONS = dict(
    n_components=4, algorithm="movb", tol=0.0, max_laps=12, batch_size=200, random_state=7
)


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=6.0, size=(4, 3))
    return means[rng.integers(4, size=n)] + rng.normal(size=(n, 3))


# ---------------------------------------------------------------------- fork helpers
def _child(work: Callable[[], Any], out: Path | None = None) -> int:
    """Fork; the child runs ``work`` (writing its JSON result to ``out``) and exits."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            result = work()
            if out is not None:
                out.write_text(json.dumps(result))
        except BaseException as err:  # reported to the parent
            if out is not None:
                out.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"}))
            code = 1
        finally:
            os._exit(code)
    return pid


def _run(work: Callable[[], Any], tmp: Path) -> Any:
    """Run ``work`` in a forked child to completion; its JSON result."""
    out = tmp / f"result-{time.monotonic_ns()}.json"
    pid = _child(work, out)
    _, status = os.waitpid(pid, 0)
    result = json.loads(out.read_text()) if out.exists() else {"error": f"status {status}"}
    out.unlink(missing_ok=True)
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(result["error"])
    return result


def _timed(work: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of ``repeats`` uninterrupted runs of ``work`` in forked children (a
    median, so that one run slowed by a busy machine does not stretch every delay)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pid = _child(work)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"an uninterrupted run failed (status {status})")
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _kill_at(work: Callable[[], Any], delay: float) -> bool:
    """Start ``work`` in a child and SIGKILL it after ``delay`` s; whether it was still running."""
    pid = _child(work)
    time.sleep(delay)
    finished, _ = os.waitpid(pid, os.WNOHANG)
    if finished == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return True
    return False


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name or ".old-" in p.name)


def _clean_leftovers(directory: Path) -> None:
    for name in _leftovers(directory):
        path = directory / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


# ---------------------------------------------------------------------- scenarios
def _digest(*arrays: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class Ingest:
    OLD, NEW = "old", "new"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.store = work / "x.zarr"
        np.save(work / "old.npy", _data(4000, 1))
        np.save(work / "new.npy", _data(6000, 2))

    def write(self, which: str) -> Callable[[], Any]:
        from mixstream.data.ingest import ingest

        src = str(self.work / f"{which}.npy")
        return lambda: ingest(src, self.store, chunk_rows=100, overwrite=True) and None

    def state(self) -> Callable[[], Any]:
        def read() -> str:
            import zarr

            if not self.store.exists():
                return "absent"
            X = zarr.open_group(self.store, mode="r")["X"][:]
            for which in ("old", "new"):
                if np.array_equal(X, np.load(self.work / f"{which}.npy")):
                    return which
            return "mixed"

        return read

    def reset(self) -> None:
        _clean_leftovers(self.work)


class Score:
    OLD, NEW = "a", "b"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.labels = work / "labels.zarr"
        X = _data(6000, 3)
        self.data = str(work / "x.zarr")

        def prepare() -> None:
            from mixstream import MixtureModel
            from mixstream.data.ingest import ingest

            ingest_path = work / "x.npy"
            np.save(ingest_path, X)
            ingest(ingest_path, self.data, chunk_rows=100)
            for name, seed in (("a", 0), ("b", 1)):
                est = MixtureModel(n_components=3 + seed, algorithm="em", random_state=seed)
                est.fit(X).save(work / f"{name}.msz")

        prepare()

    def write(self, which: str) -> Callable[[], Any]:
        from mixstream.app import score_to_store

        model = self.work / f"{which}.msz"
        return lambda: score_to_store(model, self.data, self.labels, overwrite=True) and None

    def state(self) -> Callable[[], Any]:
        def read() -> str:
            import zarr

            if not self.labels.exists():
                return "absent"
            g = zarr.open_group(self.labels, mode="r")
            return _digest(g["labels"][:], g["log_likelihood"][:])

        return read

    def reset(self) -> None:
        _clean_leftovers(self.work)


class Fit:
    def __init__(self, work: Path) -> None:
        self.work = work
        np.save(work / "x.npy", _data(3000, 4))

    def run_dir(self, name: str) -> Path:
        return self.work / name

    def write(self, name: str) -> Callable[[], Any]:
        def fit() -> None:
            from mixstream import MixtureModel

            d = self.run_dir(name)
            est = MixtureModel(**FIT_OPTIONS, checkpoint_dir=d).fit(np.load(self.work / "x.npy"))
            est.save(d / "model.msz")

        return fit

    def state(self, name: str) -> Callable[[], Any]:
        def read() -> dict[str, Any]:
            from mixstream import MixtureModel
            from mixstream.engine.checkpoint import checkpoint_path
            from mixstream.io import read_model_file

            d = self.run_dir(name)
            out: dict[str, Any] = {"checkpoint": None, "model": None}
            if checkpoint_path(d).exists():
                meta, _ = read_model_file(checkpoint_path(d))  # raises if half-written
                # laps recorded: of the restart in progress, or of the best once it is done
                best = meta.get("best") or {}
                out["checkpoint"] = len(meta["result"]["history"] or best.get("history") or [])
            if (d / "model.msz").exists():
                est = MixtureModel.load(d / "model.msz")
                out["model"] = {
                    "weights": est.weights_.tolist(),
                    "means": est.means_.tolist(),
                    "covariances": est.covariances_.tolist(),
                    "lower_bound": est.lower_bound_,
                    "n_iter": est.n_iter_,
                }
            return out

        return read


def _same_model(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-10) -> bool:
    if a is None or b is None:
        return False
    return a["n_iter"] == b["n_iter"] and all(
        np.allclose(a[k], b[k], rtol=0, atol=tol)
        for k in ("weights", "means", "covariances", "lower_bound")
    )


# ---------------------------------------------------------------------- drivers
def run_store_scenario(kind: type, work: Path, seed: int, points: int) -> dict[str, Any]:
    scenario = kind(work)
    rng = np.random.default_rng(seed)
    scenario.write(scenario.OLD)()  # here: imports and compiled kernels are shared by the forks
    old = _run(scenario.state(), work)
    t_new = _timed(scenario.write(scenario.NEW))
    new = _run(scenario.state(), work)
    assert old != new
    figures = dict(points=points, killed_mid_run=0, old=0, new=0, half_written=0)
    figures.update(leftover_temporaries=0, reruns_same=0, run_seconds=round(t_new, 3))
    for _ in range(points):
        # back to the old content, then kill a writer of the new one at a random point
        _run(lambda: scenario.write(scenario.OLD)(), work)
        scenario.reset()
        delay = float(rng.uniform(0.0, t_new))
        figures["killed_mid_run"] += _kill_at(scenario.write(scenario.NEW), delay)
        seen = _run(scenario.state(), work)
        if seen == old:
            figures["old"] += 1
        elif seen == new:
            figures["new"] += 1
        else:
            figures["half_written"] += 1
        figures["leftover_temporaries"] += len(_leftovers(work))
        _run(lambda: scenario.write(scenario.NEW)(), work)
        figures["reruns_same"] += _run(scenario.state(), work) == new
    return figures


def run_fit_scenario(work: Path, seed: int, points: int) -> dict[str, Any]:
    scenario = Fit(work)
    rng = np.random.default_rng(seed)
    scenario.write("warm")()  # here: imports and compiled kernels are shared by the forks
    # each timing run in its own directory: a second run in one would resume a finished fit
    t_ref = float(np.median([_timed(scenario.write(f"ref{i}"), repeats=1) for i in range(3)]))
    ref = _run(scenario.state("ref0"), work)["model"]
    figures: dict[str, Any] = dict(points=points, killed_mid_run=0, checkpoint_laps=[])
    figures.update(half_written=0, reruns_same=0, run_seconds=round(t_ref, 3))
    for i in range(points):
        name = f"cut{i}"
        scenario.run_dir(name).mkdir()
        delay = float(rng.uniform(0.0, t_ref))
        figures["killed_mid_run"] += _kill_at(scenario.write(name), delay)
        try:
            seen = _run(scenario.state(name), work)
        except RuntimeError:
            figures["half_written"] += 1
            continue
        figures["checkpoint_laps"].append(seen["checkpoint"])
        if seen["model"] is not None and not _same_model(seen["model"], ref):
            figures["half_written"] += 1
        _run(scenario.write(name), work)  # the rerun resumes from the checkpoint
        figures["reruns_same"] += _same_model(_run(scenario.state(name), work)["model"], ref)
        shutil.rmtree(scenario.run_dir(name))
    return figures


def main(argv: list[str]) -> int:
    scenario, work, seed, points = argv[0], Path(argv[1]), int(argv[2]), int(argv[3])
    work.mkdir(parents=True, exist_ok=True)
    # one thread: no pool for a fork to inherit, and the 2-core CI machine is not oversubscribed
    os.environ["MIXSTREAM_NUM_THREADS"] = "1"
    if scenario == "ingest":
        figures = run_store_scenario(Ingest, work, seed, points)
    elif scenario == "score":
        figures = run_store_scenario(Score, work, seed, points)
    elif scenario == "fit":
        figures = run_fit_scenario(work, seed, points)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    print(json.dumps({"scenario": scenario, "seed": seed, **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
