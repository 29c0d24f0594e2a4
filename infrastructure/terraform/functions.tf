# The Lambda functions of stack.yaml, one zip each from `make package` (build/lambda/<function>.zip); on a local
# cloud, the folder of its packages in the working tree, by LocalStack's hot-reload convention (lambda_hot_reload_root).
resource "aws_lambda_function" "stack" {
  # checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile the project does not manage; zips are built reproducibly by make package.
  for_each = local.functions

  function_name                  = "${local.prefix}-${each.key}"
  role                           = aws_iam_role.function[each.key].arn
  filename                       = var.lambda_hot_reload_root == null ? "${local.package_dir}/${each.key}.zip" : null
  source_code_hash               = var.lambda_hot_reload_root == null ? filebase64sha256("${local.package_dir}/${each.key}.zip") : null
  s3_bucket                      = var.lambda_hot_reload_root == null ? null : "hot-reload"
  s3_key                         = var.lambda_hot_reload_root == null ? null : "${var.lambda_hot_reload_root}/${dirname(each.value.packages[0])}"
  handler                        = each.value.handler
  runtime                        = each.value.runtime
  architectures                  = ["x86_64"]
  memory_size                    = each.value.memory_mb
  timeout                        = each.value.timeout_s
  reserved_concurrent_executions = lookup(var.reserved_concurrency, each.key, try(each.value.reserved_concurrency, null))
  kms_key_arn                    = aws_kms_key.stack.arn

  environment {
    variables = merge(local.common_environment, try(each.value.environment, {}))
  }

  tracing_config {
    mode = "Active"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.async_failures.arn
  }

  dynamic "vpc_config" {
    for_each = length(var.lambda_subnet_ids) == 0 ? [] : [1]
    content {
      subnet_ids         = var.lambda_subnet_ids
      security_group_ids = var.lambda_security_group_ids
    }
  }

  lifecycle {
    precondition {
      condition     = (length(var.lambda_subnet_ids) == 0) == (length(var.lambda_security_group_ids) == 0)
      error_message = "Set lambda_subnet_ids and lambda_security_group_ids together."
    }
  }

  # The role's permissions exist before the function: CreateFunction with a VPC config checks that the role
  # may create network interfaces (the VPC attachment), and on destroy the function (and with it the network
  # interfaces Lambda deletes) goes before the permissions that let Lambda delete them.
  depends_on = [
    aws_cloudwatch_log_group.function,
    aws_iam_role_policy.function,
    aws_iam_role_policy_attachment.function_vpc,
  ]
}

resource "aws_cloudwatch_log_group" "function" {
  # checkov:skip=CKV_AWS_338:Function logs are operational, not an audit trail; retention is the log_retention_days variable.
  for_each = local.functions

  name              = "/aws/lambda/${local.prefix}-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.stack.arn
}

# Kinesis triggers with exactly the settings of stack.yaml (the local poller applies the same ones).
resource "aws_lambda_event_source_mapping" "stream" {
  for_each = local.triggered

  function_name                      = aws_lambda_function.stack[each.key].arn
  event_source_arn                   = aws_kinesis_stream.telemetry.arn
  batch_size                         = each.value.kinesis_trigger.batch_size
  maximum_batching_window_in_seconds = each.value.kinesis_trigger.maximum_batching_window_s
  starting_position                  = each.value.kinesis_trigger.starting_position
  parallelization_factor             = each.value.kinesis_trigger.parallelization_factor
  bisect_batch_on_function_error     = each.value.kinesis_trigger.bisect_batch_on_function_error
  maximum_retry_attempts             = each.value.kinesis_trigger.maximum_retry_attempts
  maximum_record_age_in_seconds      = each.value.kinesis_trigger.maximum_record_age_s
  function_response_types            = each.value.kinesis_trigger.report_batch_item_failures ? ["ReportBatchItemFailures"] : []

  dynamic "destination_config" {
    for_each = try(each.value.kinesis_trigger.on_failure_queue, null) == null ? [] : [each.value.kinesis_trigger.on_failure_queue]
    content {
      on_failure {
        destination_arn = aws_sqs_queue.stack[destination_config.value].arn
      }
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.kinesis_trigger.starting_position != "AT_TIMESTAMP"
      error_message = "starting_position AT_TIMESTAMP needs a timestamp that stack.yaml does not carry; use TRIM_HORIZON or LATEST."
    }
  }
}
