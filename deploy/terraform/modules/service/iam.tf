# Two roles per process, each scoped to exact ARNs:
# - execution role (ECS agent): pull the image from its repository, write the process's log group,
#   read only the process's own secrets (and decrypt them with the region's key, through Secrets
#   Manager only);
# - task role (the process): the Keel services read their application's routing controls; the
#   reconciler reads every control and uses the runbook table; the operator processes (console,
#   keelctl) also change routing controls, use the runbook table and run the database steps of the
#   runbooks (describe, switchover, failover, remove from global) on Keel's Aurora clusters only;
#   where a metrics collector runs beside the process (metrics.tf), it writes the region's metrics
#   log group, nothing else.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  for_each           = local.processes
  name               = "${var.name_prefix}-${each.key}-exec-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  for_each = local.processes

  statement {
    sid       = "EcrToken"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullTheImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [local.image_repo_arn]
  }
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.process[each.key].arn}:*"]
  }
  dynamic "statement" {
    for_each = length(each.value.secrets) > 0 ? [each.key] : []
    content {
      sid       = "ReadItsSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [for name in each.value.secrets : var.secret_arns[name]]
    }
  }
  dynamic "statement" {
    for_each = length(each.value.secrets) > 0 ? [each.key] : []
    content {
      sid       = "DecryptItsSecrets"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.processes
  name     = "execution"
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution[each.key].json
}

resource "aws_iam_role" "task" {
  for_each           = local.processes
  name               = "${var.name_prefix}-${each.key}-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  for_each = local.processes

  # ListRoutingControls has no resource-level permissions: "*" is the only resource it takes.
  statement {
    sid       = "ListRoutingControls"
    actions   = ["route53-recovery-cluster:ListRoutingControls"]
    resources = ["*"]
  }

  statement {
    sid     = "ReadRoutingControls"
    actions = ["route53-recovery-cluster:GetRoutingControlState"]
    resources = (
      each.value.role == "service"
      ? lookup(var.routing_control_arns_by_application, each.value.application, [])
      : var.all_routing_control_arns
    )
  }

  # The metrics collector beside the process (metrics.tf) writes EMF log events to the region's
  # metrics log group, in a stream per task; CloudWatch Logs extracts the metrics, so no
  # cloudwatch:PutMetricData. The group exists (Terraform's): no logs:CreateLogGroup either.
  dynamic "statement" {
    for_each = contains(keys(local.scraped), each.key) ? [each.key] : []
    content {
      sid       = "WriteMetricsAsEmf"
      actions   = ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
      resources = [aws_cloudwatch_log_group.metrics.arn, "${aws_cloudwatch_log_group.metrics.arn}:*"]
    }
  }

  dynamic "statement" {
    for_each = each.value.role == "operator" ? [each.key] : []
    content {
      sid       = "ChangeRoutingControls"
      actions   = ["route53-recovery-cluster:UpdateRoutingControlState", "route53-recovery-cluster:UpdateRoutingControlStates"]
      resources = var.all_routing_control_arns
    }
  }

  dynamic "statement" {
    for_each = contains(["operator", "reconciler"], each.value.role) ? [each.key] : []
    content {
      sid = "RunbookStore"
      actions = [
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
      ]
      resources = [var.runbook_table_arn]
    }
  }

  dynamic "statement" {
    for_each = each.value.role == "operator" ? [each.key] : []
    content {
      sid = "DatabaseSteps"
      actions = [
        "rds:DescribeGlobalClusters",
        "rds:DescribeDBClusters",
        "rds:DescribeDBInstances",
        "rds:SwitchoverGlobalCluster",
        "rds:FailoverGlobalCluster",
        "rds:RemoveFromGlobalCluster",
        # Re-protection after a detach: the old cluster renamed out of the way, the global cluster
        # formed again around the new primary, a new secondary cluster and instance created.
        "rds:ModifyDBCluster",
        "rds:DeleteGlobalCluster",
        "rds:ModifyGlobalCluster",
        "rds:CreateGlobalCluster",
        "rds:CreateDBCluster",
        "rds:CreateDBInstance",
      ]
      resources = concat(
        var.rds_global_cluster_arns,
        var.rds_cluster_arns,
        var.rds_instance_arn_patterns,
        var.rds_subnet_group_arns,
        # The default parameter and option groups a created cluster and instance get.
        ["arn:${local.partition}:rds:*:${local.account}:cluster-pg:default.*", "arn:${local.partition}:rds:*:${local.account}:pg:default.*", "arn:${local.partition}:rds:*:${local.account}:og:default:*"],
      )
    }
  }

  dynamic "statement" {
    for_each = each.value.role == "operator" ? [each.key] : []
    content {
      sid       = "EncryptCreatedClustersThroughRds"
      actions   = ["kms:CreateGrant", "kms:DescribeKey"]
      resources = var.rds_kms_key_arns
      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["rds.*.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.processes
  name     = "task"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.task[each.key].json
}
