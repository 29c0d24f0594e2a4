"""The rules engine's Kinesis action gathers records into calls: records that arrive while a call is in flight
wait for the linger and go out together, instead of each following call carrying the few that came during the
one before (calls cost the endpoint and the engine as much as a hundred records). The Kinesis client is an
in-memory fake of the forwarder's port."""

from __future__ import annotations

import threading
import time

from localcloud.runtime.iot.forwarder import KinesisForwarder, Record
from localcloud.runtime.iot.sql import Message

LINGER_S = 0.3
RECORDS = 120


class SlowKinesis:
    """Stores what it is given; each call takes a few milliseconds, as an HTTP call does."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        time.sleep(0.02)
        self.calls.append([entry["Data"] for entry in Records])
        return {"Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"} for _ in Records]}


def test_records_arriving_during_a_call_go_out_together_after_the_linger():
    kinesis = SlowKinesis()
    forwarder = KinesisForwarder(kinesis, sqs=None, linger_s=LINGER_S)
    done = threading.Semaphore(0)
    forwarder.start()
    try:
        for i in range(RECORDS):  # a stream: one record every 5 ms, each from its own device
            message = Message(topic=f"devices/d{i}/telemetry", payload=b"{}", received_at_ms=0)
            forwarder.submit(Record("rule", "stream", f"d{i}", b"%d" % i, message, None, lambda _: done.release()))
            time.sleep(0.005)
        for _ in range(RECORDS):
            assert done.acquire(timeout=10), "a record was not forwarded"
    finally:
        forwarder.stop()
    assert sorted(data for call in kinesis.calls for data in call) == sorted(b"%d" % i for i in range(RECORDS))
    # 0.6 s of records with a 0.3 s linger: three or four calls. Sending again as soon as a call returned made
    # a call of the few records that came during the one before, every 20 ms (~15 calls).
    assert len(kinesis.calls) <= 6, [len(call) for call in kinesis.calls]
