"""Prefect flows over mixstream: fit, score (labels into Zarr), ingest.

    flows/fit.py:fit_flow        one task per lap, a checkpoint after every lap, model + report
    flows/score.py:score_flow    labels and per-row log-likelihoods of a store, into Zarr
    flows/ingest.py:ingest_flow  .npy / CSV / Parquet -> a chunked Zarr store
    flows/select.py:select_flow  model selection: a grid of K and covariance types, the choice

Thin wrappers: each task is one step of the application layer (``mixstream.app``), which the
command line runs without Prefect (``mixstream fit --no-prefect``); flows/_artifacts.py
publishes the app's artifacts as Prefect artifacts.
"""
