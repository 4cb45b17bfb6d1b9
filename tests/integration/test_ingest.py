"""ingest: .npy / CSV / Parquet into Zarr v3, chunk by chunk, atomically."""

import os
import sys

import numpy as np
import pytest
import zarr

from mixstream.data.ingest import ingest
from mixstream.data.zarr_source import ZarrSource


def _leftovers(directory):
    return [n for n in os.listdir(directory) if ".partial-" in n or ".old-" in n]


def _X(n=1000, d=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * 10.0 ** np.arange(d)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
def test_npy_round_trip(tmp_path, dtype):
    X = _X().astype(dtype)
    np.save(tmp_path / "x.npy", X)
    dest = ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=64, shard_rows=256)
    assert dest == str(tmp_path / "x.zarr")
    arr = zarr.open_group(dest, mode="r")["X"]
    assert arr.dtype == X.dtype and arr.chunks == (64, 4) and arr.shards == (256, 4)
    np.testing.assert_array_equal(arr[:], X)
    src = ZarrSource(dest, batch_size=300)  # rounds to one shard of 256 rows
    assert src.batch_rows == 256
    np.testing.assert_array_equal(
        np.concatenate([src.read(i) for i in range(len(src.batches))]),
        X.astype(np.float32 if dtype == np.float32 else np.float64),
    )
    assert _leftovers(tmp_path) == []


def test_npy_dtype_and_default_layout(tmp_path):
    X = _X(3000, 5)
    np.save(tmp_path / "x.npy", X)
    dest = ingest(tmp_path / "x.npy", tmp_path / "x.zarr", dtype="float32", compressor=None)
    arr = zarr.open_group(dest, mode="r")["X"]
    assert arr.dtype == np.float32 and arr.shards is None and arr.compressors == ()
    np.testing.assert_array_equal(arr[:], X.astype(np.float32))
    np.save(tmp_path / "v.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"v\.npy must hold a 2-D array.*\(5,\)"):
        ingest(tmp_path / "v.npy", tmp_path / "v.zarr")
    assert not os.path.exists(tmp_path / "v.zarr")


@pytest.mark.parametrize("header", [True, False])
def test_csv_round_trip(tmp_path, header):
    X = _X(1000, 3)
    np.savetxt(
        tmp_path / "x.csv",
        X,
        delimiter=",",
        fmt="%.17g",
        header="alpha,beta,gamma" if header else "",
        comments="",
    )
    if not header:  # savetxt wrote an empty first line: keep the file data-only
        text = (tmp_path / "x.csv").read_text().lstrip("\n")
        (tmp_path / "x.csv").write_text(text)
    dest = ingest(tmp_path / "x.csv", tmp_path / "x.zarr", chunk_rows=100, shard_rows=300)
    g = zarr.open_group(dest, mode="r")
    np.testing.assert_array_equal(g["X"][:], X)  # %.17g round-trips float64 exactly
    assert g["X"].shards == (300, 3)
    meta = g.attrs["mixstream_ingest"]
    assert meta["format"] == "csv"
    assert meta.get("columns") == (["alpha", "beta", "gamma"] if header else None)


def test_csv_header_flag_tsv_and_blank_lines(tmp_path):
    (tmp_path / "n.tsv").write_text("1\t2\n\n3\t4\n   \n5\t6\n")
    dest = ingest(tmp_path / "n.tsv", tmp_path / "n.zarr", chunk_rows=2)
    np.testing.assert_array_equal(zarr.open_group(dest)["X"][:], [[1, 2], [3, 4], [5, 6]])
    # a header made of numbers is only a header when told so
    dest = ingest(tmp_path / "n.tsv", tmp_path / "h.zarr", chunk_rows=2, header=True)
    np.testing.assert_array_equal(zarr.open_group(dest)["X"][:], [[3, 4], [5, 6]])


def test_csv_bad_cell_mid_file_names_the_line_and_leaves_nothing(tmp_path):
    X = _X(2000, 3)
    lines = ["a,b,c"] + [",".join(f"{v:.17g}" for v in row) for row in X]
    lines[1500] = lines[1500].split(",")[0] + ",oops," + lines[1500].split(",")[2]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv line 1501, column 2 \('b'\).*'oops'"):
        # small shards: several whole shards are written before the bad line is reached
        ingest(tmp_path / "bad.csv", tmp_path / "bad.zarr", chunk_rows=50, shard_rows=100)
    assert not os.path.exists(tmp_path / "bad.zarr")
    assert _leftovers(tmp_path) == []

    lines = ["1,2,3"] * 700 + ["4,5"] + ["1,2,3"] * 10
    (tmp_path / "ragged.csv").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"ragged\.csv line 701: 2 field\(s\), expected 3"):
        ingest(tmp_path / "ragged.csv", tmp_path / "ragged.zarr", chunk_rows=100)
    assert _leftovers(tmp_path) == [] and not os.path.exists(tmp_path / "ragged.zarr")


def test_existing_dest_is_refused_unless_overwrite(tmp_path):
    np.save(tmp_path / "a.npy", _X(100, 2, seed=1))
    np.save(tmp_path / "b.npy", _X(50, 2, seed=2))
    dest = ingest(tmp_path / "a.npy", tmp_path / "d.zarr", chunk_rows=10)
    with pytest.raises(FileExistsError, match=r"d\.zarr already exists.*overwrite=True"):
        ingest(tmp_path / "b.npy", dest, chunk_rows=10)
    assert zarr.open_group(dest)["X"].shape == (100, 2)  # untouched
    ingest(tmp_path / "b.npy", "file://" + dest, chunk_rows=10, overwrite=True)
    np.testing.assert_array_equal(zarr.open_group(dest)["X"][:], _X(50, 2, seed=2))
    assert _leftovers(tmp_path) == []


def test_bad_arguments(tmp_path):
    np.save(tmp_path / "a.npy", _X(10, 2))
    with pytest.raises(FileNotFoundError, match=r"missing\.npy"):
        ingest(tmp_path / "missing.npy", tmp_path / "m.zarr")
    with pytest.raises(ValueError, match=r"shard_rows \(150\) must be a whole multiple"):
        ingest(tmp_path / "a.npy", tmp_path / "m.zarr", chunk_rows=100, shard_rows=150)
    with pytest.raises(ValueError, match="cannot tell the format"):
        ingest(_touch(tmp_path / "data.bin"), tmp_path / "m.zarr")
    with pytest.raises(ValueError, match="compressor"):
        ingest(tmp_path / "a.npy", tmp_path / "m.zarr", compressor="lzma-please")
    with pytest.raises(ValueError, match="unknown URL scheme 'nosuch'"):  # s3:// is allowed
        ingest(tmp_path / "a.npy", "nosuch://bucket/m.zarr")
    assert _leftovers(tmp_path) == [] and not os.path.exists(tmp_path / "m.zarr")


def _touch(path):
    path.write_bytes(b"")
    return path


def test_parquet_round_trip(tmp_path):
    # pyarrow is in the `test` extra: this test runs (and fails when it is missing)
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = _X(1000, 3)
    ints = np.arange(1000, dtype=np.int64)
    table = pa.table(
        {
            "a": X[:, 0],
            "b": X[:, 1],
            "c": X[:, 2],
            "i": ints,
            "name": [f"r{k}" for k in range(1000)],
        }
    )
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=300)
    with pytest.raises(ValueError, match=r"column 'name' has type string"):
        ingest(tmp_path / "x.parquet", tmp_path / "x.zarr")
    dest = ingest(
        tmp_path / "x.parquet",
        tmp_path / "x.zarr",
        chunk_rows=64,
        shard_rows=128,
        columns=["a", "b", "c", "i"],
    )
    g = zarr.open_group(dest, mode="r")
    assert g["X"].dtype == np.float64 and g.attrs["mixstream_ingest"]["columns"] == list("abci")
    np.testing.assert_array_equal(g["X"][:], np.column_stack([X, ints]))
    assert _leftovers(tmp_path) == []


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    # a None entry in sys.modules makes `import pyarrow` raise ImportError, as on a machine
    # without it
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match="pyarrow"):
        ingest(tmp_path / "x.parquet", tmp_path / "x.zarr")
    assert _leftovers(tmp_path) == []
