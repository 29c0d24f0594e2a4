# One customer-managed key encrypts the stream, queues, topic, bucket, secret, log groups, function
# environments and schedules. IAM policies grant its use per role; the key policy below delegates to IAM
# and adds the two AWS services that encrypt on their own behalf (CloudWatch Logs, CloudWatch alarms to SNS).
resource "aws_kms_key" "stack" {
  description             = "${local.prefix}: encrypts the iotkpi stack's data at rest"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "stack" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.stack.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; account principals are governed by IAM.
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; account principals are governed by IAM.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only; account principals are governed by IAM.
  statement {
    sid       = "AccountAdministersThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisStacksLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.prefix}-*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
