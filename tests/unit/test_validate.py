"""check_finite: the one-pass fast path must not change what is reported."""

import numpy as np
import pytest

from mixstream.data.validate import check_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_values_whose_sum_overflows_pass(dtype):
    big = np.finfo(dtype).max / 2
    X = np.full((8, 3), big, dtype=dtype)  # the sum is inf; every value is finite
    with np.errstate(over="ignore"):
        assert not np.isfinite(X.sum())
    check_finite(X, "batch 0")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_reported_with_its_rows(bad):
    X = np.zeros((100, 4), np.float32)
    X[17, 2] = bad
    X[60, 0] = bad
    with pytest.raises(
        ValueError,
        match=r"batch 3 holds NaN or infinite values in 2 row\(s\); "
        r"first rows: \[1017, 1060\]",
    ):
        check_finite(X, "batch 3", row_offset=1000)


def test_inf_and_minus_inf_do_not_cancel():
    X = np.zeros((4, 2))
    X[1, 0], X[2, 1] = np.inf, -np.inf  # their sum is nan, still caught
    with pytest.raises(ValueError, match=r"first rows: \[1, 2\]"):
        check_finite(X, "X")


def test_integers_pass():
    check_finite(np.arange(12).reshape(4, 3), "X")
