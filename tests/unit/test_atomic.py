"""mixstream.atomic: whole files and whole directory trees, or the old ones; umask modes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from mixstream import MixtureModel
from mixstream.atomic import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_file,
    atomic_write_text,
)
from mixstream.report import write_report


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class _Umask:
    """Set the process umask for a block (the writer must respect it, not hard-code a mode)."""

    def __init__(self, mask: int) -> None:
        self.mask = mask

    def __enter__(self) -> None:
        self.old = os.umask(self.mask)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.old)


# ---------------------------------------------------------------------- files
def test_file_written_replaced_and_nothing_left_beside_it(tmp_path):
    target = tmp_path / "sub" / "a.txt"  # the directory is created
    assert atomic_write_text(target, "one\n") == target
    assert target.read_text() == "one\n"
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    with atomic_write_file(target, "w") as fh:
        fh.write("three")
    assert target.read_text() == "three"
    assert _names(target.parent) == ["a.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_error_mid_write_keeps_the_old_content_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old content")
    with pytest.raises(error):
        with atomic_write_file(target) as fh:
            fh.write(b"half of the new")
            fh.flush()
            raise error("killed mid-write")
    assert target.read_bytes() == b"old content"
    assert _names(tmp_path) == ["a.bin"]


def test_error_mid_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write_file(tmp_path / "new.txt", "w") as fh:
            fh.write("x")
            raise ValueError("no")
    assert _names(tmp_path) == []
    with pytest.raises(ValueError, match="mode"):
        with atomic_write_file(tmp_path / "new.txt", "a"):
            pass


def test_a_reader_sees_the_old_or_the_new_file_never_a_mix(tmp_path):
    target = tmp_path / "a.bin"
    versions = [bytes([i]) * 200_000 for i in range(2)]
    atomic_write_bytes(target, versions[0])
    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            atomic_write_bytes(target, versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert seen and all(s in versions for s in seen)


@pytest.mark.parametrize(("mask", "want"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_modes_follow_the_umask(tmp_path, mask, want):
    with _Umask(mask):
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_bytes(tmp_path / "b.bin", b"x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what an ordinary open() gives
    assert _mode(tmp_path / "a.txt") == want == _mode(plain)
    assert _mode(tmp_path / "b.bin") == want


def test_model_file_and_report_get_the_same_mode(tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 2))
    est = MixtureModel(n_components=2, random_state=0, max_laps=3)
    with pytest.warns(Warning):  # three laps: not converged
        est.fit(X)
    with _Umask(0o022):
        model = Path(est.save(tmp_path / "model.msz"))
        report = write_report(tmp_path / "report.html", est.history_, est.weights_)
    assert _mode(model) == _mode(report) == 0o644  # model files were 0600 before
    assert MixtureModel.load(model).n_components_ == est.n_components_


# ---------------------------------------------------------------------- directories
def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _read_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_directory_appears_whole_and_replaces_only_with_overwrite(tmp_path):
    dest = tmp_path / "out.zarr"
    with atomic_directory(dest) as partial:
        assert not os.path.exists(partial)  # the caller creates it (zarr's mode="w-" needs that)
        assert not dest.exists()
        assert Path(partial).parent == tmp_path
        _tree(Path(partial), {"a": "1", "b/c": "2"})
    assert _read_tree(dest) == {"a": "1", "b/c": "2"}
    with pytest.raises(FileExistsError, match="overwrite"):
        with atomic_directory(dest):
            pytest.fail("nothing may run when dest exists and overwrite is off")
    with atomic_directory(dest, overwrite=True) as partial:
        _tree(Path(partial), {"d": "3"})
        assert _read_tree(dest) == {"a": "1", "b/c": "2"}  # the old tree until the swap
    assert _read_tree(dest) == {"d": "3"}  # not a mix of the two trees
    assert _names(tmp_path) == ["out.zarr"]  # no partial or old tree left beside it


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_error_while_writing_a_directory_keeps_the_old_tree(tmp_path, error):
    dest = tmp_path / "out"
    _tree(dest, {"a": "old"})
    with pytest.raises(error):
        with atomic_directory(dest, overwrite=True) as partial:
            _tree(Path(partial), {"a": "new", "half": "x"})
            raise error("killed mid-write")
    assert _read_tree(dest) == {"a": "old"}
    assert _names(tmp_path) == ["out"]


def test_a_file_at_dest_is_replaced_by_the_directory(tmp_path):
    dest = tmp_path / "out"
    dest.write_text("a file")
    with atomic_directory(str(dest), overwrite=True) as partial:
        _tree(Path(partial), {"a": "1"})
    assert _read_tree(dest) == {"a": "1"}
    assert _names(tmp_path) == ["out"]
