variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "kms_key_arn" {
  description = "The region's key (experiment logs)."
  type        = string
}

variable "log_retention_days" {
  description = "How long experiment logs are kept."
  type        = number
}

variable "ecs_cluster_name" {
  description = "The region's ECS cluster."
  type        = string
}

variable "ecs_cluster_arn" {
  description = "The region's ECS cluster's ARN."
  type        = string
}

variable "ecs_services" {
  description = "Per long-running process: its ECS service."
  type        = map(string)
}

variable "aurora_cluster_arns" {
  description = "Per application: its Aurora cluster in this region."
  type        = map(string)
}

variable "rds_instance_arns" {
  description = "Keel's DB instances in this region."
  type        = list(string)
}

variable "vpc_arn" {
  description = "The region's VPC."
  type        = string
}

variable "private_subnet_arns" {
  description = "The region's private subnets (network fault targets)."
  type        = list(string)
}

variable "peer_cidrs" {
  description = "The peered regions' private subnets (what region-cut-off takes away)."
  type        = list(string)
}

variable "stop_alarm_arns" {
  description = "Alarms that stop every experiment."
  type        = list(string)
  validation {
    condition     = length(var.stop_alarm_arns) > 0
    error_message = "Every experiment needs a stop condition."
  }
}

variable "network_fault_duration" {
  description = "How long a network or task fault lasts (ISO 8601)."
  type        = string
  default     = "PT10M"
}

variable "enable_ecs_task_faults" {
  description = "Make the ECS task fault templates (pause, slow link): only once the task definitions carry the SSM agent sidecar FIS needs."
  type        = bool
  default     = false
}
