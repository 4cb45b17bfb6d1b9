"""CSV and Parquet ingest by streaming readers: pyarrow's CSV reader in fixed-size blocks with
the line parser as fallback (same values, same error messages), Parquet by record batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

import mixstream.data.readers as readers
from mixstream.data.ingest import ingest
from mixstream.data.readers import CsvReader


def stored(path):
    return zarr.open_group(path, mode="r")["X"][:]


def test_arrow_blocks_equal_the_line_parser(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "ARROW_BLOCK_BYTES", 4096)  # many blocks
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3_000, 4)) * 10.0 ** rng.integers(-3, 4, size=(3_000, 4))
    lines = ["a,b,c,d", ""] + [",".join(repr(float(v)) for v in row) for row in X]
    lines[5] = '"1.5",nan,inf,-2e-3'  # quoted, NaN, inf (read the same by both)
    (tmp_path / "x.csv").write_text("\n".join(lines) + "\n")
    reader = CsvReader(str(tmp_path / "x.csv"), None, None, ",")
    arrow = np.concatenate([b for b, _ in reader.blocks(1_000)])
    assert not reader.used_fallback
    lines_only = CsvReader(str(tmp_path / "x.csv"), None, None, ",", arrow=False)
    ref = np.concatenate([b for b, _ in lines_only.blocks(1_000)])
    np.testing.assert_array_equal(arrow, ref)
    assert arrow.shape == (3_000, 4)
    with pytest.raises(ValueError, match=r"holds NaN or infinite values in 1 row\(s\); first rows"):
        from mixstream import MixtureModel

        MixtureModel(2).fit(ingest(tmp_path / "x.csv", tmp_path / "x.zarr"))


def test_error_past_many_arrow_blocks_names_line_and_column(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "ARROW_BLOCK_BYTES", 2048)
    lines = ["x,y"] + [f"{i},{i}.5" for i in range(2_000)]
    lines[1_500] = "1499,abc"  # line 1501 of the file
    src = tmp_path / "bad.csv"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 1501, column 2 \('y'\): cannot read 'abc'"):
        ingest(src, tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()
    # and a file that only the line parser reads (a blank-but-spaces line) ingests whole
    lines[1_500] = "1499,1499.5"
    lines.insert(700, "   ")
    src.write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(stored(ingest(src, tmp_path / "ok.zarr"))[:, 0], np.arange(2_000))


def test_parquet_by_record_batches_and_bad_column(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(5_000, 3)), columns=["a", "b", "c"])
    frame.to_parquet(tmp_path / "p.parquet", row_group_size=700)
    np.testing.assert_array_equal(
        stored(ingest(tmp_path / "p.parquet", tmp_path / "p.zarr", chunk_rows=512)),
        frame.to_numpy(),
    )
    frame.assign(city="x").to_parquet(tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=r"column 'city' has type \w+, not a number"):
        ingest(tmp_path / "s.parquet", tmp_path / "s.zarr")
