output "secret_arns" {
  description = "Per secret variable, per region: the ARN of its entry (the replica outside this region)."
  value = {
    for name, s in aws_secretsmanager_secret.env : name => merge(
      { (local.home) = s.arn },
      { for region in keys(local.replicas) : region => replace(s.arn, ":${local.home}:", ":${region}:") },
    )
  }
}

output "aurora_master_secret_arns" {
  description = "Per application: its Aurora master credentials' entry (in the home region)."
  value       = { for app, s in aws_secretsmanager_secret.aurora_master : app => s.arn }
}

output "home_region" {
  description = "The region the operator puts the values in."
  value       = local.home
}
