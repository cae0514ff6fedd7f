"""A real S3-compatible server on 127.0.0.1 (moto's, from its pip package) for the bucket-store tests.

Each test gets its own bucket. The server can be stopped and started again on the same port with
its objects kept (moto keeps them in this process), which is how a test makes uploads fail.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from parity.procs import free_port, wait_port

# Fake credentials: the server accepts any. Long enough to be found by the secret sweep if leaked.
ACCESS_KEY = "AKIAPARITYTESTKEY0001"
SECRET_KEY = "parity-test-secret-5b0c2a7e9d3f4e61a8b7"


@dataclass
class S3Server:
    """moto's S3 server on 127.0.0.1:``port``; ``env`` is what a client process needs (AWS_* only)."""

    port: int
    env: dict[str, str]
    _server: object = None
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_port(self.port)

    def stop(self) -> None:
        """Stop answering (connections are refused); the objects stay for the next start()."""
        self._server.stop()

    def bucket(self) -> str:
        """A new, empty bucket."""
        import boto3

        name = f"parity-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


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


def local_parquet(*dirs: Path) -> list[Path]:
    """Every Parquet file under ``dirs`` (a bucket store leaves none on local disk but spill)."""
    return [p for d in dirs if d.exists() for p in d.rglob("*.parquet")]
