# Points the AWS provider at the docker-free local cloud's endpoint (moto with the local cloud's patches), the
# way `tflocal` points it at LocalStack. `localcloud up --deploy terraform` copies the module and this file to
# .local/terraform/ with the endpoint's real address in place of 127.0.0.1:4566; by hand (see README):
#   cp -r infrastructure /tmp/iotkpi-tf && cp local/local_providers_override.tf /tmp/iotkpi-tf/terraform/
provider "aws" {
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true

  endpoints {
    cloudwatch     = "http://127.0.0.1:4566"
    ec2            = "http://127.0.0.1:4566"
    iam            = "http://127.0.0.1:4566"
    iot            = "http://127.0.0.1:4566"
    kinesis        = "http://127.0.0.1:4566"
    kms            = "http://127.0.0.1:4566"
    lambda         = "http://127.0.0.1:4566"
    logs           = "http://127.0.0.1:4566"
    s3             = "http://127.0.0.1:4566"
    scheduler      = "http://127.0.0.1:4566"
    secretsmanager = "http://127.0.0.1:4566"
    sns            = "http://127.0.0.1:4566"
    sqs            = "http://127.0.0.1:4566"
    sts            = "http://127.0.0.1:4566"
  }
}
