# Keel in production over two regions (DESIGN section 8): per region a network, an MSK cluster, each
# application's Aurora cluster, the ECS services, alarms and FIS templates; across regions the VPC
# peering, the Aurora global databases, the runbook global table, the secrets (replicated), the ARC
# cluster with its routing controls and safety rules, and DNS for the participants' hostname.
#
# Every Keel name (services, binaries, routing controls, rules, the table, environment variables,
# ops paths) comes from keel-names.json, generated from the code; the modules expand its patterns
# over var.regions.

locals {
  keel_names_file = abspath("${path.module}/../../keel-names.json")
  names           = jsondecode(file(local.keel_names_file))

  tags = {
    "keel:deployment"  = var.name_prefix
    "keel:environment" = var.environment_name
    "managed-by"       = "terraform"
  }

  home = var.regions[0]
  apps = [for a in local.names.applications : a.name]

  active_region = { for app in local.apps : app => lookup(var.active_regions, app, local.home) }

  # keel_tm, keel_st: "keel_" and the prefix of the application's topics (tm.*, st.*), as locally.
  database_names = {
    for app in local.apps : app => lookup(var.database_names, app, "keel_${one(distinct([
      for t in local.names.topics : split(".", t.name)[0] if t.application == app
    ]))}")
  }

  cluster_ids = {
    for app in local.apps : app => {
      global_cluster = "${var.name_prefix}-${app}"
      clusters       = { for r in var.regions : r => "${var.name_prefix}-${app}-${r}" }
    }
  }

  aurora_applications = {
    for r in var.regions : r => {
      for app in local.apps : app => {
        cluster_identifier        = local.cluster_ids[app].clusters[r]
        global_cluster_identifier = local.cluster_ids[app].global_cluster
        database_name             = local.database_names[app]
        primary                   = local.active_region[app] == r
      }
    }
  }

  api_hostname = "api.${var.domain}"

  # Per region, what the other regions need of it. Add a new region's modules to these lists.
  kms      = { for m in [module.kms_us_east_1, module.kms_us_west_2] : m.region => m.key_arn }
  networks = { for m in [module.network_us_east_1, module.network_us_west_2] : m.region => m }
  kafka    = { for m in [module.kafka_us_east_1, module.kafka_us_west_2] : m.region => m.bootstrap_brokers_tls }
  aurora   = { for m in [module.aurora_us_east_1, module.aurora_us_west_2] : m.region => m }
  services = { for m in [module.service_us_east_1, module.service_us_west_2] : m.region => m }

  peer_cidrs = {
    for r in var.regions : r => flatten([for other, n in local.networks : n.private_cidrs if other != r])
  }

  # [regions.<region>] of the configuration every process reads.
  regions_config = {
    for r in var.regions : r => {
      kafka       = local.kafka[r]
      ingress_url = "https://${r}.${local.api_hostname}"
      databases = {
        for app in local.apps :
        app => "postgres://${var.database_user}@${local.aurora[r].endpoints[app]}:5432/${local.database_names[app]}?sslmode=require"
      }
      # Cloud Map names of the ops endpoints (the service module's ops port, 9100).
      services = {
        for s in local.names.services : s.name => "http://${s.name}.${r}.${var.internal_domain}:${local.names.container_ports.ops}"
      }
    }
  }

  rds_global_cluster_arns = [
    for app in local.apps : "arn:aws:rds::${data.aws_caller_identity.current.account_id}:global-cluster:${local.cluster_ids[app].global_cluster}"
  ]
  rds_cluster_arns = flatten([
    for app in local.apps : [
      for r in var.regions : [
        "arn:aws:rds:${r}:${data.aws_caller_identity.current.account_id}:cluster:${local.cluster_ids[app].clusters[r]}",
        "arn:aws:rds:${r}:${data.aws_caller_identity.current.account_id}:cluster:${local.cluster_ids[app].clusters[r]}-replaced-*",
      ]
    ]
  ])
  # The aurora module's DB subnet groups (<name_prefix>-<region>).
  rds_subnet_group_arns = [
    for r in var.regions : "arn:aws:rds:${r}:${data.aws_caller_identity.current.account_id}:subgrp:${var.name_prefix}-${r}"
  ]
  rds_instance_arn_patterns = flatten([
    for app in local.apps : [
      for r in var.regions : "arn:aws:rds:${r}:${data.aws_caller_identity.current.account_id}:db:${local.cluster_ids[app].clusters[r]}-*"
    ]
  ])

  # One Secrets Manager entry per secret variable: keel-names.json's, and the files the image's
  # entrypoint writes (participants' credentials for ingress, the operator registry for the console
  # and keelctl).
  secret_names = concat(
    [for s in local.names.environment.secrets : s.name],
    ["KEEL_PARTICIPANT_CREDENTIALS_JSON", "KEEL_OPERATORS_TOML"],
  )

  service_common = {
    control_endpoints                   = module.arc.cluster_endpoints
    routing_control_arns_by_application = module.arc.routing_control_arns_by_application
    all_routing_control_arns            = values(module.arc.routing_control_arns)
    runbook_table_name                  = module.runbook_store.table_name
    aurora                              = local.cluster_ids
    rds_global_cluster_arns             = local.rds_global_cluster_arns
    rds_cluster_arns                    = local.rds_cluster_arns
    rds_instance_arn_patterns           = local.rds_instance_arn_patterns
    rds_subnet_group_arns               = local.rds_subnet_group_arns
    reference_data_json                 = file(var.reference_data_file)
  }
}

data "aws_caller_identity" "current" {
  provider = aws.us_east_1
}

# The providers fix the regions (providers.tf): var.regions must name exactly those, home first.
resource "terraform_data" "regions_match_providers" {
  lifecycle {
    precondition {
      condition     = var.regions[0] == "us-east-1" && toset(var.regions) == toset(["us-east-1", "us-west-2"])
      error_message = "var.regions must be the providers' regions (providers.tf), home region (us-east-1) first; to add a region, follow providers.tf."
    }
    precondition {
      condition     = alltrue([for app, r in local.active_region : contains(var.regions, r)])
      error_message = "Every application's active region must be one of var.regions."
    }
  }
}

# The Aurora master passwords: generated on each run as ephemeral values, sent write-only to the
# primary clusters and to Secrets Manager only when var.aurora_master_password_version changes.
# Never in the state, never in a file.
ephemeral "random_password" "aurora_master" {
  for_each         = toset(local.apps)
  length           = 40
  special          = true
  override_special = "!#%^*-_=+"
}

# --- Per region: keys, network, Kafka.

module "kms_us_east_1" {
  source      = "../../modules/kms"
  providers   = { aws = aws.us_east_1 }
  name_prefix = var.name_prefix
}

module "kms_us_west_2" {
  source      = "../../modules/kms"
  providers   = { aws = aws.us_west_2 }
  name_prefix = var.name_prefix
}

module "network_us_east_1" {
  source             = "../../modules/network"
  providers          = { aws = aws.us_east_1 }
  name_prefix        = var.name_prefix
  cidr               = var.vpc_cidrs["us-east-1"]
  availability_zones = var.availability_zones["us-east-1"]
  kms_key_arn        = module.kms_us_east_1.key_arn
  log_retention_days = var.log_retention_days
}

module "network_us_west_2" {
  source             = "../../modules/network"
  providers          = { aws = aws.us_west_2 }
  name_prefix        = var.name_prefix
  cidr               = var.vpc_cidrs["us-west-2"]
  availability_zones = var.availability_zones["us-west-2"]
  kms_key_arn        = module.kms_us_west_2.key_arn
  log_retention_days = var.log_retention_days
}

module "peering_us_east_1_us_west_2" {
  source      = "../../modules/peering"
  providers   = { aws.requester = aws.us_east_1, aws.accepter = aws.us_west_2 }
  name_prefix = var.name_prefix
  requester = {
    region                    = module.network_us_east_1.region
    vpc_id                    = module.network_us_east_1.vpc_id
    cidr                      = module.network_us_east_1.cidr
    private_route_table_ids   = module.network_us_east_1.private_route_table_ids
    service_discovery_zone_id = module.service_us_east_1.service_discovery_zone_id
  }
  accepter = {
    region                    = module.network_us_west_2.region
    vpc_id                    = module.network_us_west_2.vpc_id
    cidr                      = module.network_us_west_2.cidr
    private_route_table_ids   = module.network_us_west_2.private_route_table_ids
    service_discovery_zone_id = module.service_us_west_2.service_discovery_zone_id
  }
}

module "kafka_us_east_1" {
  source                    = "../../modules/kafka"
  providers                 = { aws = aws.us_east_1 }
  name_prefix               = var.name_prefix
  vpc_id                    = module.network_us_east_1.vpc_id
  subnet_ids                = module.network_us_east_1.private_subnet_ids
  client_security_groups    = module.service_us_east_1.task_security_groups
  peer_cidrs                = local.peer_cidrs["us-east-1"]
  kms_key_arn               = module.kms_us_east_1.key_arn
  log_retention_days        = var.log_retention_days
  kafka_version             = var.kafka_version
  partitions                = var.kafka_partitions
}

module "kafka_us_west_2" {
  source                    = "../../modules/kafka"
  providers                 = { aws = aws.us_west_2 }
  name_prefix               = var.name_prefix
  vpc_id                    = module.network_us_west_2.vpc_id
  subnet_ids                = module.network_us_west_2.private_subnet_ids
  client_security_groups    = module.service_us_west_2.task_security_groups
  peer_cidrs                = local.peer_cidrs["us-west-2"]
  kms_key_arn               = module.kms_us_west_2.key_arn
  log_retention_days        = var.log_retention_days
  kafka_version             = var.kafka_version
  partitions                = var.kafka_partitions
}

# --- Aurora: per region the applications' clusters (primaries where they start active), and per
# application its global database, made from its primary.

module "aurora_us_east_1" {
  source                    = "../../modules/aurora"
  providers                 = { aws = aws.us_east_1 }
  name_prefix               = var.name_prefix
  applications              = local.aurora_applications["us-east-1"]
  global_cluster_ids        = module.aurora_global.global_cluster_ids
  master_username           = var.aurora_master_username
  master_passwords          = { for app in local.apps : app => ephemeral.random_password.aurora_master[app].result }
  master_password_version   = var.aurora_master_password_version
  engine_version            = var.aurora_engine_version
  instance_class            = var.aurora_instance_class
  vpc_id                    = module.network_us_east_1.vpc_id
  subnet_ids                = module.network_us_east_1.private_subnet_ids
  client_security_groups    = module.service_us_east_1.task_security_groups
  peer_cidrs                = local.peer_cidrs["us-east-1"]
  kms_key_arn               = module.kms_us_east_1.key_arn
}

module "aurora_us_west_2" {
  source                    = "../../modules/aurora"
  providers                 = { aws = aws.us_west_2 }
  name_prefix               = var.name_prefix
  applications              = local.aurora_applications["us-west-2"]
  global_cluster_ids        = module.aurora_global.global_cluster_ids
  master_username           = var.aurora_master_username
  master_passwords          = { for app in local.apps : app => ephemeral.random_password.aurora_master[app].result }
  master_password_version   = var.aurora_master_password_version
  engine_version            = var.aurora_engine_version
  instance_class            = var.aurora_instance_class
  vpc_id                    = module.network_us_west_2.vpc_id
  subnet_ids                = module.network_us_west_2.private_subnet_ids
  client_security_groups    = module.service_us_west_2.task_security_groups
  peer_cidrs                = local.peer_cidrs["us-west-2"]
  kms_key_arn               = module.kms_us_west_2.key_arn
}

module "aurora_global" {
  source                     = "../../modules/aurora-global"
  providers                  = { aws = aws.us_east_1 }
  global_cluster_identifiers = { for app in local.apps : app => local.cluster_ids[app].global_cluster }
  primary_clusters           = merge(module.aurora_us_east_1.primary_clusters, module.aurora_us_west_2.primary_clusters)
}

# --- Global: the runbook table, the secrets, ARC, DNS.

module "runbook_store" {
  source          = "../../modules/runbook-store"
  providers       = { aws = aws.us_east_1 }
  keel_names_file = local.keel_names_file
  kms_key_arns    = local.kms
}

module "secrets" {
  source                         = "../../modules/secrets"
  providers                      = { aws = aws.us_east_1 }
  name_prefix                    = var.name_prefix
  secret_names                   = local.secret_names
  applications                   = local.apps
  kms_key_arns                   = local.kms
  aurora_master_username         = var.aurora_master_username
  aurora_master_passwords        = { for app in local.apps : app => ephemeral.random_password.aurora_master[app].result }
  aurora_master_password_version = var.aurora_master_password_version
}

module "arc" {
  source          = "../../modules/arc"
  providers       = { aws = aws.arc_control_plane }
  keel_names_file = local.keel_names_file
  name_prefix     = var.name_prefix
  regions         = var.regions
}

module "dns" {
  source           = "../../modules/dns"
  providers        = { aws = aws.us_east_1 }
  zone_id          = var.hosted_zone_id
  api_hostname     = local.api_hostname
  regions          = var.regions
  albs             = { for r, s in local.services : r => { dns_name = s.alb.dns_name, zone_id = s.alb.zone_id } }
  health_check_ids = module.arc.traffic_health_check_ids
}

# --- Per region: the services.

module "service_us_east_1" {
  source                              = "../../modules/service"
  providers                           = { aws = aws.us_east_1 }
  keel_names_file                     = local.keel_names_file
  name_prefix                         = var.name_prefix
  vpc_id                              = module.network_us_east_1.vpc_id
  vpc_cidr                            = module.network_us_east_1.cidr
  private_subnet_ids                  = module.network_us_east_1.private_subnet_ids
  public_subnet_ids                   = module.network_us_east_1.public_subnet_ids
  peer_cidrs                          = local.peer_cidrs["us-east-1"]
  operator_cidrs                      = var.operator_cidrs
  kms_key_arn                         = module.kms_us_east_1.key_arn
  log_retention_days                  = var.log_retention_days
  image_uri                           = var.image_uris["us-east-1"]
  cpu_architecture                    = var.cpu_architecture
  certificate_arn                     = var.certificate_arns["us-east-1"]
  internal_domain                     = var.internal_domain
  regions_config                      = local.regions_config
  control_endpoints                   = local.service_common.control_endpoints
  routing_control_arns_by_application = local.service_common.routing_control_arns_by_application
  all_routing_control_arns            = local.service_common.all_routing_control_arns
  runbook_table_name                  = local.service_common.runbook_table_name
  runbook_table_arn                   = module.runbook_store.table_arns["us-east-1"]
  aurora                              = local.service_common.aurora
  rds_global_cluster_arns             = local.service_common.rds_global_cluster_arns
  rds_cluster_arns                    = local.service_common.rds_cluster_arns
  rds_instance_arn_patterns           = local.service_common.rds_instance_arn_patterns
  rds_subnet_group_arns               = local.service_common.rds_subnet_group_arns
  rds_kms_key_arns                    = values(local.kms)
  aurora_instance_class               = var.aurora_instance_class
  kafka_partitions                    = var.kafka_partitions
  secret_arns                         = { for name, arns in module.secrets.secret_arns : name => arns["us-east-1"] }
  reference_data_json                 = local.service_common.reference_data_json
  desired_counts                      = var.desired_counts
  otel_collector_image                = var.otel_collector_image
  otel_collector_version              = var.otel_collector_version
  otel_collector_memory               = var.otel_collector_memory
  metrics_namespace                   = var.metrics_namespace
  metrics_log_retention_days          = var.metrics_log_retention_days
}

module "service_us_west_2" {
  source                              = "../../modules/service"
  providers                           = { aws = aws.us_west_2 }
  keel_names_file                     = local.keel_names_file
  name_prefix                         = var.name_prefix
  vpc_id                              = module.network_us_west_2.vpc_id
  vpc_cidr                            = module.network_us_west_2.cidr
  private_subnet_ids                  = module.network_us_west_2.private_subnet_ids
  public_subnet_ids                   = module.network_us_west_2.public_subnet_ids
  peer_cidrs                          = local.peer_cidrs["us-west-2"]
  operator_cidrs                      = var.operator_cidrs
  kms_key_arn                         = module.kms_us_west_2.key_arn
  log_retention_days                  = var.log_retention_days
  image_uri                           = var.image_uris["us-west-2"]
  cpu_architecture                    = var.cpu_architecture
  certificate_arn                     = var.certificate_arns["us-west-2"]
  internal_domain                     = var.internal_domain
  regions_config                      = local.regions_config
  control_endpoints                   = local.service_common.control_endpoints
  routing_control_arns_by_application = local.service_common.routing_control_arns_by_application
  all_routing_control_arns            = local.service_common.all_routing_control_arns
  runbook_table_name                  = local.service_common.runbook_table_name
  runbook_table_arn                   = module.runbook_store.table_arns["us-west-2"]
  aurora                              = local.service_common.aurora
  rds_global_cluster_arns             = local.service_common.rds_global_cluster_arns
  rds_cluster_arns                    = local.service_common.rds_cluster_arns
  rds_instance_arn_patterns           = local.service_common.rds_instance_arn_patterns
  rds_subnet_group_arns               = local.service_common.rds_subnet_group_arns
  rds_kms_key_arns                    = values(local.kms)
  aurora_instance_class               = var.aurora_instance_class
  kafka_partitions                    = var.kafka_partitions
  secret_arns                         = { for name, arns in module.secrets.secret_arns : name => arns["us-west-2"] }
  reference_data_json                 = local.service_common.reference_data_json
  desired_counts                      = var.desired_counts
  otel_collector_image                = var.otel_collector_image
  otel_collector_version              = var.otel_collector_version
  otel_collector_memory               = var.otel_collector_memory
  metrics_namespace                   = var.metrics_namespace
  metrics_log_retention_days          = var.metrics_log_retention_days
}

# --- Per region: alarms (on AWS's metrics, and on the services' own, which the service module's
# metrics collectors put in CloudWatch) and chaos experiments.

module "observability_us_east_1" {
  source                      = "../../modules/observability"
  providers                   = { aws = aws.us_east_1 }
  name_prefix                 = var.name_prefix
  kms_key_arn                 = module.kms_us_east_1.key_arn
  ecs_cluster_name            = module.service_us_east_1.cluster_name
  ecs_services                = module.service_us_east_1.ecs_services
  ecs_desired_counts          = module.service_us_east_1.desired_counts
  alb_arn_suffix              = module.service_us_east_1.alb.arn_suffix
  alb_target_group_arn_suffix = module.service_us_east_1.alb.target_group
  msk_cluster_name            = module.kafka_us_east_1.cluster_name
  aurora_cluster_identifiers  = module.aurora_us_east_1.cluster_identifiers
  runbook_table_name          = module.runbook_store.table_name
  metrics                     = module.service_us_east_1.metrics
  # Route 53 publishes health-check metrics in us-east-1 only.
  traffic_health_check_ids = module.arc.traffic_health_check_ids

}

module "observability_us_west_2" {
  source                      = "../../modules/observability"
  providers                   = { aws = aws.us_west_2 }
  name_prefix                 = var.name_prefix
  kms_key_arn                 = module.kms_us_west_2.key_arn
  ecs_cluster_name            = module.service_us_west_2.cluster_name
  ecs_services                = module.service_us_west_2.ecs_services
  ecs_desired_counts          = module.service_us_west_2.desired_counts
  alb_arn_suffix              = module.service_us_west_2.alb.arn_suffix
  alb_target_group_arn_suffix = module.service_us_west_2.alb.target_group
  msk_cluster_name            = module.kafka_us_west_2.cluster_name
  aurora_cluster_identifiers  = module.aurora_us_west_2.cluster_identifiers
  runbook_table_name          = module.runbook_store.table_name
  metrics                     = module.service_us_west_2.metrics

}

module "fis_us_east_1" {
  source              = "../../modules/fis"
  providers           = { aws = aws.us_east_1 }
  name_prefix         = var.name_prefix
  kms_key_arn         = module.kms_us_east_1.key_arn
  log_retention_days  = var.log_retention_days
  ecs_cluster_name    = module.service_us_east_1.cluster_name
  ecs_cluster_arn     = module.service_us_east_1.cluster_arn
  ecs_services        = module.service_us_east_1.ecs_services
  aurora_cluster_arns = module.aurora_us_east_1.cluster_arns
  rds_instance_arns   = module.aurora_us_east_1.instance_arns
  vpc_arn             = module.network_us_east_1.vpc_arn
  private_subnet_arns = module.network_us_east_1.private_subnet_arns
  peer_cidrs          = local.peer_cidrs["us-east-1"]
  stop_alarm_arns     = module.observability_us_east_1.stop_condition_alarm_arns
}

module "fis_us_west_2" {
  source              = "../../modules/fis"
  providers           = { aws = aws.us_west_2 }
  name_prefix         = var.name_prefix
  kms_key_arn         = module.kms_us_west_2.key_arn
  log_retention_days  = var.log_retention_days
  ecs_cluster_name    = module.service_us_west_2.cluster_name
  ecs_cluster_arn     = module.service_us_west_2.cluster_arn
  ecs_services        = module.service_us_west_2.ecs_services
  aurora_cluster_arns = module.aurora_us_west_2.cluster_arns
  rds_instance_arns   = module.aurora_us_west_2.instance_arns
  vpc_arn             = module.network_us_west_2.vpc_arn
  private_subnet_arns = module.network_us_west_2.private_subnet_arns
  peer_cidrs          = local.peer_cidrs["us-west-2"]
  stop_alarm_arns     = module.observability_us_west_2.stop_condition_alarm_arns
}
