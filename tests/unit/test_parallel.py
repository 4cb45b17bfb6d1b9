"""Threads of the in-process engine: same answers whatever the number of threads."""

import threading
import time

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream.alloc import DPAlloc
from mixstream.data.array_source import ArraySource
from mixstream.engine.local import LocalExecutor
from mixstream.learn.executor import summarize_batch
from mixstream.model import Model
from mixstream.obs.gauss import GaussObs
from mixstream.parallel import get_num_threads, in_worker_thread, map_ordered, set_num_threads


@pytest.fixture
def threads():
    yield set_num_threads
    set_num_threads(None)


def test_map_ordered_keeps_input_order_and_uses_threads():
    names = []

    def slow_square(x):
        time.sleep(0.02 * (5 - x))  # later items finish first
        names.append(threading.current_thread().name)
        return x * x

    assert map_ordered(slow_square, range(5), 2) == [0, 1, 4, 9, 16]
    assert all(n.startswith("mixstream") for n in names)


def test_nested_map_runs_serially_inside_a_unit():
    def inner(x):
        assert in_worker_thread()
        return map_ordered(lambda y: threading.current_thread().name, range(3), 2)

    for names in map_ordered(inner, range(2), 2):
        assert len(set(names)) == 1  # all three inner items ran in the unit's own thread


def test_first_exception_is_raised_after_running_units_stop():
    done = []

    def fn(x):
        if x == 1:
            raise ValueError("batch 1 is bad")
        time.sleep(0.05)
        done.append(x)
        return x

    with pytest.raises(ValueError, match="batch 1 is bad"):
        map_ordered(fn, range(6), 2)
    n = len(done)
    time.sleep(0.2)
    assert len(done) == n  # nothing of the failed call still runs


def test_thread_count_settings(threads, monkeypatch):
    threads(3)
    assert get_num_threads() == 3
    threads(None)
    monkeypatch.setenv("MIXSTREAM_NUM_THREADS", "2")
    assert get_num_threads() == 2
    monkeypatch.setenv("MIXSTREAM_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="MIXSTREAM_NUM_THREADS must be a positive integer"):
        get_num_threads()
    with pytest.raises(ValueError, match="positive integer"):
        threads(0)


def _model(X, K=6):
    rng = np.random.default_rng(0)
    model = Model(DPAlloc(1.0), GaussObs("full"))
    model.obs.set_prior_from_data(X)
    model.uids = model.new_uids(K)
    resp = rng.dirichlet(np.ones(K), size=X.shape[0])
    model.global_step(model.summarize(X, {"resp": resp}))
    return model


def test_local_summarize_is_the_same_with_one_or_two_threads(threads):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200_000, 5)) + rng.integers(0, 4, 200_000)[:, None]
    model = _model(X)
    threads(1)
    one = model.local_summarize(X)
    threads(2)
    two = model.local_summarize(X)
    for name in one.fields:
        np.testing.assert_allclose(two.fields[name], one.fields[name], rtol=1e-12)
    assert two.scalars == pytest.approx(one.scalars, rel=1e-12)


def test_local_executor_threads_give_the_same_sum(threads):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60_000, 4))
    model = _model(X, K=3)
    source = ArraySource(X, batch_size=5_000)
    serial = LocalExecutor(source, n_threads=1).map_sum(summarize_batch, model)
    threaded = LocalExecutor(source, n_threads=2).map_sum(summarize_batch, model)
    for name in serial.fields:
        np.testing.assert_allclose(threaded.fields[name], serial.fields[name], rtol=1e-12)


@pytest.mark.filterwarnings("ignore:MixtureModel did not converge")
def test_fit_is_the_same_with_one_or_two_threads(threads):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40_000, 3)) + 4 * rng.integers(0, 3, 40_000)[:, None]
    opts = dict(n_components=3, batch_size=4_000, max_laps=5, tol=0.0, random_state=0)
    threads(1)
    a = MixtureModel(**opts).fit(X)
    threads(2)
    b = MixtureModel(**opts).fit(X)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10)
    np.testing.assert_allclose(b.lower_bounds_, a.lower_bounds_, rtol=1e-10)
