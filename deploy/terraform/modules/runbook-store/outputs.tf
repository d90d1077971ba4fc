output "table_name" {
  description = "The runbook table ([runbook] table)."
  value       = aws_dynamodb_table.runbooks.name
}

output "table_arns" {
  description = "Per region: the table's (or its replica's) ARN there."
  value = {
    for region in keys(var.kms_key_arns) :
    region => replace(aws_dynamodb_table.runbooks.arn, ":${data.aws_region.current.name}:", ":${region}:")
  }
}
