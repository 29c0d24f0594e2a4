output "iot_data_endpoint" {
  description = "MQTT endpoint for devices (port 8883, X.509 client certificates)."
  value       = data.aws_iot_endpoint.data.endpoint_address
}

output "iot_device_policy" {
  description = "IoT policy to attach to each device certificate."
  value       = aws_iot_policy.device.name
}

output "iot_thing_type" {
  description = "Thing type for devices; the thing name is the device id."
  value       = aws_iot_thing_type.device.name
}

output "iot_topic_rules" {
  description = "IoT topic rule names by stack.yaml key."
  value       = { for key, rule in aws_iot_topic_rule.stack : key => rule.name }
}

output "telemetry_stream" {
  description = "Name of the telemetry Kinesis stream."
  value       = aws_kinesis_stream.telemetry.name
}

output "functions" {
  description = "Lambda function names by stack.yaml key."
  value       = { for key, fn in aws_lambda_function.stack : key => fn.function_name }
}

output "queue_urls" {
  description = "SQS queue URLs by stack.yaml key, plus async_failures."
  value       = merge({ for key, queue in aws_sqs_queue.stack : key => queue.url }, { async_failures = aws_sqs_queue.async_failures.url })
}

output "archive_bucket" {
  description = "Name of the S3 archive bucket."
  value       = aws_s3_bucket.archive.bucket
}

output "alerts_topic_arn" {
  description = "ARN of the SNS topic for KPI alerts and alarms."
  value       = aws_sns_topic.alerts.arn
}

output "db_secret_arn" {
  description = "Secrets Manager secret the functions read the database connection from (put its value if db_credentials was null)."
  value       = aws_secretsmanager_secret.database.arn
}

output "kms_key_arn" {
  description = "Customer-managed KMS key encrypting the stack's data."
  value       = aws_kms_key.stack.arn
}

data "aws_iot_endpoint" "data" {
  endpoint_type = "iot:Data-ATS"
}
