# The ECS cluster (Fargate, Container Insights on), a task definition per process (with a metrics
# collector beside the ones that serve metrics, metrics.tf) and a service per long-running one, their
# log groups, and Cloud Map names for the ops endpoints (<process>.<region>.<internal domain>).

resource "aws_ecs_cluster" "this" {
  name = var.name_prefix

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_cloudwatch_log_group" "process" {
  for_each          = local.processes
  name              = "/${var.name_prefix}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = "${local.region}.${var.internal_domain}"
  description = "Keel's ops endpoints in ${local.region}"
  vpc         = var.vpc_id
}

resource "aws_service_discovery_service" "this" {
  for_each = { for name, p in local.processes : name => p if p.ecs_service }
  name     = each.key

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"
    dns_records {
      ttl  = 10
      type = "A"
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each                 = local.processes
  family                   = "${var.name_prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = lookup(var.cpu, each.key, 512)
  memory                   = lookup(var.memory, each.key, 1024)
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # The root filesystem is read-only; the entrypoint writes the configuration files here.
  volume {
    name = "scratch"
  }

  tags = { "keel:process" = each.key }

  # The process, and beside it the metrics collector if it serves metrics (metrics.tf).
  container_definitions = jsonencode(concat([
    {
      name      = each.key
      image     = var.image_uri
      command   = each.value.command
      essential = true
      # The image's user keel (uid 10001), never root.
      user                   = "10001:10001"
      readonlyRootFilesystem = true
      privileged             = false
      portMappings = [
        for port in each.value.ports : { containerPort = port, protocol = "tcp" }
      ]
      environment = [
        for name, value in merge(
          # The pipeline services are told their region; the operations processes work across both.
          { for v in local.region_vars : v => local.region if each.value.role == "service" },
          { (local.entrypoint_config_var) = local.config[each.value.identity] },
          each.value.env,
        ) : { name = name, value = value }
      ]
      secrets = [
        for name in each.value.secrets : { name = name, valueFrom = var.secret_arns[name] }
      ]
      mountPoints = [
        { sourceVolume = "scratch", containerPath = var.writable_path, readOnly = false }
      ]
      linuxParameters = {
        initProcessEnabled = true
        capabilities       = { drop = ["ALL"] }
      }
      stopTimeout = 60
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.process[each.key].name
          awslogs-region        = local.region
          awslogs-stream-prefix = each.key
        }
      }
    }
  ], local.otel_sidecars[each.key]))

  lifecycle {
    precondition {
      condition     = length(local.region_vars) == 1
      error_message = "keel-names.json's environment.every_process has variables this module does not know how to set: update it."
    }
    precondition {
      condition     = alltrue([for name in each.value.secrets : contains(keys(var.secret_arns), name)])
      error_message = "A process reads a secret that has no Secrets Manager entry (secrets module)."
    }
  }
}

resource "aws_ecs_service" "this" {
  for_each                          = { for name, p in local.processes : name => p if p.ecs_service }
  name                              = each.key
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.this[each.key].arn
  desired_count                     = lookup(var.desired_counts, each.key, 1)
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  propagate_tags                    = "SERVICE"
  enable_ecs_managed_tags           = true
  enable_execute_command            = false
  wait_for_steady_state             = false
  health_check_grace_period_seconds = each.value.kind == "api" ? 60 : null

  # A stage consumes its topics' partitions as one instance per region (more instances split them
  # by configuration, DESIGN section 4): a deployment stops the old task before starting the new one.
  # The api service and the console roll.
  deployment_minimum_healthy_percent = contains(["api", "console"], each.value.kind) ? 100 : 0
  deployment_maximum_percent         = contains(["api", "console"], each.value.kind) ? 200 : 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups = [
      each.value.kind == "api" ? aws_security_group.api.id : (each.value.role == "service" ? aws_security_group.stage.id : aws_security_group.operations.id)
    ]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.this[each.key].arn
  }

  dynamic "load_balancer" {
    for_each = each.value.kind == "api" ? [each.key] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = each.key
      container_port   = local.api_port
    }
  }

  tags = {
    "keel:process"     = each.key
    "keel:application" = each.value.application
  }

  depends_on = [aws_lb_listener.https]
}
