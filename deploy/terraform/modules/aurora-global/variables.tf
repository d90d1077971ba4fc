variable "global_cluster_identifiers" {
  description = "Per application: its global cluster identifier."
  type        = map(string)
}

variable "primary_clusters" {
  description = "Per application: its primary cluster (the aurora modules' primary_clusters, merged over the regions)."
  type = map(object({
    arn       = string
    instances = list(string)
  }))
}
