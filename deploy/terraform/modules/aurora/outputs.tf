output "region" {
  description = "The clusters' region."
  value       = local.region
}

output "endpoints" {
  description = "Per application: its cluster endpoint in this region (the writer's while it is primary)."
  value = merge(
    { for app, c in aws_rds_cluster.primary : app => c.endpoint },
    { for app, c in aws_rds_cluster.secondary : app => c.endpoint },
  )
}

output "cluster_arns" {
  description = "Per application: its cluster's ARN in this region."
  value = merge(
    { for app, c in aws_rds_cluster.primary : app => c.arn },
    { for app, c in aws_rds_cluster.secondary : app => c.arn },
  )
}

output "cluster_identifiers" {
  description = "Per application: its cluster's identifier in this region."
  value = merge(
    { for app, c in aws_rds_cluster.primary : app => c.cluster_identifier },
    { for app, c in aws_rds_cluster.secondary : app => c.cluster_identifier },
  )
}

output "instance_arns" {
  description = "Every DB instance's ARN in this region (FIS reboot targets)."
  value = concat(
    [for i in aws_rds_cluster_instance.primary : i.arn],
    [for i in aws_rds_cluster_instance.secondary : i.arn],
  )
}

# Read by the aurora-global module: a global cluster is created from its primary once that primary
# has its writer instance (secondaries can join only then).
output "primary_clusters" {
  description = "Per application starting active here: the primary cluster's ARN, once its instances exist."
  value = {
    for app, c in aws_rds_cluster.primary : app => {
      arn       = c.arn
      instances = [for k, i in aws_rds_cluster_instance.primary : i.id if local.primary_instances[k].app == app]
    }
  }
}
