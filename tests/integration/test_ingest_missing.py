"""CSV cells read as missing values at ingest (``na_values``), then fitted by marginalising."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from mixstream import MixtureModel
from mixstream.cli import main as cli_main
from mixstream.data.ingest import ingest
from mixstream.data.readers import CsvReader


def _csv_with_holes(path, n: int = 400, seed: int = 0) -> np.ndarray:
    """Write a CSV whose missing cells are empty or "NA"; return the array with NaN there."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(-3, 1, (n // 2, 3)), rng.normal(3, 1, (n - n // 2, 3))])
    holes = rng.random(X.shape) < 0.1
    holes[holes.all(axis=1), 0] = False
    lines = ["a,b,c"]
    for i, row in enumerate(X):
        cells = [repr(float(v)) for v in row]
        for j in np.flatnonzero(holes[i]):
            cells[j] = "" if (i + j) % 2 else "NA"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    out = X.copy()
    out[holes] = np.nan
    return out


def test_empty_cell_is_refused_by_default_with_the_way_out(tmp_path):
    _csv_with_holes(tmp_path / "x.csv")
    with pytest.raises(ValueError, match=r"line \d+, column \d+ .*na_values") as info:
        ingest(tmp_path / "x.csv", tmp_path / "x.zarr", header=True)
    assert "missing='marginalize'" in str(info.value)
    assert not (tmp_path / "x.zarr").exists()  # nothing half-written


@pytest.mark.parametrize("arrow", [True, False])
def test_na_values_become_nan_in_both_readers(tmp_path, arrow):
    want = _csv_with_holes(tmp_path / "x.csv")
    reader = CsvReader(str(tmp_path / "x.csv"), None, True, ",", arrow=arrow, na_values=("", "NA"))
    got = np.concatenate([X for X, _ in reader.blocks(64)])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


def test_ingested_holes_fit_by_marginalising_as_in_memory(tmp_path):
    want = _csv_with_holes(tmp_path / "x.csv")
    status = cli_main(
        ["ingest", str(tmp_path / "x.csv"), str(tmp_path / "x.zarr"), "--header",
         "--na-values", ",NA", "--chunk-rows", "100"]
    )  # fmt: skip
    assert status == 0
    stored = zarr.open_group(str(tmp_path / "x.zarr"), mode="r")["X"][:]
    np.testing.assert_array_equal(np.isnan(stored), np.isnan(want))
    kw = dict(n_components=2, algorithm="em", missing="marginalize", batch_size=100,
              random_state=0, max_laps=30)  # fmt: skip
    from_store = MixtureModel(**kw).fit(str(tmp_path / "x.zarr"))
    in_memory = MixtureModel(**kw).fit(want)
    np.testing.assert_allclose(from_store.means_, in_memory.means_, rtol=1e-8, atol=1e-10)
    assert sorted(np.round(from_store.means_[:, 0])) == [-3.0, 3.0]
