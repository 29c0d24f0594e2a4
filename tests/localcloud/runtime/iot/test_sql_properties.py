"""Properties of the IoT SQL evaluator over generated topics and payloads."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from localcloud.runtime.iot.sql import Message, SqlEvaluationError, parse_rule, parse_template
from localcloud.runtime.iot.topics import topic_matches

LEVEL = st.text(st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs",)), max_size=8)
TOPIC = st.lists(LEVEL, min_size=1, max_size=6).map("/".join).filter(lambda t: not t.startswith("$"))
SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUE = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
JSON_OBJECT = st.dictionaries(
    st.sampled_from(["a", "b", "seq", "state", "x"]) | st.text(max_size=6), JSON_VALUE, max_size=6
)

# Every kind of construct, so "never raises" covers them all.
RULES = [
    parse_rule(sql)
    for sql in (
        "SELECT * FROM '#'",
        "SELECT *, topic(2) AS device_id, timestamp() AS received_at, clientid() AS c, newuuid() AS id FROM '#'",
        "SELECT a, state.reported.x AS x, b[0] AS first, a + b AS s, a - 1 AS d, a * b AS m, a / b AS q, a % b AS r FROM '#'",
        "SELECT -a AS n, a = b AS eq, a <> b AS ne, a < b AS lt, a >= b AS ge FROM '#' WHERE NOT (a IS NULL) OR b IS UNDEFINED",
        "SELECT * FROM '#' WHERE (a > 1 AND b = 'x') OR NOT state.on",
        "SELECT abs(a) AS v, sqrt(b) AS w, power(a, b) AS p, trunc(a, b) AS t, round(a) AS r, bitand(a, b) AS x, "
        "ln(a) AS l, mod(a, b) AS m, atan2(a, b) AS z FROM '#'",
        "SELECT upper(a) AS u, concat(a, b, x) AS c, substring(a, b) AS s, lpad(a, b) AS l, length(x) AS n, "
        "replace(a, 'x', b) AS r, regexp_replace(a, b, x) AS g, md5(a) AS h, get(a, b) AS k FROM '#'",
        "SELECT cast(a AS Int) AS i, cast(b AS Decimal) AS d, cast(x AS Boolean) AS t, cast(a AS String) AS s, "
        "encode(*, 'base64') AS e, decode(a, 'base64') AS f, parse_time(a, b) AS p, time_to_epoch(a, x) AS q FROM '#'",
        "SELECT CASE a WHEN 1 THEN 'one' WHEN b THEN 'b' ELSE [a, b] END AS c, {'k': a, 'l': state} AS o, "
        "(SELECT VALUE x FROM b WHERE x > 0) AS n, transform('enrichArray', state, b) AS t FROM '#'",
        "SELECT VALUE get_or_default(get(b, 0).x, {'none': true}) FROM '#' WHERE isUndefined(a) OR nanvl(a, 1) = 1",
    )
]


def msg(topic: str, payload: bytes) -> Message:
    return Message(topic=topic, payload=payload, received_at_ms=1, client_id="c")


@given(TOPIC, st.integers(min_value=1, max_value=8))
def test_topic_n_is_the_nth_level(topic: str, n: int) -> None:
    levels = topic.split("/")
    output = json.loads(parse_rule(f"SELECT topic({n}) AS t FROM '#'").evaluate(msg(topic, b"{}")))
    assert output == ({"t": levels[n - 1]} if n <= len(levels) else {})
    assert parse_template(f"${{topic({n})}}").render(msg(topic, b"{}")) == (levels[n - 1] if n <= len(levels) else "")


@given(st.lists(JSON_OBJECT, max_size=8), SCALAR)
def test_where_equality_selects_exactly_the_equal_messages(payloads: list[dict[str, Any]], wanted: Any) -> None:
    rule = parse_rule(
        f"SELECT * FROM '#' WHERE a = {json.dumps(wanted) if not isinstance(wanted, str) else _quote(wanted)}"
    )
    for payload in [*payloads, {"a": wanted, "b": 1}]:
        kept = rule.evaluate(msg("t", json.dumps(payload).encode())) is not None
        value = payload.get("a", _MISSING)
        same_type = _kind(value) == _kind(wanted) and value is not _MISSING
        assert kept is (same_type and value == wanted)


@given(TOPIC, JSON_OBJECT)
def test_select_star_keeps_a_json_object_unchanged(topic: str, payload: dict[str, Any]) -> None:
    """The same values; 2016-03-23 writes whole numbers such as 2.0 as Ints, which compare equal as Decimals."""
    raw = json.dumps(payload).encode()
    for rule in (RULES[0], parse_rule("SELECT * FROM '#'", "2015-10-08")):
        output = rule.evaluate(msg(topic, raw))
        assert json.loads(output, parse_float=Decimal) == json.loads(raw, parse_float=Decimal)


@given(TOPIC, JSON_OBJECT)
def test_evaluation_never_raises_on_json_objects(topic: str, payload: dict[str, Any]) -> None:
    for rule in RULES:
        output = rule.evaluate(msg(topic, json.dumps(payload).encode()))
        if output:  # None when WHERE drops the message, b"" for an Undefined VALUE
            json.loads(output)  # always valid JSON


@given(TOPIC, JSON_VALUE | st.binary(max_size=32))
def test_any_payload_evaluates_or_fails_with_a_documented_error(topic: str, payload: Any) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    for rule in RULES:
        try:
            rule.evaluate(msg(topic, raw))
        except SqlEvaluationError:
            assert not isinstance(payload, dict)


@given(TOPIC, TOPIC)
def test_a_topic_matches_itself_and_hash_matches_everything(topic: str, other: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches("#", other)
    assert topic_matches("/".join("+" for _ in topic.split("/")), topic)


_MISSING = object()


def _kind(value: Any) -> str:
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
