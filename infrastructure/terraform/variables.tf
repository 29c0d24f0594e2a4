variable "aws_region" {
  description = "AWS region to deploy the stack into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be a region code such as eu-west-1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (`<prefix>-<suffix>`). Defaults to `project` from stack.yaml; set it to deploy several copies (e.g. iotkpi-dev) into one account."
  type        = string
  default     = null

  validation {
    condition     = var.name_prefix == null || can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix must be 2-31 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "package_dir" {
  description = "Folder holding the Lambda zips built by `make package` (<function>.zip). Defaults to build/lambda at the repository root."
  type        = string
  default     = null
}

variable "stream_mode" {
  description = "Override of stream.mode from stack.yaml for this deployment: PROVISIONED (shard_count from stack.yaml) or ON_DEMAND. Null keeps the stack.yaml value."
  type        = string
  default     = null

  validation {
    condition     = var.stream_mode == null || contains(["PROVISIONED", "ON_DEMAND"], coalesce(var.stream_mode, "PROVISIONED"))
    error_message = "stream_mode must be PROVISIONED or ON_DEMAND."
  }
}

variable "alert_email" {
  description = "Email address subscribed to the alerts SNS topic (alarms and KPI alerts). Null for no subscription; AWS mails a confirmation link that must be clicked."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", coalesce(var.alert_email, "x@y.z")))
    error_message = "alert_email must be an email address."
  }
}

variable "db_credentials" {
  description = "Connection of an existing TimescaleDB/PostgreSQL (e.g. RDS) written into the database secret. Leave null to keep credentials out of the Terraform state and set the secret value out of band (see README)."
  type = object({
    host     = string
    port     = number
    username = string
    password = string
    dbname   = string
  })
  default   = null
  sensitive = true

  validation {
    condition     = var.db_credentials == null || try(var.db_credentials.port > 0 && var.db_credentials.port < 65536, false)
    error_message = "db_credentials.port must be a TCP port number."
  }
}

variable "lambda_subnet_ids" {
  description = "Private subnets for the functions when the database is only reachable inside a VPC. Empty runs the functions outside any VPC."
  type        = list(string)
  default     = []
}

variable "lambda_security_group_ids" {
  description = "Security groups of the functions' network interfaces; required together with lambda_subnet_ids."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.lambda_security_group_ids) == 0 || alltrue([for id in var.lambda_security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "lambda_security_group_ids must be security group ids (sg-...)."
  }
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups, in days."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "alarm_period_seconds" {
  description = "Evaluation period of every CloudWatch alarm, in seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.alarm_period_seconds >= 60 && var.alarm_period_seconds % 60 == 0
    error_message = "alarm_period_seconds must be a multiple of 60."
  }
}

variable "iterator_age_alarm_seconds" {
  description = "Alarm when a stream-triggered function falls this far behind the stream (maximum IteratorAge), in seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.iterator_age_alarm_seconds > 0
    error_message = "iterator_age_alarm_seconds must be positive."
  }
}

variable "function_errors_alarm_threshold" {
  description = "Alarm when a function reports at least this many errors in one alarm period."
  type        = number
  default     = 1

  validation {
    condition     = var.function_errors_alarm_threshold >= 1
    error_message = "function_errors_alarm_threshold must be at least 1."
  }
}

variable "dlq_depth_alarm_threshold" {
  description = "Alarm when a dead-letter queue holds at least this many visible messages."
  type        = number
  default     = 1

  validation {
    condition     = var.dlq_depth_alarm_threshold >= 1
    error_message = "dlq_depth_alarm_threshold must be at least 1."
  }
}

variable "archive_infrequent_access_after_days" {
  description = "Move archived objects to S3 Standard-IA after this many days."
  type        = number
  default     = 30

  validation {
    condition     = var.archive_infrequent_access_after_days >= 30
    error_message = "S3 requires at least 30 days before a transition to STANDARD_IA."
  }
}

variable "archive_glacier_after_days" {
  description = "Move archived objects to S3 Glacier Instant Retrieval after this many days (still readable by restore and re-export)."
  type        = number
  default     = 90

  validation {
    condition     = var.archive_glacier_after_days >= 60
    error_message = "archive_glacier_after_days must be at least 60 (30 days after the Standard-IA transition)."
  }
}

variable "archive_noncurrent_expiry_days" {
  description = "Delete superseded versions of archived objects after this many days."
  type        = number
  default     = 90

  validation {
    condition     = var.archive_noncurrent_expiry_days >= 1
    error_message = "archive_noncurrent_expiry_days must be at least 1."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the stack's KMS key is deleted after destroy, in days."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Extra tags on every resource (merged into the provider's default tags)."
  type        = map(string)
  default     = {}
}

variable "archive_force_destroy" {
  description = "Let `terraform destroy` delete the archive bucket with every object version in it. Keep false in production: the archive is the only copy of dropped raw data."
  type        = bool
  default     = false
}
