"""The endpoint adapter of the service functions against the real moto server: what each SQL function reads."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from localcloud.runtime.iot.functions.services import LookupFailed, NotFound, Secret
from localcloud.runtime.iot.lookups import EndpointLookups


@pytest.fixture
def lookups(aws_env: Any) -> EndpointLookups:
    return EndpointLookups(aws_env.url, "us-east-1")


def test_secrets_strings_and_binaries(aws_env: Any, lookups: EndpointLookups) -> None:
    secrets = aws_env.client("secretsmanager")
    name = f"iot-sql-{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=name, SecretString='{"api": "k"}')
    secrets.create_secret(Name=f"{name}-bin", SecretBinary=b"\x00\xff")
    assert lookups.secret(name) == Secret(string='{"api": "k"}')
    assert lookups.secret(f"{name}-bin") == Secret(binary=b"\x00\xff")
    secrets.put_secret_value(SecretId=name, SecretString="rotated")
    assert lookups.secret(name).string == "rotated"  # read every time: no 15-minute cache locally
    with pytest.raises(NotFound):
        lookups.secret(f"{name}-missing")


def test_dynamodb_items(aws_env: Any, lookups: EndpointLookups) -> None:
    dynamodb = aws_env.client("dynamodb")
    table = f"iot-sql-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"id": {"S": "d1"}, "seq": {"N": "7"}, "limit": {"N": "9.5"}, "tags": {"SS": ["a"]}}
    dynamodb.put_item(TableName=table, Item=item)
    assert lookups.dynamodb_item(table, {"id": {"S": "d1"}, "seq": {"N": "7"}}) == item
    assert lookups.dynamodb_item(table, {"id": {"S": "d1"}, "seq": {"N": "8"}}) is None
    with pytest.raises(LookupFailed):
        lookups.dynamodb_item(f"{table}-missing", {"id": {"S": "d1"}})


def test_thing_shadows_and_registry(aws_env: Any, lookups: EndpointLookups) -> None:
    iot, iot_data = aws_env.client("iot"), aws_env.client("iot-data")
    thing = f"thing-{uuid.uuid4().hex[:8]}"
    iot.create_thing(thingName=thing, attributePayload={"attributes": {"limit": "9"}})
    group = iot.create_thing_group(thingGroupName=f"g-{thing}")
    iot.add_thing_to_thing_group(thingGroupName=f"g-{thing}", thingName=thing)
    iot_data.update_thing_shadow(thingName=thing, payload=json.dumps({"state": {"reported": {"on": True}}}))
    iot_data.update_thing_shadow(
        thingName=thing, shadowName="cfg", payload=json.dumps({"state": {"desired": {"v": 2}}})
    )
    assert json.loads(lookups.thing_shadow(thing, None))["state"]["reported"] == {"on": True}
    assert json.loads(lookups.thing_shadow(thing, "cfg"))["state"]["desired"] == {"v": 2}
    with pytest.raises(NotFound):
        lookups.thing_shadow(f"{thing}-none", None)
    described = lookups.registry("DescribeThing", thing)
    assert (described["thingName"], described["attributes"]) == (thing, {"limit": "9"})
    assert "ResponseMetadata" not in described
    groups = lookups.registry("ListThingGroupsForThing", thing)["thingGroups"]
    assert groups == [{"groupName": f"g-{thing}", "groupArn": group["thingGroupArn"]}]
    with pytest.raises(LookupFailed):
        lookups.registry("DescribeThing", f"{thing}-none")


def test_an_invoke_the_endpoint_cannot_serve_is_a_failed_lookup(lookups: EndpointLookups) -> None:
    """Without a runtime behind it, moto cannot run the function: aws_lambda() then fails the rule."""
    with pytest.raises(LookupFailed):
        lookups.invoke_lambda("arn:aws:lambda:us-east-1:123456789012:function:not-deployed", b"{}")
