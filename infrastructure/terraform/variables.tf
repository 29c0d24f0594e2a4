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

variable "lambda_hot_reload_root" {
  description = "Local clouds only (the docker-free local cloud, LocalStack): absolute path of the folder stack.yaml's function packages are relative to (the repository). Each function is then deployed with LocalStack's hot-reload convention (s3_bucket \"hot-reload\", s3_key the folder holding its packages) and runs the working tree's code; no zip is read. Null, the default and the value for AWS, deploys the zips of package_dir."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_hot_reload_root == null || startswith(coalesce(var.lambda_hot_reload_root, "/"), "/")
    error_message = "lambda_hot_reload_root must be an absolute path."
  }
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
  description = "Connection of an existing TimescaleDB/PostgreSQL (e.g. RDS) written into the database secret, with db_credentials_version. Ephemeral and written through a write-only argument: kept out of the plan and the state. Leave null to set the secret value with the AWS CLI instead (see README)."
  type = object({
    host     = string
    port     = number
    username = string
    password = string
    dbname   = string
  })
  default   = null
  sensitive = true
  ephemeral = true

  validation {
    condition     = var.db_credentials == null || try(var.db_credentials.port > 0 && var.db_credentials.port < 65536, false)
    error_message = "db_credentials.port must be a TCP port number."
  }
}

variable "db_credentials_version" {
  description = "Version of db_credentials (e.g. 1), required with them. Terraform cannot see a change of a write-only value: change this number to write changed credentials into the secret."
  type        = number
  default     = null

  validation {
    condition     = var.db_credentials_version == null || try(var.db_credentials_version >= 1 && floor(var.db_credentials_version) == var.db_credentials_version, false)
    error_message = "db_credentials_version must be a whole number of at least 1."
  }
}

variable "db_secret_recovery_window_days" {
  description = "Days a destroyed database secret stays recoverable; its name cannot be reused meanwhile, so a stack destroyed and applied again within the window fails. 0 deletes it at once (dev stacks); 7-30 otherwise."
  type        = number
  default     = 7

  validation {
    condition     = var.db_secret_recovery_window_days == 0 || (var.db_secret_recovery_window_days >= 7 && var.db_secret_recovery_window_days <= 30)
    error_message = "db_secret_recovery_window_days must be 0 (delete at once) or between 7 and 30, as Secrets Manager requires."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions by function key (stack.yaml), e.g. { aggregate = 1, archive = 1 }. Overrides the function's reserved_concurrency in stack.yaml (none by default: the scheduled functions serialise their runs on database locks). Lambda keeps 100 executions unreserved, so the account's concurrency quota must be at least 100 plus the sum of the reservations; new accounts often have 10 or 50, where any reservation fails the apply."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for count in values(var.reserved_concurrency) : count >= 1 && floor(count) == count])
    error_message = "reserved_concurrency values must be whole numbers of at least 1 (0 would stop the function from running)."
  }

  validation {
    condition     = length(setsubtract(keys(var.reserved_concurrency), keys(local.functions))) == 0
    error_message = "reserved_concurrency names functions that stack.yaml does not have: ${join(", ", setsubtract(keys(var.reserved_concurrency), keys(local.functions)))}."
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

variable "lambda_subnets_have_nat" {
  description = "Set true when lambda_subnet_ids already route to the internet through a NAT gateway or instance you manage: the module then creates no VPC endpoints for the functions (without either, functions in private subnets cannot reach Secrets Manager, SQS, SNS, S3 or KMS)."
  type        = bool
  default     = false
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
