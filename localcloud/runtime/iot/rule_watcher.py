"""Topic rules created, changed, disabled or deleted through the IoT API go live within seconds, as on AWS.

Whoever changes a rule (Terraform, `aws iot create-topic-rule`, `localcloud deploy`) calls nothing in the runtime.
The watcher reads every rule (ListTopicRules, GetTopicRule) each `interval_s` and, when what it read differs from
the previous pass, calls the engine's reload, which (un)subscribes and swaps the rules. The scheduler and the
event source mapping poller refresh themselves the same way. A rule the engine cannot load is reported by the
engine (`status()["load_errors"]`) and logged once, not on every pass.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 2.0


class RuleWatcher:
    def __init__(self, iot_client: Any, reload: Callable[[], None], interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._iot = iot_client
        self._reload = reload
        self._interval_s = interval_s
        self._seen: str | None = None
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching from what the endpoint holds now (the engine loaded exactly that when it started)."""
        self._seen = self._rules_read_safely()
        self._thread = threading.Thread(target=self._run, name="rule-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s + 30)

    def check(self) -> bool:
        """One pass: reload when the rules changed since the previous pass; True when it reloaded."""
        current = self._rules_read_safely()
        if current is None or current == self._seen:
            return False
        self._seen = current
        try:
            self._reload()
        except Exception as exc:  # the engine runs the rules it could load; say once why the others do not run
            log.warning("topic rules changed; some could not be loaded: %s", exc)
        else:
            log.info("topic rules changed on the endpoint: reloaded")
        return True

    def _rules_read_safely(self) -> str | None:
        try:
            rules = self._rules()
        except (BotoCoreError, ClientError) as exc:  # the endpoint restarting: keep the rules running, try again
            if str(exc) != self._last_error:
                log.warning("cannot read the topic rules: %s", exc)
            self._last_error = str(exc)
            return None
        self._last_error = None
        return rules

    def _rules(self) -> str:
        """Every rule's full definition, in one comparable text."""
        rules: dict[str, Any] = {}
        kwargs: dict[str, str] = {}
        while True:
            page = self._iot.list_topic_rules(**kwargs)
            for summary in page.get("rules", []):
                name = summary["ruleName"]
                try:
                    rules[name] = self._iot.get_topic_rule(ruleName=name)["rule"]
                except ClientError as exc:  # deleted between the list and the get
                    if exc.response["Error"]["Code"] not in {"ResourceNotFoundException", "UnauthorizedException"}:
                        raise
            if not page.get("nextToken"):
                return json.dumps(rules, sort_keys=True, default=str)
            kwargs = {"nextToken": page["nextToken"]}

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.check()
            except Exception:  # never let the watcher die: the next pass tries again
                log.exception("watching the topic rules failed")
