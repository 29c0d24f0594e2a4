"""SQS adapter: rejected records to the rejects queue, for operators.

The rejects table is the durable record (written in the batch's transaction); the queue gets a copy with
the raw bytes in base64. A raw record too big for an SQS message is cut, and says so.
"""

from __future__ import annotations

import base64
import json

import boto3

from ingest.batch import Reject

# SQS allows 256 KiB per message; base64 grows 4/3, and the envelope needs a little room.
MAX_RAW_BYTES = 160 * 1024


class SqsRejectQueue:
    def __init__(self, queue_url: str, client=None) -> None:
        self.url = queue_url
        self._client = client or boto3.client("sqs")

    def send(self, reject: Reject) -> None:
        raw = reject.source.raw
        body = {
            "raw_base64": base64.b64encode(raw[:MAX_RAW_BYTES]).decode("ascii"),
            "raw_truncated": len(raw) > MAX_RAW_BYTES,
            "raw_size": len(raw),
            "reason": reject.reason,
            "reason_code": reject.code,
            "device_id": reject.device_id,
            "shard_id": reject.source.shard_id,
            "sequence_number": reject.source.sequence_number,
        }
        self._client.send_message(
            QueueUrl=self.url,
            MessageBody=json.dumps(body),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reject.code}},
        )
