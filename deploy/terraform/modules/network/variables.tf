variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "cidr" {
  description = "The VPC's CIDR block (a /16); must not overlap another region's, the VPCs are peered."
  type        = string
}

variable "availability_zones" {
  description = "The three availability zones (names) the region's subnets, brokers and databases are in."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "Give three availability zones."
  }
}

variable "kms_key_arn" {
  description = "The region's key (flow logs)."
  type        = string
}

variable "log_retention_days" {
  description = "How long flow logs are kept."
  type        = number
}

variable "interface_endpoints" {
  description = "AWS services reached through interface endpoints from the private subnets."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "secretsmanager", "kms", "sts", "monitoring"]
}
