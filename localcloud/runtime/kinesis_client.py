"""The Kinesis client of the runtime's two per-record paths: the rules engine's PutRecords and the event source
mapping's GetRecords.

Its answers keep each record as the JSON holds it: Data in base64 and ApproximateArrivalTimestamp in epoch
seconds, as they come over the wire. That is how the invocation event carries them, and botocore decoding every
record's data and time, only for the poller to encode them again, cost more than the rest of the poller's work
on a record (botocore's documented parser defaults, as the AWS CLI sets them for its raw timestamps). With
those defaults botocore's walk of a record list through its shape rebuilds, member by member, the dicts the
JSON already is (strings and numbers, no nesting), once per record of up to 500 a call: the two record lists
are taken as decoded (tests/localcloud/runtime/test_kinesis_client.py holds both ways equal).

The same walk serializes a PutRecords call's records on the way out, and json.dumps then writes them: a seventh
of the rules engine's CPU at thousands of messages a second (py-spy). So the records are held back from
botocore's serializer (`before-parameter-build`, botocore's documented hook for changing a call's parameters)
and written into the serialized body with orjson (`before-call`, before the request is signed): the same JSON,
each record's Data in base64, its other members as they are.
"""

from __future__ import annotations

import binascii
from typing import Any

import botocore.session
import orjson
from botocore.config import Config
from botocore.parsers import JSONParser, ResponseParserFactory

# PutRecords' and GetRecords' record lists: lists of flat structures of strings and numbers.
FLAT_RECORD_LISTS = frozenset({"PutRecordsResultEntryList", "RecordList"})
HELD_RECORDS = "iotkpi_put_records"  # where a PutRecords call's records wait in the call's context


class _RecordListsAsDecoded(JSONParser):
    def _handle_list(self, shape: Any, node: Any) -> Any:
        if shape.name in FLAT_RECORD_LISTS and type(node) is list:
            return node
        return super()._handle_list(shape, node)


class _Parsers(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "json":
            return _RecordListsAsDecoded(**self._defaults)
        return super().create_parser(protocol_name)


def records_client(session: Any, endpoint_url: str, config: Config) -> Any:
    """A Kinesis client of `session`'s region and credentials whose record lists keep the wire's values, and
    whose PutRecords writes its records with orjson. Parameters are not validated by the client (the endpoint
    validates them): botocore's validator would walk every record too, and the records it is given are none."""
    parsers = _Parsers()
    parsers.set_parser_defaults(blob_parser=str, timestamp_parser=float)
    core = botocore.session.get_session()
    core.register_component("response_parser_factory", parsers)
    credentials = session.get_credentials()
    client = core.create_client(
        "kinesis",
        region_name=session.region_name,
        endpoint_url=endpoint_url,
        config=config.merge(Config(parameter_validation=False)),
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )
    client.meta.events.register("before-parameter-build.kinesis.PutRecords", _hold_records_back)
    client.meta.events.register("before-call.kinesis.PutRecords", _write_held_records)
    return client


def _hold_records_back(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    if "Records" in params:
        context[HELD_RECORDS] = params["Records"]
        params["Records"] = []


def _write_held_records(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """`params` is the serialized request: its body gets the records held back, as botocore would write them."""
    if HELD_RECORDS not in context:
        return
    body = orjson.loads(params["body"])
    body["Records"] = [{**entry, "Data": _base64(entry["Data"])} for entry in context.pop(HELD_RECORDS)]
    params["body"] = orjson.dumps(body)


def _base64(data: bytes | str) -> str:
    """A blob as botocore's serializer writes it (a str is taken as its UTF-8 bytes)."""
    return binascii.b2a_base64(data.encode() if type(data) is str else data, newline=False).decode("ascii")
