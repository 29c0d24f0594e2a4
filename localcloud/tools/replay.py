"""`localcloud replay`: re-drive the batches the ingest's event source mapping gave up on.

When the mapping discards a batch (its retries or its maximum record age used up), the on-failure queue gets
only an invocation record: stream, shard, first and last sequence number. The readings are still in the
stream, which keeps them at least a day longer than the maximum record age (stack.yaml). For each record in
the queue this reads that range back from the shard (GetShardIterator AT_SEQUENCE_NUMBER, GetRecords up to
the last sequence number) and invokes the function named in the record with a Kinesis event of the shape the
mapping builds (localcloud.runtime.esm.events). The ingest stores a reading once however often it sees it,
so records of the range that were stored before are harmless. A queue message is deleted only after the
function reported every record stored (no function error, no batchItemFailures); otherwise it stays for the
next run.

Plain boto3: the same command works against AWS (credentials and AWS_REGION as for the AWS CLI) and against
the local cloud (AWS_ENDPOINT_URL, or the endpoint `localcloud up` wrote beside the queue's URL).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from localcloud.config import Settings, aws_session, read_env_file
from localcloud.errors import LocalCloudError
from localcloud.progress import step
from localcloud.runtime.esm import events
from localcloud.runtime.esm.batching import Record, batch_length

# Records per invocation: the stack's ingest batch size; the 6 MB payload cap cuts a batch earlier when needed.
REPLAY_BATCH_SIZE = 500
# A received message stays hidden this long while its batch is read and re-driven (ingest timeout: 60 s).
RECEIVE_VISIBILITY_S = 900


class ReplayError(LocalCloudError):
    """One on-failure record could not be replayed; its message stays in the queue."""


@dataclass(frozen=True)
class FailedBatch:
    """What an on-failure record says about the batch the mapping discarded."""

    function_arn: str
    stream_arn: str
    shard_id: str
    first_sequence: str
    last_sequence: str
    size: int

    @classmethod
    def parse(cls, body: str) -> FailedBatch:
        try:
            document = json.loads(body)
            info = document["KinesisBatchInfo"]
            return cls(
                function_arn=document["requestContext"]["functionArn"],
                stream_arn=info["streamArn"],
                shard_id=info["shardId"],
                first_sequence=info["startSequenceNumber"],
                last_sequence=info["endSequenceNumber"],
                size=int(info["batchSize"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ReplayError(f"not a Kinesis on-failure record: {body[:200]!r}") from exc

    @property
    def stream_name(self) -> str:
        return self.stream_arn.split(":stream/", 1)[1]

    @property
    def region(self) -> str:
        return self.stream_arn.split(":")[3]

    def __str__(self) -> str:
        return f"{self.shard_id} {self.first_sequence}..{self.last_sequence} ({self.size} records)"


@dataclass(frozen=True)
class Outcome:
    batch: FailedBatch | None
    records: int = 0  # records read back (and re-driven unless a dry run)
    error: str = ""


class Replayer:
    def __init__(self, client: Callable[[str], Any], *, dry_run: bool = False) -> None:
        self.kinesis, self.sqs, self.sts = client("kinesis"), client("sqs"), client("sts")
        self.lam = client("lambda")
        self.dry_run = dry_run
        self._identity = ""

    def replay_queue(self, queue_url: str, limit: int | None, report: Callable[[Outcome], None]) -> list[Outcome]:
        """Replay the queue's on-failure records one by one; failed ones are visible again at the end."""
        outcomes: list[Outcome] = []
        kept: list[str] = []
        try:
            while limit is None or len(outcomes) < limit:
                messages = self.sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1, VisibilityTimeout=RECEIVE_VISIBILITY_S
                ).get("Messages", [])
                if not messages:
                    break
                (message,) = messages
                outcome = self.replay_one(message["Body"])
                if outcome.error or self.dry_run:
                    kept.append(message["ReceiptHandle"])
                else:  # the function stored every record: the record has done its job
                    self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                outcomes.append(outcome)
                report(outcome)
        finally:
            for handle in kept:  # for the next run, not after the 15-minute visibility timeout
                self.sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        return outcomes

    def replay_one(self, body: str) -> Outcome:
        batch: FailedBatch | None = None
        try:
            batch = FailedBatch.parse(body)
            records = self.read(batch)
            if not self.dry_run:
                self.redrive(batch, records)
        except ReplayError as exc:
            return Outcome(batch, error=str(exc))
        except (ClientError, BotoCoreError) as exc:
            return Outcome(batch, error=f"{batch}: {exc}")
        return Outcome(batch, records=len(records))

    def read(self, batch: FailedBatch) -> list[Record]:
        """The batch's records, first to last sequence number, read back from its shard."""
        iterator = self.kinesis.get_shard_iterator(
            StreamName=batch.stream_name,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=batch.first_sequence,
        )["ShardIterator"]
        first, last = int(batch.first_sequence), int(batch.last_sequence)
        records: list[Record] = []
        while iterator:
            response = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for raw in response["Records"]:
                # Sequence numbers are decimal strings that only compare correctly as integers.
                position = int(raw["SequenceNumber"])
                if not records and position != first:
                    raise ReplayError(f"{batch}: its first record has left the stream (retention); cannot replay")
                if position > last:
                    raise ReplayError(f"{batch}: sequence number {batch.last_sequence} is not in the shard")
                records.append(self._record(batch, raw))
                if position == last:
                    return records
            if not response["Records"]:
                if not response.get("MillisBehindLatest"):
                    break  # at the tip of the shard
                time.sleep(0.2)  # an empty page behind the tip: within the shard's 5 reads a second
            iterator = response.get("NextShardIterator")
        raise ReplayError(f"{batch}: the shard ends before sequence number {batch.last_sequence}")

    def redrive(self, batch: FailedBatch, records: list[Record]) -> None:
        """Invoke the function with the records, in events of at most REPLAY_BATCH_SIZE records and 6 MB."""
        remaining = records
        while remaining:
            count = batch_length(remaining, REPLAY_BATCH_SIZE)
            chunk, remaining = remaining[:count], remaining[count:]
            event = events.event_json([record.event for record in chunk])
            response = self.lam.invoke(FunctionName=batch.function_arn, Payload=event.encode())
            payload = response["Payload"].read()
            if response.get("FunctionError"):
                raise ReplayError(f"{batch}: the function failed: {payload[:500].decode(errors='replace')}")
            failures = (json.loads(payload or b"null") or {}).get("batchItemFailures") or []
            if failures:
                raise ReplayError(
                    f"{batch}: the function did not store {len(failures)} of {len(chunk)} records "
                    f"(first {failures[0].get('itemIdentifier')})"
                )

    def _record(self, batch: FailedBatch, raw: dict[str, Any]) -> Record:
        if not self._identity:  # the event's invokeIdentityArn: who invokes, as the mapping sets it
            self._identity = self.sts.get_caller_identity()["Arn"]
        return events.event_record(
            shard_id=batch.shard_id,
            sequence_number=raw["SequenceNumber"],
            partition_key=raw["PartitionKey"],
            data_base64=base64.b64encode(raw["Data"]).decode("ascii"),
            arrival=raw["ApproximateArrivalTimestamp"].timestamp(),
            stream_arn=batch.stream_arn,
            region=batch.region,
            invoke_identity_arn=self._identity,
        )


def run(settings: Settings, queue: str | None, limit: int | None, dry_run: bool) -> int:
    """Replay the queue's on-failure records (default INGEST_DLQ_URL, then the local cloud's); the exit code."""
    local = read_env_file(settings.env_file)
    queue_url = queue or os.environ.get("INGEST_DLQ_URL") or local.get("INGEST_DLQ_URL")
    if not queue_url:
        print("replay: no queue: pass --queue, set INGEST_DLQ_URL, or run `localcloud up`", file=sys.stderr)
        return 2
    # The local cloud's endpoint and region go with the local cloud's queue, never with another one.
    is_local = queue_url == local.get("INGEST_DLQ_URL")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or (local.get("AWS_ENDPOINT_URL") if is_local else None)
    region = local.get("AWS_REGION", settings.region) if is_local else settings.region
    session = aws_session(region)
    # A synchronous invoke lasts up to the function's timeout: wait for it, not botocore's 60 s, before retrying.
    config = Config(read_timeout=RECEIVE_VISIBILITY_S, retries={"max_attempts": 3, "mode": "standard"})
    replayer = Replayer(lambda service: session.client(service, endpoint_url=endpoint, config=config), dry_run=dry_run)
    try:
        outcomes = replayer.replay_queue(queue_url, limit, report=_report(dry_run))
    except (ClientError, BotoCoreError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    failed = [outcome for outcome in outcomes if outcome.error]
    verb = "read back" if dry_run else "replayed"
    done = len(outcomes) - len(failed)
    readings = sum(outcome.records for outcome in outcomes)
    print(f"{verb} {done} of {len(outcomes)} on-failure records ({readings:,} stream records); {len(failed)} failed")
    return 1 if failed else 0


def _report(dry_run: bool) -> Callable[[Outcome], None]:
    def report(outcome: Outcome) -> None:
        if outcome.error:
            step(f"left in the queue: {outcome.error}")
        elif dry_run:
            step(f"{outcome.batch}: {outcome.records} records still in the stream (dry run: nothing invoked)")
        else:
            step(f"{outcome.batch}: {outcome.records} records re-driven and stored; on-failure record deleted")

    return report
