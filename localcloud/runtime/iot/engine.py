"""The local IoT rules engine: topic rules from the IoT API, MQTT in, Kinesis out, SQS error action.

Rules are read with `list_topic_rules`/`get_topic_rule` from the endpoint (moto locally), where the deploy step
created them. Each rule needs exactly one `kinesis` action ({streamName, partitionKey, roleArn}; the role is not
checked locally) and may have an `sqs` errorAction ({queueUrl}); anything else is a load error reported by
`reload()` and `status()`, never skipped silently. Disabled rules are loaded but not run, as on AWS.

Delivery is at least once: one MQTT 5 client with a fixed client id, a persistent session (clean_start False and a
session expiry) and QoS 1 subscriptions; each PUBLISH is acked only after every rule that selected it has put
its record to Kinesis or performed its error action. A crash before that means the broker redelivers.
Each topic filter is subscribed once with an MQTT 5 subscription identifier, so overlapping filters of several
rules never double-process a message. Retained messages are not sent to the engine (AWS rules ignore them too).

What the SQL functions know about the publisher comes with each message: the publish's own MQTT 5 properties
(get_mqtt_property, get_user_properties), and the user properties our mosquitto plugin appends (see
localcloud/servers/mqtt_broker.py): client id, address and username (clientid, sourceip, principal; the last of
each wins). Each message gets a trace id (traceid(), the error action's cloudwatchTraceId); accountid() is the
account in the rule's ARN. get_secret() & co call the endpoint through `EndpointLookups`; they run on the MQTT
thread, so their latency adds to every message of such a rule.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from botocore.config import Config
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from localcloud.config import aws_session
from localcloud.runtime.iot import paho_patches
from localcloud.runtime.iot.forwarder import KinesisForwarder, Record
from localcloud.runtime.iot.functions.services import Lookups
from localcloud.runtime.iot.lookups import EndpointLookups
from localcloud.runtime.iot.sql import (
    Environment,
    Message,
    MqttProperties,
    Rule,
    SqlEvaluationError,
    Template,
    UnsupportedSql,
    parse_rule,
    parse_template,
)
from localcloud.runtime.iot.topics import topic_matches
from localcloud.runtime.kinesis_client import records_client
from localcloud.servers.mqtt_broker import (
    BROKER_PROPERTY_PREFIX,
    CLIENT_ID_PROPERTY,
    SOURCE_IP_PROPERTY,
    USERNAME_PROPERTY,
)

LOG = logging.getLogger(__name__)
DEFAULT_CLIENT_ID = "iotkpi-rules-engine"
paho_patches.apply()  # paho's per-message costs were most of the engine's


class RuleLoadError(RuntimeError):
    """One or more topic rules could not be loaded; `errors` maps rule name to reason. Valid rules still run."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"rule {name}: {reason}" for name, reason in sorted(errors.items())))
        self.errors = errors


@dataclass
class LoadedRule:
    name: str
    rule: Rule
    stream: str
    partition_key: Template
    error_queue_url: str | None
    disabled: bool
    environment: Environment
    counts: Counter = field(default_factory=Counter)


def load_rule(
    name: str, payload: dict[str, Any], rule_arn: str | None = None, lookups: Lookups | None = None
) -> LoadedRule:
    """Turn a get_topic_rule()["rule"] into a runnable rule; UnsupportedSql for anything we cannot run.
    A rule created without awsIotSqlVersion runs 2015-10-08, IoT Core's default (CloudFormation's
    AWS::IoT::TopicRule documents it: "The default value is 2015-10-08")."""
    rule = parse_rule(payload["sql"], payload.get("awsIotSqlVersion") or "2015-10-08")
    actions = payload.get("actions") or []
    if len(actions) != 1 or set(actions[0]) != {"kinesis"}:
        kinds = [next(iter(action), "?") for action in actions]
        raise UnsupportedSql(f"the local engine runs exactly one kinesis action per rule, not {kinds}")
    kinesis = actions[0]["kinesis"]
    if not kinesis.get("streamName") or not kinesis.get("partitionKey"):
        raise UnsupportedSql("the kinesis action needs streamName and partitionKey")
    error_action = payload.get("errorAction") or {}
    if error_action and set(error_action) != {"sqs"}:
        raise UnsupportedSql(f"only an sqs errorAction is supported, not {sorted(error_action)}")
    return LoadedRule(
        name=name,
        rule=rule,
        stream=kinesis["streamName"],
        partition_key=parse_template(kinesis["partitionKey"], rule.version),
        error_queue_url=error_action["sqs"]["queueUrl"] if error_action else None,
        disabled=bool(payload.get("ruleDisabled")),
        environment=Environment(rule.numbers, _account_of(rule_arn), lookups),
    )


def _account_of(rule_arn: str | None) -> str | None:
    """arn:aws:iot:<region>:<account>:rule/<name> → <account>."""
    parts = (rule_arn or "").split(":")
    return parts[4] if len(parts) > 5 and parts[4] else None


_NO_PROPERTIES = MqttProperties()  # a PUBLISH without properties of its publisher's own: most device messages
_BROKER_FIELDS = {CLIENT_ID_PROPERTY: "client_id", USERNAME_PROPERTY: "principal", SOURCE_IP_PROPERTY: "source_ip"}


def message_of(msg: mqtt.MQTTMessage, received_at_ms: int) -> Message:
    """An MQTT message with what the broker and the publisher's MQTT 5 properties tell about it."""
    held = vars(msg.properties) if msg.properties is not None else {}
    broker: dict[str, str] = {}
    publisher = []
    for key, value in held.get("UserProperty") or ():
        if key.startswith(BROKER_PROPERTY_PREFIX):
            if key in _BROKER_FIELDS:
                broker[_BROKER_FIELDS[key]] = value  # the last of each wins
        else:
            publisher.append((key, value))
    fields = (held.get("ContentType"), held.get("PayloadFormatIndicator"), held.get("ResponseTopic"),
              held.get("CorrelationData"))  # fmt: skip
    if publisher or fields != (None, None, None, None):
        properties = MqttProperties(*fields, user_properties=tuple(publisher))
    else:
        properties = _NO_PROPERTIES
    return Message(topic=msg.topic, payload=msg.payload, received_at_ms=received_at_ms, properties=properties,
                   **broker)  # fmt: skip


class RulesEngine:
    def __init__(
        self,
        endpoint_url: str,
        region: str,
        mqtt_host: str,
        mqtt_port: int,
        clock: Callable[[], float] = time.time,
        client_id: str = DEFAULT_CLIENT_ID,
        session_expiry_s: int = 7 * 24 * 3600,
        receive_maximum: int = 1000,
    ) -> None:
        config = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10, max_pool_connections=4)
        session = aws_session(region)
        self._iot = session.client("iot", endpoint_url=endpoint_url, config=config)
        self._lookups = EndpointLookups(endpoint_url, region)
        self._forwarder = KinesisForwarder(
            kinesis=records_client(session, endpoint_url, config),
            sqs=session.client("sqs", endpoint_url=endpoint_url, config=config),
            settling=lambda: paho_patches.one_wake(self._client),  # a call's acks: one wake-up of the MQTT thread
        )
        self._clock = clock
        self._mqtt_address = (mqtt_host, mqtt_port)
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._lock = threading.Lock()  # the rules and the counts the MQTT thread keeps (matched, filtered, ...)
        # The actions' outcomes (forwarded, ...): counted on the Kinesis action's thread, which must not make the
        # MQTT thread wait for a lock it takes once per record. Each count has one lock: no update is lost.
        self._outcomes = threading.Lock()
        self._rules: dict[str, LoadedRule] = {}
        self._load_errors: dict[str, str] = {}
        self._filter_ids: dict[str, int] = {}  # topic filter -> subscription identifier
        self._enabled: list[LoadedRule] = []
        self._routes: dict[int, list[LoadedRule]] = {}  # subscription identifier -> the enabled rules of its filter
        self._connected = threading.Event()
        self._unacked_subscribes: set[int] = set()
        self._subscribed = threading.Condition()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Load rules, then connect (resuming the persistent session, whose queued messages flow at once).

        Raises RuleLoadError after connecting when some rules are bad; the good ones run.
        """
        errors, _, _ = self._load_rules()
        self._forwarder.start()
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = self._session_expiry_s
        connect.ReceiveMaximum = self._receive_maximum
        self._client.connect(*self._mqtt_address, clean_start=False, properties=connect)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            self._client.loop_stop()
            raise ConnectionError(f"MQTT broker at {self._mqtt_address} did not accept the connection")
        self._wait_subscribed(timeout)
        if errors:
            raise RuleLoadError(errors)

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Finish (and ack) what is in flight, then disconnect; the session and its subscriptions stay."""
        self._forwarder.stop(drain_timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def reload(self) -> None:
        """Re-read the topic rules and (un)subscribe to match; raises RuleLoadError listing the bad ones."""
        errors, gone, new = self._load_rules()
        if gone:
            self._client.unsubscribe(gone)
        for topic_filter in new:
            self._subscribe(topic_filter)
        self._wait_subscribed(timeout=10.0)
        if errors:
            raise RuleLoadError(errors)

    def _load_rules(self) -> tuple[dict[str, str], list[str], list[str]]:
        """Read every rule; returns the load errors and the topic filters to drop and to add."""
        rules: dict[str, LoadedRule] = {}
        errors: dict[str, str] = {}
        for name in self._rule_names():
            try:
                answer = self._iot.get_topic_rule(ruleName=name)
                rules[name] = load_rule(name, answer["rule"], answer.get("ruleArn"), self._lookups)
            except (UnsupportedSql, KeyError, TypeError) as exc:
                errors[name] = str(exc)
        with self._lock:
            for name, loaded in rules.items():
                if name in self._rules and self._rules[name].rule.sql == loaded.rule.sql:
                    loaded.counts = self._rules[name].counts
            self._rules, self._load_errors = rules, errors
            wanted = {loaded.rule.topic_filter for loaded in rules.values() if not loaded.disabled}
            gone = [topic_filter for topic_filter in self._filter_ids if topic_filter not in wanted]
            for topic_filter in gone:
                del self._filter_ids[topic_filter]
            new = [topic_filter for topic_filter in sorted(wanted) if topic_filter not in self._filter_ids]
            for topic_filter in new:
                self._filter_ids[topic_filter] = max(self._filter_ids.values(), default=0) + 1
            self._enabled = [loaded for loaded in rules.values() if not loaded.disabled]
            self._routes = {
                sub_id: [loaded for loaded in self._enabled if loaded.rule.topic_filter == topic_filter]
                for topic_filter, sub_id in self._filter_ids.items()
            }
        return errors, gone, new

    @property
    def mqtt_running(self) -> bool:
        """Whether paho's network thread runs: an exception escaping it (a defect, ours or paho's) ends it, and
        then the engine takes no more messages until it is started again (engine_process does)."""
        thread = self._client._thread  # paho has no public accessor; paho-mqtt is pinned
        return thread is not None and thread.is_alive()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connected": self._connected.is_set(),
                "pending_records": self._forwarder.pending,
                "load_errors": dict(self._load_errors),
                "rules": {
                    name: {
                        "topic_filter": loaded.rule.topic_filter,
                        "stream": loaded.stream,
                        "disabled": loaded.disabled,
                        **{key: loaded.counts[key] for key in _COUNTS},
                    }
                    for name, loaded in self._rules.items()
                },
            }

    # -- MQTT side (paho's network thread) ---------------------------------------------------------------------
    def _rule_names(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, str] = {}
        while True:
            page = self._iot.list_topic_rules(**kwargs)
            names += [rule["ruleName"] for rule in page.get("rules", [])]
            if not page.get("nextToken"):
                return names
            kwargs = {"nextToken": page["nextToken"]}

    def _subscribe(self, topic_filter: str) -> None:
        properties = Properties(PacketTypes.SUBSCRIBE)
        properties.SubscriptionIdentifier = self._filter_ids[topic_filter]
        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
        with self._subscribed:
            _, mid = self._client.subscribe(topic_filter, options=options, properties=properties)
            if mid is not None:
                self._unacked_subscribes.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        for reason in reasons:
            if reason.is_failure:
                LOG.error("MQTT subscription %s refused: %s", mid, reason)
        with self._subscribed:
            self._unacked_subscribes.discard(mid)
            self._subscribed.notify_all()

    def _wait_subscribed(self, timeout: float) -> None:
        """Block until the broker acknowledged every subscription: messages published after this reach us."""
        with self._subscribed:
            if not self._subscribed.wait_for(lambda: not self._unacked_subscribes, timeout):
                raise ConnectionError(f"MQTT broker did not acknowledge subscriptions {self._unacked_subscribes}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            LOG.error("MQTT connection refused: %s", reason)
            return
        # Subscribing again is harmless when the session kept the subscriptions, and needed when it did not.
        with self._lock:
            filters = list(self._filter_ids)
        for topic_filter in filters:
            self._subscribe(topic_filter)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        message = message_of(msg, int(self._clock() * 1000))
        sub_ids = getattr(msg.properties, "SubscriptionIdentifier", None)
        with self._lock:
            # A copy per matching subscription may arrive: each copy runs only the rules of its own filters. The
            # topic check also guards against identifiers a previous run left in the persistent session.
            candidates = self._enabled if not sub_ids else [
                loaded for sub_id in dict.fromkeys(sub_ids) for loaded in self._routes.get(sub_id, ())
            ]  # fmt: skip
            rules = [loaded for loaded in candidates if topic_matches(loaded.rule.topic_filter, message.topic)]
            for loaded in rules:
                loaded.counts["matched"] += 1
        selected = [(loaded, result) for loaded in rules if (result := self._evaluate(loaded, message)) is not None]
        if not selected:
            client.ack(msg.mid, msg.qos)
            return
        acknowledgement = _Acknowledgement(client, msg.mid, msg.qos, len(selected), self._outcomes)
        for loaded, (output, partition_key) in selected:
            self._forwarder.submit(
                Record(
                    rule_name=loaded.name,
                    stream=loaded.stream,
                    partition_key=partition_key,
                    data=output,
                    message=message,
                    error_queue_url=loaded.error_queue_url,
                    on_done=acknowledgement.done_with(loaded.counts),
                )
            )

    def _evaluate(self, loaded: LoadedRule, message: Message) -> tuple[bytes, str] | None:
        """The rule's output and the action's partition key (its template reads the incoming message)."""
        try:
            ctx = loaded.rule.context(message, loaded.environment)
            output = loaded.rule.output(ctx)
            result = None if output is None else (output, loaded.partition_key.render_in(ctx))
        except Exception as exc:  # one message must never stop the engine: paho's network thread would die
            level = logging.WARNING if isinstance(exc, SqlEvaluationError) else logging.ERROR
            LOG.log(level, "rule %s: message on %s not evaluated: %s", loaded.name, message.topic, exc)
            with self._lock:
                loaded.counts["sql_errors"] += 1
            return None
        if result is None:
            with self._lock:
                loaded.counts["filtered"] += 1
        return result


class _Acknowledgement:
    """A message is acked once every rule that selected it has performed its action (or its error action)."""

    __slots__ = ("client", "lock", "mid", "qos", "remaining")

    def __init__(self, client: mqtt.Client, mid: int, qos: int, actions: int, lock: threading.Lock) -> None:
        self.client, self.mid, self.qos, self.remaining, self.lock = client, mid, qos, actions, lock

    def done_with(self, counts: Counter) -> Callable[[str], None]:
        """The on_done of one rule's record: counts its outcome, acks after the last."""

        def done(outcome: str) -> None:
            with self.lock:
                counts[outcome] += 1
                self.remaining -= 1
                last = self.remaining == 0
            if last:
                self.client.ack(self.mid, self.qos)

        return done


_COUNTS = ("matched", "filtered", "sql_errors", "forwarded", "error_action", "dropped")


def main(argv: list[str] | None = None) -> int:
    """Run the engine until SIGTERM/SIGINT: python -m localcloud.runtime.iot.engine --endpoint-url URL ..."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--mqtt-host", default="127.0.0.1")
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    engine = RulesEngine(args.endpoint_url, args.region, args.mqtt_host, args.mqtt_port, client_id=args.client_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        engine.start()
    except RuleLoadError as exc:
        LOG.error("%s", exc)
        engine.stop()
        return 2
    LOG.info("rules engine running: %s", engine.status())
    stop.wait()
    engine.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
