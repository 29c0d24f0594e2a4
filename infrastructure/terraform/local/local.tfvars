# The same stack on the docker-free local cloud (`make local-up DEPLOY=terraform`). Two values depend on the
# machine and are passed by `localcloud up`: lambda_hot_reload_root (the checkout: functions run the working
# tree's code, LocalStack's hot-reload convention) and the functions' database login, TF_VAR_db_credentials
# (ephemeral: never in a file, the plan or the state) with db_credentials_version.
aws_region                     = "us-east-1"
db_secret_recovery_window_days = 0 # a throw-away stack: destroy and apply again at once
kms_deletion_window_days       = 7 # the shortest AWS allows
log_retention_days             = 1
archive_force_destroy          = true # destroy leaves no bucket behind, archived objects or not
