# Topic rules from stack.yaml: IoT SQL into the telemetry stream, failures into the rule's error queue.
resource "aws_iot_topic_rule" "stack" {
  for_each = local.stack.topic_rules

  # IoT rule names allow only [A-Za-z0-9_].
  name        = replace("${local.prefix}_${each.key}", "-", "_")
  description = try(each.value.description, null)
  enabled     = true
  # The same normalisation as the local rules engine: one line, single spaces.
  sql         = join(" ", compact(split(" ", replace(each.value.sql, "\n", " "))))
  sql_version = each.value.sql_version

  kinesis {
    role_arn    = aws_iam_role.iot_rules.arn
    stream_name = aws_kinesis_stream.telemetry.name
    # Read from YAML, the template `${topic(2)}` reaches AWS verbatim (HCL interpolates only literals).
    partition_key = each.value.kinesis.partition_key
  }

  dynamic "error_action" {
    for_each = try(each.value.error_action.sqs_queue, null) == null ? [] : [each.value.error_action.sqs_queue]
    content {
      sqs {
        queue_url  = aws_sqs_queue.stack[error_action.value].url
        role_arn   = aws_iam_role.iot_rules.arn
        use_base64 = false
      }
    }
  }

  # The role's policy before the rule: a message in the rule's first seconds must reach the stream or,
  # failing that, the error queue, and both actions use this role.
  depends_on = [aws_iam_role_policy.iot_rules]
}

resource "aws_iam_role" "iot_rules" {
  name               = "${local.prefix}-iot-rules"
  assume_role_policy = data.aws_iam_policy_document.iot_assume.json
}

data "aws_iam_policy_document" "iot_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role_policy" "iot_rules" {
  name   = "forward-to-stream-and-error-queues"
  role   = aws_iam_role.iot_rules.id
  policy = data.aws_iam_policy_document.iot_rules.json
}

data "aws_iam_policy_document" "iot_rules" {
  statement {
    actions   = ["kinesis:PutRecord"]
    resources = [aws_kinesis_stream.telemetry.arn]
  }

  dynamic "statement" {
    for_each = length(local.rule_error_queues) == 0 ? [] : [1]
    content {
      actions   = ["sqs:SendMessage"]
      resources = [for key in local.rule_error_queues : aws_sqs_queue.stack[key].arn]
    }
  }

  statement {
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.stack.arn]
  }
}

locals {
  rule_error_queues = distinct(compact([for rule in local.stack.topic_rules : try(rule.error_action.sqs_queue, null)]))
  # Topic filters of the rules (`FROM '<filter>'`), with the single-level wildcard bound to the thing name:
  # a device may publish to `devices/<its own thing name>/telemetry` and nowhere else.
  device_topics = distinct([
    for rule in local.stack.topic_rules :
    replace(regex("(?i)FROM\\s+'([^']+)'", rule.sql)[0], "+", "$${iot:Connection.Thing.ThingName}")
  ])
}

resource "aws_iot_thing_type" "device" {
  name = "${local.prefix}-device"

  properties {
    description = "A telemetry device of ${local.prefix}; its thing name is the device id in its topic."
  }
}

# A device connects with its thing name as client id and a certificate attached to that thing.
resource "aws_iot_policy" "device" {
  name = "${local.prefix}-device"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = "iot:Connect"
        Resource  = "arn:${local.partition}:iot:${local.region}:${local.account_id}:client/$${iot:Connection.Thing.ThingName}"
        Condition = { Bool = { "iot:Connection.Thing.IsAttached" = "true" } }
      },
      {
        Effect   = "Allow"
        Action   = "iot:Publish"
        Resource = [for topic in local.device_topics : "arn:${local.partition}:iot:${local.region}:${local.account_id}:topic/${topic}"]
      },
    ]
  })
}
