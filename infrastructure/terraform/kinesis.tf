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
}

locals {
  stream_mode = coalesce(var.stream_mode, try(local.stack.stream.mode, null), "PROVISIONED")
}
