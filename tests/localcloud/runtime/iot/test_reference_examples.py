"""Every documented example of the AWS IoT SQL reference, as a row: the example and its documented result.

Source: https://docs.aws.amazon.com/iot/latest/developerguide/<page>.html (text as archived in the
awsdocs/aws-iot-docs repository, developerguide/<page>.md). Rows of functions added to the reference later
(get_mqtt_property, get_user_properties, get_or_default, get_registry_data, sourceip) follow the current page's
documented tables. Where the page's own example contradicts its table (typos), the row is in ERRATA with the
documented result, what we give and why; the test checks both, so the list stays honest.
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest

from localcloud.runtime.iot.sql import Environment, MqttProperties, parse_rule, parse_template
from localcloud.runtime.iot.topics import topic_matches
from localcloud.runtime.iot.values import Numbers
from tests.localcloud.runtime.iot.evaluate import message, value_of
from tests.localcloud.runtime.iot.fake_lookups import FakeLookups

FUNCTIONS = "https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html"


def same_value(actual_json: str | None, documented_json: str) -> bool:
    """Documented results are compared as values (3.0 = 3): SQL 2016-03-23 writes whole numbers as Ints."""
    if actual_json is None:
        return documented_json == "Undefined"
    return json.loads(actual_json, parse_float=Decimal) == json.loads(documented_json, parse_float=Decimal)


# (anchor on the functions page, example, documented result as JSON; "Undefined" for no value)
FUNCTION_EXAMPLES = [
    ("iot-func-abs", "abs(-5)", "5"),
    ("iot-func-acos", "acos(0)", "1.5707963267948966"),
    ("iot-func-asin", "asin(0)", "0.0"),
    ("iot-func-atan", "atan(0)", "0.0"),
    ("iot-func-atan2", "atan2(1, 0)", "1.5707963267948966"),
    ("iot-func-bitand", "bitand(13, 5)", "5"),
    ("iot-func-bitor", "bitor(8, 5)", "13"),
    ("iot-func-xbitor", "bitxor(13, 5)", "8"),
    ("iot-sql-function-cast", "cast(true as Int)", "1"),
    ("iot-func-ceil", "ceil(1.2)", "2"),
    ("iot-func-ceil", "ceil(-1.2)", "-1"),
    ("iot-func-chr", "chr(65)", '"A"'),
    ("iot-func-chr", "chr(49)", '"1"'),
    ("iot-func-concat", "concat()", "Undefined"),
    ("iot-func-concat", "concat(1)", '"1"'),
    ("iot-func-concat", "concat([1, 2, 3], 4)", "[1, 2, 3, 4]"),
    ("iot-func-concat", 'concat([1, 2, 3], "hello")', '[1, 2, 3, "hello"]'),
    ("iot-func-concat", 'concat("con", "cat")', '"concat"'),
    ("iot-func-concat", 'concat(1, "hello")', '"1hello"'),
    ("iot-func-concat", 'concat("he","is","man")', '"heisman"'),
    ("iot-func-concat", 'concat([1, 2, 3], "hello", [4, 5, 6])', '[1, 2, 3, "hello", 4, 5, 6]'),
    ("iot-func-cos", "cos(0)", "1"),
    ("iot-func-cosh", "cosh(2.3)", "5.037220649268761"),
    ("iot-func-endswith", 'endswith("cat","at")', "true"),
    ("iot-func-exp", "exp(1)", "2.718281828459045"),  # "exp(1) = e"
    ("iot-func-floor", "floor(1.2)", "1"),
    ("iot-func-floor", "floor(-1.2)", "-2"),
    ("iot-sql-function-get", 'get(["a", "b", "c"], 1)', '"b"'),
    ("iot-sql-function-get", 'get({"a":"b"}, "a")', '"b"'),
    ("iot-sql-function-hash", 'md2("hello")', '"a9046c73e00331af68917d3804f70655"'),
    ("iot-sql-function-hash", 'md5("hello")', '"5d41402abc4b2a76b9719d911017c592"'),
    ("iot-sql-function-indexof", 'indexof("abcd", "bc")', "1"),
    ("iot-sql-function-isNull", "isNull(5)", "false"),
    ("iot-sql-function-isNull", "isNull(Null)", "true"),
    ("iot-sql-function-isUndefined", "isUndefined(5)", "false"),
    ("iot-sql-function-isUndefined", "isUndefined(floor([1,2,3]))", "true"),
    ("iot-sql-function-length", 'length("hi")', "2"),
    ("iot-sql-function-length", "length(false)", "5"),
    ("iot-func-nln", "ln(2.718281828459045)", "1"),  # "ln(e) = 1"
    ("iot-func-log", "log(100)", "2.0"),
    ("iot-func-lower", 'lower("HELLO")', '"hello"'),
    ("iot-func-lower", 'lower(["HELLO"])', '"[\\"hello\\"]"'),
    ("iot-func-lpad", 'lpad("hello", 2)', '"  hello"'),
    ("iot-func-lpad", "lpad(1, 3)", '"   1"'),
    ("iot-func-mod", "mod(8, 3)", "2"),
    ("iot-func-nanvl", "Nanvl(8, 3)", "8"),
    ("iot-sql-function-numbytes", 'numbytes("hi")', "2"),
    ("iot-sql-function-numbytes", 'numbytes("€")', "3"),
    (
        "iot-sql-function-parse-time",
        "parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", 100000000, 'America/Belize' )",
        '"1970.01.01 AD at 21:46:40 CST"',
    ),
    ("iot-func-power", "power(2, 5)", "32.0"),
    ("iot-func-regex-matches", 'regexp_matches("aaaa", "a{2,}")', "true"),
    ("iot-func-regex-matches", 'regexp_matches("aaaa", "b")', "false"),
    ("iot-func-regex-replace", 'regexp_replace("abcd", "bc", "x")', '"axd"'),
    ("iot-func-regex-replace", 'regexp_replace("abcd", "b(.*)d", "$1")', '"ac"'),
    ("iot-func-regex-substr", 'regexp_substr("hihihello", "hi")', '"hi"'),
    ("iot-func-regex-substr", 'regexp_substr("hihihello", "(hi)*")', '"hihi"'),
    ("iot-func-remainder", "remainder(8, 3)", "2"),
    ("iot-func-replace", 'replace("abcd", "bc", "x")', '"axd"'),
    ("iot-func-replace", 'replace("abcdabcd", "b", "x")', '"axcdaxcd"'),
    ("iot-func-rpad", 'rpad("hello", 2)', '"hello  "'),
    ("iot-func-rpad", "rpad(1, 3)", '"1   "'),
    ("iot-func-round", "Round(1.2)", "1"),
    ("iot-func-round", "Round(1.5)", "2"),
    ("iot-func-round", "Round(1.7)", "2"),
    ("iot-func-round", "Round(-1.1)", "-1"),
    ("iot-func-round", "Round(-1.5)", "-2"),
    ("iot-func-rtrim", 'rtrim(" h i ")', '" h i"'),
    ("iot-func-sign", "sign(-7)", "-1"),
    ("iot-func-sign", "sign(0)", "0"),
    ("iot-func-sign", "sign(13)", "1"),
    ("iot-func-sin", "sin(0)", "0.0"),
    ("iot-func-sinh", "sinh(2.3)", "4.936961805545957"),
    ("iot-func-substring", 'substring("012345", 0)', '"012345"'),
    ("iot-func-substring", 'substring("012345", 2)', '"2345"'),
    ("iot-func-substring", 'substring("012345", 2.745)', '"2345"'),
    ("iot-func-substring", "substring(123, 2)", '"3"'),
    ("iot-func-substring", 'substring("012345", -1)', '"012345"'),
    ("iot-func-substring", "substring(true, 1.2)", '"rue"'),
    ("iot-func-substring", "substring(false, -2.411E247)", '"false"'),
    ("iot-func-substring", 'substring("012345", 1, 3)', '"12"'),
    ("iot-func-substring", 'substring("012345", -50, 50)', '"012345"'),
    ("iot-func-substring", 'substring("012345", 3, 1)', '""'),
    ("iot-sql-function-sql-version", "sql_version()", '"2016-03-23"'),
    ("iot-func-sqrt", "sqrt(9)", "3.0"),
    ("iot-func-startswith", 'startswith("ranger","ran")', "true"),
    ("iot-func-tan", "tan(3)", "-0.1425465430742778"),
    ("iot-func-tanh", "tanh(2.3)", "0.9800963962661914"),
    (
        "iot-sql-function-time-to-epoch",
        'time_to_epoch("2020-04-03 09:45:18 UTC+01:00", "yyyy-MM-dd HH:mm:ss VV")',
        "1585903518000",
    ),
    ("iot-sql-function-time-to-epoch", 'time_to_epoch("18 December 2015", "dd MMMM yyyy")', "1450396800000"),
    (
        "iot-sql-function-time-to-epoch",
        'time_to_epoch("2007-12-03 10:15:30.592 America/Los_Angeles", "yyyy-MM-dd HH:mm:ss.SSS z")',
        "1196705730592",
    ),
    ("iot-func-trim", 'Trim(" hi ")', '"hi"'),
    ("iot-func-trunc", "trunc(2.3, 0)", "2"),
    ("iot-func-trunc", "trunc(2.3123, 2)", "2.31"),
    ("iot-func-trunc", "trunc(2.888, 2)", "2.88"),
    ("iot-func-trunc", "trunc(2.00, 5)", "2"),
    ("iot-sql-function-upper", 'upper("hello")', '"HELLO"'),
    ("iot-sql-function-upper", 'upper(["hello"])', '"[\\"HELLO\\"]"'),
    ("iot-sql-function-accountid", "accountid()", '"123456789012"'),
    # The data types page: 'abs("-5.123")' is treated as 'abs(-5.123)'.
    ("iot-sql-conversions", 'abs("-5.123")', "5.123"),
]


@pytest.mark.parametrize(
    ("anchor", "expression", "documented"), FUNCTION_EXAMPLES, ids=[f"{a}:{e}" for a, e, _ in FUNCTION_EXAMPLES]
)
def test_documented_function_example(anchor: str, expression: str, documented: str) -> None:
    assert same_value(value_of(expression), documented), f"{FUNCTIONS}#{anchor}: {expression} = {documented}"


# Results "with double precision" are Decimals: SQL 2015-10-08 writes them as documented, 2016-03-23 as Ints
# when they are whole (the data types page's "10.0 is processed as an Int").
@pytest.mark.parametrize(
    ("expression", "documented"),
    [
        ("asin(0)", "0.0"),
        ("atan(0)", "0.0"),
        ("log(100)", "2.0"),
        ("power(2, 5)", "32.0"),
        ("sin(0)", "0.0"),
        ("sqrt(9)", "3.0"),
        ("cos(0)", "1.0"),
    ],
)
def test_whole_double_results_keep_their_point_in_2015_10_08_only(expression: str, documented: str) -> None:
    assert value_of(expression, version="2015-10-08") == documented
    assert value_of(expression) == documented.removesuffix(".0")


# (example, documented result, what IoT SQL's own table says it must be, why they differ)
ERRATA = [
    ("bitor(13, 5)", "8", "13", "the bitxor section's example calls bitor; bitxor(13, 5) = 8 is tested above"),
    ("bitnot(13)", "2", "-14", "Java's ~13 on a two's-complement Int is -14; 2 is NOT over 4 bits only"),
    ('get("abc", 1)', '"a"', '"b"', "the table says the index is 0-based: index 1 of abc is b"),
    ('Ltrim(" h i ")', '"hi "', '"h i "', "removing leading white space cannot remove the space between h and i"),
]


@pytest.mark.parametrize(("expression", "documented", "table_says", "why"), ERRATA, ids=[e[0] for e in ERRATA])
def test_documented_examples_that_contradict_their_table(
    expression: str, documented: str, table_says: str, why: str
) -> None:
    assert value_of(expression) == table_says
    assert not same_value(value_of(expression), documented), why


def test_nondeterministic_function_examples_have_the_documented_shape() -> None:
    trace = str(uuid.uuid4())
    msg = message(client_id="123456789012", trace_id=trace, principal="ABCD1EFG3HIJK2LMNOP5:my-session-name")
    assert re.fullmatch(r'"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"', value_of("newuuid()"))
    assert 0 <= Decimal(value_of("rand()")) < 1
    assert value_of("timestamp()", msg) == "1496000000000"
    assert value_of("clientid()", msg) == '"123456789012"'
    assert value_of("traceid()", msg) == f'"{trace}"'
    assert value_of("principal()", msg) == '"ABCD1EFG3HIJK2LMNOP5:my-session-name"'


def test_topic_examples() -> None:
    msg = message(topic="things/myThings/thingOne")
    assert value_of("topic()", msg) == '"things/myThings/thingOne"'
    assert value_of("topic(1)", msg) == '"things"'
    foo = message(topic="foo/bar/baz")
    assert [value_of(f"topic({n})", foo) for n in (1, 2, 3)] == ['"foo"', '"bar"', '"baz"']


def test_sourceip_examples() -> None:
    for address in ("192.158.1.38", "1.102.103.104", "2001:db8:ff00::12ab:34cd"):
        assert value_of("sourceip()", message(source_ip=address)) == f'"{address}"'


def test_get_mqtt_property_table() -> None:
    msg = message(properties=MqttProperties("application/json", 1, "some/response", b"\x01\x02corr"))
    assert value_of("get_mqtt_property('content_type')", msg) == '"application/json"'
    assert value_of("get_mqtt_property('format_indicator')", msg) == '"UTF8_DATA"'
    assert value_of("get_mqtt_property('response_topic')", msg) == '"some/response"'
    assert value_of("get_mqtt_property('correlation_data')", msg) == '"AQJjb3Jy"'  # base64 of the binary data
    bare = message(properties=MqttProperties())
    assert value_of("get_mqtt_property('format_indicator')", bare) == '"UNSPECIFIED_BYTES"'
    assert value_of("get_mqtt_property('content_type')", bare) is None


def test_get_user_properties_table() -> None:
    pairs = (("some key", "some value"), ("other key", "some value"), ("some key", "another value"))
    msg = message(properties=MqttProperties(user_properties=pairs))
    assert json.loads(value_of("get_user_properties('some key')", msg)) == ["some value", "another value"]
    assert json.loads(value_of("get_user_properties('other key')", msg)) == ["some value"]
    assert json.loads(value_of("get_user_properties()", msg)) == [
        {"some key": "some value"},
        {"other key": "some value"},
        {"some key": "another value"},
    ]
    assert value_of("get_user_properties('non-existent key')", msg) is None


def test_get_or_default_examples() -> None:
    assert value_of("get_or_default(temp, 'default value')", message({"temp": 80})) == "80"
    assert value_of("get_or_default(temp, 'default value')", message({})) == '"default value"'
    assert value_of("get_or_default(temp, 'default value')", message({"temp": None})) == '"default value"'
    assert value_of("get_or_default(temp)", message({})) is None
    failing = FakeLookups()  # get_dynamodb fails: no such table
    assert value_of("get_or_default(get_dynamodb('t', 'id', 'x', 'role'), {'mode': 'manual'})",
                    lookups=failing) == '{"mode":"manual"}'  # fmt: skip


# (page, payload, SQL, documented output payload; None when the rule performs no action)
PAGE = "https://docs.aws.amazon.com/iot/latest/developerguide/"
STATEMENT_EXAMPLES = [
    ("iot-sql-select", {"color": "red", "temperature": 50}, "SELECT * FROM 'topic/subtopic'",
     {"color": "red", "temperature": 50}),
    ("iot-sql-select", {"color": "red", "temperature": 50}, "SELECT color FROM 'topic/subtopic'", {"color": "red"}),
    ("iot-sql-select", {"color": "red", "temperature": 50}, "SELECT color AS my_color FROM 'topic/subtopic'",
     {"my_color": "red"}),
    ("iot-sql-select", {"color": "red", "temperature": 50},
     "SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'", {"my_color": "red", "fahrenheit": 50}),
    ("iot-sql-select", {"color": "red", "temperature": 50}, "SELECT *, 15 as speed FROM 'topic/subtopic'",
     {"color": "red", "temperature": 50, "speed": 15}),
    ("iot-sql-select", {"color": "red", "temperature": 50}, "SELECT VALUE color FROM 'topic/subtopic'", "red"),
    ("iot-sql-select", {"color": {"red": 255, "green": 0, "blue": 0}, "temperature": 50},
     "SELECT color.red as red_value FROM 'topic/subtopic'", {"red_value": 255}),
    ("iot-sql-select", {"color": "red", "temperature": 50},
     "SELECT (temperature - 32) * 5 / 9 AS celsius, upper(color) as my_color FROM 'topic/subtopic'",
     {"celsius": 10, "my_color": "RED"}),
    ("iot-sql-where", {"color": "red", "temperature": 40},
     "SELECT color AS my_color FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'", None),
    ("iot-sql-data-types", {}, "SELECT NULL AS n FROM 'topic/subtopic'", {"n": None}),
    ("iot-sql-data-types", {"foo": None}, "SELECT foo, bar FROM 'topic/subtopic'", {"foo": None}),
    ("iot-sql-from", {"temperature": 50}, "SELECT temperature AS t FROM 'topic/subtopic'", {"t": 50}),
    ("iot-rule-sql-version", {"a": {"b": "c"}, "arr": [1, 2, 3, 4]}, "SELECT VALUE arr FROM 'topic'", [1, 2, 3, 4]),
    ("iot-sql-case", {"color": "yellow"},
     "SELECT CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' WHEN 'red' THEN 'stop' "
     "ELSE 'you are not at a stop light' END as instructions FROM 'topic/subtopic'", {"instructions": "caution"}),
    ("iot-sql-literals", {"lat_long": [47.606, -122.332]},
     "SELECT {'latitude': get(lat_long, 0),'longitude':get(lat_long, 1)} as lat_long FROM 'topic/subtopic'",
     {"lat_long": {"latitude": 47.606, "longitude": -122.332}}),
    # The page's payload says 47.696 and its output 47.606 (a typo); the output carries the payload's value.
    ("iot-sql-literals", {"lat": 47.606, "long": -122.332}, "SELECT [lat,long] as lat_long FROM 'topic/subtopic'",
     {"lat_long": [47.606, -122.332]}),
    ("iot-sql-json", {"mydata": {"item2": {"0": {"my-key": "myValue"}}}},
     "SELECT * from 'iot/rules' WHERE get(get(get(mydata,\"item2\"),\"0\"),\"my-key\") = \"myValue\"",
     {"mydata": {"item2": {"0": {"my-key": "myValue"}}}}),
    ("iot-sql-json", {"deviceid": "iot123", "temp": 54.98, "humidity": 32.43,
                      "coords": {"latitude": 47.615694, "longitude": -122.3359976}},
     "SELECT temp, md5(deviceid) AS hashed_id FROM 'topic/#'", {"temp": 54.98, "hashed_id": "e37f81fb397e595c4aeb5645b8cbbbd1"}),
    ("iot-sql-nested-queries", {"e": [{"n": "temperature", "u": "Cel", "t": 1234, "v": 22.5},
                                      {"n": "light", "u": "lm", "t": 1235, "v": 135},
                                      {"n": "acidity", "u": "pH", "t": 1235, "v": 7}]},
     "SELECT (SELECT VALUE n FROM e) as sensors FROM 'my/topic'", {"sensors": ["temperature", "light", "acidity"]}),
    ("iot-sql-nested-queries", {"e": [{"n": "temperature", "u": "Cel", "t": 1234, "v": 22.5},
                                      {"n": "light", "u": "lm", "t": 1235, "v": 135}]},
     "SELECT (SELECT v FROM e WHERE n = 'temperature') as temperature FROM 'my/topic'",
     {"temperature": [{"v": 22.5}]}),
    ("iot-sql-nested-queries", {"e": [{"n": "temperature", "u": "Cel", "t": 1234, "v": 22.5},
                                      {"n": "light", "u": "lm", "t": 1235, "v": 135}]},
     "SELECT get((SELECT v FROM e WHERE n = 'temperature'), 0).v as temperature FROM 'topic'", {"temperature": 22.5}),
    ("iot-sql-functions#iot-sql-decode-base64", {"encoded_temp": "eyAidGVtcGVyYXR1cmUiOiAzMyB9Cg=="},
     "SELECT decode(encoded_temp,\"base64\").temperature AS temp from 'topic/subtopic'", {"temp": 33}),
    ("iot-sql-functions#iot-func-transform-example1",
     {"attributes": {"data1": 1, "data2": 2}, "values": [{"a": 3}, {"b": 4}, {"c": 5}]},
     "select value transform(\"enrichArray\", attributes, values) from 'A/B'",
     [{"a": 3, "data1": 1, "data2": 2}, {"b": 4, "data1": 1, "data2": 2}, {"c": 5, "data1": 1, "data2": 2}]),
    ("iot-sql-functions#iot-func-transform-example2",
     {"attributes": {"data1": 1, "data2": 2}, "values": [{"a": 3}, {"b": 4}, {"c": 5}]},
     "select value transform(\"enrichArray\", {\"key\": attributes.data1}, values) from 'A/B'",
     [{"a": 3, "key": 1}, {"b": 4, "key": 1}, {"c": 5, "key": 1}]),
    ("iot-sql-functions#iot-func-transform-example3",
     {"data1": "example", "data2": {"a": "first attribute", "b": "second attribute", "c": [
         {"x": {"someInt": 5, "someString": "hello"}, "y": True},
         {"x": {"someInt": 10, "someString": "world"}, "y": False}]}},
     "select value transform('enrichArray', (select a, b from data2), (select value c from data2)) from 'A/B'",
     [{"x": {"someInt": 5, "someString": "hello"}, "y": True, "a": "first attribute", "b": "second attribute"},
      {"x": {"someInt": 10, "someString": "world"}, "y": False, "a": "first attribute", "b": "second attribute"}]),
    ("iot-sql-functions#iot-sql-function-parse-time", {},
     "SELECT parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", 100000000, 'America/Belize' ) as ts FROM 'A/B'",
     {"ts": "1970.01.01 AD at 21:46:40 CST"}),
    # "a payload similar to {"ts": "2017.06.09 AD at 17:19:46 UTC"} (but with the current date/time)"
    ("iot-sql-functions#iot-sql-function-parse-time", {},
     "SELECT parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", timestamp() ) as ts FROM 'A/B'",
     {"ts": "2017.05.28 AD at 19:33:20 UTC"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("page", "payload", "sql", "documented"),
    STATEMENT_EXAMPLES,
    ids=[f"{row[0]}:{row[2][:60]}" for row in STATEMENT_EXAMPLES],
)
def test_documented_statement_example(page: str, payload: Any, sql: str, documented: Any) -> None:
    output = parse_rule(sql).evaluate(message(payload))
    if documented is None:
        assert output is None, f"{PAGE}{page}.html"
        return
    assert json.loads(output, parse_float=Decimal) == json.loads(json.dumps(documented), parse_float=Decimal)


def test_from_clause_wildcard_examples() -> None:
    topics = ["topic/subtopic", "topic/subtopic-2", "topic/subtopic-3/details", "topic-2/subtopic-x"]
    assert [topic_matches("topic/#", t) for t in topics] == [True, True, True, False]
    assert [topic_matches("topic/+", t) for t in topics] == [True, True, False, False]


def test_binary_payload_examples() -> None:
    """https://docs.aws.amazon.com/iot/latest/developerguide/binary-payloads.html"""
    binary = message(b"\x00\x01\xfe\xff")
    assert parse_rule("SELECT * FROM 'topic/subtopic'").evaluate(binary) == b"\x00\x01\xfe\xff"
    every_12th_ms = parse_rule("SELECT * FROM 'topic/subtopic' WHERE timestamp() % 12 = 0")
    assert every_12th_ms.evaluate(binary) == (b"\x00\x01\xfe\xff" if 1_496_000_000_000 % 12 == 0 else None)
    encoded = parse_rule("SELECT encode(*, 'base64') AS data, timestamp() AS ts FROM 'topic/subtopic'")
    assert json.loads(encoded.evaluate(binary)) == {"data": "AAH+/w==", "ts": 1_496_000_000_000}
    thermostat = parse_rule("SELECT * FROM 'topic/subtopic' WHERE device_type = 'thermostat'")
    assert thermostat.evaluate(binary) is None
    text = message(b"plain text")
    decoded = parse_rule("SELECT decode(encode(*, 'base64'), 'base64') AS payload FROM 'topic'")
    assert json.loads(decoded.evaluate(text)) == {"payload": "plain text"}
    assert parse_template("device/${device_id}").render(binary) == "device/"


def test_where_example_with_a_non_json_payload() -> None:
    sql = ("SELECT decode(encode(*, 'base64'), 'base64') AS value FROM 'topic/subtopic' "
           "WHERE decode(encode(*, 'base64'), 'base64') > 50")  # fmt: skip
    assert json.loads(parse_rule(sql).evaluate(message(b"80"))) == {"value": 80}
    assert parse_rule(sql).evaluate(message(b"20")) is None


def test_parse_time_as_a_substitution_template() -> None:
    """`"key": "${parse_time('yyyy', timestamp(), 'UTC')}"` gives the year: 2017 for a 2017 timestamp."""
    assert parse_template("${parse_time('yyyy', timestamp(), 'UTC')}").render(message()) == "2017"


def test_service_function_examples() -> None:
    lookups = FakeLookups(
        items={("InServiceDevices", "deviceId", "iot123"): {"deviceId": {"S": "iot123"}, "location": {"S": "Room 5"}}},
        secrets={"API_KEY": '{"API_KEY_VALUE": "s3cret"}'},
        shadows={("MyThing", "MyThingShadow"): b'{"state": {"reported": {"alarm": "ON"}}}',
                 ("MyThing", None): b'{"state": {"reported": {"alarm": "OFF"}}}'},
        lambdas={"arn:aws:lambda:us-east-1:account_id:function:lambda_function": lambda event: {"some": {"value": event}}},
    )  # fmt: skip
    environment = Environment(Numbers("2016-03-23"), "123456789012", lookups)
    payload = message({"id": "iot123", "attribute1": 21, "attribute2": "value"})
    dynamodb = parse_rule("SELECT *, get_dynamodb(\"InServiceDevices\", \"deviceId\", id, "
                          "\"arn:aws:iam::12345678910:role/getdynamo\").location AS location FROM 'some/topic'")  # fmt: skip
    assert json.loads(dynamodb.evaluate(payload, environment))["location"] == "Room 5"
    lambda_rule = parse_rule("SELECT aws_lambda(\"arn:aws:lambda:us-east-1:account_id:function:lambda_function\", "
                             "{\"payload\":attribute1}) as output FROM 'topic-filter'")  # fmt: skip
    assert json.loads(lambda_rule.evaluate(payload, environment)) == {"output": {"some": {"value": {"payload": 21}}}}
    whole = parse_rule("SELECT aws_lambda(\"arn:aws:lambda:us-east-1:account_id:function:lambda_function\", *) "
                       "as output FROM 'topic-filter'")  # fmt: skip
    assert json.loads(whole.evaluate(payload, environment))["output"]["some"]["value"]["attribute2"] == "value"
    named = parse_rule("SELECT * from 'topic/subtopic' WHERE get_thing_shadow(\"MyThing\",\"MyThingShadow\","
                       "\"arn:aws:iam::123456789012:role/AllowsThingShadowAccess\").state.reported.alarm = 'ON'")  # fmt: skip
    classic = parse_rule("SELECT * from 'topic/subtopic' WHERE get_thing_shadow(\"MyThing\","
                         "\"arn:aws:iam::123456789012:role/AllowsThingShadowAccess\").state.reported.alarm = 'ON'")  # fmt: skip
    assert named.evaluate(payload, environment) is not None
    assert classic.evaluate(payload, environment) is None
    header = parse_template("${get_secret('API_KEY', 'SecretString', 'API_KEY_VALUE', "
                            "'arn:aws:iam::12345678910:role/getsecret')}")  # fmt: skip
    assert header.render(payload, environment) == "s3cret"
