"""Kinesis' two busy actions, GetRecords and PutRecords, read and answered with orjson instead of moto's parsing
and serializer.

moto serializes every response by walking the operation's botocore model field by field in Python: for a
GetRecords of 500 records that walk was a quarter of the endpoint's CPU under the local pipeline's load (py-spy,
see the README's benchmark notes). These two responses are flat: the same JSON is written directly (Data in
base64, ApproximateArrivalTimestamp in epoch seconds cut to the millisecond, as moto's serializer writes them).
The actions still run moto's backend (and the kinesis patches' store under their lock), so validation and
errors are moto's. Targets moto 5.2.5 (pinned).
"""

from __future__ import annotations

import base64
import calendar
from datetime import datetime
from typing import Any

import orjson

from localcloud.servers.moto_patches.install import install

JSON_HEADERS = {"Content-Type": "application/x-amz-json-1.1"}


def apply() -> None:
    from moto.kinesis.responses import KinesisResponse

    def get_records(self: KinesisResponse) -> tuple[bytes, dict[str, str]]:
        params = _params(self)
        next_iterator, records, millis_behind = self.kinesis_backend.get_records(
            params.get("StreamARN"), params.get("ShardIterator"), params.get("Limit")
        )
        listed = [_record(record.to_json()) for record in records]
        return _answer({"NextShardIterator": next_iterator, "Records": listed, "MillisBehindLatest": millis_behind})

    def put_records(self: KinesisResponse) -> tuple[bytes, dict[str, str]]:
        params = _params(self)
        return _answer(
            self.kinesis_backend.put_records(params.get("StreamARN"), params.get("StreamName"), params.get("Records"))
        )

    install(KinesisResponse, "get_records", get_records)
    install(KinesisResponse, "put_records", put_records)


def _params(response: Any) -> dict[str, Any]:
    """The request's JSON parameters, parsed once by orjson: moto's _get_param parses the whole body with the
    stdlib's json for each parameter it reads (three times for a PutRecords of up to 5 MB). A body that is not
    a JSON object has no parameters, as for _get_param."""
    try:
        params = orjson.loads(response.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return params if type(params) is dict else {}


def _answer(document: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    # Bytes, not str: moto then leaves the body alone (it runs a regular expression over str bodies, for XML).
    return orjson.dumps(document), dict(JSON_HEADERS)


def _record(record: dict[str, Any]) -> dict[str, Any]:
    """A record's to_json() (moto's and the store's give the data as bytes) as the response lists it."""
    return {
        "SequenceNumber": record["SequenceNumber"],
        "ApproximateArrivalTimestamp": _epoch_seconds(record["ApproximateArrivalTimestamp"]),
        "Data": base64.b64encode(record["Data"]).decode("ascii"),
        "PartitionKey": record["PartitionKey"],
    }


def _epoch_seconds(moment: datetime) -> int | float:
    """moto's TimestampSerializer: whole seconds, plus the milliseconds when there are any."""
    seconds = calendar.timegm(moment.timetuple())
    return seconds + (moment.microsecond // 1000) / 1000.0 if moment.microsecond else seconds
