# EventBridge Scheduler runs each function that has a `schedule` in stack.yaml, with that expression.
resource "aws_scheduler_schedule" "function" {
  for_each = local.scheduled

  name                         = "${local.prefix}-${each.key}"
  schedule_expression          = each.value.schedule
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = aws_kms_key.stack.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.stack[each.key].arn
    role_arn = aws_iam_role.scheduler.arn

    dead_letter_config {
      arn = aws_sqs_queue.async_failures.arn
    }
  }

  # The role's policy before the schedule: a schedule firing right after the apply must be allowed to
  # invoke the function (and to dead-letter the event when it cannot).
  depends_on = [aws_iam_role_policy.scheduler]
}

resource "aws_iam_role" "scheduler" {
  name               = "${local.prefix}-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-scheduled-functions"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    actions = ["lambda:InvokeFunction"]
    # With no scheduled function yet, the role may invoke nothing: an ARN that cannot exist.
    resources = length(local.scheduled) == 0 ? ["arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.prefix}-none"] : [
      for key in keys(local.scheduled) : aws_lambda_function.stack[key].arn
    ]
  }

  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.async_failures.arn]
  }

  statement {
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.stack.arn]
  }
}
