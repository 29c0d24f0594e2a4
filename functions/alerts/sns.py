"""SNS adapter: one notification, one Publish call, with the attributes subscribers filter on."""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from alerts.messages import Notification
from alerts.ports import PublishError

# A few quick retries inside the call; the outbox retries across runs, so a call never needs to wait long.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})


class SnsPublisher:
    def __init__(self, topic_arn: str, client=None) -> None:
        self.topic_arn = topic_arn
        self._client = client or boto3.client("sns", config=CLIENT_CONFIG)
        # FIFO topics deduplicate on an id; the notification id is deterministic, so a re-publish after a
        # crash between Publish and marking it sent is dropped by SNS itself. Standard topics take no id:
        # subscribers deduplicate on the notification_id attribute.
        self._fifo = topic_arn.endswith(".fifo")

    def publish(self, notification: Notification) -> str:
        """Publish; return the SNS MessageId."""
        request = {
            "TopicArn": self.topic_arn,
            "Subject": notification.subject,
            "Message": notification.body,
            "MessageAttributes": {
                name: {"DataType": "String", "StringValue": value} for name, value in notification.attributes.items()
            },
        }
        if self._fifo:
            request["MessageGroupId"] = notification.attributes["device_id"]
            request["MessageDeduplicationId"] = notification.notification_id
        try:
            return self._client.publish(**request)["MessageId"]
        except (BotoCoreError, ClientError) as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
