output "experiment_template_ids" {
  description = "Per experiment: its template id (aws fis start-experiment --experiment-template-id)."
  value = merge(
    { for k, t in aws_fis_experiment_template.kill : "kill-${k}" => t.id },
    { for k, t in aws_fis_experiment_template.kill_database : "kill-database-${k}" => t.id },
    { for k, t in aws_fis_experiment_template.reboot_database : "reboot-database-${k}" => t.id },
    { for k, t in aws_fis_experiment_template.network : k => t.id },
    { for k, t in aws_fis_experiment_template.task_fault : k => t.id },
  )
}

output "role_arn" {
  description = "The role experiments run with."
  value       = aws_iam_role.fis.arn
}
