"""Ingest at the edges (issue 21, item 4): header detection never drops a row silently; every
error names file, line and column; an empty .npy and a CSV given to ``fit`` say what to do."""

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr

from mixstream import MixtureModel
from mixstream.data.ingest import AmbiguousHeaderError, ingest
from mixstream.data.zarr_source import NotAStoreError


def write(path, text):
    path.write_text(text)
    return path


def rows(dest):
    return zarr.open_group(dest, mode="r")["X"][:]


def cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "mixstream.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- header detection
def test_first_row_mixing_text_and_numbers_is_an_error_not_a_dropped_row(tmp_path):
    # before: taken as a header, the row ("x1" an id typo) vanished without a word
    src = write(tmp_path / "a.csv", "1.0,x1,3.0\n4.0,5.0,6.0\n7.0,8.0,9.0\n")
    with pytest.raises(AmbiguousHeaderError) as info:
        ingest(src, tmp_path / "a.zarr")
    message = str(info.value)
    assert f"CSV {src} line 1, column 2" in message
    assert "'x1'" in message and "header=True" in message and "header=False" in message
    assert not (tmp_path / "a.zarr").exists()


def test_explicit_header_decides(tmp_path):
    src = write(tmp_path / "a.csv", "id,2.5,z\n1,2,3\n4,5,6\n")
    out = ingest(src, tmp_path / "h.zarr", header=True)
    np.testing.assert_array_equal(rows(out), [[1, 2, 3], [4, 5, 6]])
    assert zarr.open_group(out, mode="r").attrs["mixstream_ingest"]["columns"] == ["id", "2.5", "z"]
    # header=False: line 1 is data, and its text cell is an error naming line 1, column 1
    with pytest.raises(ValueError, match=rf"CSV {src} line 1, column 1: cannot read 'id'"):
        ingest(src, tmp_path / "d.zarr", header=False)
    # a numeric first line is a header only when told so
    nums = write(tmp_path / "n.csv", "10,20\n1,2\n")
    np.testing.assert_array_equal(rows(ingest(nums, tmp_path / "n1.zarr")), [[10, 20], [1, 2]])
    np.testing.assert_array_equal(rows(ingest(nums, tmp_path / "n2.zarr", header=True)), [[1, 2]])
    with pytest.raises(ValueError, match="header must be True, False or None"):
        ingest(nums, tmp_path / "n3.zarr", header="yes")


def test_guess_takes_an_all_text_first_row_as_header(tmp_path):
    src = write(tmp_path / "a.csv", "alpha,beta\n1,2\n3,4\n")
    out = ingest(src, tmp_path / "a.zarr")
    np.testing.assert_array_equal(rows(out), [[1, 2], [3, 4]])
    assert zarr.open_group(out, mode="r").attrs["mixstream_ingest"]["columns"] == ["alpha", "beta"]


def test_an_empty_cell_in_a_numeric_first_row_is_data_with_a_bad_cell(tmp_path):
    src = write(tmp_path / "a.csv", "1,,3\n4,5,6\n")
    with pytest.raises(ValueError, match=rf"CSV {src} line 1, column 2: cannot read ''"):
        ingest(src, tmp_path / "a.zarr")


# ---------------------------------------------------------------- line numbers in errors
@pytest.mark.parametrize("header", [True, False])
def test_errors_name_the_physical_line_and_column_with_and_without_header(tmp_path, header):
    head = "a,b,c\n" if header else ""
    body = "1,2,3\n\n4,5,6\n7,oops,9\n"  # a blank line in between still counts as a line
    src = write(tmp_path / "a.csv", head + body)
    bad_line = 4 + (1 if header else 0)
    col = " \\('b'\\)" if header else ""
    with pytest.raises(ValueError, match=rf"CSV {src} line {bad_line}, column 2{col}: cannot read"):
        ingest(src, tmp_path / "a.zarr", header=header, chunk_rows=1)
    short = write(tmp_path / "s.csv", head + "1,2,3\n4,5\n")
    with pytest.raises(ValueError, match=rf"line {3 if header else 2}: 2 field\(s\), expected 3"):
        ingest(short, tmp_path / "s.zarr", header=header)


def test_error_past_the_first_block_names_the_right_line(tmp_path, monkeypatch):
    import mixstream.data.ingest as mod

    monkeypatch.setattr(mod, "CSV_BLOCK_LINES", 3)
    lines = ["x,y"] + [f"{i},{i}" for i in range(10)]
    lines[9] = "8,nan?"  # line 10 of the file
    src = write(tmp_path / "a.csv", "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"line 10, column 2 \('y'\): cannot read 'nan\?'"):
        ingest(src, tmp_path / "a.zarr", chunk_rows=1)


# ---------------------------------------------------------------- .npy and fit on a file
def test_empty_npy_names_the_file(tmp_path):
    src = tmp_path / "empty.npy"
    src.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"{src} is empty \(0 bytes\)"):
        ingest(src, tmp_path / "e.zarr")
    truncated = tmp_path / "t.npy"
    np.save(truncated, np.ones((10, 3)))
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(ValueError, match=rf"cannot read {truncated} as a numeric \.npy file"):
        ingest(truncated, tmp_path / "t.zarr")


@pytest.mark.parametrize("name", ["data.csv", "data.npy"])
def test_fit_on_a_csv_or_npy_file_points_to_ingest(tmp_path, name):
    src = tmp_path / name
    if name.endswith(".npy"):
        np.save(src, np.ones((4, 2)))
    else:
        src.write_text("1,2\n3,4\n")
    with pytest.raises(NotAStoreError, match=rf"not a Zarr store.*mixstream ingest {src}"):
        MixtureModel(2).fit(str(src))


def test_cli_ingest_header_flags_and_messages(tmp_path):
    src = write(tmp_path / "a.csv", "1.0,x1\n2.0,3.0\n")
    res = cli("ingest", str(src), "a.zarr", cwd=tmp_path)
    assert res.returncode == 2
    assert "line 1, column 2" in res.stderr and "--header" in res.stderr
    assert "--no-header" in res.stderr and "header=True" not in res.stderr
    res = cli("ingest", str(src), "h.zarr", "--header", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(rows(tmp_path / "h.zarr"), [[2, 3]])
    res = cli("fit", str(src), "--out", "run", "--no-prefect", cwd=tmp_path)
    assert res.returncode == 2 and "mixstream ingest" in res.stderr, res.stderr
