"""A real S3-compatible server on 127.0.0.1 (moto's, from its pip package) for the bucket-store tests.

Each test gets its own bucket. The server can be stopped and started again on the same port with
its objects kept (moto keeps them in this process), which is how a test makes uploads fail.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from s3kit import ACCESS_KEY, SECRET_KEY, S3Server

from parity.procs import free_port


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The server, with this process's AWS_* variables pointing at it (restored afterwards)."""
    from parity.store import objstore

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    nowhere = tmp_path_factory.mktemp("aws") / "none"
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(nowhere),  # never a developer's own ~/.aws
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    server = S3Server(free_port(), env)
    env["AWS_ENDPOINT_URL"] = server.endpoint
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    objstore.fs.cache_clear()  # the filesystem reads the endpoint once per process
    server.start()
    try:
        yield server
    finally:
        server.stop()
        objstore.fs.cache_clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def store_url(s3: S3Server) -> str:
    """``s3://<a new bucket>/team/parity``: a store nobody wrote yet."""
    return f"s3://{s3.bucket()}/team/parity"
