"""Streaming gzip parts: rows in, checksummed objects out, and the checks on the way back. Pure (stdlib only).

Compression is incremental (zlib, gzip container with mtime 0 so identical rows give identical bytes) and
memory stays bounded by the object writer's upload buffer whatever the size of the day.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from archive.manifest import Part

GZIP_WBITS = 31  # zlib: gzip header and trailer
DEFAULT_GZIP_LEVEL = 6
DEFAULT_PART_MAX_RAW_BYTES = 256 * 1024 * 1024
PROGRESS_EVERY_BYTES = 64 * 1024 * 1024


class ChecksumMismatch(RuntimeError):
    """An archived object differs from what its manifest says."""


class ObjectWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> str:
        """Finish the object; returns the SHA-256 checksum S3 stores for it."""
        ...

    def abort(self) -> None: ...


class _PartBuilder:
    def __init__(self, key: str, writer: ObjectWriter, header: bytes, level: int) -> None:
        self.key = key
        self._writer = writer
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)
        self._sha256 = hashlib.sha256()
        self.rows = 0
        self.raw_bytes = 0
        self.stored_bytes = 0
        self._add(header)

    def _emit(self, compressed: bytes) -> None:
        if compressed:
            self._sha256.update(compressed)
            self.stored_bytes += len(compressed)
            self._writer.write(compressed)

    def _add(self, raw: bytes) -> None:
        self.raw_bytes += len(raw)
        self._emit(self._compressor.compress(raw))

    def add_rows(self, rows: int, raw: bytes) -> None:
        self.rows += rows
        self._add(raw)

    def abort(self) -> None:
        self._writer.abort()

    def finish(self) -> Part:
        self._emit(self._compressor.flush())
        checksum = self._writer.close()
        return Part(self.key, self.rows, self.raw_bytes, self.stored_bytes, self._sha256.hexdigest(), checksum)


def write_parts(
    header: bytes,
    batches: Iterable[tuple[int, bytes]],
    open_writer: Callable[[str], ObjectWriter],
    key_for: Callable[[int], str],
    max_raw_bytes: int = DEFAULT_PART_MAX_RAW_BYTES,
    level: int = DEFAULT_GZIP_LEVEL,
    progress: Callable[[int, int], None] | None = None,
) -> list[Part]:
    """Cut `batches` ((row count, whole CSV lines)) into gzip parts, each starting with `header`, a new part
    starting when the next batch would take the current one past `max_raw_bytes` (a batch is never split,
    so keep batches small against parts). Batching keeps the per-row cost out of Python and zlib.
    `progress(rows, raw_bytes)` is called every PROGRESS_EVERY_BYTES."""
    parts: list[Part] = []
    builder: _PartBuilder | None = None
    total_rows = total_bytes = next_report = 0
    try:
        for rows, raw in batches:
            if builder is not None and builder.rows and builder.raw_bytes + len(raw) > max_raw_bytes:
                parts.append(builder.finish())
                builder = None
            if builder is None:
                key = key_for(len(parts))
                builder = _PartBuilder(key, open_writer(key), header, level)
            builder.add_rows(rows, raw)
            total_rows += rows
            total_bytes += len(raw)
            if progress is not None and total_bytes >= next_report:
                progress(total_rows, total_bytes)
                next_report = total_bytes + PROGRESS_EVERY_BYTES
        if builder is not None:
            parts.append(builder.finish())
            builder = None
    finally:
        if builder is not None:
            builder.abort()
    return parts


def verified_content(part: Part, compressed_chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The part's CSV, decompressed as it streams; raises ChecksumMismatch (after the last chunk, before
    returning) when the object's size or SHA-256 differ from the manifest. Consumers must treat what they
    received as void on that error (the restore rolls its transaction back)."""
    decompressor = zlib.decompressobj(GZIP_WBITS)  # checks the gzip CRC-32 and length trailer too
    sha256 = hashlib.sha256()
    size = 0
    for chunk in compressed_chunks:
        sha256.update(chunk)
        size += len(chunk)
        data = decompressor.decompress(chunk)
        if data:
            yield data
    tail = decompressor.flush()
    if tail:
        yield tail
    if size != part.bytes or sha256.hexdigest() != part.sha256 or not decompressor.eof:
        raise ChecksumMismatch(
            f"{part.key}: {size} bytes sha256 {sha256.hexdigest()}, manifest says {part.bytes} bytes {part.sha256}"
        )


def digest_of(chunks: Iterable[bytes]) -> tuple[int, str]:
    """(size, hex SHA-256) of a streamed object."""
    sha256 = hashlib.sha256()
    size = 0
    for chunk in chunks:
        sha256.update(chunk)
        size += len(chunk)
    return size, sha256.hexdigest()


def same_s3_checksum(stored: str | None, expected: str) -> bool:
    """S3 reports a multipart object's composite checksum as "<b64>-N" (moto without the suffix)."""
    if stored is None:
        return False
    return stored.split("-", 1)[0] == expected.split("-", 1)[0]
