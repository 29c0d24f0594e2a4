"""The archive function: exports whole UTC days of telemetry older than the retention period to S3 (gzip CSV
parts + a manifest written last), verifies every object, then drops the day's partition/chunks."""
