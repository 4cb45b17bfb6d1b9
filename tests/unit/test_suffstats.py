"""SuffStats algebra: sums, differences, scaling, component edits and uid stability."""

import numpy as np
import pytest

from mixstream.suffstats import SUM_FAN_IN, SuffStats


def _random_ss(rng, K=4, D=3, uids=None, pairs=None):
    fields = {
        "N": rng.uniform(1, 10, K),
        "x": rng.normal(size=(K, D)),
        "xxT": rng.normal(size=(K, D, D)),
        "Hresp": rng.uniform(0, 5, K),
    }
    hp = None if pairs is None else rng.uniform(0, 5, len(pairs))
    return SuffStats(fields, uids, {"n_rows": 7.0}, pairs, hp)


def test_add_sub_scale_roundtrip():
    rng = np.random.default_rng(0)
    a, b = _random_ss(rng), _random_ss(rng)
    c = (a + b) - b
    for k in a.fields:
        np.testing.assert_allclose(c[k], a[k], rtol=1e-12, atol=1e-12)
    assert c.scalars["n_rows"] == pytest.approx(7.0)
    d = a.scale(3.0)
    np.testing.assert_allclose(d["xxT"], 3 * a["xxT"])
    assert d.scalars["n_rows"] == pytest.approx(21.0)


def test_fixed_tree_sum_is_order_of_batches():
    """Runs of SUM_FAN_IN (8) added left to right, level by level: the tree the Dask engine
    builds on the cluster too."""
    assert SUM_FAN_IN == 8
    rng = np.random.default_rng(1)
    parts = [_random_ss(rng) for _ in range(19)]
    s = SuffStats.sum(parts)

    def run(items):
        total = items[0]
        for x in items[1:]:
            total = total + x
        return total

    manual = run([run(parts[0:8]), run(parts[8:16]), run(parts[16:19])])
    for k in s.fields:
        np.testing.assert_array_equal(s[k], manual[k])
    assert SuffStats.sum(parts[:1]) is parts[0]


def test_misaligned_uids_refused_until_aligned():
    rng = np.random.default_rng(2)
    a = _random_ss(rng, uids=[0, 1, 2, 3])
    b = _random_ss(rng, K=3, uids=[0, 1, 2])
    with pytest.raises(ValueError, match="different components"):
        a + b
    b4 = b.align([0, 1, 2, 3])
    assert b4.K == 4 and b4.N[3] == 0.0
    np.testing.assert_allclose((a + b4)["x"][:3], a["x"][:3] + b["x"])


def test_align_refuses_to_drop_mass():
    rng = np.random.default_rng(3)
    a = _random_ss(rng, uids=[5, 6, 7, 8])
    with pytest.raises(ValueError, match="still has mass"):
        a.align([5, 6, 7])


def test_merge_pair_adds_fields_and_uses_pair_entropy():
    rng = np.random.default_rng(4)
    a = _random_ss(rng, uids=[10, 11, 12, 13], pairs=[(11, 13), (10, 12)])
    m = a.merge_pair(1, 3)
    assert m.uids.tolist() == [10, 11, 12]
    np.testing.assert_allclose(m["x"][1], a["x"][1] + a["x"][3])
    np.testing.assert_allclose(m["N"].sum(), a["N"].sum())
    assert m["Hresp"][1] == pytest.approx(a.merge_Hresp[0])
    # the pair (10, 12) does not involve a merged component: it is kept
    assert m.merge_pairs.tolist() == [[10, 12]]
    with pytest.raises(KeyError, match="not tracked"):
        m.merge_pair(0, 1)


def test_remove_insert_reorder_keep_uids_and_totals():
    rng = np.random.default_rng(5)
    a = _random_ss(rng, uids=[3, 1, 4, 9])
    r = a.reorder([2, 0, 3, 1])
    assert r.uids.tolist() == [4, 3, 9, 1]
    np.testing.assert_allclose(r["x"][0], a["x"][2])
    np.testing.assert_allclose(r["N"].sum(), a["N"].sum())
    gone = a.remove(1)
    assert gone.uids.tolist() == [3, 4, 9]
    born = _random_ss(rng, K=2, uids=[20, 21])
    both = a.insert(born)
    assert both.uids.tolist() == [3, 1, 4, 9, 20, 21]
    np.testing.assert_allclose(both["N"].sum(), a["N"].sum() + born["N"].sum())
    with pytest.raises(ValueError, match="already exist"):
        a.insert(_random_ss(rng, K=1, uids=[9]))
    with pytest.raises(ValueError, match="permutation"):
        a.reorder([0, 0, 1, 2])


def test_arrays_roundtrip():
    rng = np.random.default_rng(6)
    a = _random_ss(rng, uids=[2, 3, 5, 7], pairs=[(2, 3)])
    b = SuffStats.from_arrays(a.to_arrays())
    assert b.uids.tolist() == a.uids.tolist()
    for k in a.fields:
        np.testing.assert_array_equal(a[k], b[k])
    assert b.scalars == a.scalars
    assert b.pair_Hresp(3, 2) == a.pair_Hresp(2, 3)


def test_bad_construction_messages():
    with pytest.raises(ValueError, match="'N'"):
        SuffStats({"x": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="first axis"):
        SuffStats({"N": np.zeros(3), "x": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="distinct"):
        SuffStats({"N": np.zeros(2)}, uids=[1, 1])
