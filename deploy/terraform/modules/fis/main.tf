# AWS FIS experiment templates for the chaos classes of the local suite (DESIGN section 10) that have
# an AWS counterpart, in one region. Each stops when a stop-condition alarm fires (participants see
# server errors, or the ALB has no healthy target), runs under a role that may touch only Keel's
# resources here, and logs to CloudWatch.
#
# | local chaos class                      | here                                                      |
# |----------------------------------------|-----------------------------------------------------------|
# | kill -9 of a service (and of keelctl)  | kill-<process>: aws:ecs:stop-task, one task               |
# | Postgres primary killed                | kill-database-<app>: aws:rds:failover-db-cluster (in the  |
# |                                        | region where the app is primary); reboot-database-<app>:  |
# |                                        | aws:rds:reboot-db-instances                               |
# | a region cut off while it keeps running| region-cut-off: aws:network:disrupt-connectivity of the   |
# |                                        | private subnets to the peered regions (prefix list);      |
# |                                        | region-isolated: the same for all traffic                 |
# | the DynamoDB endpoint lost             | runbook-store-unreachable: disrupt-connectivity, dynamodb |
# | paused process, slow link              | pause-<process> (aws:ecs:task-cpu-stress) and             |
# |                                        | slow-<process> (aws:ecs:task-network-latency): only with  |
# |                                        | var.enable_ecs_task_faults, see below                     |
# | broker restart                         | none: FIS has no MSK action; reboot a broker by hand      |
# |                                        | (aws kafka reboot-broker)                                 |
# | the ARC endpoints lost                 | none: a managed five-region cluster; region-isolated cuts |
# |                                        | one region off from it                                    |
#
# The ECS task actions (cpu stress, network latency) need, in every task definition, the SSM agent
# as a sidecar with a managed-instance role, which the service module does not build: their templates
# are made only when var.enable_ecs_task_faults is set, once it does.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region    = data.aws_region.current.name
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  task_arns = "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${var.ecs_cluster_name}/*"
  # Processes whose tasks may be killed: the long-running ones, and keelctl mid-runbook.
  killable = merge(
    { for name, service in var.ecs_services : name => { service = service } },
    { keelctl = { service = "" } },
  )
}

resource "aws_cloudwatch_log_group" "fis" {
  name              = "/${var.name_prefix}/fis"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_ec2_managed_prefix_list" "peers" {
  name           = "${var.name_prefix}-peered-regions"
  address_family = "IPv4"
  max_entries    = max(1, length(var.peer_cidrs))

  dynamic "entry" {
    for_each = toset(var.peer_cidrs)
    content {
      cidr        = entry.value
      description = "a peered region's private subnet"
    }
  }
}

# --- The role FIS acts with.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["fis.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "fis" {
  name               = "${var.name_prefix}-fis-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "fis" {
  statement {
    sid       = "StopKeelTasks"
    actions   = ["ecs:StopTask", "ecs:DescribeTasks"]
    resources = [local.task_arns]
  }
  statement {
    sid       = "ListKeelTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [var.ecs_cluster_arn]
    }
  }
  statement {
    sid       = "FailOverKeelClusters"
    actions   = ["rds:FailoverDBCluster", "rds:DescribeDBClusters"]
    resources = values(var.aurora_cluster_arns)
  }
  statement {
    sid       = "RebootKeelInstances"
    actions   = ["rds:RebootDBInstance", "rds:DescribeDBInstances"]
    resources = var.rds_instance_arns
  }
  statement {
    sid       = "FindSubnetsAndLists"
    actions   = ["ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeNetworkAcls", "ec2:DescribeManagedPrefixLists"]
    resources = ["*"]
  }
  statement {
    sid       = "ReadThePeersList"
    actions   = ["ec2:GetManagedPrefixListEntries"]
    # Keel's list, and AWS's own (the DynamoDB scope reads AWS's prefix list).
    resources = [aws_ec2_managed_prefix_list.peers.arn, "arn:${local.partition}:ec2:${local.region}:aws:prefix-list/*"]
  }
  statement {
    # Targets chosen by tag are resolved through the tagging API, which takes no resource.
    sid       = "ResolveTargetsByTag"
    actions   = ["tag:GetResources"]
    resources = ["*"]
  }
  statement {
    sid       = "DescribeTargetTasks"
    actions   = ["ecs:DescribeTasks"]
    resources = [local.task_arns]
  }
  statement {
    sid       = "CreateFisNetworkAcls"
    actions   = ["ec2:CreateNetworkAcl"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:network-acl/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/managedByFIS"
      values   = ["true"]
    }
  }
  statement {
    sid       = "CreateFisNetworkAclsInTheVpc"
    actions   = ["ec2:CreateNetworkAcl"]
    resources = [var.vpc_arn]
  }
  statement {
    sid       = "TagFisNetworkAcls"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:network-acl/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateNetworkAcl"]
    }
  }
  statement {
    sid       = "ChangeOnlyFisNetworkAcls"
    actions   = ["ec2:CreateNetworkAclEntry", "ec2:DeleteNetworkAcl"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account}:network-acl/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:ResourceTag/managedByFIS"
      values   = ["true"]
    }
  }
  statement {
    sid       = "SwapAclsOfKeelSubnets"
    actions   = ["ec2:ReplaceNetworkAclAssociation"]
    resources = concat(var.private_subnet_arns, ["arn:${local.partition}:ec2:${local.region}:${local.account}:network-acl/*"])
  }
  statement {
    sid       = "DeliverExperimentLogs"
    actions   = ["logs:CreateLogDelivery", "logs:DescribeResourcePolicies", "logs:PutResourcePolicy", "logs:DescribeLogGroups"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "fis" {
  name   = "keel-experiments"
  role   = aws_iam_role.fis.id
  policy = data.aws_iam_policy_document.fis.json
}

# --- Kill a process: stop one of its tasks (ECS starts another).

resource "aws_fis_experiment_template" "kill" {
  for_each    = local.killable
  description = "kill ${each.key} in ${local.region}: stop one of its tasks"
  role_arn    = aws_iam_role.fis.arn
  tags        = { Name = "${var.name_prefix}-kill-${each.key}" }

  action {
    name      = "stop-task"
    action_id = "aws:ecs:stop-task"
    target {
      key   = "Tasks"
      value = "tasks"
    }
  }

  target {
    name           = "tasks"
    resource_type  = "aws:ecs:task"
    selection_mode = "COUNT(1)"
    parameters = merge(
      { cluster = var.ecs_cluster_name },
      each.value.service != "" ? { service = each.value.service } : {},
    )
    dynamic "resource_tag" {
      for_each = each.value.service == "" ? [each.key] : []
      content {
        key   = "keel:process"
        value = resource_tag.value
      }
    }
  }

  dynamic "stop_condition" {
    for_each = var.stop_alarm_arns
    content {
      source = "aws:cloudwatch:alarm"
      value  = stop_condition.value
    }
  }

  log_configuration {
    log_schema_version = 2
    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.fis.arn}:*"
    }
  }
}

# --- Kill a database: fail the region's cluster over to a reader (in-region), or reboot its
# instances. One template per cluster in the region: an in-region failover needs a writer, so the
# template only works where the application is primary at the time (RDS refuses it on a global
# database's secondary, and the experiment stops with that error).

resource "aws_fis_experiment_template" "kill_database" {
  for_each    = var.aurora_cluster_arns
  description = "kill ${each.key}'s writer in ${local.region}: fail its cluster over to a reader"
  role_arn    = aws_iam_role.fis.arn
  tags        = { Name = "${var.name_prefix}-kill-database-${each.key}" }

  action {
    name      = "failover"
    action_id = "aws:rds:failover-db-cluster"
    target {
      key   = "Clusters"
      value = "cluster"
    }
  }

  target {
    name           = "cluster"
    resource_type  = "aws:rds:cluster"
    selection_mode = "ALL"
    resource_arns  = [each.value]
  }

  dynamic "stop_condition" {
    for_each = var.stop_alarm_arns
    content {
      source = "aws:cloudwatch:alarm"
      value  = stop_condition.value
    }
  }

  log_configuration {
    log_schema_version = 2
    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.fis.arn}:*"
    }
  }
}

resource "aws_fis_experiment_template" "reboot_database" {
  for_each    = var.aurora_cluster_arns
  description = "reboot ${each.key}'s instances in ${local.region}"
  role_arn    = aws_iam_role.fis.arn
  tags        = { Name = "${var.name_prefix}-reboot-database-${each.key}" }

  action {
    name      = "reboot"
    action_id = "aws:rds:reboot-db-instances"
    target {
      key   = "DBInstances"
      value = "instances"
    }
  }

  target {
    name           = "instances"
    resource_type  = "aws:rds:db"
    selection_mode = "ALL"
    resource_tag {
      key   = "keel:application"
      value = each.key
    }
  }

  dynamic "stop_condition" {
    for_each = var.stop_alarm_arns
    content {
      source = "aws:cloudwatch:alarm"
      value  = stop_condition.value
    }
  }

  log_configuration {
    log_schema_version = 2
    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.fis.arn}:*"
    }
  }
}

# --- Cut the region off: its private subnets lose the peered regions (prefix-list), everything
# (all), or DynamoDB (the runbook store), for var.network_fault_duration.

resource "aws_fis_experiment_template" "network" {
  for_each = {
    region-cut-off            = { scope = "prefix-list", what = "the peered regions" }
    region-isolated           = { scope = "all", what = "everything outside the subnets" }
    runbook-store-unreachable = { scope = "dynamodb", what = "DynamoDB" }
  }
  description = "${each.key} in ${local.region}: the private subnets lose ${each.value.what}"
  role_arn    = aws_iam_role.fis.arn
  tags        = { Name = "${var.name_prefix}-${each.key}" }

  action {
    name      = "disrupt"
    action_id = "aws:network:disrupt-connectivity"
    parameter {
      key   = "duration"
      value = var.network_fault_duration
    }
    parameter {
      key   = "scope"
      value = each.value.scope
    }
    dynamic "parameter" {
      for_each = each.value.scope == "prefix-list" ? [aws_ec2_managed_prefix_list.peers.id] : []
      content {
        key   = "prefixListIdentifier"
        value = parameter.value
      }
    }
    target {
      key   = "Subnets"
      value = "subnets"
    }
  }

  target {
    name           = "subnets"
    resource_type  = "aws:ec2:subnet"
    selection_mode = "ALL"
    resource_arns  = var.private_subnet_arns
  }

  dynamic "stop_condition" {
    for_each = var.stop_alarm_arns
    content {
      source = "aws:cloudwatch:alarm"
      value  = stop_condition.value
    }
  }

  log_configuration {
    log_schema_version = 2
    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.fis.arn}:*"
    }
  }
}

# --- Pause a process, slow its links: ECS task actions (see the note at the top).

resource "aws_fis_experiment_template" "task_fault" {
  for_each = var.enable_ecs_task_faults ? {
    for pair in setproduct(keys(var.ecs_services), ["pause", "slow"]) : "${pair[1]}-${pair[0]}" => {
      process = pair[0]
      action  = pair[1] == "pause" ? "aws:ecs:task-cpu-stress" : "aws:ecs:task-network-latency"
    }
  } : {}
  description = "${each.key} in ${local.region}"
  role_arn    = aws_iam_role.fis.arn
  tags        = { Name = "${var.name_prefix}-${each.key}" }

  action {
    name      = "fault"
    action_id = each.value.action
    parameter {
      key   = "duration"
      value = var.network_fault_duration
    }
    target {
      key   = "Tasks"
      value = "tasks"
    }
  }

  target {
    name           = "tasks"
    resource_type  = "aws:ecs:task"
    selection_mode = "COUNT(1)"
    parameters = {
      cluster = var.ecs_cluster_name
      service = var.ecs_services[each.value.process]
    }
  }

  dynamic "stop_condition" {
    for_each = var.stop_alarm_arns
    content {
      source = "aws:cloudwatch:alarm"
      value  = stop_condition.value
    }
  }

  log_configuration {
    log_schema_version = 2
    cloudwatch_logs_configuration {
      log_group_arn = "${aws_cloudwatch_log_group.fis.arn}:*"
    }
  }
}
