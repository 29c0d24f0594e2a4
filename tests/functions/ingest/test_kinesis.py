"""ingest/kinesis.py, the event adapter, on events in the event source mapping's shape; no I/O."""

from __future__ import annotations

import base64
from binascii import a2b_base64

import pytest
from ingest.kinesis import KinesisRecords, shard_of

SHARD = "shardId-000000000003"


def record(sequence: int, data: str, partition_key: str = "dev-p", arrival: float | None = 1_700_000_000.5) -> dict:
    kinesis = {"kinesisSchemaVersion": "1.0", "partitionKey": partition_key, "sequenceNumber": str(sequence),
               "data": data}  # fmt: skip
    if arrival is not None:
        kinesis["approximateArrivalTimestamp"] = arrival
    return {"kinesis": kinesis, "eventID": f"{SHARD}:{sequence}", "eventSource": "aws:kinesis"}


def encoded(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_records_are_decoded_in_order_and_a_source_is_built_only_when_asked():
    records = KinesisRecords([record(1, encoded(b'{"a":1}')), record(2, encoded(b"\x00\xff"), arrival=None)])

    assert records.data == [b'{"a":1}', b"\x00\xff"]
    assert records.unreadable == []
    assert len(records) == 2
    assert records.sequence_numbers() == ["1", "2"]
    assert records.partition_keys() == ["dev-p", "dev-p"]
    first, second = records.source(0), records.source(1)
    assert (first.shard_id, first.sequence_number, first.raw, first.partition_key) == (SHARD, "1", b'{"a":1}', "dev-p")
    assert first.arrived_at is not None and first.arrived_at.timestamp() == 1_700_000_000.5
    assert (second.raw, second.arrival_timestamp) == (b"\x00\xff", None)


@pytest.mark.parametrize("data", ["eyJhIjox\nfQ==", "eyJhIjoxfQ", "eyJhIjoxfQ===", " eyJhIjoxfQ=="])
def test_base64_msgspec_refuses_is_read_as_binascii_reads_it(data):
    """Lambda's data is canonical base64; anything else a2b_base64 (what base64.b64decode runs) accepts reads
    the same as before."""
    try:
        expected = a2b_base64(data)
    except ValueError:
        records = KinesisRecords([record(1, data)])
        assert (records.data, records.unreadable) == ([], ["1"])
    else:
        assert KinesisRecords([record(1, data)]).data == [expected]


def test_an_unreadable_record_is_reported_and_the_others_keep_their_sources():
    records = KinesisRecords([record(1, encoded(b"one")), record(2, "a"), record(3, encoded(b"three"))])

    assert records.unreadable == ["2"]
    assert records.data == [b"one", b"three"]
    assert [records.source(i).sequence_number for i in range(2)] == ["1", "3"]
    assert records.partition_keys() == ["dev-p", "dev-p"]  # one per record of `data`
    assert records.sequence_numbers() == ["1", "2", "3"]  # every record, for a batch that is not stored


@pytest.mark.parametrize(
    "broken", [{"kinesis": {"sequenceNumber": "2"}}, {"kinesis": {"sequenceNumber": "2", "data": 7}}]
)
def test_a_record_without_readable_data_is_unreadable(broken):
    records = KinesisRecords([record(1, encoded(b"one")), {**broken, "eventID": f"{SHARD}:2"}])
    assert (records.data, records.unreadable) == ([b"one"], ["2"])


def test_a_record_that_is_not_a_kinesis_record_fails_the_invocation():
    """As with powertools, which cannot name such a record in batchItemFailures: the mapping retries the batch."""
    with pytest.raises(KeyError):
        KinesisRecords([record(1, encoded(b"one")), {"eventID": f"{SHARD}:2"}])


def test_shard_of_an_event_id():
    assert shard_of("shardId-000000000000:4959033827149025660855969253836157109592157598913658889") == (
        "shardId-000000000000"
    )
