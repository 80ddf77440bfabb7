"""A real S3-compatible server (moto in server mode) as a child process, for tests and benchmarks.

moto is a test-only dependency. The server runs in its own process on a free port, so what
talks to it (the emulator, the driver, a benchmark's plain upload) goes over real HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from testkit.processes import free_port, terminate, wait_ready

#: moto accepts any keys unless told otherwise; these are the ones tests hand to remotes.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    """``moto_server`` on 127.0.0.1; ``start()`` waits until it answers, ``stop()`` ends it."""

    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"moto-{self.port}.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_ready(
            self.proc,
            lambda: requests.get(self.endpoint + "/moto-api/", timeout=1).status_code < 500,
            f"the moto server at {self.endpoint}",
            lambda: log_path.read_text(errors="replace")[-4000:],
            self.stop,
            timeout,
            transient=(requests.RequestException,),
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, timeout=10)
            self.proc = None

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Any:
        """A boto3 client for this server (path-style), e.g. to make buckets or read objects."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def enable_auth(self) -> None:
        """Make moto check keys: only ``ACCESS_KEY`` is then known (others get InvalidAccessKeyId)."""
        requests.post(self.endpoint + "/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()

    def remote_body(self, name: str, bucket: str, **over: Any) -> dict[str, Any]:
        """The JSON of ``POST /v1/remotes/s3`` for a bucket of this server."""
        data = {
            "remote_name": name,
            "endpoint": self.endpoint,
            "bucket": bucket,
            "region": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "use_path_style": True,
        }
        data.update(over)
        return data

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
