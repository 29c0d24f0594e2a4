"""Functions about the message and the rule: topic, timestamp, clientid, principal, sourceip, traceid, newuuid,
accountid, sql_version, get_mqtt_property, get_user_properties
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html).

Local values (no certificates, one account): principal() is the MQTT username the publisher connected with, or
Undefined without one (IoT Core gives a certificate thumbprint or an IAM id); sourceip() is the publisher's
address as the broker saw it (127.0.0.1 on one machine); traceid() is a UUID per received message, also the
error action's cloudwatchTraceId; accountid() is the account in the rule's ARN (moto's 123456789012). Each is
Undefined when the broker plugin that reports it is missing (see localcloud/servers/mqtt_broker.py).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from localcloud.runtime.iot.conversions import to_int
from localcloud.runtime.iot.functions.base import Function, require_literal
from localcloud.runtime.iot.sql_ast import Context
from localcloud.runtime.iot.values import UNDEFINED

MQTT_PROPERTIES = ("content_type", "format_indicator", "response_topic", "correlation_data")


def _optional(value: Any) -> Any:
    return UNDEFINED if value is None else value


def _topic(ctx: Context, level: Any = UNDEFINED) -> Any:
    topic = ctx.message.topic
    if level is UNDEFINED:
        return topic
    index = level if type(level) is int else to_int(level, ctx.numbers)
    if index is UNDEFINED:
        return UNDEFINED
    levels = topic.split("/")
    return levels[index - 1] if 1 <= index <= len(levels) else UNDEFINED


def _get_mqtt_property(ctx: Context, name: Any) -> Any:
    properties = ctx.message.properties
    if name == "format_indicator":
        indicator = properties.format_indicator if properties else None
        return "UTF8_DATA" if indicator == 1 else "UNSPECIFIED_BYTES"
    if properties is None:
        return UNDEFINED
    if name == "content_type":
        return _optional(properties.content_type)
    if name == "response_topic":
        return _optional(properties.response_topic)
    if name == "correlation_data" and properties.correlation_data is not None:
        return base64.b64encode(properties.correlation_data).decode("ascii")
    return UNDEFINED


def _get_user_properties(ctx: Context, key: Any = UNDEFINED) -> Any:
    """All values of one key (an array), or every property as {key: value} objects in order; Undefined if none."""
    pairs = ctx.message.properties.user_properties if ctx.message.properties else ()
    if key is UNDEFINED and not pairs:
        return UNDEFINED
    if key is UNDEFINED:
        return [{name: value} for name, value in pairs]
    values = [value for name, value in pairs if name == key]
    return values or UNDEFINED


def _check_mqtt_property(args: tuple[Any, ...]) -> None:
    require_literal("get_mqtt_property", "first", args[0], MQTT_PROPERTIES)


FUNCTIONS = [
    Function("accountid", lambda ctx: _optional(ctx.environment.account_id), 0, 0),
    Function("clientid", lambda ctx: _optional(ctx.message.client_id), 0, 0),
    Function("get_mqtt_property", _get_mqtt_property, 1, 1, since_2016=True, check=_check_mqtt_property),
    Function("get_user_properties", _get_user_properties, 0, 1, since_2016=True),
    Function("newuuid", lambda ctx: str(uuid.uuid4()), 0, 0),
    Function("principal", lambda ctx: _optional(ctx.message.principal), 0, 0),
    Function("sourceip", lambda ctx: _optional(ctx.message.source_ip), 0, 0, since_2016=True),
    Function("sql_version", lambda ctx: ctx.numbers.version, 0, 0),
    Function("timestamp", lambda ctx: ctx.message.received_at_ms, 0, 0),
    Function("topic", _topic, 0, 1),
    Function("traceid", lambda ctx: ctx.message.trace, 0, 0),
]
