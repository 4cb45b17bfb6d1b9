"""Array backends on a machine without a GPU: numpy chosen, cupy refused clearly."""

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream.backend import gpu_available, resolve_backend
from mixstream.engine.local import check_on_device
from mixstream.suffstats import SuffStats

no_gpu = pytest.mark.skipif(gpu_available(), reason="these tests describe a machine without a GPU")


@no_gpu
def test_auto_chooses_numpy_without_a_gpu():
    assert resolve_backend("auto") == "numpy"
    X = np.random.default_rng(0).normal(size=(200, 2))
    MixtureModel(2, backend="auto", random_state=0).fit(X)


@no_gpu
def test_cupy_without_a_gpu_fails_with_a_clear_message():
    with pytest.raises(RuntimeError, match="cupy"):
        resolve_backend("cupy")
    X = np.random.default_rng(0).normal(size=(200, 2))
    with pytest.raises(RuntimeError, match="backend='cupy'"):
        MixtureModel(2, backend="cupy").fit(X)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tpu")


def test_host_fallback_is_detected():
    SS = SuffStats({"N": np.ones(2)}, scalars={"n_rows": 10.0, "device_rows": 6.0})
    with pytest.raises(RuntimeError, match="4 of 10 rows were computed on the host"):
        check_on_device(SS)
    check_on_device(SuffStats({"N": np.ones(2)}, scalars={"n_rows": 10.0, "device_rows": 10.0}))


def test_importing_mixstream_does_not_import_cupy():
    import subprocess
    import sys

    code = "import sys, mixstream, mixstream.estimator; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
