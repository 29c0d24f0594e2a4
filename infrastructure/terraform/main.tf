# Every setting the local cloud also needs comes from infrastructure/stack.yaml, the one source of truth.
# Nothing below repeats a value from that file: resources iterate over its maps (functions, queues,
# topic_rules), so a function added there is deployed here without a Terraform change.
locals {
  stack  = yamldecode(file("${path.module}/../stack.yaml"))
  prefix = coalesce(var.name_prefix, local.stack.project)

  functions = local.stack.functions
  # Functions fed by the telemetry stream through an event source mapping.
  triggered = { for key, fn in local.functions : key => fn if try(fn.kinesis_trigger, null) != null }
  # Functions run by EventBridge Scheduler (`rate(...)` or `cron(...)`).
  scheduled = { for key, fn in local.functions : key => fn if try(fn.schedule, null) != null }
  # `access` lists the stack resources a function writes to beyond its own trigger: queue keys,
  # "bucket", "alerts_topic", "stream". Least privilege follows from it.
  access = { for key, fn in local.functions : key => try(fn.access, []) }

  package_dir = coalesce(var.package_dir, "${path.module}/../../build/lambda")
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition
  region      = data.aws_region.current.name

  # Variables every function gets (the contract in DESIGN.md), then the function's own `environment`.
  # Queue URLs are named as the local cloud names them: `ingest_dlq` → INGEST_DLQ_URL,
  # `rule_errors` → RULE_ERRORS_QUEUE_URL.
  common_environment = merge(
    {
      DB_SECRET_ARN         = aws_secretsmanager_secret.database.arn
      TELEMETRY_STREAM_NAME = aws_kinesis_stream.telemetry.name
      ARCHIVE_BUCKET        = aws_s3_bucket.archive.bucket
      ALERTS_TOPIC_ARN      = aws_sns_topic.alerts.arn
    },
    {
      for key, queue in aws_sqs_queue.stack :
      "${upper(key)}${endswith(upper(key), "DLQ") || endswith(upper(key), "QUEUE") ? "" : "_QUEUE"}_URL" => queue.url
    },
  )
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}
