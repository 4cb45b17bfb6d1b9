"""Integration tests: real Zarr stores on disk, Dask LocalClusters, checkpoints, engines and
the estimator end to end."""
