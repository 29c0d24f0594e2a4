# The functions find the database through this secret (DB_SECRET_ARN): JSON with host, port, username,
# password, dbname. The database itself (TimescaleDB on RDS or elsewhere) is not created here.
resource "aws_secretsmanager_secret" "database" {
  # checkov:skip=CKV2_AWS_57:The database is external to this stack; rotation belongs to whoever owns it (e.g. RDS-managed rotation).
  name                    = "${local.prefix}-database"
  description             = "Connection of the iotkpi TimescaleDB: JSON host, port, username, password, dbname"
  kms_key_id              = aws_kms_key.stack.arn
  recovery_window_in_days = 7
}

# Only when db_credentials is given: then the password is in the Terraform state (keep the state in an
# encrypted backend). Leaving it null and running `aws secretsmanager put-secret-value` keeps it out.
resource "aws_secretsmanager_secret_version" "database" {
  count = var.db_credentials == null ? 0 : 1

  secret_id     = aws_secretsmanager_secret.database.id
  secret_string = jsonencode(var.db_credentials)
}
