"""Prefect flows over mixstream, thin wrappers of the application layer (``mixstream.app``,
which the command line runs without Prefect): fit_flow (flows/fit.py, a task per lap),
score_flow (labels into Zarr), ingest_flow (files into a Zarr store), select_flow (model
selection); flows/_artifacts.py publishes the app's artifacts as Prefect artifacts.
"""
