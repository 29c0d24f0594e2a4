# One topic for both KPI alerts (the alerts function) and operational alarms.
resource "aws_sns_topic" "alerts" {
  name              = "${local.prefix}-${local.stack.alerts_topic.name}"
  kms_master_key_id = aws_kms_key.stack.arn
}

resource "aws_sns_topic_subscription" "alert_email" {
  count = var.alert_email == null ? 0 : 1

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  for_each = local.triggered

  alarm_name          = "${local.prefix}-${each.key}-iterator-age"
  alarm_description   = "${each.key} is more than ${var.iterator_age_alarm_seconds} s behind the telemetry stream."
  namespace           = "AWS/Lambda"
  metric_name         = "IteratorAge"
  dimensions          = { FunctionName = aws_lambda_function.stack[each.key].function_name }
  statistic           = "Maximum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.iterator_age_alarm_seconds * 1000
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.functions

  alarm_name          = "${local.prefix}-${each.key}-errors"
  alarm_description   = "${each.key} failed at least ${var.function_errors_alarm_threshold} time(s) in ${var.alarm_period_seconds} s."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.stack[each.key].function_name }
  statistic           = "Sum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = var.function_errors_alarm_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

# The alarm each queue of stack.yaml names: any on-failure record or rule error (depth >= 1), a rate for
# the ingest's rejects (one malformed reading is no incident, and nothing consumes those copies).
resource "aws_cloudwatch_metric_alarm" "queue" {
  for_each = { for key, queue in local.stack.queues : key => queue.alarm if try(queue.alarm, null) != null }

  alarm_name          = "${local.prefix}-${each.key}-${each.value.metric}"
  alarm_description   = try(each.value.description, null)
  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = aws_sqs_queue.stack[each.key].name }
  statistic           = each.value.statistic
  period              = each.value.period_s
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}

resource "aws_cloudwatch_metric_alarm" "async_failures" {
  alarm_name          = "${local.prefix}-async-failures-depth"
  alarm_description   = "A scheduled run failed all its retries, or a schedule could not invoke its function: see ${aws_sqs_queue.async_failures.name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.async_failures.name }
  statistic           = "Maximum"
  period              = var.alarm_period_seconds
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
}
