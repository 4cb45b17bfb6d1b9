"""Degenerate data (issue 21, items 3, 4 and 6): fewer than two rows, fewer rows than
components, a constant feature, every row the same point; one set of checks
(mixstream.data.validate.check_fit_data) behind MixtureModel.fit, the application layer, the
command line and the flows. Error messages name the interface's own words; sample_weight of
shape (N, 1) is refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr

from mixstream import MixtureModel, app
from mixstream.cli import main
from mixstream.cli.flags import cli_message, cli_text
from mixstream.data.validate import DegenerateDataWarning

X = np.random.default_rng(0).normal(size=(60, 3))


def _store(path, data) -> str:
    group = zarr.open_group(str(path), mode="w")
    group.create_array("X", data=np.asarray(data, dtype=np.float64), chunks=(50, data.shape[1]))
    return str(path)


# ---------------------------------------------------------------------- the API
@pytest.mark.parametrize(
    "params",
    [{}, {"allocation": "finite"}, {"algorithm": "movb"}, {"algorithm": "kmeans"}],
)
def test_one_row_is_refused(params):
    with pytest.raises(ValueError, match=r"n_samples=1 .*at least 2 rows"):
        MixtureModel(n_components=1, **params).fit(X[:1])


@pytest.mark.parametrize(
    "params", [{}, {"allocation": "finite"}, {"algorithm": "movb", "moves": ()}]
)
def test_fewer_rows_than_components_is_refused_naming_both(params):
    with pytest.raises(ValueError, match=r"n_components=5, n_samples=3"):
        MixtureModel(n_components=5, **params).fit(X[:3])


def test_dp_movb_with_moves_starts_from_the_number_of_rows():
    with pytest.warns(DegenerateDataWarning, match=r"4 rows, fewer than n_components=6.*from 4"):
        est = MixtureModel(n_components=6, algorithm="movb", max_laps=3).fit(X[:4])
    assert est.n_components_ <= 4
    assert est.get_params()["n_components"] == 6  # the parameter itself is left as given


def test_a_constant_feature_warns_naming_it():
    Y = X.copy()
    Y[:, [0, 2]] = 7.0
    with pytest.warns(DegenerateDataWarning, match=r"feature\(s\) \[0, 2\].*zero variance"):
        est = MixtureModel(n_components=2, max_laps=5).fit(Y)
    assert np.isfinite(est.score(Y))


def test_all_rows_the_same_point_warns():
    with pytest.warns(DegenerateDataWarning, match="every row of X is the same point"):
        est = MixtureModel(n_components=2, max_laps=5).fit(np.ones((20, 2)))
    assert np.isfinite(est.score(np.ones((3, 2))))


def test_ordinary_data_gives_no_data_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDataWarning)
        MixtureModel(n_components=2, max_laps=3).fit(X)


def test_sample_weight_of_shape_n_by_1_is_refused():
    with pytest.raises(ValueError, match=r"sample_weight must be 1-D, shape \(60,\).*\(60, 1\)"):
        MixtureModel(n_components=2).fit(X, sample_weight=np.ones((60, 1)))
    MixtureModel(n_components=2, max_laps=3).fit(X, sample_weight=np.ones(60))


# ---------------------------------------------------------------------- app, CLI, flows
def test_the_app_layer_runs_the_same_checks(tmp_path):
    one = _store(tmp_path / "one.zarr", X[:1])
    options = app.fit_options(n_components=1, max_laps=2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        app.fit_to_dir(one, tmp_path / "run1", options)
    three = _store(tmp_path / "three.zarr", X[:3])
    options = app.fit_options(n_components=5, algorithm="vb", max_laps=2)
    with pytest.raises(ValueError, match=r"n_components=5, n_samples=3"):
        app.fit_to_dir(three, tmp_path / "run2", options)
    flat = X.copy()
    flat[:, 1] = 0.0
    flat_store = _store(tmp_path / "flat.zarr", flat)
    with pytest.warns(DegenerateDataWarning, match=r"feature\(s\) \[1\]"):
        app.fit_to_dir(flat_store, tmp_path / "run3", app.fit_options(max_laps=2))


def test_the_cli_names_its_flags(tmp_path, capsys):
    three = _store(tmp_path / "three.zarr", X[:3])
    args = ["fit", three, "--out", str(tmp_path / "run"), "--no-prefect", "--algorithm", "vb"]
    assert main([*args, "--n-components", "5"]) == 2
    err = capsys.readouterr().err
    assert "--n-components 5" in err and "n_components" not in err, err
    one = _store(tmp_path / "one.zarr", X[:1])
    assert main(["fit", one, "--out", str(tmp_path / "r1"), "--no-prefect"]) == 2
    assert "at least 2 rows" in capsys.readouterr().err


@pytest.mark.usefixtures("prefect_harness")  # its tasks need an API: the session's server
def test_the_flow_runs_the_same_checks(tmp_path):
    pytest.importorskip("prefect")
    from flows.fit import fit_flow

    three = _store(tmp_path / "three.zarr", X[:3])
    with pytest.raises(ValueError, match=r"n_components=5, n_samples=3"):
        fit_flow.fn(data=three, out=str(tmp_path / "run"), n_components=5, algorithm="vb",
                    n_workers=1)  # fmt: skip


def test_cli_text_maps_parameters_to_flags():
    assert cli_text("x exists; pass overwrite=True to replace it") == (
        "x exists; pass --overwrite to replace it"
    )
    assert cli_text("max_laps=5 (tol=0.001), batch_size must be") == (
        "--max-laps 5 (--tol 0.001), --batch-size must be"
    )
    assert cli_text("random_state and n_workers") == "--seed and --workers"
    assert cli_text("the moves and the data are fine") == "the moves and the data are fine"
    err = app.RunExistsError("/r", "holds a finished run")
    assert "overwrite=True" in str(err) and "another out" in str(err)
    assert cli_message(err) == (
        "/r holds a finished run; pass --overwrite to replace it, or choose another --out"
    )


def test_ingest_overwrite_message_names_the_flag(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    dest = str(tmp_path / "x.zarr")
    assert main(["ingest", str(tmp_path / "x.npy"), dest]) == 0
    capsys.readouterr()
    assert main(["ingest", str(tmp_path / "x.npy"), dest]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err, err
