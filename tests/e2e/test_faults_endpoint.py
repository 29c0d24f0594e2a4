"""The fault suite's AWS-endpoint faults: the endpoint (moto) killed with SIGKILL while its stream holds readings
not yet processed, killed while devices publish, and the whole local cloud stopped without the runtime's drain.
Kinesis records live in the endpoint's store under the state folder, so `localcloud up` brings them back, and
the rules engine holds what arrives while the endpoint is down: every acknowledged reading is stored exactly
once, the mapping resumes from its checkpoints, and the stream's sequence numbers go on.

Helpers come from test_faults.py; this module runs a local cloud of its own (the endpoint is killed)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from localcloud.servers.procs import pid_alive
from tests.e2e.test_faults import (
    assert_hourly_kpis_match_rows,
    duplicates_counted,
    expect_exactly,
    key_of,
    publish,
    rejects,
    rule_counts,
    simulation,
    stored,
)
from tests.fixtures.local_cloud import LocalCloud, running_cloud, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    yield from running_cloud("iotkpi-faults-endpoint-")


def stream_records(cloud: LocalCloud, prefix: str) -> dict[str, list[tuple[int, bytes]]]:
    """Per shard: (sequence number, data) of every record of these devices, read from the stream's start."""
    kinesis, stream = cloud.client("kinesis"), cloud.settings["TELEMETRY_STREAM_NAME"]
    found: dict[str, list[tuple[int, bytes]]] = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[tuple[int, bytes]] = []
        while page := (response := kinesis.get_records(ShardIterator=iterator, Limit=10_000))["Records"]:
            records += [(int(r["SequenceNumber"]), r["Data"]) for r in page]
            iterator = response["NextShardIterator"]
        found[shard["ShardId"]] = records
    return {shard: [(n, d) for n, d in records if prefix.encode() in d] for shard, records in found.items()}


def pause_ingest_mapping(cloud: LocalCloud) -> None:
    """Disable the ingest's mapping (its checkpoints stay) and wait until the runtime stopped its pollers: what
    is published next stays in the stream, unprocessed."""
    uuid_ = cloud.settings["INGEST_EVENT_SOURCE_MAPPING_UUID"]
    cloud.client("lambda").update_event_source_mapping(UUID=uuid_, Enabled=False)
    mappings = lambda: cloud.status()["runtime"]["event_source_mappings"]  # noqa: E731
    wait_until(lambda: not any(m["uuid"] == uuid_ for m in mappings()), timeout=60, what="the pollers stopped")


def publish_into_the_stream(cloud: LocalCloud, messages: list) -> None:
    """QoS 1 publishes, each acknowledged by the broker, then put into the stream (PutRecords answered)."""
    before = rule_counts(cloud)["forwarded"]
    publish(cloud, ((m.topic, m.payload) for m in messages))
    wait_until(lambda: rule_counts(cloud)["forwarded"] - before >= len(messages), timeout=120,
               what="every reading in the stream")  # fmt: skip


@pytest.mark.timeout(900)  # 20,000 readings through the pipeline and a second `up`, on a shared 2-core machine
def test_endpoint_killed_mid_stream_loses_no_acknowledged_reading(cloud: LocalCloud):
    prefix = f"motokill-{uuid.uuid4().hex[:6]}-"
    messages = list(simulation(prefix, devices=200, per_minute=60, duration_s=100).messages())
    processed, waiting = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    dropped_before, duplicates_before = rule_counts(cloud)["dropped"], duplicates_counted(cloud)
    publish_into_the_stream(cloud, processed)
    expect_exactly(cloud, prefix, {key_of(m.key) for m in processed}, timeout=240)  # stored and checkpointed
    pause_ingest_mapping(cloud)
    publish_into_the_stream(cloud, waiting)

    moto = cloud.recorded_pids()["moto"]
    os.kill(moto, signal.SIGKILL)  # with 10,000 acknowledged readings in its stream, not yet processed
    wait_until(lambda: not pid_alive(moto), timeout=10, what="the endpoint to die")
    assert len(stored(cloud, prefix)) == len(processed)
    cloud.check("up")  # a new endpoint on the same store; moto's functions and mapping are deployed again
    later = list(simulation(f"{prefix}late-", devices=10, per_minute=60, duration_s=10).messages())
    publish(cloud, ((m.topic, m.payload) for m in later))

    expect_exactly(cloud, prefix, {key_of(m.key) for m in messages + later}, timeout=240)
    assert rejects(cloud, prefix) == []
    assert rule_counts(cloud)["dropped"] == dropped_before
    # The mapping resumed from its checkpoints: a replay of the stream would deliver every reading stored before
    # the kill again, as a duplicate.
    assert duplicates_counted(cloud) - duplicates_before < len(processed) // 10
    # The stream holds each reading once, under sequence numbers that went on increasing across the restart.
    per_shard = stream_records(cloud, prefix)
    assert sum(len(records) for records in per_shard.values()) == len(messages) + len(later)
    for records in per_shard.values():
        numbers = [number for number, _ in records]
        assert numbers == sorted(set(numbers))
        after_restart = [number for number, data in records if f"{prefix}late-".encode() in data]
        assert after_restart and min(after_restart) > max(set(numbers) - set(after_restart))
    assert_hourly_kpis_match_rows(cloud, prefix)


@pytest.mark.timeout(600)
def test_endpoint_killed_while_devices_publish_loses_no_acknowledged_reading(cloud: LocalCloud):
    prefix = f"motodown-{uuid.uuid4().hex[:6]}-"
    messages = list(simulation(prefix, devices=200, per_minute=60, duration_s=40).messages())
    dropped_before = rule_counts(cloud)["dropped"]
    # Paced over 12 s: readings keep arriving at the broker while the endpoint is dead and restarting.
    sender = threading.Thread(
        target=publish, args=(cloud, ((m.topic, m.payload) for m in messages)), kwargs={"pace_s": 12 / len(messages)}
    )
    sender.start()
    try:
        time.sleep(3)
        moto = cloud.recorded_pids()["moto"]
        os.kill(moto, signal.SIGKILL)
        wait_until(lambda: not pid_alive(moto), timeout=10, what="the endpoint to die")
        time.sleep(3)  # the rules engine holds what arrives meanwhile
        assert sender.is_alive()  # the outage was mid-stream
        cloud.check("up")
    finally:
        sender.join(timeout=120)

    expect_exactly(cloud, prefix, {key_of(m.key) for m in messages}, timeout=240)
    assert rule_counts(cloud)["dropped"] == dropped_before
    assert rejects(cloud, prefix) == []
    assert_hourly_kpis_match_rows(cloud, prefix)


@pytest.mark.timeout(600)
def test_down_and_up_keep_what_the_stream_holds_without_the_drain(cloud: LocalCloud):
    prefix = f"nodrain-{uuid.uuid4().hex[:6]}-"
    messages = list(simulation(prefix, devices=100, per_minute=60, duration_s=60).messages())
    pause_ingest_mapping(cloud)  # `down` then has nothing to drain: the readings wait in the stream
    publish_into_the_stream(cloud, messages)
    assert stored(cloud, prefix) == []

    cloud.check("down", timeout=120)
    cloud.check("up")

    expect_exactly(cloud, prefix, {key_of(m.key) for m in messages}, timeout=240)
    assert rejects(cloud, prefix) == []
    assert_hourly_kpis_match_rows(cloud, prefix)
