"""The JSON shapes Lambda produces for Kinesis: the invocation event and the OnFailure invocation record.

Shapes follow the AWS Lambda developer guide ("Example Kinesis record event", "Example invocation record").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from localcloud.runtime.esm.batching import Record


def event_record(
    *,
    shard_id: str,
    sequence_number: str,
    partition_key: str,
    data_base64: str,
    arrival: float,
    stream_arn: str,
    region: str,
    invoke_identity_arn: str,
) -> Record:
    """A record read from the shard, with its element of the event's `Records` as JSON text: made once, it
    gives the record's size in the event (for the 6 MB cap: its UTF-8 bytes) and the event is these texts joined
    (`event_json`). orjson: json.dumps of this document was a seventh of the poller's CPU at thousands of
    records a second."""
    event = orjson.dumps(
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": partition_key,
                "sequenceNumber": sequence_number,
                "data": data_base64,
                "approximateArrivalTimestamp": round(arrival, 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{sequence_number}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": invoke_identity_arn,
            "awsRegion": region,
            "eventSourceARN": stream_arn,
        }
    )
    return Record(sequence_number, partition_key, arrival, event=event.decode(), event_bytes=len(event))


def event_json(records: Sequence[str]) -> str:
    """The invocation event of the records' texts made by `event_record`: {"Records": [...]}."""
    return '{"Records":[' + ",".join(records) + "]}"


def iso_millis(epoch_seconds: float) -> str:
    """`2019-11-14T00:38:04.835Z`, the timestamp format of Kinesis invocation records."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def failure_record(
    *,
    records: Sequence[Record],
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: str,
    request_id: str,
    invoke_count: int,
    function_error: str | None,
    now: float,
) -> dict[str, Any]:
    """The document sent to the OnFailure destination for a discarded batch (records themselves not included).

    condition: "RetryAttemptsExhausted" or "RecordAgeExceeded".
    """
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        # functionError is null when the batch failed through batchItemFailures or expired before invoking.
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": function_error},
        "version": "1.0",
        "timestamp": iso_millis(now),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": iso_millis(records[0].arrival),
            "approximateArrivalOfLastRecord": iso_millis(records[-1].arrival),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }
