variable "keel_names_file" {
  description = "Path of keel-names.json (generated from the code): services, binaries, environment variables, ops paths."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "vpc_id" {
  description = "The region's VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The region's VPC CIDR block."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the tasks."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets for the ALB."
  type        = list(string)
}

variable "peer_cidrs" {
  description = "Private subnets of the peered regions (their brokers, databases and ops endpoints are reached, and their operations processes reach this region's ops endpoints)."
  type        = list(string)
  default     = []
}

variable "operator_cidrs" {
  description = "Networks the operators reach the console from (port 8080, through VPN or Direct Connect); empty: nobody."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "The region's key (log groups, secrets)."
  type        = string
}

variable "log_retention_days" {
  description = "How long the processes' and WAF's logs are kept."
  type        = number
}

variable "access_log_retention_days" {
  description = "How long ALB access logs are kept."
  type        = number
  default     = 90
}

variable "image_uri" {
  description = "The Keel image in this region's ECR (all binaries under /usr/local/bin, user keel uid 10001), best by digest."
  type        = string
  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com/[^:@]+[:@].+$", var.image_uri))
    error_message = "Give an ECR image URI with a tag or digest (<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:...)."
  }
}

variable "writable_path" {
  description = "The only writable path in the containers (the root filesystem is read-only): where the image's entrypoint writes the files it makes from the environment (its default run directory)."
  type        = string
  default     = "/run/keel"
}

variable "cpu_architecture" {
  description = "The image's architecture: X86_64 or ARM64."
  type        = string
  default     = "X86_64"
}

variable "certificate_arn" {
  description = "ACM certificate in this region for the API hostname and <region>.<API hostname>."
  type        = string
}

variable "internal_domain" {
  description = "Private DNS domain of the ops endpoints; this region's names are <process>.<region>.<internal_domain>."
  type        = string
}

variable "regions_config" {
  description = "[regions.<region>] of the configuration, for every region: Kafka bootstrap (TLS), ingress URL, database URLs per application, ops URLs per service."
  type = map(object({
    kafka       = string
    ingress_url = string
    databases   = map(string)
    services    = map(string)
  }))
}

variable "control_endpoints" {
  description = "The ARC cluster's endpoints with their regions."
  type = list(object({
    url    = string
    region = string
  }))
}

variable "poll_interval_ms" {
  description = "How often a service reads its routing controls."
  type        = number
  default     = 500
}

variable "fence_after_ms" {
  description = "How long a service goes on without reading its routing controls before it fences itself."
  type        = number
  default     = 5000
}

variable "routing_control_arns_by_application" {
  description = "Per application: its routing controls' ARNs (what its services may read)."
  type        = map(list(string))
}

variable "all_routing_control_arns" {
  description = "Every routing control's ARN, the generator's included (what the operations processes read and change)."
  type        = list(string)
}

variable "runbook_table_name" {
  description = "The runbook table."
  type        = string
}

variable "runbook_table_arn" {
  description = "The runbook table's ARN in this region."
  type        = string
}

variable "runbook_step_timeout_seconds" {
  description = "How long a runbook step waits to see its outcome (Aurora switchovers take minutes)."
  type        = number
  default     = 900
}

variable "aurora" {
  description = "Per application: its global cluster identifier and its cluster identifier per region ([aurora] of the configuration)."
  type = map(object({
    global_cluster = string
    clusters       = map(string)
  }))
}

variable "aurora_instance_class" {
  description = "[aurora] instance_class: the class of the instance keelctl's re-protection creates."
  type        = string
}

variable "rds_subnet_group_arns" {
  description = "The Aurora DB subnet groups in every region (re-protection creates a cluster in one)."
  type        = list(string)
}

variable "rds_kms_key_arns" {
  description = "Every region's key (re-protection creates an encrypted cluster with it, through RDS)."
  type        = list(string)
}

variable "rds_global_cluster_arns" {
  description = "Keel's global clusters (what the operator processes may switch over or fail over)."
  type        = list(string)
}

variable "rds_cluster_arns" {
  description = "Keel's Aurora clusters in every region, and the names re-protection renames them to (<id>-replaced-*)."
  type        = list(string)
}

variable "rds_instance_arn_patterns" {
  description = "ARN patterns of Keel's DB instances in every region."
  type        = list(string)
}

variable "kafka_partitions" {
  description = "[kafka] partitions: how many partitions the services create their topics with."
  type        = number
}

variable "replication_synchronous" {
  description = "[replication] synchronous: ingress acknowledges only what the other region's standby has flushed."
  type        = bool
  default     = false
}

variable "secret_arns" {
  description = "Per secret variable: its Secrets Manager entry in this region."
  type        = map(string)
}

variable "reference_data_json" {
  description = "The reference data (participants, securities, accounts, commissions, opening balances) as JSON; not secret."
  type        = string
}

variable "reference_data_readers" {
  description = "Services given the reference data; null: the api service and the services of applications without one."
  type        = list(string)
  default     = null
}

variable "console_binary" {
  description = "The console's binary in the image (not in keel-names.json yet)."
  type        = string
  default     = "keel-console"
}

variable "keelctl_binary" {
  description = "keelctl's binary in the image (not in keel-names.json yet)."
  type        = string
  default     = "keelctl"
}

variable "reconcile_interval_seconds" {
  description = "Seconds between the continuous reconciler's runs."
  type        = number
  default     = 15
}

variable "desired_counts" {
  description = "Tasks per process (default 1). A stage runs one instance per region unless its partitions are split by configuration."
  type        = map(number)
  default     = {}
}

variable "cpu" {
  description = "Fargate CPU units per process (default 512)."
  type        = map(number)
  default     = {}
}

variable "memory" {
  description = "Fargate memory (MiB) per process (default 1024)."
  type        = map(number)
  default     = {}
}

variable "waf_rate_limit_per_5_minutes" {
  description = "Requests one client IP may make in five minutes before WAF blocks it."
  type        = number
  default     = 100000
}

variable "otel_collector_image" {
  description = "The AWS Distro for OpenTelemetry collector's image, without its tag (public ECR: pulled through the NAT gateways)."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector"
}

variable "otel_collector_version" {
  description = "The collector image's version tag (vX.Y.Z), pinned: the collector's config (templates/otel-collector.yaml.tftpl) is written for it."
  type        = string
  default     = "v0.48.0"
  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.otel_collector_version))
    error_message = "Pin the collector to a release tag (vX.Y.Z), never latest."
  }
}

variable "otel_collector_memory" {
  description = "MiB the collector may use (its hard limit, out of the task's memory); its memory_limiter starts refusing data at 80%."
  type        = number
  default     = 256
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the services' metrics (modules/observability alarms on it)."
  type        = string
  default     = "Keel"
}

variable "metrics_log_retention_days" {
  description = "How long the metrics log group keeps the collectors' EMF log events (the metrics extracted from them are CloudWatch's, kept 15 months whatever this is)."
  type        = number
  default     = 365
}
