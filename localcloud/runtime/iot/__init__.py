"""The local AWS IoT Core stand-in: IoT SQL evaluation, topic filters and the rules engine (MQTT → Kinesis)."""
