# Which processes run, and what each is given, all from keel-names.json: one per Keel service there,
# plus the operators' console, the continuous reconciler (keelctl reconcile --watch) and keelctl
# itself (a task definition, run on demand).

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  region    = data.aws_region.current.name
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition

  names = jsondecode(file(var.keel_names_file))
  env   = local.names.environment

  api_port     = local.names.container_ports.api
  console_port = local.names.container_ports.console
  ops_port     = local.names.container_ports.ops

  # What the image's entrypoint reads and turns into files (it points the configuration at them):
  # keel-names.json's environment.files, which also says who is given each.
  entrypoint_config_var = "KEEL_CONFIG_TOML"
  entrypoint_participants_var = "KEEL_PARTICIPANT_CREDENTIALS_JSON"
  entrypoint_reference_var = "KEEL_REFERENCE_DATA_JSON"
  entrypoint_operators_var = "KEEL_OPERATORS_TOML"

  # Of the variables every process reads (environment.every_process), the one that names the
  # configuration file is set by the entrypoint (it is KEEL_CONFIG_TOML's name without _TOML); the
  # other one, the process's region, is set here.
  region_vars = [for v in local.env.every_process : v if "${v}_TOML" != local.entrypoint_config_var]

  # The ALB forwards to one target group: one() fails the plan if keel-names.json ever has two api
  # services.
  api_services = [for s in local.names.services : s.name if s.kind == "api"]
  api_service  = one(local.api_services)

  # The secrets every Keel service reads (the database password) are read by the operations
  # processes too: keelctl, the console and the reconciler read every application's database.
  every_service_secrets = [
    for s in local.env.secrets : s.name
    if length(setsubtract([for svc in local.names.services : svc.name], s.services)) == 0
  ]

  # Reference data (not secret): ingress screens every block against it, settlement loads it into
  # its ledger; keel-names.json's environment.files names them. var.reference_data_readers
  # overrides it.
  reference_data_readers = var.reference_data_readers != null ? var.reference_data_readers : one([
    for f in local.env.files : f.processes if f.variable == local.entrypoint_reference_var
  ])

  ops_env = { for v in local.env.ops : v => "0.0.0.0:${local.ops_port}" }

  service_processes = {
    for s in local.names.services : s.name => {
      command     = tolist([s.binary])
      application = s.application
      kind        = s.kind
      role        = "service"
      ecs_service = true
      ports       = tolist(s.kind == "api" ? [local.api_port, local.ops_port] : [local.ops_port])
      identity    = "registry"
      secrets = tolist(concat(
        [for x in local.env.secrets : x.name if contains(x.services, s.name)],
        s.kind == "api" ? [local.entrypoint_participants_var] : [],
      ))
      env = tomap(merge(
        local.ops_env,
        s.kind == "api" ? { (local.env.api_listen) = "0.0.0.0:${local.api_port}" } : {},
        contains(local.reference_data_readers, s.name) ? { (local.entrypoint_reference_var) = var.reference_data_json } : {},
      ))
    }
  }

  operations_processes = {
    console = {
      command     = tolist([var.console_binary])
      application = ""
      kind        = "console"
      role        = "operator"
      ecs_service = true
      ports       = tolist([local.console_port])
      identity    = "registry"
      secrets     = tolist(concat(local.every_service_secrets, [local.entrypoint_operators_var]))
      env         = tomap({ (local.env.console_listen) = "0.0.0.0:${local.console_port}" })
    }
    reconciler = {
      command = tolist([
        var.keelctl_binary, "reconcile", "--watch",
        "--metrics-listen", "0.0.0.0:${local.ops_port}",
        "--interval-seconds", tostring(var.reconcile_interval_seconds),
      ])
      application = ""
      kind        = "reconciler"
      role        = "reconciler"
      ecs_service = true
      ports       = tolist([local.ops_port])
      identity    = "registry"
      secrets     = tolist(local.every_service_secrets)
      env         = tomap(local.ops_env)
    }
    # keelctl: run on demand (aws ecs run-task with a command override; README). Its identity is
    # the caller's AWS identity (STS), mapped by the operator registry's [[principal]] tables.
    keelctl = {
      command     = tolist([var.keelctl_binary, "status"])
      application = ""
      kind        = "keelctl"
      role        = "operator"
      ecs_service = false
      ports       = tolist([])
      identity    = "aws"
      secrets     = tolist(concat(local.every_service_secrets, [local.entrypoint_operators_var]))
      env         = tomap({})
    }
  }

  processes = merge(local.service_processes, local.operations_processes)

  config = {
    for identity in ["registry", "aws"] : identity => templatefile("${path.module}/templates/keel.toml.tftpl", {
      region                  = local.region
      environment             = "production"
      regions                 = var.regions_config
      control                 = { endpoints = var.control_endpoints, poll_interval_ms = var.poll_interval_ms, fence_after_ms = var.fence_after_ms }
      runbook                 = { table = var.runbook_table_name, step_timeout_seconds = var.runbook_step_timeout_seconds }
      aurora                  = var.aurora
      aurora_instance_class   = var.aurora_instance_class
      kafka                   = { partitions = var.kafka_partitions, replication_factor = 3 }
      replication_synchronous = var.replication_synchronous
      operators_identity      = identity
    })
  }

  # arn:aws:ecr:<region>:<account>:repository/<name> of the image.
  image_parts    = regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/([^:@]+)", var.image_uri)
  image_repo_arn = "arn:${local.partition}:ecr:${local.image_parts[1]}:${local.image_parts[0]}:repository/${local.image_parts[2]}"
}
