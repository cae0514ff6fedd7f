"""Helpers of the bucket-store tests: moto's S3 server on 127.0.0.1, fake credentials, local-file checks.

(A module of its own, not conftest.py: several conftest.py files share that name.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from parity.procs import wait_port

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


def local_parquet(*dirs: Path) -> list[Path]:
    """Every Parquet file under ``dirs`` (a bucket store leaves none on local disk but spill)."""
    return [p for d in dirs if d.exists() for p in d.rglob("*.parquet")]
