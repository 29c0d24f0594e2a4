"""The rules engine's Kinesis action while the endpoint cannot be reached: records wait (their MQTT messages stay
unacked) instead of being given up, and go out in order once the endpoint answers. The Kinesis and SQS clients
are in-memory fakes of the forwarder's two ports; the endpoint-level behaviour is in tests/e2e/test_faults_endpoint.py."""

from __future__ import annotations

import threading

from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from localcloud.runtime.iot.forwarder import KinesisForwarder, Record
from localcloud.runtime.iot.sql import Message
from tests.fixtures.local_cloud import wait_until


class FlakyKinesis:
    """Refuses connections for the first `down_calls` calls (one of them cut mid-request), then stores."""

    def __init__(self, down_calls: int) -> None:
        self.down_calls, self.calls, self.stored = down_calls, 0, []

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionClosedError(endpoint_url="http://127.0.0.1:1")
        if self.calls <= self.down_calls:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        self.stored += [entry["Data"] for entry in Records]
        return {"Records": [{"SequenceNumber": str(len(self.stored)), "ShardId": "shardId-0"} for _ in Records]}


class NoQueue:
    def send_message(self, **_: object) -> None:
        raise AssertionError("an unreachable endpoint must not send records to the error action")


def test_records_wait_for_an_unreachable_endpoint_and_are_sent_in_order_when_it_is_back():
    kinesis = FlakyKinesis(down_calls=8)  # longer than the 5 tries a failing stream gets
    forwarder = KinesisForwarder(kinesis, NoQueue(), backoff_s=0.01)
    outcomes: list[str] = []
    done = threading.Event()

    def on_done(outcome: str) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 3:
            done.set()

    forwarder.start()
    try:
        for i in range(3):
            message = Message(topic="devices/d1/telemetry", payload=b"{}", received_at_ms=0)
            forwarder.submit(Record("rule", "stream", "d1", b"%d" % i, message, "queue-url", on_done))
        wait_until(lambda: kinesis.calls >= 3, timeout=10, what="the first tries")
        assert outcomes == [] and forwarder.pending == 3  # not acked while the endpoint is down
        assert done.wait(20), "the records were not sent once the endpoint answered"
    finally:
        forwarder.stop()
    assert outcomes == ["forwarded"] * 3
    assert kinesis.stored == [b"0", b"1", b"2"]
