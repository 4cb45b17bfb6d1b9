"""Fixtures of the integration tests: one Dask LocalCluster (2 worker processes, 1 thread each)
and a Client on it, per test module that asks for them."""

from __future__ import annotations

import pytest
from conftest import start_local_cluster


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes with 1 thread each, for the module."""
    with start_local_cluster() as cl:
        yield cl


@pytest.fixture(scope="module")
def client(cluster):
    """A distributed Client on the module's ``cluster``."""
    from distributed import Client

    with Client(cluster) as c:
        yield c
