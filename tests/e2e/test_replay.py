"""`localcloud replay` on the whole local cloud: PostgreSQL is down until the ingest's mapping gives up on the
batches (tests/stacks/replay-stack.yaml: one retry), so the readings reach the on-failure queue as records of
shard ranges only. A replay while the fault lasts stores nothing and deletes nothing; once PostgreSQL is
back, the replay stores every reading exactly once and empties the queue. Rejected readings go to a queue
of their own."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from localcloud.config import REPO_ROOT
from localcloud.servers.postgres import PostgresCluster
from localcloud.tools.simulator.publisher import MqttPublisher
from tests.fixtures.local_cloud import LocalCloud, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")),
        reason="stops the local cloud's own PostgreSQL cluster, and DATABASE_URL makes it use an external server",
    ),
]


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    state_dir = Path(tempfile.mkdtemp(prefix="iotkpi-replay-"))
    cloud = LocalCloud(state_dir / "state", stack_file=REPO_ROOT / "tests" / "stacks" / "replay-stack.yaml")
    try:
        cloud.check("up")
        yield cloud
    finally:
        cloud.teardown()
        shutil.rmtree(state_dir, ignore_errors=True)


def cluster_of(cloud: LocalCloud) -> PostgresCluster:
    saved = json.loads((cloud.state_dir / "postgres.json").read_text())
    return PostgresCluster(Path(saved["root"]), int(saved["port"]))


def reading(start: datetime, seq: int) -> bytes:
    return json.dumps({"ts": (start + timedelta(minutes=seq)).isoformat(), "seq": seq, "rss": -70}).encode()


def stored(cloud: LocalCloud, prefix: str) -> list[tuple[str, int]]:
    with psycopg.connect(cloud.settings["DATABASE_URL"]) as conn:
        query = "SELECT device_id, seq FROM telemetry WHERE starts_with(device_id, %s)"
        return conn.execute(query, (prefix,)).fetchall()


def waiting_in_queue(cloud: LocalCloud, queue_key: str = "INGEST_DLQ_URL") -> int:
    queue = cloud.settings[queue_key]
    attributes = cloud.client("sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def mapping_caught_up(cloud: LocalCloud) -> bool:
    shards = cloud.status()["runtime"]["event_source_mappings"]
    return bool(shards) and all(not s["records_behind"] and not s["millis_behind_latest"] for s in shards)


def publish(cloud: LocalCloud, messages: list[tuple[str, bytes]]) -> None:
    publisher = MqttPublisher(cloud.settings["MQTT_HOST"], int(cloud.settings["MQTT_PORT"]))
    publisher.connect()
    try:
        for topic, payload in messages:
            publisher.publish(topic, payload, timeout=30)
        assert publisher.wait_all_acknowledged(30)
    finally:
        publisher.close()


def test_batches_the_mapping_gave_up_on_are_replayed_from_the_stream_once_the_fault_is_fixed(cloud: LocalCloud):
    prefix = f"replay-{uuid.uuid4().hex[:6]}-"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    readings = [(f"{prefix}{device}", seq) for device in range(4) for seq in range(1, 11)]
    cluster = cluster_of(cloud)
    cluster.stop()

    publish(cloud, [(f"devices/{device_id}/telemetry", reading(start, seq)) for device_id, seq in readings])
    # The mapping retries once, then moves on: the readings exist only in the stream and as on-failure records.
    wait_until(lambda: waiting_in_queue(cloud) and mapping_caught_up(cloud), timeout=90, what="batches given up")
    failed_batches = waiting_in_queue(cloud)

    while_down = cloud.run("replay", timeout=180)
    assert while_down.returncode == 1, while_down.stdout + while_down.stderr
    assert f"replayed 0 of {failed_batches} on-failure records" in while_down.stdout
    assert "left in the queue" in while_down.stdout and "did not store" in while_down.stdout
    assert waiting_in_queue(cloud) == failed_batches  # nothing deleted, and visible again for the next run

    cluster.start(timeout=60)
    assert stored(cloud, prefix) == []  # the mapping gave up for good: without a replay they are lost
    replayed = cloud.run("replay", timeout=180)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"replayed {failed_batches} of {failed_batches} on-failure records" in replayed.stdout

    assert sorted(stored(cloud, prefix)) == sorted(readings)  # each reading exactly once
    assert waiting_in_queue(cloud) == 0
    again = cloud.check("replay", timeout=120)
    assert "replayed 0 of 0 on-failure records" in again

    # A malformed reading is no lost batch: its copy goes to the rejects queue, the on-failure queue stays empty.
    publish(cloud, [(f"devices/{prefix}0/telemetry", b'{"ts": "soon", "seq": 99}')])
    wait_until(lambda: waiting_in_queue(cloud, "INGEST_REJECTS_QUEUE_URL"), timeout=60, what="the reject's copy")
    assert waiting_in_queue(cloud) == 0
