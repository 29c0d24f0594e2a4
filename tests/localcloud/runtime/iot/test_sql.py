"""IoT SQL statements: parsing, evaluation and substitution templates, table-driven (functions and types have
their own tables in test_reference_examples.py and test_types.py)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from localcloud.runtime.iot.sql import Message, SqlEvaluationError, UnsupportedSql, parse_rule, parse_template

TOPIC = "devices/dev-7/telemetry"
PAYLOAD = {
    "seq": 12,
    "rss": -71,
    "battery": 88.5,
    "ok": True,
    "name": "pump",
    "gone": None,
    "state": {"reported": {"color": "red", "level": 3}},
    "readings": [10, 20, 30],
    "num_text": "42",
}


def message(payload: Any = PAYLOAD, topic: str = TOPIC, client_id: str | None = "client-9") -> Message:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(topic=topic, payload=raw, received_at_ms=1_700_000_000_123, client_id=client_id)


def run(sql: str, msg: Message | None = None) -> Any:
    output = parse_rule(sql).evaluate(msg or message())
    return None if output is None else json.loads(output)


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ("*", PAYLOAD),
        ("*, topic(2) AS device_id", {**PAYLOAD, "device_id": "dev-7"}),
        ("*, 15 AS seq", {**PAYLOAD, "seq": 15}),
        ("seq", {"seq": 12}),
        ("seq AS n, name", {"n": 12, "name": "pump"}),
        ("state.reported.color", {"color": "red"}),
        ("state.reported.color AS c, state.reported AS r", {"c": "red", "r": {"color": "red", "level": 3}}),
        ("readings[1] AS second, readings[9] AS missing", {"second": 20}),
        ("nothing, state.nothing.deeper", {}),
        ("gone", {"gone": None}),
        (
            "'it''s' AS s, 1.5 AS d, 2e3 AS e, true AS t, FALSE AS f, null AS z",
            {"s": "it's", "d": 1.5, "e": 2000.0, "t": True, "f": False, "z": None},
        ),
        (
            "topic() AS t, topic(1) AS a, topic(3) AS c, topic(4) AS none",
            {"t": TOPIC, "a": "devices", "c": "telemetry"},
        ),
        ("timestamp() AS ts, clientid() AS cid", {"ts": 1_700_000_000_123, "cid": "client-9"}),
        (
            "seq + 1 AS a, seq - 2 AS b, seq * 2 AS c, seq / 5 AS d, seq % 5 AS e",
            {"a": 13, "b": 10, "c": 24, "d": 2, "e": 2},
        ),
        (
            "-7 / 2 AS d, -7 % 2 AS m, 7.5 / 2 AS f, seq / 0 AS z, 1 + 2 * 3 AS p, (1 + 2) * 3 AS q",
            {"d": -3, "m": -1, "f": 3.75, "p": 7, "q": 9},
        ),
        # `+` concatenates when either side is a String; `-` converts numeric strings.
        (
            "num_text + 1 AS n, num_text - 1 AS m, name + 1 AS s, ok + 1 AS bad, -rss AS neg",
            {"n": "421", "m": 41, "s": "pump1", "neg": 71},
        ),
        (
            "seq = 12 AS a, seq <> 12 AS b, seq != 11 AS c, seq = 12.0 AS d, seq = '12' AS e",
            {"a": True, "b": False, "c": True, "d": True, "e": False},
        ),
        (
            "rss < -70 AS a, rss <= -71 AS b, rss > 0 AS c, rss >= -71 AS d, num_text > 41 AS e, name > 1 AS f",
            {"a": True, "b": True, "c": False, "d": True, "e": True},
        ),
        (
            "NOT ok AS a, ok AND seq > 1 AS b, ok OR false AS c, 'TRUE' AND true AS d, seq AND true AS e",
            {"a": False, "b": True, "c": True, "d": True},
        ),
        (
            "gone IS NULL AS a, nothing IS NULL AS b, nothing IS UNDEFINED AS c, seq IS NOT NULL AS d, seq IS NOT UNDEFINED AS e",
            {"a": True, "b": False, "c": True, "d": True, "e": True},
        ),
        ("state = state AS a, readings = readings AS b, readings <> state AS c", {"a": True, "b": True, "c": True}),
    ],
)
def test_select(select: str, expected: dict[str, Any]) -> None:
    assert run(f"SELECT {select} FROM 'devices/+/telemetry'") == expected


@pytest.mark.parametrize(
    ("where", "kept"),
    [
        ("seq = 12", True),
        ("seq = 13", False),
        ("seq = '12'", False),  # different types are not equal
        ("name = 'pump' AND rss > -80", True),
        ("name = 'pump' AND rss > -60", False),
        ("name = 'x' OR (rss > -80 AND NOT ok = false)", True),
        ("NOT (seq > 5)", False),
        ("nothing = 1", False),
        ("NOT nothing = 1", False),  # NOT Undefined is Undefined
        ("nothing IS UNDEFINED", True),
        ("gone IS NULL", True),
        ("topic(2) = 'dev-7'", True),
        ("seq", False),  # a number is not a boolean
        ("'true'", True),
        ("state.reported.level >= 3", True),
        ("clientid() = 'client-9'", True),
    ],
)
def test_where(where: str, kept: bool) -> None:
    assert (run(f"SELECT seq FROM '#' WHERE {where}") is not None) is kept


def test_newuuid_gives_a_fresh_uuid_per_message() -> None:
    rule = parse_rule("SELECT newuuid() AS id FROM '#'")
    first, second = (json.loads(rule.evaluate(message()))["id"] for _ in range(2))
    assert first != second
    assert uuid.UUID(first).version == 4


def test_clientid_is_left_out_when_unknown() -> None:
    assert run("SELECT clientid() AS c, seq FROM '#'", message(client_id=None)) == {"seq": 12}


def test_keywords_and_functions_are_case_insensitive_where_aws_allows() -> None:
    rule = parse_rule("select *, topic(2) as device_id from 'devices/+/telemetry' where seq is not null")
    assert rule.topic_filter == "devices/+/telemetry"
    assert json.loads(rule.evaluate(message()))["device_id"] == "dev-7"


@pytest.mark.parametrize(
    ("payload", "sql", "expected"),
    [
        (b"\x00\x01binary", "SELECT * FROM '#'", b"\x00\x01binary"),
        (b"[1, 2]", "SELECT * FROM '#'", b"[1, 2]"),
        (b"\xff\xfe", "SELECT * FROM '#' WHERE timestamp() > 0", b"\xff\xfe"),
        (b"\xff\xfe", "SELECT * FROM '#' WHERE device_type = 'x'", None),
        (b"not json", "SELECT topic(2) AS d FROM '#'", b'{"d":"dev-7"}'),
        (b"", "SELECT *, topic(2) AS d FROM '#'", b'{"d":"dev-7"}'),
    ],
)
def test_payloads_that_are_not_json_objects(payload: bytes, sql: str, expected: bytes | None) -> None:
    assert parse_rule(sql).evaluate(message(payload)) == expected


# NaN, Infinity and numbers beyond IoT SQL's Decimal (9.99..E999) are not JSON to IoT Core: the payload is binary.
@pytest.mark.parametrize(
    "payload", [b"not json", b"[1]", b"42", b'"text"', b'{"rss": NaN}', b'{"rss": -Infinity}', b'{"rss": 1e1000}']
)
def test_star_with_more_items_needs_a_json_object(payload: bytes) -> None:
    with pytest.raises(SqlEvaluationError, match="JSON object"):
        parse_rule("SELECT *, topic(2) AS d FROM '#'").evaluate(message(payload))


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT * FROM 'a'", None),
        ("SELECT * FROM devices", "single-quoted topic filter"),
        ("SELECT * FROM 'a/#/b'", "'#' must be a whole level"),
        ("SELECT * FROM 'a+'", "'\\+' must be a whole level"),
        ("SELECT nope(name) AS n FROM 'a'", "function nope\\(\\) is not in the AWS IoT SQL reference"),
        ("SELECT topic(1, 2) AS t FROM 'a'", "takes 0 to 1 arguments, got 2"),
        ("SELECT timestamp(1) AS t FROM 'a'", "timestamp\\(\\) takes 0 arguments, got 1"),
        ("SELECT * FROM 'a' JOIN 'b'", "JOIN is not supported"),
        ("SELECT (SELECT x FROM 'b') AS y FROM 'a'", "nested SELECT"),
        ("SELECT CASE WHEN x = 1 THEN 2 END AS y FROM 'a'", "searched CASE"),
        ("SELECT CASE x ELSE 2 END AS y FROM 'a'", "WHEN after CASE"),
        ("SELECT * FROM 'a' WHERE x IN (1, 2)", "IN is not supported"),
        ("SELECT * FROM 'a' WHERE x LIKE 'b%'", "LIKE is not supported"),
        ("SELECT * FROM 'a' WHERE x BETWEEN 1 AND 2", "BETWEEN is not supported"),
        ("SELECT * FROM 'a' ORDER BY x", "ORDER is not supported"),
        ("SELECT seq + 1 FROM 'a'", "alias"),
        ("SELECT seq AS FROM 'a'", "alias name after AS"),
        ("SELECT * FROM 'a' WHERE", "a value, field or function"),
        ("SELECT * FROM 'a' WHERE x IS 3", "NULL or UNDEFINED after IS"),
        ("SELECT * FROM 'a' WHERE (x = 1", "expected '\\)'"),
        ("SELECT * FROM 'a' WHERE x == 1", "a value, field or function"),
        ("SELECT * FROM 'a' WHERE x ~ 1", "unexpected character '~'"),
        ("SELECT a. FROM 'a'", "field name after '.'"),
        ("SELECT a[x] AS y FROM 'a'", "array index"),
        ("SELECT * FROM 'a' extra", "end of statement"),
        ("DELETE FROM 'a'", "expected 'SELECT'"),
        ("SELECT * 'a'", "expected 'FROM'"),
    ],
)
def test_unsupported_sql_is_rejected_at_load_time(sql: str, reason: str | None) -> None:
    if reason is None:
        parse_rule(sql)
        return
    with pytest.raises(UnsupportedSql, match=reason):
        parse_rule(sql)


@pytest.mark.parametrize("version", ["beta", "", "2016-03-24"])
def test_only_the_two_documented_sql_versions_are_accepted(version: str) -> None:
    with pytest.raises(UnsupportedSql, match="awsIotSqlVersion"):
        parse_rule("SELECT * FROM 'a'", version)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${topic(2)}", "dev-7"),
        ("${seq}", "12"),
        ("dev-${name}-${seq}", "dev-pump-12"),
        ("${state.reported}", '{"color":"red","level":3}'),
        ("${nothing}", ""),
        ("${seq + 1}/${clientid()}", "13/client-9"),
        ("static", "static"),
        ("", ""),
    ],
)
def test_substitution_templates(template: str, expected: str) -> None:
    assert parse_template(template).render(message()) == expected


def test_newuuid_template_renders_a_uuid() -> None:
    assert re.fullmatch(r"[0-9a-f-]{36}", parse_template("${newuuid()}").render(message()))


@pytest.mark.parametrize(
    ("template", "reason"), [("${nope()}", "nope\\(\\) is not in the AWS"), ("${a", "unterminated"), ("${}", "a value")]
)
def test_bad_templates_are_rejected(template: str, reason: str) -> None:
    with pytest.raises(UnsupportedSql, match=reason):
        parse_template(template)


V1 = "2015-10-08"


@pytest.mark.parametrize(
    ("sql", "version", "reason"),
    [
        ("SET @a = 1 SELECT @a AS a FROM 'a'", "2016-03-23", "the SET clause"),
        ("SELECT @a AS a FROM 'a'", "2016-03-23", "variables \\(@a\\)"),
        ("SELECT foo.bar AS bar.baz FROM 'topic/subtopic'", "2016-03-23", "dotted alias"),  # the JSON extensions page
        ("SELECT machinelearning_predict('m', 'r', *) AS p FROM 'a'", "2016-03-23", "machinelearning_predict"),
        ("SELECT decode(x, 'proto', 'b', 'k', 'f', 'm') AS p FROM 'a'", "2016-03-23", "Protobuf"),
        ("SELECT decode(x, 'base64', 'y') AS p FROM 'a'", "2016-03-23", "takes 2 arguments"),
        ("SELECT encode(x, 'hex') AS e FROM 'a'", "2016-03-23", "one of the literal strings 'base64'"),
        ("SELECT encode(x, scheme) AS e FROM 'a'", "2016-03-23", "one of the literal strings 'base64'"),
        ("SELECT get_mqtt_property('qos') AS q FROM 'a'", "2016-03-23", "'content_type', 'format_indicator'"),
        ("SELECT get_registry_data(api, 'thing', 'role') AS r FROM 'a'", "2016-03-23", "registryAPI"),
        ("SELECT get_dynamodb('t', 'k', v, 's', 'role') AS d FROM 'a'", "2016-03-23", "4 arguments, or 6"),
        ("SELECT get_secret('s', 'Other', 'r') AS s FROM 'a'", "2016-03-23", "secretType"),
        ("SELECT get_or_default(x, get_secret('s', 'SecretString', 'r')) AS v FROM 'a'", "2016-03-23", "default"),
        ("SELECT regexp_matches(x, '\\p{Alpha}') AS m FROM 'a'", "2016-03-23", "cannot be run locally"),
        ("SELECT regexp_matches(x, '[a-z&&[^e]]') AS m FROM 'a'", "2016-03-23", "cannot be run locally"),
        ("SELECT regexp_matches(x, '(unclosed') AS m FROM 'a'", "2016-03-23", "cannot be run locally"),
        ("SELECT regexp_matches(x, '[a[bc]]') AS m FROM 'a'", "2016-03-23", "cannot be run locally"),  # Java: a union
        ("SELECT parse_time('zzzz', 0) AS t FROM 'a'", "2016-03-23", "full time zone names"),
        ("SELECT parse_time('yyyy-QQ', 0) AS t FROM 'a'", "2016-03-23", "not a Joda-Time format letter"),
        ("SELECT time_to_epoch(x, 'yyyy[-MM]') AS t FROM 'a'", "2016-03-23", "optional sections"),
        ("SELECT time_to_epoch(x, 'YYYY-ww') AS t FROM 'a'", "2016-03-23", "not supported for parsing"),
        ("SELECT cast(x AS Float) AS f FROM 'a'", "2016-03-23", "a cast type"),
        ("SELECT (SELECT a FROM 'x') AS n FROM 'a'", "2016-03-23", "a field of the message"),
        ("SELECT VALUE a, b FROM 'a'", "2016-03-23", "expected 'FROM'"),
        ("SELECT 1e1000 AS n FROM 'a'", "2016-03-23", "1e1000 is outside IoT SQL's Decimal range"),
        ("SELECT indexof(a, 'b') AS i FROM 'a'", V1, "indexof\\(\\) needs awsIotSqlVersion '2016-03-23'"),
        ("SELECT sourceip() AS i FROM 'a'", V1, "sourceip\\(\\) needs"),
        ("SELECT {'a': 1} AS o FROM 'a'", V1, "an object literal needs"),
        ("SELECT [1] AS o FROM 'a'", V1, "an array literal needs"),
        ("SELECT cast(a AS Decimal) AS d FROM 'a'", V1, "cast\\(... AS Decimal\\) needs"),
        ("SELECT state.reported.x FROM 'a'", V1, "selecting a nested field or array element needs"),
        ("SELECT readings[0] AS r FROM 'a'", V1, "selecting a nested field or array element needs"),
    ],
)
def test_constructs_we_cannot_run_as_iot_core_does_are_refused_with_their_name(
    sql: str, version: str, reason: str
) -> None:
    with pytest.raises(UnsupportedSql, match=reason):
        parse_rule(sql, version)


def test_2015_10_08_runs_what_it_documents() -> None:
    rule = parse_rule(
        "SELECT upper(name) AS n, seq * 1.0 AS s, cast(seq AS Double) AS d FROM '#' WHERE state.reported.level > 2", V1
    )
    assert rule.evaluate(message()) == b'{"n":"PUMP","s":12.0,"d":12.0}'


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ("CASE seq WHEN 12.0 THEN 'twelve' END AS c", {"c": "twelve"}),  # matched as `=` does: 12 = 12.0
        ("CASE seq WHEN '12' THEN 'text' END AS c", {}),  # no match, no ELSE: Undefined
        ("CASE nothing WHEN nothing THEN 1 ELSE 2 END AS c", {}),  # an Undefined value: Undefined
        ("CASE name WHEN 'x' THEN 1 WHEN 'pump' THEN 2 WHEN 'pump' THEN 3 END AS c", {"c": 2}),
        ("(SELECT level FROM state.reported) AS r", {"r": {"level": 3}}),  # over an object: its result
        ("(SELECT VALUE x FROM readings) AS r", {"r": []}),  # elements are not objects: Undefined, left out
        ("(SELECT * FROM readings WHERE 1 = 1) AS r", {"r": [10, 20, 30]}),
        ("(SELECT a FROM name) AS r", {}),  # neither array nor object
        ("get(readings, 0) + get(state, 'reported').level AS m", {"m": 13}),
        ("[readings, seq][0][2] AS i", {"i": 30}),
        ("{'s': state}.s.reported.color AS c", {"c": "red"}),
        ("upper(get(state.reported, 'color')) AS u", {"u": "RED"}),
        ("value AS v", {}),  # a field may be called value
    ],
)
def test_case_literals_nested_queries_and_member_access(select: str, expected: dict[str, Any]) -> None:
    assert run(f"SELECT {select} FROM '#'") == expected


def test_select_value_and_a_field_called_value() -> None:
    msg = message({"value": 7, "v": [1, 2]})
    assert parse_rule("SELECT value FROM '#'").evaluate(msg) == b'{"value":7}'
    assert parse_rule("SELECT VALUE value FROM '#'").evaluate(msg) == b"7"
    assert parse_rule("SELECT VALUE v FROM '#' WHERE value > 9").evaluate(msg) is None
