"""``mixstream demo``: the whole pipeline on a synthetic dataset, then everything it started
stopped: a Zarr store of planted clusters, a Dask LocalCluster, a temporary Prefect server,
fit_flow (DP moVB with moves from K=1) and score_flow, and where every output is."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mixstream.cli.progress import dashboard_note, fit_progress, say, want_batch_progress

DEMO_COMPONENTS = 8
DEMO_FEATURES = 8


def demo_layout(rows: int) -> tuple[int, int]:
    """Rows per chunk (about 16 chunks, whole multiples of 1024) and per batch (4 chunks)."""
    chunk = max(1024, (rows // 16) // 1024 * 1024)
    return chunk, 4 * chunk


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np
    import zarr
    from sklearn.metrics import adjusted_rand_score

    from mixstream import app
    from mixstream.cli.prefect_server import PrefectAPI, run_flow
    from mixstream.data.synthetic import write_synthetic_zarr
    from mixstream.options import RUN_DEFAULTS, default_moves

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    data = out / "data.zarr"
    labels_out = out / "labels.zarr"
    chunk, batch = demo_layout(args.rows)
    api = PrefectAPI()  # the server starts while the data is written
    try:
        say(
            f"[1/4] writing {args.rows} x {DEMO_FEATURES} points from {DEMO_COMPONENTS} planted "
            f"Gaussian clusters to {data}"
        )
        write_synthetic_zarr(
            data,
            args.rows,
            DEMO_FEATURES,
            DEMO_COMPONENTS,
            chunk_rows=chunk,
            seed=args.seed,
            overwrite=True,
        )
        # a fresh fit, not a resume: the demo's previous run (if any) is replaced
        app.remove_checkpoint(out / app.CHECKPOINT_DIR)
        for name in (app.RUN_FILE, app.MODEL_FILE):
            (out / name).unlink(missing_ok=True)
        source, plan = app.describe_data(str(data), batch)
        say(f"[2/4] starting a Dask LocalCluster ({args.workers} workers x 1 thread)")
        with app.open_executor(source, None, args.workers) as cluster:
            address = cluster.client.scheduler.address
            dashboard = app.dashboard_of(cluster)
            say(f"      Dask dashboard (while the demo runs): {dashboard_note(dashboard)}")
            say(f"      Prefect API: {api.wait()}")
            say(
                f"[3/4] fit_flow: DP mixture, memoized VB with birth / merge / delete moves, "
                f"from K=1, {plan['n_batches']} batches of {plan['batch_rows']} rows"
            )
            from flows.fit import fit_flow
            from flows.score import score_flow

            with fit_progress(want_batch_progress(False), verbose=args.verbose):
                fit, fit_run = run_flow(
                    fit_flow,
                    data=str(data),
                    out=str(out),
                    n_components=RUN_DEFAULTS.n_components,
                    algorithm=RUN_DEFAULTS.algorithm,
                    moves=list(default_moves(RUN_DEFAULTS.algorithm)),
                    batch_size=batch,
                    max_laps=args.max_laps,
                    tol=RUN_DEFAULTS.tol,
                    random_state=args.seed,
                    scheduler=address,
                )
            say(f"[4/4] score_flow: labels and log-likelihoods into {labels_out}")
            scores, score_run = run_flow(
                score_flow,
                model=fit["model"],
                data=str(data),
                out=str(labels_out),
                scheduler=address,
                overwrite=True,
            )
        prefect_lines = api.describe([fit_run, score_run])
    finally:
        api.close()
    truth = np.asarray(zarr.open_group(str(data), mode="r")["labels"][:])
    found = np.asarray(zarr.open_group(str(labels_out), mode="r")["labels"][:])
    ari = adjusted_rand_score(truth, found)
    converged = "converged" if fit["converged_"] else "max laps reached"
    print(f"mixstream demo: done in {time.perf_counter() - t0:.0f} s")
    print(
        f"clusters found   {fit['n_components_']} (planted {DEMO_COMPONENTS}); adjusted Rand "
        f"index {ari:.3f} against the planted labels"
    )
    print(f"ELBO per point   {fit['lower_bound_']:.8g} after {fit['laps']} laps ({converged})")
    print(f"report           {fit['report']}")
    print(f"model            {fit['model']}")
    print(f"labels           {scores['out']} (arrays labels, log_likelihood)")
    print(f"data             {data}")
    print(f"Dask dashboard   {dashboard_note(dashboard)} (closed with the demo's cluster)")
    for line in prefect_lines:
        print(f"Prefect          {line}")
    return 0
