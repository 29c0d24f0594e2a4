terraform {
  # 1.11: write-only arguments (the database secret's value never reaches the state or the plan) and
  # ephemeral input variables (1.10).
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.88: aws_secretsmanager_secret_version.secret_string_wo (write-only). Also needed, from earlier 5.x:
      # aws_scheduler_schedule.kms_key_arn (5.40). 6.x renamed attributes this module uses (aws_region.name),
      # so stay on the 5 series.
      version = ">= 5.88, < 6.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = local.stack.project, ManagedBy = "terraform" }, var.tags)
  }
}
