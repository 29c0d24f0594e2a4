"""An in-memory `Lookups` (the port the service functions call), for tests of the SQL functions themselves; the
real adapter is tested against moto in test_lookups.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from localcloud.runtime.iot.functions.services import LookupFailed, NotFound, Secret


class FakeLookups:
    def __init__(
        self,
        items: dict[tuple[str, ...], dict[str, Any]] | None = None,
        secrets: dict[str, str | bytes] | None = None,
        shadows: dict[tuple[str, str | None], bytes] | None = None,
        lambdas: dict[str, Callable[[Any], Any]] | None = None,
        things: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.items = items or {}  # (table, key name, key value[, sort key name, sort key value]) -> AttributeValues
        self.secrets = secrets or {}
        self.shadows = shadows or {}
        self.lambdas = lambdas or {}
        self.things = things or {}
        self.calls: list[tuple[str, Any]] = []

    def secret(self, secret_id: str) -> Secret:
        self.calls.append(("secret", secret_id))
        if secret_id not in self.secrets:
            raise NotFound(f"Secrets Manager can't find the specified secret {secret_id}")
        value = self.secrets[secret_id]
        return Secret(binary=value) if isinstance(value, bytes) else Secret(string=value)

    def dynamodb_item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        self.calls.append(("dynamodb_item", (table, key)))
        if table not in {stored[0] for stored in self.items}:
            raise NotFound(f"Requested resource not found: {table}")
        flat = tuple(part for name, value in key.items() for part in (name, next(iter(value.values()))))
        return self.items.get((table, *flat))

    def invoke_lambda(self, function_arn: str, payload: bytes) -> bytes:
        self.calls.append(("invoke_lambda", (function_arn, payload)))
        if function_arn not in self.lambdas:
            raise LookupFailed(f"Function not found: {function_arn}")
        answer = self.lambdas[function_arn](json.loads(payload))
        return answer if isinstance(answer, bytes) else json.dumps(answer).encode()

    def thing_shadow(self, thing: str, shadow: str | None) -> bytes:
        self.calls.append(("thing_shadow", (thing, shadow)))
        if (thing, shadow) not in self.shadows:
            raise NotFound(f"No shadow exists with name: {thing}")
        return self.shadows[(thing, shadow)]

    def registry(self, api: str, thing: str) -> dict[str, Any]:
        self.calls.append(("registry", (api, thing)))
        if thing not in self.things:
            raise NotFound(f"Thing {thing} cannot be found")
        if api == "DescribeThing":
            return {"thingName": thing, **self.things[thing]}
        return {"thingGroups": self.things[thing].get("groups", [])}
