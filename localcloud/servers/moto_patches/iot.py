"""IoT patches: resource tags, so the Terraform AWS provider can create and destroy the stack's IoT resources.

moto 5.2.5 (pinned) has no IoT tagging at all: ListTagsForResource answers HTTP 500 "not implemented" and tags
given at creation are dropped. The provider reads tags back after creating every taggable IoT resource and
retries that 500 for minutes. These patches keep tags per ARN, as AWS does:

- TagResource / UntagResource / ListTagsForResource (ResourceNotFoundException for an ARN of nothing);
- tags at creation: CreateTopicRule's `x-amz-tagging` header (URL query form), CreateThingType's and
  CreatePolicy's `tags` lists;
- a deleted resource's tags go with it; a replaced topic rule keeps its tags.

And DescribeEndpoint answers the same address every time (moto drew a new one per call), as AWS does for an
account: Terraform's `iot_data_endpoint` output would otherwise change on every plan.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from localcloud.servers.moto_patches.install import install

_TAGS_ATTRIBUTE = "_iotkpi_tags"


def apply() -> None:
    _tag_api()
    _tags_at_creation()
    _tags_deleted_with_their_resource()
    _stable_endpoints()


def _tags(backend: Any) -> Any:
    """The backend's tag store (one per account and region, like the backend itself)."""
    from moto.utilities.tagging_service import TaggingService

    if _TAGS_ATTRIBUTE not in backend.__dict__:
        setattr(backend, _TAGS_ATTRIBUTE, TaggingService(tag_name="tags"))
    return backend.__dict__[_TAGS_ATTRIBUTE]


def _resource_exists(backend: Any, arn: str) -> bool:
    """Whether `arn` names a resource the backend holds (the taggable kinds the stack and devices use)."""
    kind = arn.split(":", 5)[-1].partition("/")[0]
    collections = {
        "rule": backend.rules,
        "thingtype": backend.thing_types,
        "policy": backend.policies,
        "thing": backend.things,
        "thinggroup": backend.thing_groups,
        "billinggroup": backend.billing_groups,
        "rolealias": backend.role_aliases,
    }
    collection = collections.get(kind)
    return collection is not None and any(getattr(item, "arn", None) == arn for item in collection.values())


def _tag_api() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.iot.exceptions import ResourceNotFoundException
    from moto.iot.responses import IoTResponse

    def existing(response: IoTResponse, arn: str) -> str:
        if not arn or not _resource_exists(response.iot_backend, arn):
            raise ResourceNotFoundException(f"{arn} not found")
        return arn

    def list_tags_for_resource(self: IoTResponse) -> ActionResult:
        arn = existing(self, self._get_param("resourceArn"))
        return ActionResult(_tags(self.iot_backend).list_tags_for_resource(arn))

    def tag_resource(self: IoTResponse) -> EmptyResult:
        arn = existing(self, self._get_param("resourceArn"))
        _tags(self.iot_backend).tag_resource(arn, self._get_param("tags") or [])
        return EmptyResult()

    def untag_resource(self: IoTResponse) -> EmptyResult:
        arn = existing(self, self._get_param("resourceArn"))
        _tags(self.iot_backend).untag_resource_using_names(arn, self._get_param("tagKeys") or [])
        return EmptyResult()

    install(IoTResponse, "list_tags_for_resource", list_tags_for_resource)
    install(IoTResponse, "tag_resource", tag_resource)
    install(IoTResponse, "untag_resource", untag_resource)


def _tagging_header(value: str | None) -> list[dict[str, str]]:
    """`x-amz-tagging: k1=v1&k2=v2` (URL-encoded) as a tag list."""
    return [{"Key": key, "Value": val} for key, val in urllib.parse.parse_qsl(value or "", keep_blank_values=True)]


def _tags_at_creation() -> None:
    from moto.iot.responses import IoTResponse

    def tagging(create: Callable, tags_of: Callable[[IoTResponse], list], arn_of: Callable[[IoTResponse, Any], str]):
        def create_and_tag(self: IoTResponse) -> Any:
            result = create(self)
            tags = tags_of(self)
            if tags:
                _tags(self.iot_backend).tag_resource(arn_of(self, result), tags)
            return result

        return create_and_tag

    def rule_arn(self: IoTResponse, _result: Any) -> str:
        return self.iot_backend.rules[self._get_param("ruleName")].arn

    def thing_type_arn(self: IoTResponse, _result: Any) -> str:
        return self.iot_backend.describe_thing_type(self._get_param("thingTypeName")).arn

    def policy_arn(self: IoTResponse, _result: Any) -> str:
        return self.iot_backend.policies[self._get_param("policyName")].arn

    def header_tags(self: IoTResponse) -> list:
        return _tagging_header(self.headers.get("x-amz-tagging"))

    def body_tags(self: IoTResponse) -> list:
        return self._get_param("tags") or []

    install(IoTResponse, "create_topic_rule", tagging(IoTResponse.create_topic_rule, header_tags, rule_arn))
    install(IoTResponse, "create_thing_type", tagging(IoTResponse.create_thing_type, body_tags, thing_type_arn))
    install(IoTResponse, "create_policy", tagging(IoTResponse.create_policy, body_tags, policy_arn))


def _tags_deleted_with_their_resource() -> None:
    """At the API layer: moto's ReplaceTopicRule deletes and re-creates the rule in the backend, and on AWS a
    replaced rule keeps its tags."""
    from moto.iot.responses import IoTResponse

    def forgetting(delete: Callable, arn_of: Callable[[IoTResponse], str | None]):
        def delete_and_forget(self: IoTResponse) -> Any:
            arn = arn_of(self)
            result = delete(self)
            if arn:
                _tags(self.iot_backend).delete_all_tags_for_resource(arn)
            return result

        return delete_and_forget

    def rule_arn(self: IoTResponse) -> str | None:
        return getattr(self.iot_backend.rules.get(self._get_param("ruleName")), "arn", None)

    def thing_type_arn(self: IoTResponse) -> str | None:  # moto keys thing types by ARN
        name = self._get_param("thingTypeName")
        return next((arn for arn, item in self.iot_backend.thing_types.items() if item.thing_type_name == name), None)

    def policy_arn(self: IoTResponse) -> str | None:
        return getattr(self.iot_backend.policies.get(self._get_param("policyName")), "arn", None)

    install(IoTResponse, "delete_topic_rule", forgetting(IoTResponse.delete_topic_rule, rule_arn))
    install(IoTResponse, "delete_thing_type", forgetting(IoTResponse.delete_thing_type, thing_type_arn))
    install(IoTResponse, "delete_policy", forgetting(IoTResponse.delete_policy, policy_arn))


def _stable_endpoints() -> None:
    from moto.iot.models import IoTBackend

    describe_endpoint = IoTBackend.describe_endpoint

    def describe_stable_endpoint(self: IoTBackend, endpoint_type: str) -> Any:
        endpoints = self.__dict__.setdefault("_iotkpi_endpoints", {})
        if endpoint_type not in endpoints:
            endpoints[endpoint_type] = describe_endpoint(self, endpoint_type)  # refuses an unknown type
        self.endpoint = endpoints[endpoint_type]
        return self.endpoint

    install(IoTBackend, "describe_endpoint", describe_stable_endpoint)
