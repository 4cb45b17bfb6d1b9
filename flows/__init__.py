"""Prefect flows over mixstream: fit, score (labels into Zarr), ingest.

    flows/fit.py:fit_flow        one task per lap, a checkpoint after every lap, model + report
    flows/score.py:score_flow    labels and per-row log-likelihoods of a store, into Zarr
    flows/ingest.py:ingest_flow  .npy / CSV / Parquet -> a chunked Zarr store

``flows.pipeline`` holds the steps themselves without Prefect (``mixstream fit --no-prefect``
runs them directly). Nothing is imported here, so ``import flows.pipeline`` does not import
Prefect.
"""
