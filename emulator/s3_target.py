"""The S3 side of backups: one boto3 client per remote, bounded timeouts, errors as sentences.

boto3 is an optional dependency of the emulator (``pip install .[emulator]``): without it an S3
remote cannot be created and the answer says so. Nothing here ever logs or returns a key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import IO, Any

log = logging.getLogger("emulator.s3")

#: Bounded so that a bad endpoint ends a shipment instead of hanging it.
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
ATTEMPTS = 2
PART_SIZE = 8 * 1024 * 1024
CONCURRENCY = 4


class S3Error(Exception):
    """A failed S3 call; ``str()`` is a sentence for the user (never a key)."""

    def __init__(self, message: str, *, kind: str = "other") -> None:
        super().__init__(message)
        #: ``unreachable``, ``auth``, ``no_bucket``, ``not_found``, ``missing_library`` or ``other``
        self.kind = kind


class Aborted(Exception):
    """A transfer stopped because its shipment was aborted."""


def endpoint_url(endpoint: str) -> str:
    """LINSTOR accepts an endpoint without a scheme (the AWS SDK then uses HTTPS)."""
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def _import_boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise S3Error(
            "S3 remotes need the boto3 package in the emulator (install the 'emulator' extra).",
            kind="missing_library",
        ) from exc
    return boto3


class S3Target:
    """The bucket of one S3 remote."""

    def __init__(self, remote: dict[str, Any]) -> None:
        boto3 = _import_boto3()
        from botocore.config import Config

        self.bucket = remote["bucket"]
        self.endpoint = endpoint_url(remote["endpoint"])
        style = "path" if remote.get("use_path_style") else "virtual"
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=remote["region"],
            aws_access_key_id=remote["access_key"],
            aws_secret_access_key=remote["secret_key"],
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                retries={"max_attempts": ATTEMPTS, "mode": "standard"},
                s3={"addressing_style": style},
                signature_version="s3v4",
            ),
        )

    @property
    def addressing_style(self) -> str:
        return str(self._client.meta.config.s3.get("addressing_style", ""))

    # ------------------------------------------------------------------ calls

    def check(self) -> None:
        """The remote works: endpoint reachable, keys accepted, bucket there (LINSTOR lists objects)."""
        self._call(lambda: self._client.list_objects_v2(Bucket=self.bucket, MaxKeys=1))

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket (under ``prefix``; the controller lists them all)."""
        return list(self.sizes(prefix))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Object key -> size in bytes, for every object under ``prefix``."""

        def run() -> dict[str, int]:
            out: dict[str, int] = {}
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                out.update((obj["Key"], int(obj.get("Size", 0))) for obj in page.get("Contents", []))
            return out

        return self._call(run)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data))

    def get_bytes(self, key: str) -> bytes:
        return self._call(lambda: self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def upload(self, key: str, stream: IO[bytes], stop: Callable[[], bool]) -> None:
        """Upload ``stream`` (a multipart upload of parallel parts when it is large); ``stop()`` aborts it.

        The stream is read part by part, so a volume never sits in memory whole; at most
        ``2 * CONCURRENCY`` parts do. An aborted or failed upload leaves no multipart upload behind.
        """
        first = _read_full(stream, PART_SIZE)
        if len(first) < PART_SIZE:
            if stop():
                raise Aborted("shipment aborted")
            self._call(lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=first))
            return
        upload_id = self._call(
            lambda: self._client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        )
        try:
            parts = self._parts(key, upload_id, first, stream, stop)
            self._call(
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            )
        except BaseException:
            with contextlib.suppress(S3Error):
                self._call(
                    lambda: self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                )
            raise

    def _parts(
        self, key: str, upload_id: str, first: bytes, stream: IO[bytes], stop: Callable[[], bool]
    ) -> list[dict[str, Any]]:
        def send(number: int, data: bytes) -> dict[str, Any]:
            answer = self._call(
                lambda: self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        futures: list[Future[dict[str, Any]]] = []
        with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="s3-part") as pool:
            try:
                number, data = 1, first
                while data:
                    if stop():
                        raise Aborted("shipment aborted")
                    futures.append(pool.submit(send, number, data))
                    while sum(not f.done() for f in futures) >= 2 * CONCURRENCY:
                        wait(futures, return_when=FIRST_COMPLETED)
                    for f in futures:
                        if f.done() and f.exception() is not None:
                            raise f.exception()  # type: ignore[misc]
                    number, data = number + 1, _read_full(stream, PART_SIZE)
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def download(self, key: str) -> Iterator[bytes]:
        """The object's bytes in pieces (streamed, never all in memory)."""
        body = self._call(lambda: self._client.get_object(Bucket=self.bucket, Key=key)["Body"])
        try:
            while True:
                piece = self._call(lambda: body.read(PART_SIZE))
                if not piece:
                    return
                yield piece
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self._call(lambda: self._client.delete_object(Bucket=self.bucket, Key=key))

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished multipart uploads under ``prefix`` (what an interrupted shipment leaves)."""

        def run() -> int:
            n = 0
            listing = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
            for up in listing.get("Uploads", []):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                )
                n += 1
            return n

        return self._call(run)

    # ------------------------------------------------------------------ errors

    def _call(self, fn: Callable[[], Any]) -> Any:
        from botocore import exceptions as bex

        try:
            return fn()
        except Aborted:
            raise
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError) as exc:
            raise S3Error(
                f"The S3 endpoint {self.endpoint} could not be reached: {exc}", kind="unreachable"
            ) from None
        except bex.ClientError as exc:
            raise _client_error(exc, self.bucket) from None
        except bex.BotoCoreError as exc:
            raise S3Error(
                f"The S3 request to {self.endpoint} failed: {_safe(exc)}", kind="unreachable"
            ) from None


def _read_full(stream: IO[bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the stream."""
    out = bytearray()
    while len(out) < size:
        piece = stream.read(size - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


def _safe(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def _client_error(exc: Any, bucket: str) -> S3Error:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchBucket",):
        return S3Error(f"The bucket '{bucket}' does not exist.", kind="no_bucket")
    if (
        code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken")
        or status == 403
    ):
        return S3Error(
            f"The S3 server refused the access key or secret key for bucket '{bucket}' ({code or status}).",
            kind="auth",
        )
    if code in ("NoSuchKey", "404") or status == 404:
        return S3Error(f"The object was not found in bucket '{bucket}'.", kind="not_found")
    return S3Error(f"The S3 server answered {code or status} for bucket '{bucket}'.")
