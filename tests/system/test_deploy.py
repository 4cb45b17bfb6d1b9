"""The deployment files parse and name what the flows and the operators expect."""

from __future__ import annotations

import importlib.util
import re

import pytest
import yaml
from conftest import ROOT
from prefect.client.schemas.schedules import CronSchedule

DEPLOY = ROOT / "deploy"
ENTRYPOINT = re.compile(r"^flows/(?P<name>[a-z_][a-z0-9_]*)\.py:(?P<func>[A-Za-z_]\w*)$")


def _load(name: str) -> dict:
    with (DEPLOY / name).open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in _load("prefect.yaml")["deployments"]}


def test_prefect_yaml_names_both_deployments(deployments):
    assert set(deployments) == {"fit-nightly", "score-nightly"}
    assert deployments["fit-nightly"]["entrypoint"] == "flows/fit.py:fit_flow"
    assert deployments["score-nightly"]["entrypoint"] == "flows/score.py:score_flow"
    for d in deployments.values():
        match = ENTRYPOINT.match(d["entrypoint"])
        assert match, f"{d['name']}: entrypoint {d['entrypoint']!r} is not flows/<name>.py:<func>"
        assert match["func"] == f"{match['name']}_flow"
        assert d["work_pool"]["name"] == "mixstream-pool"


def test_schedules_are_valid_cron_in_utc(deployments):
    for d in deployments.values():
        (sched,) = d["schedules"]
        parsed = CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
        assert parsed.timezone == "UTC"
        assert sched["active"] is True
    assert deployments["fit-nightly"]["schedules"][0]["cron"] == "0 2 * * *"


def test_fit_parameters(deployments):
    params = deployments["fit-nightly"]["parameters"]
    assert params["algorithm"] == "movb"
    assert params["moves"] == ["birth", "merge", "delete"]
    assert params["n_components"] == 1
    assert params["scheduler"] is None
    assert params["data"].endswith(".zarr") and params["out"]
    score = deployments["score-nightly"]["parameters"]
    assert set(score) == {"model", "data", "out", "scheduler"}
    assert score["model"].startswith(params["out"])  # scores what the fit wrote


def test_prefect_accepts_the_project_file():
    # the model `prefect deploy` validates prefect.yaml with (a private module: skip if moved)
    models = pytest.importorskip("prefect.cli.deploy._models")
    model = models.PrefectYamlModel.model_validate(_load("prefect.yaml"))
    assert [d.name for d in model.deployments] == ["fit-nightly", "score-nightly"]
    assert model.pull


def test_compose_has_scheduler_workers_and_prefect():
    compose = _load("docker-compose.yml")
    services = compose["services"]
    assert {"dask-scheduler", "dask-worker", "prefect-server", "prefect-worker"} <= set(services)
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    worker_cmd = services["dask-worker"]["command"]
    assert "tcp://dask-scheduler:8786" in worker_cmd
    assert worker_cmd[worker_cmd.index("--nthreads") + 1] == "1"
    assert services["dask-worker"]["environment"]["OMP_NUM_THREADS"] == "1"
    env = services["prefect-worker"]["environment"]
    assert env["MIXSTREAM_SCHEDULER"] == "tcp://dask-scheduler:8786"
    assert env["PREFECT_API_URL"].startswith("http://prefect-server:4200")
    assert "mixstream-pool" in " ".join(services["prefect-worker"]["command"])
    for s in services.values():
        assert s["build"]["dockerfile"] == "deploy/Containerfile"
    assert (DEPLOY / "Containerfile").read_text().startswith("#")
    assert "FROM python:3.11-slim" in (DEPLOY / "Containerfile").read_text()


def test_helm_values_and_operator_manifest_parse():
    values = _load("dask-helm-values.yaml")
    env = {e["name"]: e["value"] for e in values["worker"]["env"]}
    assert env["OMP_NUM_THREADS"] == "1"
    assert values["worker"]["replicas"] >= 1
    assert values["worker"]["resources"]["limits"]["memory"]
    assert values["scheduler"]["image"]["repository"] == values["worker"]["image"]["repository"]

    cluster = _load("dask-kubernetes-cluster.yaml")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["kind"] == "DaskCluster"
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    assert worker["args"][:2] == ["dask", "worker"]
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in worker["env"]
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    ports = {p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]}
    assert 8786 in ports


def test_slurm_script_builds_single_thread_workers():
    spec = importlib.util.spec_from_file_location("slurm_cluster", DEPLOY / "slurm_cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # must not need dask_jobqueue to import
    args = mod.build_parser().parse_args(["--cores", "16", "--queue", "compute"])
    opts = mod.cluster_options(args)
    assert opts["cores"] == opts["processes"] == 16  # one thread per worker process
    assert "export OMP_NUM_THREADS=1" in opts["job_script_prologue"]
    assert opts["queue"] == "compute" and "account" not in opts


def test_readme_covers_every_file():
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for path in DEPLOY.iterdir():
        if path.is_file() and path.name != "README.md" and not path.name.startswith("."):
            assert path.name in text, f"deploy/README.md does not mention {path.name}"
