"""encode() and decode() with the 'base64' scheme
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-sql-encode-payload).

encode(*, 'base64') encodes the payload's bytes as they arrived (JSON or not); any other value is converted to a
string first. decode gives the JSON value when the decoded text is JSON, else the text; Null when the argument is
not base64 or not UTF-8 text. decode's Protobuf scheme ('proto') needs a descriptor file in S3 and is refused.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from localcloud.runtime.iot.conversions import to_string
from localcloud.runtime.iot.functions.base import Function, literal_string, require_literal
from localcloud.runtime.iot.sql_ast import Context, Star, UnsupportedSql
from localcloud.runtime.iot.values import UNDEFINED, parse_json


def _encode(ctx: Context, value: Any, scheme: Any) -> Any:
    if isinstance(value, Star):
        data = ctx.message.payload
    else:
        text = to_string(value.eval(ctx))
        if text is UNDEFINED:
            return UNDEFINED
        data = text.encode("utf-8", "surrogatepass")
    return base64.b64encode(data).decode("ascii")


def _decode(ctx: Context, value: Any, scheme: Any) -> Any:
    text = to_string(value)
    if text is UNDEFINED:
        return UNDEFINED
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        decoded = data.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    parsed = parse_json(decoded, ctx.numbers)
    return decoded if parsed is UNDEFINED else parsed


def _check_encode(args: tuple[Any, ...]) -> None:
    require_literal("encode", "second", args[1], ("base64",))


def _check_decode(args: tuple[Any, ...]) -> None:
    if literal_string(args[1]) == "proto":
        raise UnsupportedSql(
            "decode(value, 'proto', ...): Protobuf decoding is not supported by the local rules engine"
        )
    require_literal("decode", "second", args[1], ("base64",))
    if len(args) != 2:
        raise UnsupportedSql(f"decode(value, 'base64') takes 2 arguments, got {len(args)}")


FUNCTIONS = [
    Function("encode", _encode, 2, 2, since_2016=True, lazy=True, check=_check_encode),
    Function("decode", _decode, 2, None, since_2016=True, check=_check_decode),  # 'proto' takes more: refused
]
