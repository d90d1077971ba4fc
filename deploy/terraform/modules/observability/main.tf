# One region's CloudWatch alarms, each mirroring an alert of deploy/prometheus/alerts.yml (the comment
# on each names it), plus the AWS-side signals that have none locally. Every alarm notifies the
# region's SNS topic (KMS-encrypted); who is subscribed is the operator's (README).
#
# The alerts and their alarms (here: AWS metrics; pipeline.tf: the services' own metrics, which the
# metrics collector beside each process writes to CloudWatch, modules/service metrics.tf):
#
#   KeelStageNotConsuming         pipeline.tf stage_not_consuming (per stage service, not per topic);
#                                 main.tf msk_offline_partitions (the broker side)
#   KeelConsumerLagHigh           pipeline.tf consumer_lag_high
#   KeelOutboxDepthHigh           pipeline.tf outbox_depth_high
#   KeelConsumerStoppedOnPoison   pipeline.tf consumer_stopped_on_poison
#   KeelReconcileGaps             pipeline.tf reconcile_gaps
#   KeelSettlementFailuresHigh    pipeline.tf settlement_failures_high
#   KeelTradesStuckMatched        pipeline.tf trades_stuck_matched
#   KeelInstructionsStuckPending  pipeline.tf instructions_stuck_pending
#   KeelIngressServerErrors       main.tf api_5xx (the ALB's 5xx: cannot leave out 503)
#   KeelIngressShedding           pipeline.tf ingress_shedding (the api service's own 429 count)
#   KeelControlsUnreadable        pipeline.tf controls_unreadable (60 s, not 30 s)
#   KeelReplicationLagOverRpo     main.tf aurora_replication_lag, aurora_rpo_lag (Aurora's metrics);
#                                 pipeline.tf replication_lag_over_rpo (the reconciler's, off by default)
#   KeelPrimaryUnprotected        pipeline.tf primary_unprotected (the reconciler's, off by default:
#                                 on Aurora it reads pg_stat_replication, which lists no Global
#                                 Database secondary, README "Still by hand")
#   KeelTargetDown                pipeline.tf target_down (the scrape); main.tf tasks_running,
#                                 api_no_healthy_target (ECS and the ALB)

data "aws_region" "current" {}

locals {
  region  = data.aws_region.current.name
  actions = [aws_sns_topic.alarms.arn]
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
}

# --- ECS.

# Mirrors KeelTargetDown (a process that does not answer): fewer tasks running than desired.
resource "aws_cloudwatch_metric_alarm" "tasks_running" {
  for_each            = var.ecs_services
  alarm_name          = "${var.name_prefix}-${each.key}-tasks-below-desired"
  alarm_description   = "KeelTargetDown: ${each.key} in ${local.region} runs fewer tasks than desired (runbooks/local-stack.md)"
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = var.ecs_cluster_name, ServiceName = each.value }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = var.ecs_desired_counts[each.key]
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# No Prometheus counterpart: a saturated process (behind it, KeelConsumerLagHigh or
# KeelIngressShedding follow).
resource "aws_cloudwatch_metric_alarm" "cpu" {
  for_each            = var.ecs_services
  alarm_name          = "${var.name_prefix}-${each.key}-cpu-high"
  alarm_description   = "${each.key} in ${local.region} uses over 85% of its CPU for 10 minutes"
  namespace           = "AWS/ECS"
  metric_name         = "CPUUtilization"
  dimensions          = { ClusterName = var.ecs_cluster_name, ServiceName = each.value }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 85
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# No Prometheus counterpart: memory close to the task's limit (an OOM kill follows).
resource "aws_cloudwatch_metric_alarm" "memory" {
  for_each            = var.ecs_services
  alarm_name          = "${var.name_prefix}-${each.key}-memory-high"
  alarm_description   = "${each.key} in ${local.region} uses over 85% of its memory for 10 minutes"
  namespace           = "AWS/ECS"
  metric_name         = "MemoryUtilization"
  dimensions          = { ClusterName = var.ecs_cluster_name, ServiceName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 85
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# --- The ALB in front of the api service.

# Mirrors KeelIngressServerErrors: over 1% of answers are 5xx for 5 minutes. CloudWatch cannot leave
# out 503 as the Prometheus rule does (a region that does not take traffic answers 503
# region_not_active): in the standby region this fires only if clients keep calling it.
resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name_prefix}-api-5xx"
  alarm_description   = "KeelIngressServerErrors: over 1% of the api service's answers in ${local.region} are server errors (runbooks/local-stack.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 1
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "ratio"
    expression  = "IF(requests > 0, 100 * (target5xx + elb5xx) / requests, 0)"
    label       = "5xx percent"
    return_data = true
  }
  metric_query {
    id = "target5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "elb5xx"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
}

# Mirrors KeelTargetDown for the api service as the ALB sees it: no healthy target.
resource "aws_cloudwatch_metric_alarm" "api_no_healthy_target" {
  alarm_name          = "${var.name_prefix}-api-no-healthy-target"
  alarm_description   = "KeelTargetDown: the ALB in ${local.region} has no healthy api target (runbooks/local-stack.md)"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.alb_target_group_arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# --- MSK.

# No Prometheus counterpart (locally the broker's disk is the machine's): a broker's data volume
# over 80%.
resource "aws_cloudwatch_metric_alarm" "msk_disk" {
  for_each            = toset([for i in range(1, var.msk_broker_count + 1) : tostring(i)])
  alarm_name          = "${var.name_prefix}-msk-broker-${each.value}-disk"
  alarm_description   = "MSK broker ${each.value} in ${local.region}: data volume over 80% used"
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = var.msk_cluster_name, "Broker ID" = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 80
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# The broker side of KeelStageNotConsuming: partitions without a leader cannot be consumed.
resource "aws_cloudwatch_metric_alarm" "msk_offline_partitions" {
  alarm_name          = "${var.name_prefix}-msk-offline-partitions"
  alarm_description   = "KeelStageNotConsuming (broker side): MSK in ${local.region} has partitions without a leader (runbooks/poison-message.md)"
  namespace           = "AWS/Kafka"
  metric_name         = "OfflinePartitionsCount"
  dimensions          = { "Cluster Name" = var.msk_cluster_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# --- Aurora. Every Keel cluster in this region gets both alarms: which one is a secondary changes
# with every rotation, and a primary publishes neither metric (missing data is not breaching).

# Mirrors KeelReplicationLagOverRpo: the secondary here replays more than 5 s behind the primary.
resource "aws_cloudwatch_metric_alarm" "aurora_replication_lag" {
  for_each            = var.aurora_cluster_identifiers
  alarm_name          = "${var.name_prefix}-${each.key}-aurora-replication-lag"
  alarm_description   = "KeelReplicationLagOverRpo: ${each.key}'s secondary in ${local.region} is over 5 s behind (runbooks/disaster-recovery.md)"
  namespace           = "AWS/RDS"
  metric_name         = "AuroraGlobalDBReplicationLag"
  dimensions          = { DBClusterIdentifier = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5000
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# Mirrors KeelReplicationLagOverRpo as the RPO budget: what a failover to this secondary now would
# lose, over 5 s.
resource "aws_cloudwatch_metric_alarm" "aurora_rpo_lag" {
  for_each            = var.aurora_cluster_identifiers
  alarm_name          = "${var.name_prefix}-${each.key}-aurora-rpo-lag"
  alarm_description   = "KeelReplicationLagOverRpo: ${each.key}'s RPO lag in ${local.region} is over the 5 s budget (runbooks/disaster-recovery.md)"
  namespace           = "AWS/RDS"
  metric_name         = "AuroraGlobalDBRPOLag"
  dimensions          = { DBClusterIdentifier = each.value }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5000
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# --- The runbook table. No Prometheus counterpart (locally moto does not throttle): throttled
# runbook writes slow a rotation's steps.
resource "aws_cloudwatch_metric_alarm" "runbook_throttles" {
  for_each            = toset(["ReadThrottleEvents", "WriteThrottleEvents"])
  alarm_name          = "${var.name_prefix}-runbook-table-${lower(each.value)}"
  alarm_description   = "The runbook table in ${local.region} throttles (${each.value}) (runbooks/rotation.md)"
  namespace           = "AWS/DynamoDB"
  metric_name         = each.value
  dimensions          = { TableName = var.runbook_table_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# --- ARC. Route 53 publishes health-check metrics in us-east-1 only, so the environment gives the
# health checks to that region's instance alone. No Prometheus alert: the symptom is
# runbooks/routing-controls.md's "503 region_not_active with no active_url" (no region takes
# traffic), a move left half done.
resource "aws_cloudwatch_metric_alarm" "no_region_takes_traffic" {
  count               = length(var.traffic_health_check_ids) > 0 ? 1 : 0
  alarm_name          = "${var.name_prefix}-no-region-takes-traffic"
  alarm_description   = "No region's traffic routing control is On for 5 minutes (runbooks/routing-controls.md)"
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 5
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "on"
    expression  = "SUM(METRICS())"
    label       = "regions taking traffic"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = var.traffic_health_check_ids
    content {
      id = "r${replace(metric_query.key, "-", "_")}"
      metric {
        namespace   = "AWS/Route53"
        metric_name = "HealthCheckStatus"
        dimensions  = { HealthCheckId = metric_query.value }
        period      = 60
        stat        = "Minimum"
      }
    }
  }
}
