output "region" {
  description = "The region."
  value       = local.region
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "The ECS cluster's ARN."
  value       = aws_ecs_cluster.this.arn
}

output "ecs_services" {
  description = "Per long-running process: its ECS service name."
  value       = { for name, s in aws_ecs_service.this : name => s.name }
}

output "desired_counts" {
  description = "Per long-running process: its desired task count."
  value       = { for name, s in aws_ecs_service.this : name => s.desired_count }
}

output "keelctl_task_definition_arn" {
  description = "keelctl's task definition (aws ecs run-task with a command override)."
  value       = aws_ecs_task_definition.this["keelctl"].arn
}

output "keelctl_network" {
  description = "What aws ecs run-task needs for keelctl: subnets and security group."
  value = {
    subnets         = var.private_subnet_ids
    security_groups = [aws_security_group.operations.id]
  }
}

output "task_role_arns" {
  description = "Per process: its task role (the identity STS reports for it)."
  value       = { for name, r in aws_iam_role.task : name => r.arn }
}

output "task_security_groups" {
  description = "The tasks' security groups by kind (api, stage, operations): allowed into MSK and Aurora."
  value       = local.task_sgs
}

output "alb" {
  description = "The public ALB: DNS name, hosted zone, ARN suffix (CloudWatch)."
  value = {
    dns_name     = aws_lb.api.dns_name
    zone_id      = aws_lb.api.zone_id
    arn_suffix   = aws_lb.api.arn_suffix
    target_group = aws_lb_target_group.api.arn_suffix
  }
}

output "service_discovery_zone_id" {
  description = "The Cloud Map namespace's private hosted zone (associated with the peered VPCs)."
  value       = aws_service_discovery_private_dns_namespace.this.hosted_zone
}

output "config_toml" {
  description = "The rendered configuration of this region's Keel services."
  value       = local.config["registry"]
}

output "keelctl_config_toml" {
  description = "The rendered configuration keelctl runs with in this region."
  value       = local.config["aws"]
}

output "metrics" {
  description = "The services' metrics in CloudWatch: namespace, the EMF log group, each metric's dimensions, and the processes scraped (name => kind)."
  value = {
    namespace  = var.metrics_namespace
    log_group  = aws_cloudwatch_log_group.metrics.name
    dimensions = local.metric_dimensions
    processes  = local.scraped
  }
}
