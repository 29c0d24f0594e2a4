# The queues of stack.yaml (the ingest dead-letter queue, the topic rules' error queue, ...).
resource "aws_sqs_queue" "stack" {
  for_each = local.stack.queues

  name                              = "${local.prefix}-${each.key}"
  message_retention_seconds         = each.value.message_retention_seconds
  visibility_timeout_seconds        = each.value.visibility_timeout_seconds
  kms_master_key_id                 = aws_kms_key.stack.arn
  kms_data_key_reuse_period_seconds = 300
}

# AWS-only: where Lambda puts asynchronous invocations (the scheduled functions) that failed all retries,
# and where EventBridge Scheduler puts events it could not deliver. The local scheduler invokes directly.
resource "aws_sqs_queue" "async_failures" {
  name                              = "${local.prefix}-async-failures"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = aws_kms_key.stack.arn
  kms_data_key_reuse_period_seconds = 300
}
