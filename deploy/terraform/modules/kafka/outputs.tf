output "region" {
  description = "The cluster's region."
  value       = local.region
}

output "bootstrap_brokers_tls" {
  description = "host:port,... of the TLS listener (9094): [regions.<region>] kafka."
  value       = aws_msk_cluster.this.bootstrap_brokers_tls
}

output "cluster_arn" {
  description = "The MSK cluster."
  value       = aws_msk_cluster.this.arn
}

output "cluster_name" {
  description = "The MSK cluster's name (CloudWatch dimension)."
  value       = aws_msk_cluster.this.cluster_name
}

output "security_group_id" {
  description = "The brokers' security group."
  value       = aws_security_group.brokers.id
}
