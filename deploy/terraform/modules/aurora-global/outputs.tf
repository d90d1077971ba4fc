output "global_cluster_ids" {
  description = "Per application: its global cluster's identifier."
  value       = { for app, g in aws_rds_global_cluster.this : app => g.id }
}

output "global_cluster_arns" {
  description = "Per application: its global cluster's ARN."
  value       = { for app, g in aws_rds_global_cluster.this : app => g.arn }
}
