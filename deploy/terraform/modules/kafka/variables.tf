variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "vpc_id" {
  description = "The region's VPC."
  type        = string
}

variable "subnet_ids" {
  description = "Three private subnets in three zones: one broker in each."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) == 3
    error_message = "MSK here runs three brokers, one per zone: give exactly three subnets."
  }
}

variable "client_security_groups" {
  description = "Per kind (api, stage, operations): the security group of the region's Keel tasks, allowed to 9094."
  type        = map(string)
}

variable "peer_cidrs" {
  description = "Private subnets of the peered regions, allowed to 9094."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "The region's key (data at rest, broker logs)."
  type        = string
}

variable "log_retention_days" {
  description = "How long broker logs are kept."
  type        = number
}

variable "kafka_version" {
  description = "MSK's Kafka version."
  type        = string
  default     = "3.6.0"
}

variable "broker_instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "broker_volume_gib" {
  description = "EBS volume per broker, GiB."
  type        = number
  default     = 500
}

variable "partitions" {
  description = "num.partitions: the default for topics created without a count. Keel's services create theirs with [kafka] partitions, given the same value."
  type        = number
}
