"""The bookkeeping statement's two per-reading arrays, dumped in one pass each.

psycopg dumps a list parameter item by item in Python, a few thousand instructions an item: for the two
arrays the bookkeeping gets with one item per reading (statements.BOOKKEEPING_OF_DIRECT_COPY), that is more
than the rest of the write costs the client. Wrapped in these types, they are dumped in one pass:
- DeviceIds: text[] as a text literal, {"id1","id2"}, joined in one call. Inside double quotes only `"` and
  `\\` need escaping; device ids cannot hold them (common.telemetry.DEVICE_ID), and a list that does is
  escaped item by item.
- UtcTimestamps: timestamptz[] in binary; every item is 8 bytes, so the items are psycopg's own (C) dumps
  of each datetime joined with their constant length prefix.
"""

from __future__ import annotations

import struct
from datetime import datetime

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

TIMESTAMPTZ = psycopg.postgres.types["timestamptz"]
TEXT = psycopg.postgres.types["text"]
_ARRAY_HEAD = struct.Struct("!iiIii")  # dimensions, has nulls, item type, then length and lower bound
_EMPTY_ARRAY_HEAD = struct.Struct("!iiI")
_TIMESTAMP_LENGTH = struct.pack("!i", 8)


class DeviceIds(list):
    """Device ids as a text[] parameter."""


class UtcTimestamps(list):
    """Timezone-aware datetimes as a timestamptz[] parameter."""


class DeviceIdsDumper(Dumper):
    format = Format.TEXT
    oid = TEXT.array_oid

    def dump(self, obj: list[str]) -> bytes:
        # The items are looked at joined without the separator, which holds a `"` itself.
        if '"' in (text := "".join(obj)) or "\\" in text:
            joined = '","'.join(item.replace("\\", "\\\\").replace('"', '\\"') for item in obj)
        else:
            joined = '","'.join(obj)
        return f'{{"{joined}"}}'.encode() if obj else b"{}"


class UtcTimestampsDumper(Dumper):
    format = Format.BINARY
    oid = TIMESTAMPTZ.array_oid

    def __init__(self, cls: type, context: psycopg.adapt.AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        adapters = context.adapters if context else psycopg.postgres.adapters
        self._item = adapters.get_dumper_by_oid(TIMESTAMPTZ.oid, Format.BINARY)(datetime, context)

    def dump(self, obj: list[datetime]) -> bytes:
        if not obj:
            return _EMPTY_ARRAY_HEAD.pack(0, 0, TIMESTAMPTZ.oid)
        items = _TIMESTAMP_LENGTH.join(map(self._item.dump, obj))
        return b"".join((_ARRAY_HEAD.pack(1, 0, TIMESTAMPTZ.oid, len(obj), 1), _TIMESTAMP_LENGTH, items))


def register_array_dumpers(context: psycopg.adapt.AdaptContext) -> None:
    context.adapters.register_dumper(DeviceIds, DeviceIdsDumper)
    context.adapters.register_dumper(UtcTimestamps, UtcTimestampsDumper)
