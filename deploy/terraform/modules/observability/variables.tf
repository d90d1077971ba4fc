variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "kms_key_arn" {
  description = "The region's key (the SNS topic)."
  type        = string
}

variable "ecs_cluster_name" {
  description = "The region's ECS cluster."
  type        = string
}

variable "ecs_services" {
  description = "Per long-running process: its ECS service name."
  type        = map(string)
}

variable "ecs_desired_counts" {
  description = "Per long-running process: its desired task count."
  type        = map(number)
}

variable "alb_arn_suffix" {
  description = "The public ALB's ARN suffix (CloudWatch dimension)."
  type        = string
}

variable "alb_target_group_arn_suffix" {
  description = "The api target group's ARN suffix."
  type        = string
}

variable "msk_cluster_name" {
  description = "The region's MSK cluster."
  type        = string
}

variable "msk_broker_count" {
  description = "Brokers in the MSK cluster."
  type        = number
  default     = 3
}

variable "aurora_cluster_identifiers" {
  description = "Per application: its Aurora cluster in this region."
  type        = map(string)
}

variable "runbook_table_name" {
  description = "The runbook table."
  type        = string
}

variable "traffic_health_check_ids" {
  description = "Per region: the health check following its traffic control; give it to the us-east-1 instance only (Route 53's metrics are there)."
  type        = map(string)
  default     = {}
}

variable "metrics" {
  description = "The services' metrics in CloudWatch, as the service module exports them (its metrics output): namespace, each metric's dimensions, the processes scraped (name => kind)."
  type = object({
    namespace  = string
    dimensions = map(list(string))
    processes  = map(string)
  })
}

