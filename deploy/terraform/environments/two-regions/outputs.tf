output "arc_cluster_endpoints" {
  description = "The ARC cluster's data-plane endpoints with their regions ([control] endpoints)."
  value       = module.arc.cluster_endpoints
}

output "arc_cluster_arn" {
  description = "The ARC cluster."
  value       = module.arc.cluster_arn
}

output "control_panel_arns" {
  description = "Per control panel: its ARN."
  value       = module.arc.control_panel_arns
}

output "routing_control_arns" {
  description = "Per routing control name: its ARN (all start Off)."
  value       = module.arc.routing_control_arns
}

output "safety_rule_arns" {
  description = "Per safety rule name: its ARN (keelctl controls set --override takes the name or ARN)."
  value       = module.arc.safety_rule_arns
}

output "keelctl_config_toml" {
  description = "Per region: the configuration keelctl runs with there (KEEL_CONFIG_TOML of its task)."
  value       = { for r, s in local.services : r => s.keelctl_config_toml }
}

output "service_config_toml" {
  description = "Per region: the configuration the services run with there."
  value       = { for r, s in local.services : r => s.config_toml }
}

output "keelctl_run_task" {
  description = "Per region: what `aws ecs run-task` needs to run keelctl there (README, Day one)."
  value = {
    for r, s in local.services : r => {
      cluster         = s.cluster_name
      task_definition = s.keelctl_task_definition_arn
      subnets         = s.keelctl_network.subnets
      security_groups = s.keelctl_network.security_groups
      task_role_arn   = s.task_role_arns["keelctl"]
    }
  }
}

output "aurora" {
  description = "Per application: its global cluster and, per region, its cluster identifier and endpoint."
  value = {
    for app in local.apps : app => {
      global_cluster = module.aurora_global.global_cluster_ids[app]
      starts_active  = local.active_region[app]
      database       = local.database_names[app]
      clusters       = { for r in var.regions : r => { identifier = local.aurora[r].cluster_identifiers[app], endpoint = local.aurora[r].endpoints[app] } }
    }
  }
}

output "msk_bootstrap_brokers_tls" {
  description = "Per region: its MSK cluster's TLS bootstrap brokers."
  value       = local.kafka
}

output "alb_dns_names" {
  description = "Per region: its public ALB."
  value       = { for r, s in local.services : r => s.alb.dns_name }
}

output "ingress_url" {
  description = "The participants' base URL (answered by the region whose traffic control is On)."
  value       = module.dns.api_url
}

output "regional_ingress_urls" {
  description = "Per region: its ingress base URL."
  value       = module.dns.regional_urls
}

output "runbook_table" {
  description = "The runbook table ([runbook] table), a global table in every region."
  value       = module.runbook_store.table_name
}

output "secrets_to_fill" {
  description = "The Secrets Manager entries the operator must put values in (home region; replicated to the others), per variable."
  value       = { for name, arns in module.secrets.secret_arns : name => arns[local.home] }
}

output "aurora_master_secrets" {
  description = "Per application: its Aurora master credentials (generated; for creating the services' role on day one)."
  value       = module.secrets.aurora_master_secret_arns
}

output "alarm_topics" {
  description = "Per region: the SNS topic its alarms notify (subscribe the on-call)."
  value = {
    "us-east-1" = module.observability_us_east_1.sns_topic_arn
    "us-west-2" = module.observability_us_west_2.sns_topic_arn
  }
}

output "fis_experiment_templates" {
  description = "Per region: its FIS experiment templates."
  value = {
    "us-east-1" = module.fis_us_east_1.experiment_template_ids
    "us-west-2" = module.fis_us_west_2.experiment_template_ids
  }
}
