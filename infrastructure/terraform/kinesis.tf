resource "aws_kinesis_stream" "telemetry" {
  name             = "${local.prefix}-${local.stack.stream.name}"
  retention_period = local.stack.stream.retention_hours
  # Provisioned streams take their shard count from stack.yaml; on-demand streams must not set one.
  shard_count     = local.stream_mode == "PROVISIONED" ? local.stack.stream.shard_count : null
  encryption_type = "KMS"
  kms_key_id      = aws_kms_key.stack.arn

  stream_mode_details {
    stream_mode = local.stream_mode
  }

  lifecycle {
    # A batch a trigger gives up on is only its on-failure record (shard and sequence numbers): the records
    # must still be in the stream to be replayed. The local cloud's stack loader checks the same.
    precondition {
      condition     = length(local.unreplayable_triggers) == 0
      error_message = "stream.retention_hours in stack.yaml must exceed every kinesis_trigger.maximum_record_age_s (which must not be -1) by at least a day, so that a failed batch can be replayed from the stream (not so: ${join(", ", local.unreplayable_triggers)})."
    }
  }
}

locals {
  stream_mode = coalesce(var.stream_mode, try(local.stack.stream.mode, null), "PROVISIONED")
  # Functions whose failed batches could leave the stream before a replay: no age limit, or less than a day.
  unreplayable_triggers = sort([
    for key, fn in local.triggered : key
    if fn.kinesis_trigger.maximum_record_age_s == -1 || local.stack.stream.retention_hours * 3600 - fn.kinesis_trigger.maximum_record_age_s < 86400
  ])
}
