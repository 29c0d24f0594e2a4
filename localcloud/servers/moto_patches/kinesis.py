"""Fixes to moto server's behaviour that the local cloud depends on (see README, "Where it differs").

Each patch targets moto 5.2.5 (pinned) and says why it exists. `apply()` installs them all before the
server imports any backend; it is idempotent (a patched attribute is marked and never wrapped twice).
"""

from __future__ import annotations

import bisect
import http.client
import itertools
import json
import os
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from moto.core.exceptions import JsonRESTError

RUNTIME_URL_ENV = "LOCALCLOUD_RUNTIME_URL"
_MARK = "_iotkpi_patch"
# AWS GetRecords returns at most 10,000 records and that is also its default Limit.
_GET_RECORDS_DEFAULT_LIMIT = 10_000
_KINESIS_LOCK = threading.RLock()


def apply() -> None:
    """Apply every patch; idempotent."""
    _serialise_kinesis_requests()
    _constant_time_shard_reads()
    _no_lambda_invocation_from_kinesis()
    _forward_lambda_invoke_to_runtime()
    _return_starting_position_timestamp()


def _install(owner: type, name: str, replacement: Callable) -> None:
    if getattr(owner.__dict__.get(name), _MARK, False):
        return
    setattr(replacement, _MARK, True)
    setattr(owner, name, replacement)


def _serialise_kinesis_requests() -> None:
    """moto's Shard.put_record reads the last sequence number then inserts (its own comment: "not safe for
    concurrency"); the threaded server runs concurrent PutRecords to one shard in parallel and records
    overwrite each other. One lock around every Kinesis request makes each request atomic, like a shard."""
    from moto.kinesis.responses import KinesisResponse

    call_action = KinesisResponse.call_action

    def serialised_call_action(self: KinesisResponse) -> Any:
        with _KINESIS_LOCK:
            return call_action(self)

    _install(KinesisResponse, "call_action", serialised_call_action)


def _sequence_index(shard: Any) -> list[int]:
    """The sequence numbers of `shard.records` in order, maintained incrementally.

    moto only appends to `records` with increasing numbers (last + 1) or replaces the dict wholesale
    (split_shard); anything else (a replaced dict, fewer records) rebuilds the index.
    """
    records = shard.records
    index = shard.__dict__.get("_iotkpi_index")
    if index is None or shard.__dict__.get("_iotkpi_indexed") is not records or len(index) > len(records):
        index = list(records)
        shard._iotkpi_index, shard._iotkpi_indexed = index, records
    elif len(index) < len(records):
        newest_first = itertools.islice(reversed(records), len(records) - len(index))
        index.extend(reversed(list(newest_first)))
    return index


def _constant_time_shard_reads() -> None:
    """Shard.get_max/min_sequence_number build `list(records)` (O(n)); put_record calls the max for every
    record, so PutRecords slowed from ~8k to ~1.9k records/s as a shard filled. The dict keeps insertion
    (= sequence) order, so its ends are O(1). GetRecords scanned the whole shard from the start on every
    call (the ESM poller calls it constantly); a bisect over a sorted index makes it O(log n + Limit)."""
    from moto.kinesis.models import Shard

    def get_max_sequence_number(self: Shard) -> int:
        return next(reversed(self.records), 0)

    def get_min_sequence_number(self: Shard) -> int:
        return next(iter(self.records), 0)

    def get_sequence_number_at(self: Shard, at_timestamp: float) -> int:
        oldest = next(iter(self.records.values()), None)
        if oldest is None or at_timestamp <= oldest.created_at:
            return 0
        # Newest first: iterators AT_TIMESTAMP are usually near the tip.
        older = (r for r in reversed(self.records.values()) if r.created_at < at_timestamp)
        return next(older).sequence_number

    def get_records(self: Shard, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
        after = int(last_sequence_id)
        index = _sequence_index(self)
        start = bisect.bisect_right(index, after)
        numbers = index[start : start + int(limit or _GET_RECORDS_DEFAULT_LIMIT)]
        if not numbers:
            return [], after, 0
        records = [self.records[number] for number in numbers]
        newest = self.records[index[-1]]
        return records, numbers[-1], int((newest.created_at - records[-1].created_at) * 1000)

    _install(Shard, "get_max_sequence_number", get_max_sequence_number)
    _install(Shard, "get_min_sequence_number", get_min_sequence_number)
    _install(Shard, "get_sequence_number_at", get_sequence_number_at)
    _install(Shard, "get_records", get_records)


def _no_lambda_invocation_from_kinesis() -> None:
    """Stream.put_record invokes every mapped Lambda itself, per record, through Docker; the local cloud's
    own ESM poller delivers batches with AWS semantics instead. It also iterated the stream's mapping dict
    while Lambda requests (outside the Kinesis lock) insert into it. This is the same method without it."""
    from moto.kinesis.models import Stream

    def put_record(self: Stream, partition_key: str, explicit_hash_key: str, data: str) -> tuple[str, str]:
        shard = self.get_shard_for_key(partition_key, explicit_hash_key)
        return shard.put_record(partition_key, data, explicit_hash_key), shard.shard_id

    _install(Stream, "put_record", put_record)


class _LambdaServiceError(JsonRESTError):
    """An error answered in Lambda's shape; `code` is the HTTP status."""

    def __init__(self, code: int, error_type: str, message: str) -> None:
        self.code = code
        super().__init__(error_type, message)


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive lookup: moto passes werkzeug headers from requests, plain dicts internally."""
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _lambda_error(body: bytes) -> tuple[str, str] | None:
    """(errorType, errorMessage) from a runtime error body, when it has that shape."""
    try:
        document = json.loads(body)
        return str(document["errorType"]), str(document.get("errorMessage", ""))
    except (ValueError, TypeError, KeyError):
        return None


def _call_runtime(
    runtime_url: str, function_name: str, payload: bytes, invocation_type: str, timeout: float
) -> tuple[http.client.HTTPMessage, bytes]:
    """POST the payload to the runtime; its failures become the errors Lambda itself would answer."""
    base = urllib.parse.urlsplit(runtime_url)
    path = f"{base.path.rstrip('/')}/invoke/{urllib.parse.quote(function_name, safe='')}"
    connection = http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port or 80, timeout=timeout)
    try:
        connection.request(
            "POST",
            path,
            body=payload,
            headers={"X-Invocation-Type": invocation_type, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        body = response.read()
    except OSError as error:  # refused, reset, timed out
        raise _LambdaServiceError(
            500, "ServiceException", f"local Lambda runtime at {runtime_url} is unreachable: {error!r}"
        ) from error
    finally:
        connection.close()
    if 400 <= response.status < 500:  # the runtime's own Lambda-shaped client errors (unknown function, throttled)
        error = _lambda_error(body)
        if error:
            raise _LambdaServiceError(response.status, *error)
    if not 200 <= response.status < 300:
        raise _LambdaServiceError(
            500,
            "ServiceException",
            f"local Lambda runtime answered {response.status} for {function_name}: {body[:500]!r}",
        )
    return response.headers, body


def _forward_lambda_invoke_to_runtime() -> None:
    """moto runs functions in Docker, which the local cloud does not have. When LOCALCLOUD_RUNTIME_URL is
    set, Invoke is forwarded to the local cloud's runtime (which runs the real handler); otherwise moto's
    own behaviour is untouched. The API layer (responses.invoke) still turns Event into 202, DryRun into
    204, and keeps X-Amz-Log-Result only for LogType=Tail, exactly as for moto's own result."""
    from moto.awslambda.models import LambdaBackend

    invoke = LambdaBackend.invoke

    def forwarding_invoke(
        self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> str | bytes | None:
        runtime_url = os.environ.get(RUNTIME_URL_ENV, "")
        if not runtime_url:
            return invoke(self, function_name, qualifier, body, headers, response_headers)
        fn = self.get_function(function_name, qualifier)  # unknown function -> ResourceNotFoundException
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        response_headers["x-amz-executed-version"] = str(fn.version)
        if invocation_type == "DryRun":
            return b""
        payload = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        # The runtime enforces the function's timeout; the margin covers start-up and queueing.
        result_headers, result = _call_runtime(
            runtime_url, fn.function_name, payload, invocation_type, timeout=float(fn.timeout or 3) + 30
        )
        for name in ("X-Amz-Function-Error", "X-Amz-Log-Result"):
            if result_headers.get(name):
                response_headers[name.lower()] = result_headers[name]
        payload = b"" if invocation_type == "Event" else result  # Lambda answers an Event with an empty 202
        response_headers["Content-Length"] = str(len(payload))
        return payload

    _install(LambdaBackend, "invoke", forwarding_invoke)


def _return_starting_position_timestamp() -> None:
    """EventSourceMapping stores StartingPositionTimestamp but get_configuration drops it, so the ESM
    poller could not honour StartingPosition=AT_TIMESTAMP from a mapping read back over the API."""
    from moto.awslambda.models import EventSourceMapping

    get_configuration = EventSourceMapping.get_configuration

    def get_configuration_with_timestamp(self: EventSourceMapping) -> dict[str, Any]:
        configuration = get_configuration(self)
        if self.starting_position_timestamp is not None:
            configuration["StartingPositionTimestamp"] = self.starting_position_timestamp
        return configuration

    _install(EventSourceMapping, "get_configuration", get_configuration_with_timestamp)
