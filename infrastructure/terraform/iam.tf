# One role per function, granted only what that function touches: its log group, the database secret,
# the stack key, its trigger (stream reads and on-failure queue), and the stack resources listed in its
# `access` key in stack.yaml (queue keys, "bucket", "alerts_topic", "stream").
resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${local.prefix}-${each.key}-function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "least-privilege"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

resource "aws_iam_role_policy_attachment" "function_vpc" {
  for_each = { for key, fn in local.functions : key => fn if length(var.lambda_subnet_ids) > 0 }

  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "UploadTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.database.arn]
  }

  statement {
    sid       = "UseStackKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.stack.arn]
  }

  statement {
    sid       = "DeadLetterAsyncFailures"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_failures.arn]
  }

  dynamic "statement" {
    for_each = contains(keys(local.triggered), each.key) ? [1] : []
    content {
      sid = "ReadTriggerStream"
      actions = [
        "kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
        "kinesis:GetShardIterator", "kinesis:ListShards", "kinesis:SubscribeToShard",
      ]
      resources = [aws_kinesis_stream.telemetry.arn]
    }
  }

  dynamic "statement" {
    for_each = length(local.function_queues[each.key]) == 0 ? [] : [1]
    content {
      sid       = "SendToStackQueues"
      actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
      resources = [for key in local.function_queues[each.key] : aws_sqs_queue.stack[key].arn]
    }
  }

  dynamic "statement" {
    for_each = contains(local.access[each.key], "bucket") ? [1] : []
    content {
      sid = "ReadWriteArchiveObjects"
      # Delete/abort: a day re-exported after late readings replaces its objects; failed multipart uploads are aborted.
      actions   = ["s3:PutObject", "s3:GetObject", "s3:GetObjectAttributes", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = ["${aws_s3_bucket.archive.arn}/*"]
    }
  }

  dynamic "statement" {
    for_each = contains(local.access[each.key], "bucket") ? [1] : []
    content {
      sid       = "ListArchive"
      actions   = ["s3:ListBucket"]
      resources = [aws_s3_bucket.archive.arn]
    }
  }

  dynamic "statement" {
    for_each = contains(local.access[each.key], "alerts_topic") ? [1] : []
    content {
      sid       = "PublishAlerts"
      actions   = ["sns:Publish"]
      resources = [aws_sns_topic.alerts.arn]
    }
  }

  dynamic "statement" {
    for_each = contains(local.access[each.key], "stream") ? [1] : []
    content {
      sid       = "PutTelemetry"
      actions   = ["kinesis:PutRecord", "kinesis:PutRecords"]
      resources = [aws_kinesis_stream.telemetry.arn]
    }
  }
}

locals {
  # Queues a function sends to: its trigger's on-failure queue plus the queue keys in its `access` list.
  function_queues = {
    for key, fn in local.functions : key => distinct(compact(concat(
      [try(fn.kinesis_trigger.on_failure_queue, null)],
      [for name in local.access[key] : name if contains(keys(local.stack.queues), name)],
    )))
  }
}
