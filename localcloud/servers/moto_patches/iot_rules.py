"""IoT patch: topic rules survive a restart of the endpoint, kept in the endpoint's store beside the streams.

moto forgets its topic rules when it stops. The runtime's rule watcher reads the rules every 2 s, and a
restarted endpoint without them made it unsubscribe from the rules' topics until the next deploy created them
again: readings published in between were never delivered to the rules engine (mosquitto queues messages for
a subscription, not for a topic nobody subscribes to). With the rules kept, a restarted endpoint serves the
same rules and the engine keeps its subscriptions; `localcloud up` replaces them with the stack's as before.
Tags of rules (iot.py) are not kept.

The patch targets moto 5.2.5 (pinned).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from localcloud.servers.moto_patches import kinesis
from localcloud.servers.moto_patches.install import install

_restored = False


def apply() -> None:
    global _restored
    _rules_saved_on_change()
    if not _restored:
        _restore_rules()
        _restored = True


def _document(rule: Any) -> dict[str, Any]:
    return {
        "description": rule.description,
        "created_at": rule.created_at.isoformat(),
        "rule_disabled": rule.rule_disabled,
        "topic_pattern": rule.topic_pattern,
        "actions": rule.actions,
        "error_action": rule.error_action,
        "sql": rule.sql,
        "aws_iot_sql_version": rule.aws_iot_sql_version,
    }


def _rules_saved_on_change() -> None:
    """Create, replace (delete + create), delete, enable and disable each save the backend's rules."""
    from moto.iot.models import IoTBackend

    def saving(method: Callable[..., Any]) -> Callable[..., Any]:
        def save_rules_after(self: IoTBackend, *args: Any, **kwargs: Any) -> Any:
            result = method(self, *args, **kwargs)
            documents = {name: _document(rule) for name, rule in self.rules.items()}
            kinesis.store().save_topic_rules(self.account_id, self.region_name, documents)
            return result

        return save_rules_after

    for name in ("create_topic_rule", "delete_topic_rule", "enable_topic_rule", "disable_topic_rule"):
        install(IoTBackend, name, saving(getattr(IoTBackend, name)))


def _restore_rules() -> None:
    from moto.iot.models import FakeRule, iot_backends

    for account, region, name, document in kinesis.store().topic_rules():
        document = {**document, "created_at": datetime.fromisoformat(document["created_at"])}
        rule = FakeRule(rule_name=name, account_id=account, region_name=region, **document)
        iot_backends[account][region].rules[name] = rule
