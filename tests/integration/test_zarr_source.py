"""ZarrSource: batch plans aligned with chunks and shards, reads, validation, pickling."""

import os
import pickle
import shutil

import numpy as np
import pytest
import zarr

from mixstream.data.zarr_source import StoreNotFoundError, StoreReadError, ZarrSource
from mixstream.learn.executor import BatchSource


def _store(path, data, chunks, shards=None, name="X", group=True, compressors="auto", **extra):
    """A Zarr v3 store: a group holding ``name`` (and ``extra`` 1-D arrays) or a root array."""
    if group:
        g = zarr.open_group(str(path), mode="w")
        a = g.create_array(
            name,
            shape=data.shape,
            chunks=chunks,
            shards=shards,
            dtype=data.dtype,
            compressors=compressors,
        )
        for k, v in extra.items():
            g.create_array(k, shape=v.shape, chunks=(chunks[0],), dtype=v.dtype)[:] = v
    else:
        a = zarr.create_array(
            str(path),
            shape=data.shape,
            chunks=chunks,
            shards=shards,
            dtype=data.dtype,
            compressors=compressors,
        )
    if data.size:
        a[...] = data
    return str(path)


def _data(n=1050, d=3, dtype=np.float64):
    return np.arange(n * d, dtype=np.float64).reshape(n, d).astype(dtype)


def test_batches_align_with_chunks(tmp_path):
    path = _store(tmp_path / "a.zarr", _data(), chunks=(100, 3))
    cases = {
        250: 300,  # 2.5 chunks -> nearest multiple (ties round up)
        1: 100,  # at least one chunk
        149: 100,
        150: 200,
        None: 1100,  # small data, default ~128 MiB -> one batch covering every chunk
    }
    for batch_size, rows in cases.items():
        src = ZarrSource(path, batch_size=batch_size)
        assert isinstance(src, BatchSource)
        assert src.batch_rows == rows, batch_size
        assert src.chunk_rows == src.shard_rows == 100
        starts = [s for s, _ in src.batches]
        assert all(s % 100 == 0 for s in starts)
        assert src.batches[0][0] == 0 and src.batches[-1][1] == 1050
        assert all(a[1] == b[0] for a, b in zip(src.batches, src.batches[1:]))
    assert ZarrSource(path, batch_size=250).batches == [
        (0, 300),
        (300, 600),
        (600, 900),
        (900, 1050),
    ]
    with pytest.raises(ValueError, match="batch_size"):
        ZarrSource(path, batch_size=0)


def test_batches_align_with_shards(tmp_path):
    path = _store(tmp_path / "s.zarr", _data(), chunks=(50, 3), shards=(200, 3))
    src = ZarrSource(path, batch_size=50)  # one chunk asked: one whole shard given
    assert (src.chunk_rows, src.shard_rows, src.batch_rows) == (50, 200, 200)
    assert src.batches == [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000), (1000, 1050)]
    src = ZarrSource(path, batch_size=450)
    assert src.batch_rows == 400
    assert all(s % 200 == 0 for s, _ in src.batches)


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.int32, np.float64),
        (np.float16, np.float64),
        (np.bool_, np.float64),
    ],
)
def test_read_returns_the_rows(tmp_path, dtype, expected):
    data = (_data() % 7).astype(dtype)
    path = _store(tmp_path / "r.zarr", data, chunks=(100, 3), shards=(300, 3))
    src = ZarrSource(path, batch_size=300)
    assert src.dtype == data.dtype and (src.n_rows, src.n_features) == (1050, 3)
    parts = []
    for i, (start, stop) in enumerate(src.batches):
        Xb = src.read(i)
        assert Xb.dtype == expected
        np.testing.assert_array_equal(Xb, data[start:stop].astype(expected))
        parts.append(Xb)
        assert src.read_weights(i) is None
    np.testing.assert_array_equal(np.concatenate(parts), data.astype(expected))


def test_open_by_root_array_url_and_zarr_array(tmp_path):
    data = _data(dtype=np.float32)
    root = _store(tmp_path / "root.zarr", data, chunks=(100, 3), group=False)
    grp = _store(tmp_path / "grp.zarr", data, chunks=(100, 3), name="points")
    sources = [
        ZarrSource(root),
        ZarrSource("file://" + root),
        ZarrSource(grp, array_path="points"),
        ZarrSource(zarr.open_array(grp, path="points", mode="r")),
        ZarrSource(zarr.open_group(grp, mode="r"), array_path="points"),
        ZarrSource(zarr.storage.LocalStore(root)),
    ]
    for src in sources:
        np.testing.assert_array_equal(src.read(0), data)
        assert src.url in (root, grp, "file://" + root)
        assert len(pickle.dumps(src)) < 2000
    assert sources[0].name == root and sources[0].array_path == ""
    assert sources[2].name == grp + "/points"
    d = sources[2].describe()
    assert d["store"] == grp and d["array"] == "points" and d["shape"] == (1050, 3)
    assert d["n_batches"] == 1 and d["dtype"] == "float32" and d["chunk_rows"] == 100


def test_relative_path_is_made_absolute(tmp_path, monkeypatch):
    _store(tmp_path / "rel.zarr", _data(), chunks=(100, 3))
    monkeypatch.chdir(tmp_path)
    src = ZarrSource("rel.zarr")
    assert src.url == str(tmp_path / "rel.zarr")


def test_bad_stores_are_named(tmp_path):
    missing = str(tmp_path / "nothing-here.zarr")
    with pytest.raises(StoreNotFoundError, match=r"nothing-here\.zarr") as ei:
        ZarrSource(missing)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, FileNotFoundError)
    with pytest.raises(ValueError, match=r"nothing-here\.zarr"):
        ZarrSource("file://" + missing)

    os.makedirs(tmp_path / "not-zarr")
    with pytest.raises(ValueError, match=r"not-zarr.*holds no Zarr array"):
        ZarrSource(str(tmp_path / "not-zarr"))

    one_d = _store(tmp_path / "oned.zarr", np.arange(10.0), chunks=(5,))
    with pytest.raises(ValueError, match=r"oned\.zarr.*2-D.*1 dimension"):
        ZarrSource(one_d)
    three_d = _store(tmp_path / "threed.zarr", np.zeros((4, 3, 2)), chunks=(2, 3, 2))
    with pytest.raises(ValueError, match=r"threed\.zarr.*2-D.*3 dimension.*\(4, 3, 2\)"):
        ZarrSource(three_d)

    g = zarr.open_group(str(tmp_path / "str.zarr"), mode="w")
    g.create_array("X", shape=(4, 2), chunks=(2, 2), dtype=str)[:] = np.array([["a", "b"]] * 4)
    with pytest.raises(ValueError, match=r"str\.zarr/X.*must hold numbers"):
        ZarrSource(str(tmp_path / "str.zarr"))

    empty = _store(tmp_path / "empty.zarr", np.zeros((0, 3)), chunks=(10, 3))
    with pytest.raises(ValueError, match=r"empty\.zarr.*empty.*\(0, 3\)"):
        ZarrSource(empty)

    other = _store(tmp_path / "noX.zarr", _data(), chunks=(100, 3), name="Y")
    with pytest.raises(ValueError, match=r"noX\.zarr.*without an array 'X'.*\['Y'\]"):
        ZarrSource(other)
    with pytest.raises(StoreNotFoundError, match=r"noX\.zarr"):
        ZarrSource(other, array_path="Z")


def test_nan_rows_are_named_with_store_batch_and_absolute_rows(tmp_path):
    data = _data()
    data[305, 1] = np.nan
    data[310, 0] = np.inf
    path = _store(tmp_path / "nan.zarr", data, chunks=(100, 3))
    src = ZarrSource(path, batch_size=300)
    src.read(0)
    with pytest.raises(ValueError, match=r"nan\.zarr/X.*batch 1 .*2 row\(s\).*\[305, 310\]"):
        src.read(1)


def test_corrupted_chunk_bytes(tmp_path):
    path = _store(tmp_path / "bad.zarr", _data(), chunks=(100, 3))
    src = ZarrSource(path, batch_size=200)
    chunk = os.path.join(path, "X", "c", "3", "0")  # rows 300:400, in batch 1
    with open(chunk, "wb") as f:
        f.write(b"this is not zstd" * 20)
    np.testing.assert_array_equal(src.read(0), _data()[:200])
    with pytest.raises(StoreReadError, match=r"bad\.zarr/X.*batch 1 \(rows 200:400\)") as ei:
        src.read(1)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, OSError)
    assert ei.value.__cause__ is not None


def test_corrupted_shard_bytes(tmp_path):
    path = _store(tmp_path / "bads.zarr", _data(), chunks=(50, 3), shards=(200, 3))
    src = ZarrSource(path, batch_size=200)
    with open(os.path.join(path, "X", "c", "2", "0"), "r+b") as f:  # rows 400:600
        f.seek(10)
        f.write(b"\xff" * 64)
    with pytest.raises(StoreReadError, match=r"bads\.zarr/X.*batch 2"):
        src.read(2)


def test_shape_changed_between_plan_and_read(tmp_path):
    path = _store(tmp_path / "grow.zarr", _data(), chunks=(100, 3))
    src = ZarrSource(path, batch_size=500)
    zarr.open_array(path, path="X", mode="a").resize((2000, 3))
    with pytest.raises(ValueError, match=r"grow\.zarr/X.*changed.*\(1050, 3\).*\(2000, 3\)"):
        src.read(0)


def test_shape_changed_after_a_read_is_seen(tmp_path):
    # the open array is kept between reads while the metadata's bytes stay the same: a resize
    # that keeps the metadata's length (1050 -> 2050 rows) at once after a read must be seen
    path = _store(tmp_path / "grow.zarr", _data(), chunks=(100, 3))
    src = ZarrSource(path, batch_size=500)
    np.testing.assert_array_equal(src.read(0), _data()[:500])
    assert src._array("X") is src._array("X")  # unchanged metadata: no reopen
    size = os.path.getsize(os.path.join(path, "X", "zarr.json"))
    zarr.open_array(path, path="X", mode="a").resize((2050, 3))
    assert os.path.getsize(os.path.join(path, "X", "zarr.json")) == size
    with pytest.raises(ValueError, match=r"grow\.zarr/X.*changed.*\(1050, 3\).*\(2050, 3\)"):
        src.read(1)
    shutil.rmtree(path)
    with pytest.raises(StoreNotFoundError, match=r"grow\.zarr"):
        src.read(0)


def test_weights_sibling_array(tmp_path):
    w = np.linspace(0.0, 2.0, 1050)
    path = _store(tmp_path / "w.zarr", _data(), chunks=(100, 3), weights=w, short=w[:10])
    src = ZarrSource(path, batch_size=400, weights="weights")
    for i, (s, e) in enumerate(src.batches):
        np.testing.assert_array_equal(src.read_weights(i), w[s:e])
    with pytest.raises(ValueError, match=r"w\.zarr.*no weights array 'nope'"):
        ZarrSource(path, weights="nope")
    with pytest.raises(ValueError, match=r"shape \(1050,\).*\(10,\)"):
        ZarrSource(path, weights="short")
    neg = w.copy()
    neg[5] = -1.0
    path2 = _store(tmp_path / "wneg.zarr", _data(), chunks=(100, 3), weights=neg)
    with pytest.raises(
        ValueError, match=r"weights.*batch 0 \(rows 0:\d+\) holds negative values.*\[5\]"
    ):
        ZarrSource(path2, weights="weights").read_weights(0)
    root = _store(tmp_path / "root.zarr", _data(), chunks=(100, 3), group=False)
    with pytest.raises(ValueError, match="needs X to sit in a group"):
        ZarrSource(root, weights="w")


def test_pickle_carries_address_and_plan_only(tmp_path):
    path = _store(tmp_path / "p.zarr", _data(), chunks=(100, 3), shards=(200, 3))
    src = ZarrSource(path, batch_size=400)
    src.read(0)  # opens the store in this process
    blob = pickle.dumps(src)
    assert len(blob) < 2000
    assert b"LocalStore" not in blob and b"zarr.core" not in blob

    moved = str(tmp_path / "elsewhere.zarr")
    shutil.move(path, moved)
    clone = pickle.loads(blob)  # unpickling opens nothing: the store is not there now
    assert clone.batches == src.batches and clone.name == src.name
    with pytest.raises(StoreNotFoundError, match=r"p\.zarr"):
        clone.read(1)
    shutil.move(moved, path)
    np.testing.assert_array_equal(clone.read(1), _data()[400:800])
    assert clone.check_visible() is None
