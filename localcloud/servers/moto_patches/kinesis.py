"""Kinesis patches: requests serialised like a shard, records durable on disk and expired after the retention,
mappings that keep their UUID across restarts, no Lambda call or CloudWatch data point per put.

The records live in `kinesis_store.KinesisStore` (SQLite under the state folder); moto's Shard keeps none in
memory. Each patch targets moto 5.2.5 (pinned) and says why it exists.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from localcloud.servers.moto_patches.install import install
from localcloud.servers.moto_patches.kinesis_store import KinesisStore, ShardState, StoredRecord

# AWS GetRecords returns at most 10,000 records and that is also its default Limit.
_GET_RECORDS_DEFAULT_LIMIT = 10_000
_KINESIS_LOCK = threading.RLock()
# Actions that change no stream metadata; every other successful Kinesis action saves the streams' metadata.
_READ_OR_DATA_ACTIONS = ("Describe", "List", "Get", "PutRecord")
_STREAM_ID, _STATE, _OWNER = "_iotkpi_stream_id", "_iotkpi_state", "_iotkpi_stream"
_store: KinesisStore | None = None


def apply() -> None:
    global _store
    _serialise_kinesis_requests()
    _records_in_the_store()
    _shards_know_their_stream()
    _no_lambda_invocation_from_kinesis()
    _no_metric_data_point_per_put()
    _mappings_keep_their_uuid()
    _tags_at_creation()
    if _store is None:
        _store = KinesisStore.from_environment()
        _restore_streams(_store)


def store() -> KinesisStore:
    assert _store is not None, "moto_patches.apply() opens the store"
    return _store


# -- requests ------------------------------------------------------------------------------------------------------
def _serialise_kinesis_requests() -> None:
    """moto's Shard.put_record reads the last sequence number then inserts (its own comment: "not safe for
    concurrency"); the threaded server runs concurrent PutRecords to one shard in parallel and records
    overwrite each other. One lock around every Kinesis request makes each request atomic, like a shard.

    Under the same lock each request is one store batch: the records a PutRecords accepted are committed to disk
    before the response is sent, and a request that fails stores nothing of what it appended."""
    from moto.kinesis.responses import KinesisResponse

    call_action = KinesisResponse.call_action

    def serialised_call_action(self: KinesisResponse) -> Any:
        with _KINESIS_LOCK, store().batch() as batch:
            response = call_action(self)
            if response[0] >= 400:
                batch.discard()
            elif not self._get_action().startswith(_READ_OR_DATA_ACTIONS):
                _save_streams(self.kinesis_backend)
            return response

    install(KinesisResponse, "call_action", serialised_call_action)


# -- streams and shards --------------------------------------------------------------------------------------------
def _stream_document(stream: Any) -> dict[str, Any]:
    """What a restarted endpoint needs to serve the same stream (hash keys are 128-bit: kept as text)."""
    return {
        "created": stream.creation_datetime.isoformat(),
        "shard_count": stream.shard_count,
        "stream_mode": stream.stream_mode,
        "retention_period_hours": stream.retention_period_hours,
        "tags": stream.tags,
        "shard_level_metrics": stream.shard_level_metrics,
        "encryption_type": stream.encryption_type,
        "key_id": stream.key_id,
        "shards": [
            {
                "index": shard._shard_id,
                "starting_hash": str(shard.starting_hash),
                "ending_hash": str(shard.ending_hash),
                "parent": shard.parent,
                "adjacent_parent": shard.adjacent_parent,
                "is_open": shard.is_open,
            }
            for shard in stream.shards.values()
        ],
    }


def _stream_id(stream: Any) -> int:
    """The stream's id in the store; a stream seen for the first time is saved (a stream deleted and created
    again under the same name is a new stream, as on AWS)."""
    stream_id = stream.__dict__.get(_STREAM_ID)
    if stream_id is None:
        stream_id = store().add_stream(stream.account_id, stream.region, stream.stream_name, _stream_document(stream))
        setattr(stream, _STREAM_ID, stream_id)
    return stream_id


def _save_streams(backend: Any) -> None:
    """Bring the store in line with the backend's streams after a request that may have changed them."""
    saved = {
        s.stream_id for s in store().streams() if (s.account, s.region) == (backend.account_id, backend.region_name)
    }
    live = set()
    for stream in backend.streams.values():
        if _STREAM_ID in stream.__dict__:
            store().update_stream(stream.__dict__[_STREAM_ID], _stream_document(stream))
        live.add(_stream_id(stream))
        for shard in stream.shards.values():  # a shorter retention frees the disk on the next request, not later
            if _STATE in shard.__dict__:
                shard.__dict__[_STATE].next_expiry_look = 0.0
    for stream_id in saved - live:
        store().delete_stream(stream_id)


def _restore_streams(kinesis_store: KinesisStore) -> None:
    """Serve the streams the store holds, as they were when the endpoint stopped."""
    from moto.kinesis.models import Shard, Stream, kinesis_backends

    for saved in kinesis_store.streams():
        document = saved.document
        stream = Stream(
            saved.name, 1, document["stream_mode"], document["retention_period_hours"], saved.account, saved.region
        )
        stream.shards = {}
        for entry in document["shards"]:
            shard = Shard(
                entry["index"], int(entry["starting_hash"]), int(entry["ending_hash"]),
                entry["parent"], entry["adjacent_parent"],
            )  # fmt: skip
            shard.is_open = entry["is_open"]
            setattr(shard, _OWNER, stream)
            stream.shards[shard.shard_id] = shard
        stream.creation_datetime = datetime.fromisoformat(document["created"])
        stream.shard_count = document["shard_count"]
        stream.tags = document["tags"]
        stream.shard_level_metrics = document["shard_level_metrics"]
        stream.encryption_type, stream.key_id = document["encryption_type"], document["key_id"]
        setattr(stream, _STREAM_ID, saved.stream_id)
        kinesis_backends[saved.account][saved.region].streams[saved.name] = stream


def _shards_know_their_stream() -> None:
    """A shard's records are found by its stream's id and the stream's retention, but moto's Shard has no link to
    its stream. Shards are only ever made by these three Stream methods: each links the shards it made."""
    from moto.kinesis.models import Stream

    def linking(method: Callable[..., Any]) -> Callable[..., Any]:
        def link_shards(self: Stream, *args: Any, **kwargs: Any) -> Any:
            result = method(self, *args, **kwargs)
            for shard in self.shards.values():
                setattr(shard, _OWNER, self)
            return result

        return link_shards

    for name in ("init_shards", "split_shard", "merge_shards"):
        install(Stream, name, linking(getattr(Stream, name)))


def _state(shard: Any) -> ShardState:
    state = shard.__dict__.get(_STATE)
    if state is None:
        state = store().shard(_stream_id(shard.__dict__[_OWNER]), shard.shard_id)
        setattr(shard, _STATE, state)
    return state


def _retention_start(shard: Any) -> float:
    """Records that arrived before this (store clock) are past the stream's retention."""
    return store().now - shard.__dict__[_OWNER].retention_period_hours * 3600


class _Record:
    """A stored record in the shape moto's GetRecords response serialises."""

    __slots__ = ("stored",)

    def __init__(self, stored: StoredRecord) -> None:
        self.stored = stored

    def to_json(self) -> dict[str, Any]:
        sequence, arrived_at, partition_key, data = self.stored
        return {
            "Data": data,
            "PartitionKey": partition_key,
            "SequenceNumber": str(sequence),
            "ApproximateArrivalTimestamp": datetime.fromtimestamp(arrived_at, UTC),
        }


def _records_in_the_store() -> None:
    """moto keeps every record in a dict per shard, forever: a killed endpoint lost what it had accepted and its
    memory grew with every record (~870 bytes each). Puts, reads and positions go to the store instead; the
    dict stays empty, so moto's split/merge (which move the dict's records) leave a parent's records in the
    parent, readable until they expire, as on AWS."""
    from moto.kinesis.models import Shard

    def put_record(self: Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
        state = _state(self)
        if store().expiry_due(state):  # a stream nobody reads must not keep its expired records either
            store().expire(state, _retention_start(self))
        return str(store().append(state, partition_key, base64.b64decode(data)))

    def get_max_sequence_number(self: Shard) -> int:
        return _state(self).last_sequence

    def get_min_sequence_number(self: Shard) -> int:
        return store().oldest_sequence(_state(self), _retention_start(self))

    def get_sequence_number_at(self: Shard, at_timestamp: Any) -> int:
        return store().last_sequence_before(_state(self), float(at_timestamp))

    def get_records(self: Shard, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
        state, not_before = _state(self), _retention_start(self)
        if store().expiry_due(state):
            store().expire(state, not_before)
        after = int(last_sequence_id)
        records = store().read(state, after, int(limit or _GET_RECORDS_DEFAULT_LIMIT), not_before)
        if not records:
            return [], after, 0
        last_sequence, last_arrival = records[-1][:2]
        return [_Record(record) for record in records], last_sequence, int((state.newest_arrival - last_arrival) * 1000)

    install(Shard, "put_record", put_record)
    install(Shard, "get_max_sequence_number", get_max_sequence_number)
    install(Shard, "get_min_sequence_number", get_min_sequence_number)
    install(Shard, "get_sequence_number_at", get_sequence_number_at)
    install(Shard, "get_records", get_records)


def _no_lambda_invocation_from_kinesis() -> None:
    """Stream.put_record invokes every mapped Lambda itself, per record, through Docker; the local cloud's
    own ESM poller delivers batches with AWS semantics instead. It also iterated the stream's mapping dict
    while Lambda requests (outside the Kinesis lock) insert into it. This is the same method without it."""
    from moto.kinesis.models import Stream

    def put_record(self: Stream, partition_key: str, explicit_hash_key: str, data: str) -> tuple[str, str]:
        shard = self.get_shard_for_key(partition_key, explicit_hash_key)
        return shard.put_record(partition_key, data, explicit_hash_key), shard.shard_id

    install(Stream, "put_record", put_record)


def _no_metric_data_point_per_put() -> None:
    """Every PutRecord(s) call added two CloudWatch data points (IncomingBytes/IncomingRecords) that moto keeps
    forever: at the local cloud's ~100 calls/s that alone grew the endpoint by tens of MB an hour. Nothing
    here reads them (AWS publishes them per minute, not per call)."""
    from moto.kinesis.models import KinesisBackend

    def no_metric_data(self: KinesisBackend, stream_name: str, incoming_bytes: int, incoming_records: int) -> None:
        return None

    install(KinesisBackend, "_send_stream_metrics", no_metric_data)


def _mappings_keep_their_uuid() -> None:
    """The ESM poller keeps its checkpoints by mapping UUID. moto forgets its mappings when it stops, and the
    redeploy on `localcloud up` creates the mapping again with a random UUID: the poller would find no
    checkpoint and start again from the mapping's starting position. A mapping of a function to a Kinesis stream
    created again gets the UUID it had (until it is deleted), so the checkpoints stay valid, as the
    never-forgotten mapping on AWS does."""
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.utils import make_event_source_mapping_arn

    create = LambdaBackend.create_event_source_mapping
    delete = LambdaBackend.delete_event_source_mapping

    def create_keeping_uuid(self: LambdaBackend, spec: dict[str, Any]) -> Any:
        mapping = create(self, spec)
        if ":kinesis:" not in mapping.event_source_arn:
            return mapping
        remembered = store().mapping_uuid(mapping.function_arn, mapping.event_source_arn)
        if remembered is None:
            store().remember_mapping(mapping.function_arn, mapping.event_source_arn, mapping.uuid)
        elif remembered not in self._event_source_mappings:
            del self._event_source_mappings[mapping.uuid]
            mapping.uuid = remembered
            mapping.arn = make_event_source_mapping_arn(mapping.region, mapping.account_id, remembered)
            self._event_source_mappings[remembered] = mapping
        return mapping

    def delete_forgetting_uuid(self: LambdaBackend, uuid: str) -> Any:
        mapping = delete(self, uuid)
        if mapping is not None:
            store().forget_mapping(uuid)
        return mapping

    install(LambdaBackend, "create_event_source_mapping", create_keeping_uuid)
    install(LambdaBackend, "delete_event_source_mapping", delete_forgetting_uuid)


def _tags_at_creation() -> None:
    """CreateStream's Tags (what Terraform sends) were dropped, so every later plan wanted to add them again."""
    from moto.kinesis.responses import KinesisResponse

    create_stream = KinesisResponse.create_stream

    def create_tagged_stream(self: KinesisResponse) -> Any:
        result = create_stream(self)
        if self._get_param("Tags"):
            self.kinesis_backend.add_tags_to_stream(None, self._get_param("StreamName"), self._get_param("Tags"))
        return result

    install(KinesisResponse, "create_stream", create_tagged_stream)
