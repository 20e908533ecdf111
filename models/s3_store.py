"""Image files in any S3-compatible object store (AWS S3, MinIO, Ceph RGW, Cloudflare R2, Backblaze B2).

Chosen by `SDFARM_OBJECT_STORE=s3://bucket/prefix`; `SDFARM_S3_ENDPOINT_URL` names a store other
than AWS. Credentials come from boto3's standard chain (environment, shared config files, instance
or container roles), never from sdfarm's own settings. Every key is one server-made key under the
prefix, and every write is one PUT that carries the body's SHA-256, so the store refuses a body
damaged in transit and a retried PUT of the same key only writes the same bytes again.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from typing import IO, BinaryIO
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from models.image_store import ImageStore, StoreUnavailableError, check_key

# Standard retry mode backs off exponentially and retries throttling, 5xx and connection errors;
# a save that still fails leaves its images to the lease, and the batch runs again.
RETRY_ATTEMPTS = 4
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
# Enough connections for the saver's parallel writers and a few API threads.
MAX_POOL_CONNECTIONS = 16
_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """Bucket and key prefix (empty, or ending in '/') of `s3://bucket/prefix`."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3ImageStore(ImageStore):
    """Objects under `prefix` in one bucket, reached through boto3 (thread-safe; one client per process)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None):
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                signature_version="s3v4",
                retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS},
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                max_pool_connections=MAX_POOL_CONNECTIONS,
                # Self-hosted stores rarely have a DNS name per bucket; AWS picks its own style.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                # Our own SHA-256 goes with each PUT; botocore's default extra CRC trailer is
                # not understood by every S3-compatible store.
                request_checksum_calculation="when_required",
            ),
        )

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3ImageStore:
        """A store for `s3://bucket/prefix` at the endpoint (None: AWS)."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, endpoint_url)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        # A successful PUT is durable and atomic by S3's contract, so `durable` needs nothing more.
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ChecksumSHA256=digest)

    def put_fileobj(self, key: str, source: BinaryIO) -> None:
        # boto3's managed transfer uploads in parts, so an export archive is never held whole.
        self.client.upload_fileobj(source, self.bucket, self._key(key), ExtraArgs={"ChecksumAlgorithm": "SHA256"})

    def read(self, key: str) -> bytes:
        stream, _size = self.open(key)
        with stream:
            return stream.read()

    def open(self, key: str) -> tuple[IO[bytes], int]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _code(error) in _MISSING:
                raise FileNotFoundError(f"no object {key!r} in {self.describe()}") from None
            raise
        return response["Body"], int(response["ContentLength"])

    def delete(self, key: str) -> None:
        # Deleting an absent key succeeds in S3, which keeps the reaper's clean-up idempotent.
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for entry in page.get("Contents", []):
                yield entry["Key"][len(self.prefix) :]

    def check(self) -> None:
        where = self.describe()
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = _code(error)
            if code in _MISSING or code == "NoSuchBucket":
                raise StoreUnavailableError(
                    f"SDFARM_OBJECT_STORE: bucket {self.bucket!r} does not exist at {self._endpoint()}; "
                    "create it or fix the bucket name"
                ) from None
            if code in _DENIED:
                raise StoreUnavailableError(
                    f"SDFARM_OBJECT_STORE: the store refused these credentials for bucket {self.bucket!r} "
                    f"({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile or role in use"
                ) from None
            raise StoreUnavailableError(f"SDFARM_OBJECT_STORE: {where} answered {code}: {error}") from None
        except BotoCoreError as error:
            raise StoreUnavailableError(
                f"SDFARM_OBJECT_STORE: cannot reach {where}: {error}; check SDFARM_S3_ENDPOINT_URL and the network"
            ) from None
        # Reading the bucket may be allowed where writing is not: prove a write and a delete too.
        probe = f"probes/{uuid.uuid4().hex}"
        try:
            self.put(probe, b"sdfarm")
            self.delete(probe)
        except (ClientError, BotoCoreError) as error:
            code = _code(error) if isinstance(error, ClientError) else type(error).__name__
            raise StoreUnavailableError(
                f"SDFARM_OBJECT_STORE: cannot write to {where} ({code}); the credentials need PutObject and "
                "DeleteObject on the prefix"
            ) from None

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self._endpoint()}"

    def _endpoint(self) -> str:
        return self.endpoint_url or "AWS S3"

    def presigned_url(self, key: str, expires_seconds: int, mimetype: str, download_name: str | None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": mimetype}
        if download_name:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)

    def redirect_origin(self) -> str | None:
        # Signing is local (no request), so this is cheap; the origin is what browsers will load from.
        parts = urlsplit(self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "x"}))
        return f"{parts.scheme}://{parts.netloc}"


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
