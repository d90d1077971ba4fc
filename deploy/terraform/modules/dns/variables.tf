variable "zone_id" {
  description = "The public hosted zone the API hostname is in."
  type        = string
}

variable "api_hostname" {
  description = "The participants' hostname (api.<domain>)."
  type        = string
}

variable "regions" {
  description = "The regions Keel runs in."
  type        = list(string)
}

variable "albs" {
  description = "Per region: its public ALB's DNS name and hosted zone."
  type = map(object({
    dns_name = string
    zone_id  = string
  }))
}

variable "health_check_ids" {
  description = "Per region: the health check following its traffic routing control."
  type        = map(string)
}
