"""The Kinesis client of the runtime's two per-record paths: the rules engine's PutRecords and the event source
mapping's GetRecords.

Its answers keep each record as the JSON holds it: Data in base64 and ApproximateArrivalTimestamp in epoch
seconds, as they come over the wire. That is how the invocation event carries them, and botocore decoding every
record's data and time, only for the poller to encode them again, cost more than the rest of the poller's work
on a record (botocore's documented parser defaults, as the AWS CLI sets them for its raw timestamps). With
those defaults botocore's walk of a record list through its shape rebuilds, member by member, the dicts the
JSON already is (strings and numbers, no nesting), once per record of up to 500 a call: the two record lists
are taken as decoded (tests/localcloud/runtime/test_kinesis_client.py holds both ways equal).
"""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.config import Config
from botocore.parsers import JSONParser, ResponseParserFactory

# PutRecords' and GetRecords' record lists: lists of flat structures of strings and numbers.
FLAT_RECORD_LISTS = frozenset({"PutRecordsResultEntryList", "RecordList"})


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
    """A Kinesis client of `session`'s region and credentials whose record lists keep the wire's values."""
    parsers = _Parsers()
    parsers.set_parser_defaults(blob_parser=str, timestamp_parser=float)
    core = botocore.session.get_session()
    core.register_component("response_parser_factory", parsers)
    credentials = session.get_credentials()
    return core.create_client(
        "kinesis",
        region_name=session.region_name,
        endpoint_url=endpoint_url,
        config=config,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
    )
