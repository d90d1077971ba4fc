# One customer-managed key per region for everything Keel keeps at rest there: CloudWatch Logs,
# MSK, Aurora (storage and Performance Insights), the runbook table's replica, Secrets Manager
# replicas, the alarm topic, FIS logs. Rotation is on. Services that use the key on a caller's behalf
# (RDS, MSK, DynamoDB, Secrets Manager) are allowed through IAM in the caller's account (the root
# statement); the two that write with their own service principal (CloudWatch Logs, and CloudWatch
# alarms publishing to the encrypted SNS topic) get statements of their own, scoped to this account
# and region.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:a key policy's "*" resource is this key alone; the account statement is AWS's default, delegating to IAM policies
  #checkov:skip=CKV_AWS_111:a key policy's "*" resource is this key alone; the account statement is AWS's default, delegating to IAM policies
  #checkov:skip=CKV_AWS_356:a key policy's "*" resource is this key alone (key policies cannot name another resource)
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsOfThisAccountAndRegion"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
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
      values   = [local.account]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name_prefix} data at rest in ${local.region}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}
