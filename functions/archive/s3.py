"""The archive's S3 side (boto3): checksummed uploads (SHA-256, multipart above one chunk), HEAD, reads.

Every upload carries its SHA-256 (ChecksumAlgorithm=SHA256): S3 recomputes it and refuses a corrupted body.
A part upload buffers at most one chunk of compressed bytes, whatever the size of the object.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import boto3
from botocore.exceptions import ClientError

from archive.ports import ObjectHead

# S3 multipart: parts of 5 MiB at least (but the last), at most 10,000 of them: 16 MiB chunks allow 160 GB.
CHUNK_BYTES = 16 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024
CONTENT_TYPES = {".json": "application/json", ".gz": "application/gzip"}


def _b64_sha256(data: bytes) -> tuple[bytes, str]:
    digest = hashlib.sha256(data).digest()
    return digest, base64.b64encode(digest).decode("ascii")


def _content_type(key: str) -> str:
    return next((kind for suffix, kind in CONTENT_TYPES.items() if key.endswith(suffix)), "binary/octet-stream")


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class MultipartWriter:
    """Streams one object: a single PutObject when it fits in one chunk, else a multipart upload."""

    def __init__(self, client, bucket: str, key: str, chunk_bytes: int) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._digests: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self._chunk_bytes:
            chunk = bytes(self._buffer[: self._chunk_bytes])
            del self._buffer[: self._chunk_bytes]
            self._upload_part(chunk)

    def _upload_part(self, chunk: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ChecksumAlgorithm="SHA256", ContentType=_content_type(self._key)
            )["UploadId"]
        digest, checksum = _b64_sha256(chunk)
        number = len(self._parts) + 1
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=chunk,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum})
        self._digests.append(digest)

    def close(self) -> str:
        if self._upload_id is None:
            return S3ObjectStore.put_object(self._client, self._bucket, self._key, bytes(self._buffer))
        if self._buffer:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        # S3's composite checksum of a multipart object: SHA-256 of the parts' digests, "-<number of parts>".
        return (
            f"{base64.b64encode(hashlib.sha256(b''.join(self._digests)).digest()).decode('ascii')}-{len(self._parts)}"
        )

    def abort(self) -> None:
        if self._upload_id is not None:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None


class S3ObjectStore:
    def __init__(self, bucket: str, client=None, chunk_bytes: int = CHUNK_BYTES) -> None:
        if not bucket:
            raise ValueError("ARCHIVE_BUCKET is not set")
        self.bucket = bucket
        self._client = client or boto3.client("s3")
        self._chunk_bytes = chunk_bytes

    @staticmethod
    def put_object(client, bucket: str, key: str, data: bytes) -> str:
        _, checksum = _b64_sha256(data)
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum,
            ContentType=_content_type(key),
        )
        return checksum

    def check(self) -> None:
        self._client.head_bucket(Bucket=self.bucket)

    def open_writer(self, key: str) -> MultipartWriter:
        return MultipartWriter(self._client, self.bucket, key, self._chunk_bytes)

    def put(self, key: str, data: bytes) -> str:
        return self.put_object(self._client, self.bucket, key, data)

    def head(self, key: str) -> ObjectHead | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return ObjectHead(response["ContentLength"], response.get("ChecksumSHA256"))

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def read(self, key: str) -> Iterator[bytes]:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK_BYTES)
        finally:
            body.close()

    def list_keys(self, prefix: str) -> list[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = keys[start : start + 1000]
            response = self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
            if response.get("Errors"):
                raise RuntimeError(f"could not delete archive objects: {response['Errors'][:3]}")
