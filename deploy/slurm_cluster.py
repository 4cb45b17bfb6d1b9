"""A Dask cluster on SLURM for mixstream (dask-jobqueue), kept up until Ctrl-C.

Run it on a login node (or inside an allocation); it submits SLURM jobs that each start
``--processes`` Dask workers with one thread each and one BLAS thread per thread, then prints
the scheduler address to pass to mixstream:

    pip install dask-jobqueue
    python deploy/slurm_cluster.py --jobs 8 --cores 16 --memory 64GB --walltime 04:00:00 \\
        --queue compute --account myproject
    # prints: scheduler address: tcp://10.1.2.3:40123
    mixstream fit data.zarr --out run1 --scheduler tcp://10.1.2.3:40123      # or
    MixtureModel(..., client=Client("tcp://10.1.2.3:40123"))

Print the job script without submitting anything with ``--dry-run``. The data must be
reachable from the compute nodes at the same path or URL (a shared file system or an object
store): workers open the Zarr store themselves.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

#: single-threaded BLAS in every worker process: parallelism comes from the Dask workers
BLAS_ONE_THREAD = [
    "export OMP_NUM_THREADS=1",
    "export OPENBLAS_NUM_THREADS=1",
    "export MKL_NUM_THREADS=1",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs to submit (default 4)")
    p.add_argument("--cores", type=int, default=8, help="cores per job = workers per job")
    p.add_argument("--memory", default="32GB", help="memory per job, split among its workers")
    p.add_argument("--walltime", default="02:00:00", help="per job, HH:MM:SS")
    p.add_argument("--queue", default=None, help="SLURM partition (-p)")
    p.add_argument("--account", default=None, help="SLURM account (-A)")
    p.add_argument("--interface", default=None, help="network interface, e.g. ib0")
    p.add_argument("--local-directory", default=None, help="node-local scratch for spilling")
    p.add_argument("--python", default=None, help="python on the compute nodes")
    p.add_argument("--dry-run", action="store_true", help="print the job script and exit")
    return p


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """SLURMCluster keyword arguments: ``cores`` worker processes of one thread per job."""
    opts: dict[str, Any] = {
        "cores": args.cores,
        "processes": args.cores,  # threads per worker = cores / processes = 1
        "memory": args.memory,
        "walltime": args.walltime,
        "job_name": "mixstream-dask",
        "job_script_prologue": BLAS_ONE_THREAD,
        "scheduler_options": {"dashboard_address": ":8787"},
    }
    optional = {
        "queue": args.queue,
        "account": args.account,
        "interface": args.interface,
        "local_directory": args.local_directory,
        "python": args.python,
    }
    opts.update({k: v for k, v in optional.items() if v is not None})
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        print("this script needs dask-jobqueue: pip install dask-jobqueue", file=sys.stderr)
        return 2
    with SLURMCluster(**cluster_options(args)) as cluster:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        cluster.scale(jobs=args.jobs)
        print(f"scheduler address: {cluster.scheduler_address}", flush=True)
        print(f"dashboard: {cluster.dashboard_link}", flush=True)
        print(
            "pass it as --scheduler / scheduler= / MIXSTREAM_SCHEDULER; Ctrl-C stops the "
            "cluster and cancels its jobs",
            flush=True,
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
