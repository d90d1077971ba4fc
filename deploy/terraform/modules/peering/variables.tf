variable "name_prefix" {
  description = "Prefix of every resource name of this deployment."
  type        = string
}

variable "requester" {
  description = "One side: its region, VPC, CIDR, private route tables and Cloud Map hosted zone."
  type = object({
    region                    = string
    vpc_id                    = string
    cidr                      = string
    private_route_table_ids   = list(string)
    service_discovery_zone_id = string
  })
}

variable "accepter" {
  description = "The other side, as for requester."
  type = object({
    region                    = string
    vpc_id                    = string
    cidr                      = string
    private_route_table_ids   = list(string)
    service_discovery_zone_id = string
  })
}
