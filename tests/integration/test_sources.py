"""One source factory: data.sources.open_source; engine.factory.as_source is its alias."""

from __future__ import annotations

import numpy as np
import pytest

from mixstream.data.array_source import ArraySource
from mixstream.data.sources import open_source
from mixstream.data.synthetic import write_synthetic_zarr
from mixstream.data.zarr_source import ZarrSource
from mixstream.engine.factory import as_source


def test_a_source_passes_through_and_refuses_source_options():
    src = ArraySource(np.zeros((10, 2)), batch_size=5)
    assert open_source(src) is src and as_source(src) is src
    with pytest.raises(ValueError, match="not a BatchSource"):
        open_source(src, batch_size=3)
    with pytest.raises(ValueError, match="not a BatchSource"):
        as_source(src, name="other")


def test_checks_now_or_per_batch():
    X = np.arange(20.0).reshape(10, 2)
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"X holds NaN"):
        open_source(X, batch_size=5)
    src = as_source(X, batch_size=5)  # the alias leaves the check to each batch's read
    assert not src.validated
    src.read(0)
    with pytest.raises(ValueError, match=r"X batch 1 .*\[7\]"):
        src.read(1)
    ints = np.arange(6).reshape(3, 2)
    assert open_source(ints).read(0).dtype == np.float64
    assert as_source(ints).read(0).dtype == ints.dtype  # dtype kept, as before


def test_stores_open_as_zarr_sources(tmp_path):
    path = str(tmp_path / "s.zarr")
    write_synthetic_zarr(path, n_rows=100, n_features=2, n_components=2, chunk_rows=50)
    for src in (open_source(path, batch_size=50), as_source(path, batch_size=50)):
        assert isinstance(src, ZarrSource) and len(src.batches) == 2
    with pytest.raises(ValueError, match="sample_weight"):
        open_source(path, sample_weight=np.ones(100))
