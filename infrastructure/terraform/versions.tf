terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x: aws_scheduler_schedule with kms_key_arn and aws_lambda_function.logging_config need >= 5.40;
      # 6.x renamed attributes this module uses (aws_region.name), so stay on the 5 series.
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = merge({ Project = local.stack.project, ManagedBy = "terraform" }, var.tags)
  }
}
