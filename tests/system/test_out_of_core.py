"""Out of core: memory of the coordinator and of each worker does not grow with the rows.

A store larger than a worker's memory limit is fitted on a LocalCluster; the same fit on a
store with a tenth of the rows must peak at nearly the same resident memory (<= 1.2x).
Each fit runs in its own process so peak RSS (getrusage) belongs to that fit alone. The worker
processes must be the same before and after the fit: a nanny that restarted a worker for
exceeding its memory limit would otherwise hide a high peak behind a fresh process.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    from distributed import Client, LocalCluster
    from mixstream import MixtureModel
    from mixstream.data.synthetic import write_synthetic_zarr

    def peak_mb():
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def main():
        path, n_rows, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
        write_synthetic_zarr(path, n_rows, 16, 4, chunk_rows=25_000, shard_rows=50_000,
                             seed=0, dtype="float64")
        with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=limit,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            pids_before = client.run(os.getpid)
            MixtureModel(4, covariance_type="diag", algorithm="vb", batch_size=50_000,
                         max_laps=2, tol=0.0, random_state=0, client=client).fit(path)
            pids_after = client.run(os.getpid)
            workers = list(client.run(peak_mb).values())
        print(json.dumps({"coordinator": peak_mb(), "workers": workers,
                          "pids_before": pids_before, "pids_after": pids_after}))

    if __name__ == "__main__":
        main()
    """
)


def run(tmp_path, n_rows, limit):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / f"data{n_rows}.zarr"), str(n_rows), limit],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # a worker killed for memory over and over ends the fit with KilledWorker: show why
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_rows(tmp_path):
    # a worker peaks at about 450 MB on the small store (Python, numpy, zarr, distributed, a
    # few batches, and numba's compiled kernels: about 130 MB of it); Dask pauses a worker at
    # 80% of its limit, so the limit keeps that peak below 80%
    limit = "700MB"
    big_rows = 5_600_000  # 5.6e6 x 16 float64 = 717 MB, more than a worker may hold
    assert big_rows * 16 * 8 > 700e6
    small = run(tmp_path, big_rows // 10, limit)
    big = run(tmp_path, big_rows, limit)
    print(f"peak RSS MB, 1e-1x rows: {small}; 1x rows: {big}")
    for run_ in (small, big):
        # no worker was restarted (by its nanny, for memory) during the fit: same addresses,
        # same processes
        assert len(run_["pids_before"]) == 2, run_
        assert run_["pids_after"] == run_["pids_before"], run_
    assert big["coordinator"] <= 1.2 * small["coordinator"], (small, big)
    assert max(big["workers"]) <= 1.2 * max(small["workers"]), (small, big)
