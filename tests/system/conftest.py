"""An S3-compatible server for the object-store tests: moto's server mode, a real HTTP server
process on 127.0.0.1 (no mock of fsspec or boto). Dummy credentials in the test environment
only; the endpoint reaches s3fs through AWS_ENDPOINT_URL, as a user's would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

#: dummy credentials, distinctive so that a test can look for them in what mixstream writes
S3_KEY_ID = "mixstream-test-key-7f3a"
S3_SECRET = "mixstream-test-secret-c41e9b"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """The moto server's endpoint; the process environment points s3fs at it (and child
    processes inherit it). Skips when moto is not installed."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    env = {
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_bucket(s3_server):
    """A fresh bucket's URL, "s3://<name>"."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    name = "mixstream-tests"
    fs.mkdir(name)
    return f"s3://{name}"
