"""Every output of ingest, fit and score honours the umask like a plain ``open(path, "w")``
(issue 21: ``model.msz`` was 0600 while the other outputs were 0644)."""

import os
import stat

import numpy as np
import pytest

from mixstream.app import fit_to_dir, ingest_to_store, score_to_store
from mixstream.app.rundir import fit_options


def modes(root):
    """{relative path: mode} of every file and directory under ``root`` (itself included)."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(here, name)
            found[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    ("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_every_output_follows_the_umask(tmp_path, mask, file_mode, dir_mode):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(6, 1, (100, 2))])
    np.save(tmp_path / "x.npy", X)
    old = os.umask(mask)
    try:
        out = tmp_path / "out"
        out.mkdir()
        ingest_to_store(str(tmp_path / "x.npy"), str(out / "x.zarr"), chunk_rows=50)
        options = fit_options(n_components=2, algorithm="vb", max_laps=3, batch_size=50)
        fit_to_dir(str(out / "x.zarr"), out / "run", options)
        score_to_store(out / "run" / "model.msz", str(out / "x.zarr"), out / "labels.zarr")
    finally:
        os.umask(old)
    found = modes(out)
    assert "run/model.msz" in found and "labels.zarr" in found and "x.zarr" in found
    wrong = {
        p: oct(m)
        for p, m in found.items()
        if m != (dir_mode if os.path.isdir(out / p) else file_mode)
    }
    assert not wrong, wrong


@pytest.mark.filterwarnings("ignore")
def test_checkpoint_follows_the_umask(tmp_path):
    from mixstream import MixtureModel
    from mixstream.engine.checkpoint import checkpoint_path

    X = np.random.default_rng(0).normal(size=(200, 2))
    old = os.umask(0o022)
    try:
        MixtureModel(2, algorithm="movb", batch_size=50, max_laps=2, checkpoint_dir=tmp_path).fit(X)
    finally:
        os.umask(old)
    assert stat.S_IMODE(checkpoint_path(tmp_path).stat().st_mode) == 0o644
