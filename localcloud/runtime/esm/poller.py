"""Discovers the Kinesis event source mappings on the endpoint and runs a `ShardWorker` per mapping and shard.

`list_event_source_mappings` is re-read every `refresh_interval_s`: new mappings start, disabled or deleted ones
stop (their checkpoints stay, so re-enabling resumes), changed settings restart the mapping, new shards start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from localcloud.config import aws_session
from localcloud.runtime.esm.batching import MappingConfig
from localcloud.runtime.esm.checkpoints import CheckpointStore
from localcloud.runtime.esm.shard import ShardContext, ShardWorker
from localcloud.runtime.kinesis_client import records_client

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


class MappingRunner:
    """The shard workers of one enabled mapping."""

    def __init__(self, poller: EventSourceMappingPoller, config: MappingConfig, invoke_identity_arn: str) -> None:
        self.poller = poller
        self.config = config
        self.invoke_identity_arn = invoke_identity_arn
        self.workers: dict[str, ShardWorker] = {}
        self._synced_once = False

    def sync_shards(self) -> None:
        kinesis = self.poller.kinesis
        shard_ids: list[str] = []
        args: dict[str, Any] = {"StreamARN": self.config.stream_arn}
        while True:
            page = kinesis.list_shards(**args)
            shard_ids += [shard["ShardId"] for shard in page["Shards"]]
            if not page.get("NextToken"):
                break
            args = {"NextToken": page["NextToken"]}
        for shard_id in shard_ids:
            if shard_id in self.workers:
                continue
            # A shard that appears while the mapping runs (resharding) is read from its start.
            starting = self.config.starting_position if not self._synced_once else "TRIM_HORIZON"
            worker = ShardWorker(
                ShardContext(
                    config=self.config,
                    shard_id=shard_id,
                    region=self.poller.region,
                    invoke_identity_arn=self.invoke_identity_arn,
                    kinesis=kinesis,
                    invoker=self.poller.invoker,
                    store=self.poller.store,
                    deliver_failure=self.poller.deliver_failure,
                    clock=self.poller.clock,
                    starting_position=starting,
                )
            )
            self.workers[shard_id] = worker
            worker.start()
        self._synced_once = True

    def shard_workers(self) -> list[ShardWorker]:
        """The workers now: a copy, because sync_shards adds workers from the poller's thread while status and
        stop, from other threads, go through them (made in one step under the GIL, no lock needed)."""
        return list(self.workers.values())

    def stop(self) -> None:
        for worker in self.shard_workers():
            worker.stop()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.shard_workers():
            worker.join(max(0.0, deadline - time.monotonic()))


class EventSourceMappingPoller:
    def __init__(
        self,
        endpoint_url: str,
        region: str,
        invoker: Any,
        checkpoint_file: Path,
        *,
        refresh_interval_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` (epoch seconds) drives MaximumRecordAgeInSeconds and failure-record timestamps."""
        self.region = region
        self.invoker = invoker
        self.checkpoint_file = Path(checkpoint_file)
        self.refresh_interval_s = refresh_interval_s
        self.clock = clock
        session = aws_session(region)
        client_config = Config(max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"})
        self.kinesis = records_client(session, endpoint_url, client_config)
        self._lambda = session.client("lambda", endpoint_url=endpoint_url, config=client_config)
        self._sqs = session.client("sqs", endpoint_url=endpoint_url, config=client_config)
        self._sns = session.client("sns", endpoint_url=endpoint_url, config=client_config)
        self.store: CheckpointStore | None = None
        self._runners: dict[str, MappingRunner] = {}
        self._queue_urls: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.store = CheckpointStore(self.checkpoint_file)
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh_loop, name="esm-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; in-flight invocations finish (up to a timeout) and nothing is checkpointed after."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
        for runner in runners:
            runner.stop()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        if self.store is not None:
            self.store.close()

    def status(self) -> list[dict]:
        with self._lock:
            runners = list(self._runners.values())
        return [worker.status() for runner in runners for worker in runner.shard_workers()]

    def refresh(self) -> None:
        """Bring the running mappings and shards in line with the endpoint (also called by the loop)."""
        listed = {config.uuid: config for config in self._kinesis_mappings()}
        with self._lock:
            retired = [
                self._runners.pop(uuid)
                for uuid, runner in list(self._runners.items())
                if listed.get(uuid) != runner.config or not runner.config.enabled
            ]
        for runner in retired:  # deleted, disabled or changed: the changed ones restart from their checkpoints
            runner.stop()
            runner.join(STOP_TIMEOUT_S)
        with self._lock:
            for uuid, config in listed.items():
                if config.enabled and uuid not in self._runners and not self._stop.is_set():
                    self._runners[uuid] = MappingRunner(self, config, self._role_of(config))
            runners = list(self._runners.values())
        for runner in runners:
            try:
                runner.sync_shards()
            except ClientError as error:  # the stream may be gone; its mapping then idles
                log.warning("mapping %s: cannot list shards: %s", runner.config.uuid, error)

    def deliver_failure(self, destination_arn: str, document: dict) -> None:
        """Send an invocation record to the OnFailure destination (SQS queue or SNS topic)."""
        body = json.dumps(document)
        service = destination_arn.split(":")[2]
        if service == "sns":
            self._sns.publish(TopicArn=destination_arn, Message=body)
            return
        if service != "sqs":
            raise ValueError(f"unsupported OnFailure destination {destination_arn}")
        if destination_arn not in self._queue_urls:
            _, _, _, _, account, name = destination_arn.split(":", 5)
            url = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self._queue_urls[destination_arn] = url
        self._sqs.send_message(QueueUrl=self._queue_urls[destination_arn], MessageBody=body)

    def _kinesis_mappings(self) -> list[MappingConfig]:
        configs = []
        for page in self._lambda.get_paginator("list_event_source_mappings").paginate():
            for mapping in page["EventSourceMappings"]:
                if mapping.get("EventSourceArn", "").startswith("arn:aws:kinesis:"):
                    configs.append(MappingConfig.from_api(mapping))
        return configs

    def _role_of(self, config: MappingConfig) -> str:
        try:
            return self._lambda.get_function_configuration(FunctionName=config.function_arn)["Role"]
        except ClientError:
            return ""

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except (ClientError, BotoCoreError) as error:
                log.warning("event source mappings refresh failed: %s", error)
            self._stop.wait(self.refresh_interval_s)
