variable "name_prefix" {
  description = "Prefix of every resource name of this deployment (the ARC cluster, ECS cluster, secrets...)."
  type        = string
}

variable "environment_name" {
  description = "Tag value naming this deployment."
  type        = string
  default     = "production"
}

variable "regions" {
  description = "The regions Keel runs in, the first one the home region (global table, secrets, global clusters are made from there). Must match the providers (providers.tf)."
  type        = list(string)
  default     = ["us-east-1", "us-west-2"]
}

variable "active_regions" {
  description = "Per application: the region it starts active in (its Aurora primary). Default: the first region. Only read when the clusters are created: afterwards keelctl moves the applications, and changing this would replace clusters (refused)."
  type        = map(string)
  default     = {}
}

variable "vpc_cidrs" {
  description = "Per region: its VPC's /16 (not overlapping: the VPCs are peered)."
  type        = map(string)
  default = {
    "us-east-1" = "10.10.0.0/16"
    "us-west-2" = "10.20.0.0/16"
  }
}

variable "availability_zones" {
  description = "Per region: its three availability zones (names; they map to different physical zones per account: pick ones MSK supports)."
  type        = map(list(string))
  default = {
    "us-east-1" = ["us-east-1a", "us-east-1b", "us-east-1c"]
    "us-west-2" = ["us-west-2a", "us-west-2b", "us-west-2c"]
  }
}

variable "domain" {
  description = "The public domain; participants use api.<domain>, and <region>.api.<domain> reaches one region."
  type        = string
}

variable "hosted_zone_id" {
  description = "The public Route 53 hosted zone of var.domain."
  type        = string
}

variable "internal_domain" {
  description = "Private domain of the ops endpoints (<process>.<region>.<internal_domain>)."
  type        = string
  default     = "keel.internal"
}

variable "certificate_arns" {
  description = "Per region: an ACM certificate there covering api.<domain> and <region>.api.<domain>."
  type        = map(string)
}

variable "image_uris" {
  description = "Per region: the Keel image in that region's ECR (deploy/docker/Dockerfile), best by digest."
  type        = map(string)
}

variable "cpu_architecture" {
  description = "The image's architecture: X86_64 or ARM64."
  type        = string
  default     = "X86_64"
}

variable "operator_cidrs" {
  description = "Networks the operators reach the console from (VPN, Direct Connect)."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "How long CloudWatch logs are kept."
  type        = number
  default     = 365
}

variable "kafka_version" {
  description = "MSK's Kafka version."
  type        = string
  default     = "3.6.0"
}

variable "kafka_partitions" {
  description = "Partitions per topic ([kafka] partitions, and MSK's num.partitions)."
  type        = number
  default     = 12
}

variable "aurora_engine_version" {
  description = "aurora-postgresql version (15.x)."
  type        = string
  default     = "15.10"
}

variable "aurora_instance_class" {
  description = "Aurora instance class."
  type        = string
  default     = "db.r6g.large"
}

variable "aurora_master_username" {
  description = "The Aurora master user (the operator's, for day-one setup only)."
  type        = string
  default     = "keel_admin"
}

variable "aurora_master_password_version" {
  description = "Bump to generate and send new Aurora master passwords (write-only)."
  type        = number
  default     = 1
}

variable "database_user" {
  description = "The PostgreSQL role Keel's processes connect as (its password is the database password secret every service reads)."
  type        = string
}

variable "database_names" {
  description = "Per application: its database name. Default: keel_<the prefix of its topics> (keel_tm, keel_st, as locally)."
  type        = map(string)
  default     = {}
}

variable "reference_data_file" {
  description = "Path of the reference data JSON (participants, securities, accounts, commissions, opening balances) given to ingress and settlement."
  type        = string
}

variable "desired_counts" {
  description = "Tasks per process (default 1)."
  type        = map(number)
  default     = {}
}

variable "otel_collector_image" {
  description = "The AWS Distro for OpenTelemetry collector's image (without tag) run beside each process that serves metrics."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector"
}

variable "otel_collector_version" {
  description = "The collector's pinned version tag (vX.Y.Z)."
  type        = string
  default     = "v0.48.0"
}

variable "otel_collector_memory" {
  description = "MiB the collector may use in each task (out of the task's memory)."
  type        = number
  default     = 256
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the services' metrics."
  type        = string
  default     = "Keel"
}

variable "metrics_log_retention_days" {
  description = "How long the metrics log groups keep the collectors' EMF log events (the extracted metrics are kept 15 months regardless)."
  type        = number
  default     = 365
}

