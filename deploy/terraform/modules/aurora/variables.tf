variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "applications" {
  description = "Per application (keel-names.json): its cluster identifier in this region, its global cluster identifier, its database name, and whether it starts active here (primary)."
  type = map(object({
    cluster_identifier        = string
    global_cluster_identifier = string
    database_name             = string
    primary                   = bool
  }))
}

variable "global_cluster_ids" {
  description = "Per application whose primary is elsewhere: its global cluster (from the aurora-global module)."
  type        = map(string)
  default     = {}
}

variable "master_username" {
  description = "The clusters' master user (used only to create the services' role on day one)."
  type        = string
}

variable "master_passwords" {
  description = "Per application starting active here: its master password. Ephemeral: sent write-only, never stored in the state."
  type        = map(string)
  ephemeral   = true
  sensitive   = true
  default     = {}
}

variable "master_password_version" {
  description = "Bump to send the master passwords again (after rotating them in Secrets Manager)."
  type        = number
  default     = 1
}

variable "engine_version" {
  description = "aurora-postgresql engine version (15.x)."
  type        = string
  validation {
    condition     = startswith(var.engine_version, "15.")
    error_message = "Keel runs on PostgreSQL 15: give a 15.x Aurora version."
  }
}

variable "instance_class" {
  description = "DB instance class (Global Database needs an r-class or larger)."
  type        = string
  default     = "db.r6g.large"
}

variable "instances_per_cluster" {
  description = "Instances per cluster, in different zones (the writer and its readers)."
  type        = number
  default     = 2
}

variable "backup_retention_days" {
  description = "Automated backups kept, days."
  type        = number
  default     = 14
}

variable "vpc_id" {
  description = "The region's VPC."
  type        = string
}

variable "subnet_ids" {
  description = "The region's private subnets."
  type        = list(string)
}

variable "client_security_groups" {
  description = "Per kind (api, stage, operations): the security group of the region's Keel tasks, allowed to 5432."
  type        = map(string)
}

variable "peer_cidrs" {
  description = "Private subnets of the peered regions, allowed to 5432."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "The region's key (storage, Performance Insights)."
  type        = string
}

variable "backup_vault_retention_days" {
  description = "Days AWS Backup keeps each daily snapshot."
  type        = number
  default     = 35
}
