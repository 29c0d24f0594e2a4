"""The ingest Lambda: Kinesis telemetry records -> validated readings -> one idempotent COPY per batch."""
