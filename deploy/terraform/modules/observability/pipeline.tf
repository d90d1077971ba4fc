# The pipeline alerts of deploy/prometheus/alerts.yml, on the services' own metrics: the metrics
# collector beside each process (modules/service, metrics.tf) writes them to CloudWatch (namespace
# var.metrics.namespace, dimensions var.metrics.dimensions: the labels the rules group by, plus
# `process`). Each alarm names the alert it mirrors, with its threshold, and evaluation periods x
# period equal to the alert's `for:`; where the rule takes rate() over a window, the period is that
# window.
#
# How CloudWatch differs, for all of them: an alert holds while the expression holds at every
# evaluation during `for:`; an alarm holds while every period breaches, a period's value being the
# MAX (or MIN, or SUM) of the samples in it (the collector scrapes every 15 s, CloudWatch keeps one
# minute). Where the rule aggregates over label values, a Metrics Insights query does: one alarm with
# a contributor per group (GROUP BY ... ORDER BY, each contributor evaluated on its own, as each
# group is by Prometheus), or one series where the rule groups by region only (every alarm here is
# one region's: its metrics are its own region's). Missing data is "not breaching" where Prometheus
# would have no series and so no alert, "breaching" for the scrape itself.

locals {
  # FROM SCHEMA("<namespace>", <dimensions>): the metrics exported with exactly these dimensions.
  from = {
    for metric, dims in var.metrics.dimensions :
    metric => format("SCHEMA(%s, %s)", jsonencode(var.metrics.namespace), join(", ", [for d in dims : jsonencode(d)]))
  }
  stages = { for name, kind in var.metrics.processes : name => kind if kind == "stage" }
}

# Mirrors KeelStageNotConsuming: behind on a topic (lag > 0) and consuming nothing
# (rate(keel_consumer_messages_total[2m]) == 0) for 2 minutes. The rule holds per (service, topic);
# CloudWatch cannot join two queries per group, so this is per stage service: it fires when the
# service is behind on some topic and consumed nothing on any, and misses one topic stalled while
# another flows (matching consumes two; KeelConsumerStoppedOnPoison covers the usual cause). The
# period is the rule's rate() window; a period without counter data counts as nothing consumed.
resource "aws_cloudwatch_metric_alarm" "stage_not_consuming" {
  for_each            = local.stages
  alarm_name          = "${var.name_prefix}-${each.key}-not-consuming"
  alarm_description   = "KeelStageNotConsuming: ${each.key} in ${local.region} is behind and has consumed nothing for 2 minutes (runbooks/poison-message.md)"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "stalled"
    expression  = "IF(lag > 0 AND FILL(consumed, 0) == 0, 1, 0)"
    label       = "behind and not consuming"
    return_data = true
  }
  metric_query {
    id         = "lag"
    expression = "SELECT MAX(\"keel_consumer_lag\") FROM ${local.from["keel_consumer_lag"]} WHERE \"service\" = '${each.key}'"
    period     = 120
  }
  metric_query {
    id         = "consumed"
    expression = "SELECT SUM(\"keel_consumer_messages_total\") FROM ${local.from["keel_consumer_messages_total"]} WHERE \"service\" = '${each.key}'"
    period     = 120
  }
}

# Mirrors KeelConsumerLagHigh: sum by (region, service, topic) (keel_consumer_lag) > 5000 for 5m.
# The collector sums the partitions at each scrape; a contributor per (service, topic), each minute's
# highest sum.
resource "aws_cloudwatch_metric_alarm" "consumer_lag_high" {
  alarm_name          = "${var.name_prefix}-consumer-lag-high"
  alarm_description   = "KeelConsumerLagHigh: a service in ${local.region} is over 5000 messages behind on a topic for 5 minutes (runbooks/reconciliation.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5000
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "lag"
    expression  = "SELECT MAX(\"keel_consumer_lag\") FROM ${local.from["keel_consumer_lag"]} GROUP BY \"service\", \"topic\" ORDER BY MAX() DESC"
    period      = 60
    label       = "consumer lag"
    return_data = true
  }
}

# Mirrors KeelOutboxDepthHigh: max by (region, service) (keel_outbox_depth) > 5000 for 5m; a
# contributor per service.
resource "aws_cloudwatch_metric_alarm" "outbox_depth_high" {
  alarm_name          = "${var.name_prefix}-outbox-depth-high"
  alarm_description   = "KeelOutboxDepthHigh: a service in ${local.region} has over 5000 unpublished outbox rows for 5 minutes (runbooks/reconciliation.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5000
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "depth"
    expression  = "SELECT MAX(\"keel_outbox_depth\") FROM ${local.from["keel_outbox_depth"]} GROUP BY \"service\" ORDER BY MAX() DESC"
    period      = 60
    label       = "outbox depth"
    return_data = true
  }
}

# Mirrors KeelConsumerStoppedOnPoison: max by (region, service, topic)
# (keel_consumer_poison_stopped) == 1, no `for:` (the first minute that shows it); a contributor per
# (service, topic).
resource "aws_cloudwatch_metric_alarm" "consumer_stopped_on_poison" {
  alarm_name          = "${var.name_prefix}-consumer-stopped-on-poison"
  alarm_description   = "KeelConsumerStoppedOnPoison: a service in ${local.region} stopped consuming a topic, poison limit reached (KEEL-E001, runbooks/poison-message.md)"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "stopped"
    expression  = "SELECT MAX(\"keel_consumer_poison_stopped\") FROM ${local.from["keel_consumer_poison_stopped"]} GROUP BY \"service\", \"topic\" ORDER BY MAX() DESC"
    period      = 60
    label       = "stopped on poison"
    return_data = true
  }
}

# Mirrors KeelReconcileGaps: sum by (hop) (keel_reconcile_gaps) > 0 for 5m. The gaps per kind
# (missing, differing, orphaned) are counts, so their sum is over 0 exactly when one of them is: the
# highest over the kinds, a contributor per hop. This region's reconciler's view (each region runs
# one).
resource "aws_cloudwatch_metric_alarm" "reconcile_gaps" {
  alarm_name          = "${var.name_prefix}-reconcile-gaps"
  alarm_description   = "KeelReconcileGaps: the reconciler in ${local.region} has seen gaps on a hop for 5 minutes (runbooks/reconciliation.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "gaps"
    expression  = "SELECT MAX(\"keel_reconcile_gaps\") FROM ${local.from["keel_reconcile_gaps"]} GROUP BY \"hop\" ORDER BY MAX() DESC"
    period      = 60
    label       = "reconcile gaps"
    return_data = true
  }
}

# Mirrors KeelSettlementFailuresHigh: over 5% of instructions FAILED, rate over 10 minutes, for 10m.
# Here one 10-minute period: the failed share of the instructions counted in it (the collector sends
# the counters' increases). Prometheus needs the 10-minute share to stay over 5% for 10 more minutes,
# so this fires up to 10 minutes sooner.
resource "aws_cloudwatch_metric_alarm" "settlement_failures_high" {
  alarm_name          = "${var.name_prefix}-settlement-failures-high"
  alarm_description   = "KeelSettlementFailuresHigh: over 5% of instructions failed to settle in ${local.region} over 10 minutes (runbooks/ledger-verify.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0.05
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "share"
    expression  = "IF(total > 0, FILL(failed, 0) / total, 0)"
    label       = "failed share"
    return_data = true
  }
  metric_query {
    id         = "failed"
    expression = "SELECT SUM(\"keel_settlement_instructions_total\") FROM ${local.from["keel_settlement_instructions_total"]} WHERE \"status\" = 'FAILED'"
    period     = 600
  }
  metric_query {
    id         = "total"
    expression = "SELECT SUM(\"keel_settlement_instructions_total\") FROM ${local.from["keel_settlement_instructions_total"]}"
    period     = 600
  }
}

# Mirrors KeelTradesStuckMatched: max by (region) (keel_trades_matched_past_settlement_date) > 0 for
# 15m.
resource "aws_cloudwatch_metric_alarm" "trades_stuck_matched" {
  alarm_name          = "${var.name_prefix}-trades-stuck-matched"
  alarm_description   = "KeelTradesStuckMatched: trades still MATCHED after their settlement date in ${local.region} for 15 minutes (runbooks/reconciliation.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 15
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "stuck"
    expression  = "SELECT MAX(\"keel_trades_matched_past_settlement_date\") FROM ${local.from["keel_trades_matched_past_settlement_date"]}"
    period      = 60
    label       = "trades matched past settlement date"
    return_data = true
  }
}

# Mirrors KeelInstructionsStuckPending: max by (region)
# (keel_instructions_pending_past_settlement_date) > 0 for 15m.
resource "aws_cloudwatch_metric_alarm" "instructions_stuck_pending" {
  alarm_name          = "${var.name_prefix}-instructions-stuck-pending"
  alarm_description   = "KeelInstructionsStuckPending: instructions still PENDING after their settlement date in ${local.region} for 15 minutes (runbooks/ledger-verify.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  evaluation_periods  = 15
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "stuck"
    expression  = "SELECT MAX(\"keel_instructions_pending_past_settlement_date\") FROM ${local.from["keel_instructions_pending_past_settlement_date"]}"
    period      = 60
    label       = "instructions pending past settlement date"
    return_data = true
  }
}

# Mirrors KeelIngressShedding, exactly as to what it counts: the api service's own 429 answers
# (keel_http_responses_total{status="429"}) over all its answers, over 5% (rate over 5 minutes, for
# 5m). Here one 5-minute period: the share in it; Prometheus needs the 5-minute share to stay over 5%
# for 5 more minutes, so this fires up to 5 minutes sooner.
resource "aws_cloudwatch_metric_alarm" "ingress_shedding" {
  alarm_name          = "${var.name_prefix}-ingress-shedding"
  alarm_description   = "KeelIngressShedding: the api service in ${local.region} refuses over 5% of requests with 429 over 5 minutes (over capacity, runbooks/local-stack.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0.05
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "share"
    expression  = "IF(total > 0, FILL(refused, 0) / total, 0)"
    label       = "429 share"
    return_data = true
  }
  metric_query {
    id         = "refused"
    expression = "SELECT SUM(\"keel_http_responses_total\") FROM ${local.from["keel_http_responses_total"]} WHERE \"status\" = '429'"
    period     = 300
  }
  metric_query {
    id         = "total"
    expression = "SELECT SUM(\"keel_http_responses_total\") FROM ${local.from["keel_http_responses_total"]}"
    period     = 300
  }
}

# Mirrors KeelControlsUnreadable: max by (region) (keel_controls_readable) == 0 for 30s: no service
# here could read the routing controls. CloudWatch's EMF metrics have one-minute resolution (Metrics
# Insights reads no finer), so: one whole minute in which no service read them once; 60 s instead of
# 30 s.
resource "aws_cloudwatch_metric_alarm" "controls_unreadable" {
  alarm_name          = "${var.name_prefix}-controls-unreadable"
  alarm_description   = "KeelControlsUnreadable: no service in ${local.region} can read the routing controls: they fence themselves (runbooks/routing-controls.md)"
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "readable"
    expression  = "SELECT MAX(\"keel_controls_readable\") FROM ${local.from["keel_controls_readable"]}"
    period      = 60
    label       = "services reading the controls"
    return_data = true
  }
}

# Mirrors KeelReplicationLagOverRpo from the reconciler's gauge: max by (app, primary, standby)
# (keel_replication_lag_seconds) > 5 for 1m; a contributor per (app, primary, standby). On Aurora
# the reconciler reads replication from the global cluster, whose API gives no lag, so it exports no
# lag gauge and this alarm stays without data; the Aurora metrics (aurora_replication_lag,
# aurora_rpo_lag in main.tf) mirror this alert there.
resource "aws_cloudwatch_metric_alarm" "replication_lag_over_rpo" {
  alarm_name          = "${var.name_prefix}-replication-lag-over-rpo"
  alarm_description   = "KeelReplicationLagOverRpo: a standby replays over 5 s behind its primary, the RPO budget (reconciler in ${local.region}, runbooks/disaster-recovery.md)"
  comparison_operator = "GreaterThanThreshold"
  threshold           = 5
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "lag"
    expression  = "SELECT MAX(\"keel_replication_lag_seconds\") FROM ${local.from["keel_replication_lag_seconds"]} GROUP BY \"app\", \"primary\", \"standby\" ORDER BY MAX() DESC"
    period      = 60
    label       = "replication lag (s)"
    return_data = true
  }
}

# Mirrors KeelPrimaryUnprotected: max by (app, region) (keel_replication_standbys) == 0 for 2m; a
# contributor per (app, primary's region). On Aurora the reconciler counts the global cluster's
# secondaries (keel-operations-live's AuroraDatabases, as keelctl does).
resource "aws_cloudwatch_metric_alarm" "primary_unprotected" {
  alarm_name          = "${var.name_prefix}-primary-unprotected"
  alarm_description   = "KeelPrimaryUnprotected: an application's primary has no standby replicating from it for 2 minutes: re-protect (reconciler in ${local.region}, runbooks/disaster-recovery.md)"
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  evaluation_periods  = 2
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions

  metric_query {
    id          = "standbys"
    expression  = "SELECT MAX(\"keel_replication_standbys\") FROM ${local.from["keel_replication_standbys"]} GROUP BY \"app\", \"region\" ORDER BY MAX() ASC"
    period      = 60
    label       = "standbys"
    return_data = true
  }
}

# Mirrors KeelTargetDown: up == 0 (the scrape of a Keel process) for 1m, per process: every scrape of
# its ops endpoint in the minute failed. Missing data is breaching: no data at all means the task, or
# its collector, is gone (the collector is not essential to the task; tasks_running in main.tf tells
# which).
resource "aws_cloudwatch_metric_alarm" "target_down" {
  for_each            = var.metrics.processes
  alarm_name          = "${var.name_prefix}-${each.key}-target-down"
  alarm_description   = "KeelTargetDown: ${each.key}'s ops endpoint in ${local.region} has not answered its collector for a minute, or the collector reports nothing (runbooks/local-stack.md)"
  namespace           = var.metrics.namespace
  metric_name         = "up"
  dimensions          = { process = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}
