# The functions find the database through this secret (DB_SECRET_ARN): JSON with host, port, username,
# password, dbname. The database itself (TimescaleDB on RDS or elsewhere) is not created here.
resource "aws_secretsmanager_secret" "database" {
  # checkov:skip=CKV2_AWS_57:The database is external to this stack; rotation belongs to whoever owns it (e.g. RDS-managed rotation).
  name        = "${local.prefix}-database"
  description = "Connection of the iotkpi TimescaleDB: JSON host, port, username, password, dbname"
  kms_key_id  = aws_kms_key.stack.arn
  # A deleted secret keeps its name for this many days; 0 deletes it at once so that a destroyed dev stack
  # can be applied again straight away.
  recovery_window_in_days = var.db_secret_recovery_window_days

  lifecycle {
    precondition {
      condition     = (var.db_credentials == null) == (var.db_credentials_version == null)
      error_message = "Set db_credentials and db_credentials_version together (or neither, and put the secret value with the AWS CLI)."
    }
  }
}

# Only when db_credentials is given. secret_string_wo is write-only and db_credentials ephemeral: the
# password is sent to Secrets Manager and kept neither in the plan nor in the state. Terraform cannot see
# a change of a write-only value, so db_credentials_version must change to write new credentials.
resource "aws_secretsmanager_secret_version" "database" {
  count = var.db_credentials_version == null ? 0 : 1

  secret_id                = aws_secretsmanager_secret.database.id
  secret_string_wo         = jsonencode(var.db_credentials)
  secret_string_wo_version = var.db_credentials_version
}
