"""The pure rules of the Kinesis event source mapping: batches, responses, retries, checkpoints, event shapes."""

import base64
import json

import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent
from aws_lambda_powertools.utilities.parser.models import KinesisDataStreamModel

from localcloud.runtime.esm import events
from localcloud.runtime.esm.batching import (
    EVENT_ENVELOPE_BYTES,
    SEPARATOR_BYTES,
    CheckpointTracker,
    MappingConfig,
    PendingBatch,
    Record,
    Step,
    Verdict,
    backoff_seconds,
    batch_length,
    bisect,
    judge_response,
    lane_for,
    next_step,
    split_expired,
)

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/telemetry"


def make_records(count, *, start=1, size=10, arrival=1_700_000_000.0, key="k"):
    return [Record(str(start + i), f"{key}{i}", arrival + i, event_bytes=size) for i in range(count)]


# ---- batches -------------------------------------------------------------------------------------------------
def test_batch_is_cut_at_batch_size():
    assert batch_length(make_records(10), batch_size=4) == 4
    assert batch_length(make_records(3), batch_size=4) == 3


def test_batch_is_cut_before_the_payload_cap():
    records = make_records(10, size=100)
    cap = EVENT_ENVELOPE_BYTES + 3 * 100 + 2 * SEPARATOR_BYTES  # exactly three records and their separators
    assert batch_length(records, batch_size=10, max_bytes=cap) == 3
    assert batch_length(records, batch_size=10, max_bytes=cap - 1) == 2


def test_one_record_always_forms_a_batch():
    assert batch_length(make_records(2, size=500), batch_size=10, max_bytes=100) == 1


def test_a_partition_key_always_goes_to_the_same_lane():
    lanes = {key: lane_for(key, 4) for key in (f"device-{i}" for i in range(200))}
    assert {lane_for(key, 4) for key in lanes} == set(range(4))
    assert all(lane_for(key, 4) == lane for key, lane in lanes.items())
    assert all(lane_for(key, 1) == 0 for key in lanes)


# ---- responses -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}, {"statusCode": 200}],
)
def test_null_empty_or_missing_failures_mean_success(payload):
    assert judge_response(None, payload, make_records(3), True).verdict is Verdict.SUCCESS


def test_lowest_reported_sequence_number_is_the_retry_point():
    batch = make_records(12, start=5)  # "5".."16": "9" < "10" only as numbers
    payload = {"batchItemFailures": [{"itemIdentifier": "12"}, {"itemIdentifier": "9"}]}
    outcome = judge_response(None, payload, batch, True)
    assert outcome.verdict is Verdict.PARTIAL
    assert batch[outcome.failed_index].sequence_number == "9"


@pytest.mark.parametrize(
    "failure",
    [{"itemIdentifier": ""}, {"itemIdentifier": None}, {"itemId": "2"}, {"itemIdentifier": "999"}, "2"],
)
def test_malformed_item_identifier_fails_the_whole_batch(failure):
    outcome = judge_response(None, {"batchItemFailures": [failure]}, make_records(3), True)
    assert outcome.verdict is Verdict.INVALID_RESPONSE
    assert outcome.failed_index == 0


def test_response_is_ignored_without_report_batch_item_failures():
    payload = {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert judge_response(None, payload, make_records(3), False).verdict is Verdict.SUCCESS


def test_function_error_fails_the_whole_batch_whatever_it_returned():
    error = {"errorType": "Sandbox.Timedout", "errorMessage": "timed out"}
    assert judge_response(error, None, make_records(3), True).verdict is Verdict.FUNCTION_ERROR


# ---- retries, bisect, age ------------------------------------------------------------------------------------
def test_bisect_splits_function_errors_without_using_retries():
    function_error = judge_response({"errorType": "E"}, None, make_records(4), False)
    batch = PendingBatch(make_records(4))
    assert next_step(batch, function_error, bisect_on_error=True, max_retry_attempts=0) is Step.BISECT
    left, right = bisect(batch)
    assert [r.sequence_number for r in left.records] == ["1", "2"]
    assert [r.sequence_number for r in right.records] == ["3", "4"]
    assert left.retries == right.retries == 0


def test_single_record_batch_uses_retries_then_is_discarded():
    function_error = judge_response({"errorType": "E"}, None, make_records(1), False)
    batch = PendingBatch(make_records(1))
    assert next_step(batch, function_error, bisect_on_error=True, max_retry_attempts=2) is Step.RETRY
    batch.retries = 2
    assert next_step(batch, function_error, bisect_on_error=True, max_retry_attempts=2) is Step.DISCARD


def test_invalid_response_is_retried_not_bisected():
    invalid = judge_response(None, {"batchItemFailures": [{}]}, make_records(4), True)
    batch = PendingBatch(make_records(4))
    assert next_step(batch, invalid, bisect_on_error=True, max_retry_attempts=-1) is Step.RETRY
    batch.retries = 10_000
    assert next_step(batch, invalid, bisect_on_error=True, max_retry_attempts=-1) is Step.RETRY


def test_records_older_than_the_maximum_age_expire():
    records = make_records(4, arrival=1000.0)  # arrivals 1000..1003
    expired, live = split_expired(records, now=1061.5, max_record_age_s=60)
    assert [r.sequence_number for r in expired] == ["1", "2"]
    assert [r.sequence_number for r in live] == ["3", "4"]
    assert split_expired(records, now=10**9, max_record_age_s=-1) == ([], records)


def test_backoff_grows_and_stays_short():
    delays = [backoff_seconds(n) for n in range(1, 8)]
    assert delays == sorted(delays)
    assert delays[0] >= 0.1
    assert max(delays) <= 1.0


# ---- checkpoints ---------------------------------------------------------------------------------------------
def test_checkpoint_moves_only_past_a_completed_prefix():
    records = make_records(6)
    tracker = CheckpointTracker(checkpoint="0")
    tracker.add(records)
    assert not tracker.complete([records[2], records[3]])  # a later lane finished first
    assert tracker.checkpoint == "0"
    assert tracker.complete([records[0]])
    assert tracker.checkpoint == "1"
    assert tracker.complete([records[1]])
    assert tracker.checkpoint == "4"
    assert tracker.outstanding == 2


# ---- configuration -------------------------------------------------------------------------------------------
def test_mapping_config_from_the_api_with_defaults():
    config = MappingConfig.from_api(
        {
            "UUID": "u",
            "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:ingest",
            "EventSourceArn": STREAM_ARN,
            "State": "Enabled",
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:dlq"}},
        }
    )
    assert (config.function_name, config.stream_name) == ("ingest", "telemetry")
    assert config.batch_size == 100
    assert config.report_batch_item_failures
    assert (config.max_retry_attempts, config.max_record_age_s, config.parallelization_factor) == (-1, -1, 1)
    assert config.on_failure_destination == "arn:aws:sqs:us-east-1:123456789012:dlq"
    assert not MappingConfig.from_api({**_minimal(), "State": "Disabled"}).enabled


def _minimal():
    return {"UUID": "u", "FunctionArn": "f", "EventSourceArn": STREAM_ARN}


# ---- event shapes --------------------------------------------------------------------------------------------
def _event_json(payloads):
    return events.event_json(
        [
            events.event_record(
                shard_id="shardId-000000000001",
                sequence_number=str(100 + i),
                partition_key=f"device-{i}",
                data_base64=base64.b64encode(json.dumps(payload).encode()).decode(),
                arrival=1_700_000_000.123 + i,
                stream_arn=STREAM_ARN,
                region="us-east-1",
                invoke_identity_arn="arn:aws:iam::123456789012:role/x",
            ).event
            for i, payload in enumerate(payloads)
        ]
    )


def _event(payloads):
    return json.loads(_event_json(payloads))


def test_event_parses_with_powertools_data_class_and_parser_model():
    event = _event([{"n": 1}, {"n": 2}])
    records = list(KinesisStreamEvent(event).records)
    assert [r.kinesis.data_as_json() for r in records] == [{"n": 1}, {"n": 2}]
    assert records[1].event_id == "shardId-000000000001:101"
    assert records[0].kinesis.approximate_arrival_timestamp == pytest.approx(1_700_000_000.123)
    model = KinesisDataStreamModel(**event)
    assert model.Records[0].kinesis.partitionKey == "device-0"
    assert model.Records[0].eventSourceARN == STREAM_ARN


def test_the_event_is_its_records_texts_joined_and_sizes_add_up():
    payloads = [{"n": "x" * 1000}, {"n": 'é\u2028"quoted"'}, {}]
    texts = [json.dumps(record, separators=(",", ":")) for record in _event(payloads)["Records"]]
    text = _event_json(payloads)
    assert len(text) == EVENT_ENVELOPE_BYTES + sum(map(len, texts)) + 2 * SEPARATOR_BYTES
    assert json.loads(base64.b64decode(_event(payloads)["Records"][1]["kinesis"]["data"])) == payloads[1]
    assert _event([]) == {"Records": []}


def test_a_record_counts_the_utf8_bytes_it_takes_in_the_event():
    record = events.event_record(
        shard_id="shardId-000000000001", sequence_number="7", partition_key="capteur-é-温度", data_base64="e30=",
        arrival=1_700_000_000.5, stream_arn=STREAM_ARN, region="us-east-1", invoke_identity_arn="arn:aws:iam::1:role/x",
    )  # fmt: skip
    assert record.event_bytes == len(record.event.encode()) > len(record.event)
    assert json.loads(record.event)["kinesis"]["partitionKey"] == "capteur-é-温度"


def test_failure_record_has_the_aws_kinesis_invocation_record_shape():
    records = [Record("7", "a", 1_573_691_884.835), Record("9", "b", 1_573_691_885.58)]
    document = events.failure_record(
        records=records,
        shard_id="shardId-000000000001",
        stream_arn=STREAM_ARN,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:ingest",
        condition="RetryAttemptsExhausted",
        request_id="req-1",
        invoke_count=3,
        function_error="Unhandled",
        now=1_573_691_886.021,
    )
    assert document == {
        "requestContext": {
            "requestId": "req-1",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:ingest",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2019-11-14T00:38:06.021Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000001",
            "startSequenceNumber": "7",
            "endSequenceNumber": "9",
            "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
            "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
            "batchSize": 2,
            "streamArn": STREAM_ARN,
        },
    }
