# The services' Prometheus metrics in CloudWatch: beside every process that serves them (the Keel
# services and the continuous reconciler, on the ops port at keel-names.json's metrics path), an AWS
# Distro for OpenTelemetry collector scrapes them on the task's loopback every 15 s and writes the
# ones deploy/prometheus/alerts.yml alerts on as embedded metric format (EMF) log events to this
# region's metrics log group; CloudWatch Logs extracts them as metrics of var.metrics_namespace, which
# modules/observability alarms on. The collector's config is templates/otel-collector.yaml.tftpl.
#
# Not the console (it serves no /metrics: its only listener is the operators' 8080) nor keelctl (run
# on demand, no endpoint).

resource "aws_cloudwatch_log_group" "metrics" {
  name              = "/${var.name_prefix}/metrics"
  retention_in_days = var.metrics_log_retention_days
  kms_key_id        = var.kms_key_arn
}

locals {
  otel_container = "otel-collector"
  # The image's own user (aoc, uid 4317), never root.
  otel_user = "4317:4317"

  # Per metric the alarms read: the dimensions CloudWatch gets. Every label the series has that the
  # alert rules group by, select on (status) or sum over (partition aside: the collector sums it
  # away; outcome, kind: the alarm's query sums them), plus `process` (the scrape's target label).
  # They must be real labels of the series (crates/platform/src/ops.rs adds service and region to
  # every metric of a process; the reconciler is service "reconciler", region "global", except
  # keel_replication_standbys' own region), or awsemf leaves the metric out. modules/observability
  # builds its Metrics Insights SCHEMA(...) from these.
  metric_dimensions = {
    # The scrape itself (KeelTargetDown).
    up = ["process"]
    # crates/streaming: per topic (the lag per partition, summed by the collector).
    keel_consumer_lag            = ["process", "region", "service", "topic"]
    keel_consumer_messages_total = ["outcome", "process", "region", "service", "topic"]
    keel_consumer_poison_stopped = ["process", "region", "service", "topic"]
    keel_outbox_depth            = ["process", "region", "service"]
    # crates/arc: every service's routing-control reader.
    keel_controls_readable = ["process", "region", "service"]
    # services/matching and services/settlement.
    keel_trades_matched_past_settlement_date       = ["process", "region", "service"]
    keel_instructions_pending_past_settlement_date = ["process", "region", "service"]
    keel_settlement_instructions_total             = ["process", "region", "service", "status"]
    # services/ingress: every answer by status code.
    keel_http_responses_total = ["process", "region", "service", "status"]
    # The reconciler (crates/operations-live/src/reconcile.rs).
    keel_reconcile_gaps          = ["hop", "kind", "process", "region", "service"]
    keel_replication_standbys    = ["app", "process", "region", "service"]
    keel_replication_lag_seconds = ["app", "primary", "process", "region", "service", "standby"]
  }

  # Processes with an ops endpoint, run as ECS services: they get the collector.
  scraped = { for name, p in local.processes : name => p.kind if p.ecs_service && contains(p.ports, local.ops_port) }

  otel_config = {
    for name in keys(local.scraped) : name => templatefile("${path.module}/templates/otel-collector.yaml.tftpl", {
      process             = name
      region              = local.region
      job_name            = var.name_prefix
      ops_port            = local.ops_port
      metrics_path        = local.names.ops_paths.metrics
      scrape_interval     = "15s"
      scrape_timeout      = "10s"
      namespace           = var.metrics_namespace
      log_group           = aws_cloudwatch_log_group.metrics.name
      memory_limit_mib    = floor(var.otel_collector_memory * 0.8)
      memory_spike_mib    = floor(var.otel_collector_memory * 0.2)
      metric_names        = sort(keys(local.metric_dimensions))
      consumer_lag_labels = local.metric_dimensions["keel_consumer_lag"]
      metric_declarations = [
        for metric in sort(keys(local.metric_dimensions)) : {
          dimensions            = [local.metric_dimensions[metric]]
          metric_name_selectors = ["^${metric}$"]
        }
      ]
    })
  }

  # Per process: its collector container, if it is scraped (none otherwise), added to its task
  # definition (ecs.tf).
  otel_sidecars = {
    for process in keys(local.processes) : process => [for name in keys(local.scraped) : {
      name  = local.otel_container
      image = "${var.otel_collector_image}:${var.otel_collector_version}"
      # Losing the metrics must not stop the process: the task goes on without it, ECS restarts it,
      # and the alarms on the scrape (KeelTargetDown) notice the silence.
      essential              = false
      user                   = local.otel_user
      readonlyRootFilesystem = true
      privileged             = false
      memory                 = var.otel_collector_memory
      environment = [
        { name = "AOT_CONFIG_CONTENT", value = local.otel_config[name] }
      ]
      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["ALL"] }
      }
      restartPolicy = { enabled = true, restartAttemptPeriod = 60 }
      dependsOn     = [{ containerName = name, condition = "START" }]
      stopTimeout   = 10
      # Its own stream in the process's log group: <process>/otel-collector/<task id>.
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.process[name].name
          awslogs-region        = local.region
          awslogs-stream-prefix = name
        }
      }
    } if name == process]
  }
}
