# The same stack on LocalStack (docker compose in localstack/). Functions reach TimescaleDB on the compose
# network by its service name; these are the compose file's local-only credentials.
aws_region  = "us-east-1"
stream_mode = "PROVISIONED"
db_credentials = {
  host     = "timescaledb"
  port     = 5432
  username = "iotkpi"
  password = "iotkpi"
  dbname   = "iotkpi"
}
db_credentials_version         = 1
db_secret_recovery_window_days = 0 # a throw-away stack: destroy and apply again at once
log_retention_days             = 1
