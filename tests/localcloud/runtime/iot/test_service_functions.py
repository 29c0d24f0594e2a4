"""get_secret, get_dynamodb, aws_lambda, get_thing_shadow and get_registry_data on an in-memory `Lookups`
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html). The boto3 adapter that serves them
from the endpoint is tested against moto in test_lookups.py; a whole rule using them, in test_engine.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localcloud.runtime.iot.sql import Environment, SqlEvaluationError, parse_rule
from localcloud.runtime.iot.values import Numbers
from tests.localcloud.runtime.iot.evaluate import message, value_of
from tests.localcloud.runtime.iot.fake_lookups import FakeLookups

LOOKUPS = FakeLookups(
    items={
        ("devices", "id", "d1"): {
            "id": {"S": "d1"},
            "limit": {"N": "10.0"},
            "ok": {"BOOL": True},
            "none": {"NULL": True},
            "where": {"M": {"floor": {"N": "3"}, "tags": {"SS": ["a", "b"]}}},
            "history": {"L": [{"N": "1.5"}, {"S": "x"}]},
            "levels": {"NS": ["1", "2.25"]},
            "blob": {"B": b"\x00\x01"},
            "blobs": {"BS": [b"\xff"]},
        },
        ("readings", "id", "d1", "seq", "7"): {"value": {"N": "42"}},
    },
    secrets={"json": '{"api": "k", "n": 2.0}', "plain": "hunter2", "binary": b"\x00\xffbin"},
    shadows={("t1", None): b'{"state": {"reported": {"on": true, "level": 1.0}}}', ("t1", "config"): b'{"v": 2}'},
    lambdas={
        "arn:aws:lambda:us-east-1:123456789012:function:echo": lambda event: {"got": event, "ratio": 2.0},
        "arn:aws:lambda:us-east-1:123456789012:function:text": lambda event: b"not json",
    },
    things={"t1": {"attributes": {"limit": "9"}, "groups": [{"groupName": "g", "groupArn": "arn:g"}]}},
)


def with_lookups(expression: str, payload: Any = None, version: str = "2016-03-23") -> str | None:
    return value_of(expression, message(payload or {"id": "d1", "seq": 7}), version, LOOKUPS)


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("get_secret('json', 'SecretString', 'api', 'role')", '"k"'),
        ("get_secret('json', 'SecretString', 'role')", '{"api":"k","n":2}'),
        ("get_secret('json', 'SecretString', 'missing', 'role')", None),
        ("get_secret('plain', 'SecretString', 'role')", '"hunter2"'),
        ("get_secret('binary', 'SecretBinary', 'role')", '"AP9iaW4="'),
        ("get_dynamodb('devices', 'id', id, 'role').limit", "10"),
        (
            "get_dynamodb('devices', 'id', id, 'role')",
            '{"id":"d1","limit":10,"ok":true,"none":null,"where":{"floor":3,"tags":["a","b"]},'
            '"history":[1.5,"x"],"levels":[1,2.25],"blob":"AAE=","blobs":["/w=="]}',
        ),
        ("get_dynamodb('devices', 'id', 'nobody', 'role')", None),
        ("get_dynamodb('readings', 'id', id, 'seq', seq, 'role').value", "42"),
        ("aws_lambda('arn:aws:lambda:us-east-1:123456789012:function:echo', {'n': seq})", '{"got":{"n":7},"ratio":2}'),
        ("aws_lambda('arn:aws:lambda:us-east-1:123456789012:function:echo', *).got.id", '"d1"'),
        ("get_thing_shadow('t1', 'role').state.reported", '{"on":true,"level":1}'),
        ("get_thing_shadow('t1', 'config', 'role').v", "2"),
        ("get_thing_shadow('nothing', 'role')", None),
        ("get_registry_data('DescribeThing', 't1', 'role').attributes.limit", '"9"'),
        ("get_registry_data('ListThingGroupsForThing', 't1', 'role').thingGroups[0].groupName", '"g"'),
    ],
)
def test_service_functions(expression: str, result: str | None) -> None:
    assert with_lookups(expression) == result


def test_service_results_keep_decimal_points_in_2015_10_08() -> None:
    assert with_lookups("get_secret('json', 'SecretString', 'role')", version="2015-10-08") == '{"api":"k","n":2.0}'


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("get_secret('plain', 'SecretString', 'api', 'role')", "a key needs a secret that is a JSON object"),
        ("get_secret('binary', 'SecretBinary', 'k', 'role')", "SecretBinary takes no key"),
        ("get_secret('plain', 'SecretBinary', 'role')", "needs a binary secret"),
        ("get_secret('gone', 'SecretString', 'role')", "can't find the specified secret"),
        ("get_secret('json', kind, 'role')", "secretType must be SecretString or SecretBinary"),
        ("get_dynamodb('nope', 'id', id, 'role')", "Requested resource not found"),
        ("get_dynamodb('devices', 'id', missing, 'role')", "a key value must be a string or a number"),
        ("aws_lambda('arn:aws:lambda:us-east-1:123456789012:function:text', 1)", "must return JSON"),
        ("aws_lambda('arn:aws:lambda:us-east-1:123456789012:function:none', 1)", "Function not found"),
        ("aws_lambda('arn:aws:lambda:us-east-1:123456789012:function:echo', missing)", "the input is Undefined"),
        ("get_registry_data('DescribeThing', 'nothing', 'role')", "cannot be found"),
    ],
)
def test_failed_service_calls_fail_the_rule_for_that_message(expression: str, reason: str) -> None:
    rule = parse_rule(f"SELECT {expression} AS r FROM '#'")
    with pytest.raises(SqlEvaluationError, match=reason):
        rule.evaluate(message({"id": "d1", "kind": "Other"}), Environment(rule.numbers, None, LOOKUPS))


def test_get_dynamodb_twice_in_a_statement_fails_the_rule() -> None:
    """ "Calling get_dynamodb() multiple times in a single SQL statement causes the rule to terminate without
    invoking any actions." One call in SELECT and one in WHERE is twice too."""
    rule = parse_rule("SELECT get_dynamodb('devices', 'id', id, 'r').limit AS l FROM '#' "
                      "WHERE get_dynamodb('devices', 'id', id, 'r').ok = true")  # fmt: skip
    with pytest.raises(SqlEvaluationError, match="once per SQL statement"):
        rule.evaluate(message({"id": "d1"}), Environment(rule.numbers, None, LOOKUPS))
    once = parse_rule("SELECT get_dynamodb('devices', 'id', id, 'r').limit AS l FROM '#'")
    for _ in range(2):  # the limit is per evaluation, not per rule
        assert once.evaluate(message({"id": "d1"}), Environment(once.numbers, None, LOOKUPS)) == b'{"l":10}'


def test_service_functions_without_an_endpoint_fail_the_rule() -> None:
    rule = parse_rule("SELECT get_secret('json', 'SecretString', 'r') AS s FROM '#'")
    with pytest.raises(SqlEvaluationError, match="no AWS endpoint"):
        rule.evaluate(message(), Environment(Numbers("2016-03-23")))


def test_the_lambda_gets_the_input_as_json() -> None:
    lookups = FakeLookups(lambdas={"f": lambda event: event})
    rule = parse_rule("SELECT aws_lambda('f', {'a': 1.5, 'b': [true, null], 'c': topic()}) AS r FROM '#'")
    rule.evaluate(message(), Environment(rule.numbers, None, lookups))
    [(_, (arn, payload))] = lookups.calls
    assert (arn, json.loads(payload)) == ("f", {"a": 1.5, "b": [True, None], "c": "topic/subtopic"})
