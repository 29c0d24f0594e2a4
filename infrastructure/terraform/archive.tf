# Archive bucket: private, versioned, KMS-encrypted, TLS only, ageing into colder storage classes.
# Bucket names are global, so the account id is part of the name.
resource "aws_s3_bucket" "archive" {
  # checkov:skip=CKV_AWS_18:Only the archive function writes here; CloudTrail data events are the access audit when one is required.
  # checkov:skip=CKV_AWS_144:The archive is a copy of database rows, versioned; cross-region replication is a per-deployment choice.
  # checkov:skip=CKV2_AWS_62:Nothing reacts to new archive objects; the archive function verifies each upload itself.
  bucket        = "${local.prefix}-${local.stack.bucket.name}-${local.account_id}"
  force_destroy = var.archive_force_destroy
}

resource "aws_s3_bucket_public_access_block" "archive" {
  bucket                  = aws_s3_bucket.archive.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "archive" {
  bucket = aws_s3_bucket.archive.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.stack.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_policy" "archive" {
  bucket = aws_s3_bucket.archive.id
  policy = data.aws_iam_policy_document.archive_tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.archive]
}

data "aws_iam_policy_document" "archive_tls_only" {
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.archive.arn, "${aws_s3_bucket.archive.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "archive" {
  bucket = aws_s3_bucket.archive.id

  rule {
    id     = "age-into-colder-storage"
    status = "Enabled"
    filter {}

    transition {
      days          = var.archive_infrequent_access_after_days
      storage_class = "STANDARD_IA"
    }

    # Glacier Instant Retrieval: the archive function re-reads old days (restore, late readings merged into
    # an archived day) with plain GetObject, which GLACIER/DEEP_ARCHIVE objects refuse until restored.
    transition {
      days          = var.archive_glacier_after_days
      storage_class = "GLACIER_IR"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.archive_noncurrent_expiry_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  lifecycle {
    precondition {
      condition     = var.archive_glacier_after_days >= var.archive_infrequent_access_after_days + 30
      error_message = "archive_glacier_after_days must be at least 30 days after archive_infrequent_access_after_days."
    }
  }

  depends_on = [aws_s3_bucket_versioning.archive]
}
